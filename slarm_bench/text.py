"""Text encoders and feature teachers for language-aligned semantics (REFERENCE.md sections 2 and 5).

`TextEncoder` wraps open_clip's ViT-B-32 text tower (CLIP's 512-d text space). It never downloads: the model
is built with pretrained=None and the weights are read from an explicit file, or from open_clip's Hugging
Face cache when a copy is there. Without weights it is a randomly initialised tower with a fixed seed, and
`provenance()` says so: such embeddings are distinct per class name but carry no meaning.

`SyntheticTeacher` gives the distillation target of each pixel exactly: the text embedding of the pixel's
ground-truth class name (no 2D model needed); unlabelled pixels are masked out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from slarm_bench.clip import SLARM_CLASSES, UNLABELLED
from slarm_bench.errors import SlarmBenchError

if TYPE_CHECKING:
    from slarm_bench.clip import Clip

CLIP_MODEL = "ViT-B-32"
TEXT_DIM = 512
DEFAULT_SEED = 0
WEIGHTS_ENV = "SLARM_BENCH_CLIP_WEIGHTS"
# open_clip fetches ViT-B-32 "openai" from this Hugging Face repository; a cached copy is used as is.
HF_REPO_DIR = "models--timm--vit_base_patch32_clip_224.openai"
HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class TextEncoderError(SlarmBenchError):
    """Missing or unusable text-encoder weights, or a bad query."""


def cached_clip_weights() -> Path | None:
    """open_clip's cached ViT-B-32 (openai) weights in the Hugging Face cache, or None."""
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" /
                                                                          "huggingface")) / "hub")
    for snapshot in sorted((hub / HF_REPO_DIR / "snapshots").glob("*")):
        for name in HF_FILES:
            if (snapshot / name).is_file():
                return snapshot / name
    return None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises zip, pickle and I/O errors under many types
        raise TextEncoderError(f"CLIP weights {path} cannot be read ({type(err).__name__}); give an "
                               f"open_clip ViT-B-32 state dict (.safetensors or .bin)") from err
    return obj.get("state_dict", obj) if isinstance(obj, dict) else obj


class TextEncoder:
    """`encode(list[str]) -> [C,512]` L2-normalised text embeddings from the CLIP ViT-B-32 text tower.

    weights: a state-dict file of open_clip's ViT-B-32 (explicit: an absent file is an error); None looks
    at $SLARM_BENCH_CLIP_WEIGHTS, then open_clip's cache, then falls back to a random tower (seed `seed`).
    """

    def __init__(self, weights: str | os.PathLike | None = None, seed: int = DEFAULT_SEED,
                 device: str = "cpu"):
        try:
            import open_clip
        except ImportError as err:
            raise TextEncoderError("open_clip is not installed: pip install open_clip_torch (a dependency "
                                   "of slarm-bench; re-run `make test` or `pip install -e .`)") from err
        explicit = weights if weights is not None else os.environ.get(WEIGHTS_ENV)
        path = Path(explicit) if explicit else cached_clip_weights()
        if explicit and not path.is_file():
            raise TextEncoderError(f"CLIP text weights {path} do not exist; give the open_clip ViT-B-32 "
                                   f"file (e.g. {HF_FILES[0]} from the {HF_REPO_DIR} cache) or omit "
                                   f"--clip-weights for a random text tower")
        self.seed, self.device, self.weights_path = seed, device, path
        from open_clip.model import _build_text_tower  # the text tower alone: half the build time

        arch = open_clip.get_model_config(CLIP_MODEL)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _build_text_tower(arch["embed_dim"], arch["text_cfg"],
                                      quick_gelu=bool(arch.get("quick_gelu", False)))
        if path is not None:
            # A full CLIP state dict: the text tower's names are the top-level non-visual ones.
            state = {k: v for k, v in _read_state_dict(path).items()
                     if not k.startswith("visual.") and k != "logit_scale"}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise TextEncoderError(f"CLIP weights {path} do not fit the open_clip {CLIP_MODEL} text "
                                       f"tower "
                                       f"(missing {missing[:4]}, unexpected {unexpected[:4]}); give the "
                                       f"ViT-B-32 file")
        self.model = model.to(device).eval()
        self.tokenizer = open_clip.get_tokenizer(CLIP_MODEL)
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def pretrained(self) -> bool:
        return self.weights_path is not None

    def provenance(self) -> str:
        if self.pretrained:
            return f"open_clip {CLIP_MODEL} text tower from {self.weights_path}"
        return f"random text tower (seed {self.seed}), not CLIP"

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """texts (C strings, queried raw, no prompt template) -> [C,512] float32, L2-normalised, CPU."""
        if isinstance(texts, str) or not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise TextEncoderError(f"text query must be a non-empty list of non-empty strings, got {texts!r}")
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            tokens = self.tokenizer(todo).to(self.device)
            emb = F.normalize(self.model(tokens).float(), dim=-1).cpu()
            self._cache.update(zip(todo, emb))
        return torch.stack([self._cache[t] for t in texts])


_DEFAULT: dict[tuple, TextEncoder] = {}


def default_encoder(weights: str | os.PathLike | None = None, seed: int = DEFAULT_SEED) -> TextEncoder:
    """A process-wide TextEncoder per (weights, seed): building the tower takes about a second."""
    key = (str(weights) if weights else None, seed)
    if key not in _DEFAULT:
        _DEFAULT[key] = TextEncoder(weights, seed)
    return _DEFAULT[key]


class FeatureTeacher:
    """Distillation targets for a model's language features."""

    def targets(self, frame: Clip, t: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Timestep `t` of `frame` -> (targets [V,H,W,512] L2-normalised, valid [V,H,W] bool)."""
        raise NotImplementedError

    def provenance(self) -> str:
        raise NotImplementedError


class SyntheticTeacher(FeatureTeacher):
    """Target of a pixel = text embedding of its ground-truth class name; unlabelled (255) pixels masked."""

    def __init__(self, encoder: TextEncoder | None = None):
        self.encoder = encoder or default_encoder()

    def targets(self, frame: Clip, t: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        if frame.semantic is None:
            raise TextEncoderError(f"the synthetic teacher needs semantic labels; "
                                   f"{frame.meta.get('dataset')} "
                                   f"clip {frame.meta.get('scene')} has none: use a labelled dataset")
        names = list(frame.meta["label_names"])
        table = self.encoder.encode(names)                                # [L,512]
        labels = torch.from_numpy(frame.semantic[t].astype(np.int64))     # [V,H,W]
        valid = labels != UNLABELLED
        return table[torch.where(valid, labels, 0)] * valid[..., None], valid

    def provenance(self) -> str:
        return f"synthetic teacher: text embedding of the ground-truth class ({self.encoder.provenance()})"


def class_embeddings(encoder: TextEncoder | None = None,
                     classes: tuple[str, ...] = SLARM_CLASSES) -> torch.Tensor:
    """[C,512] text embeddings of the class names (raw names, no template)."""
    return (encoder or default_encoder()).encode(list(classes))


def query_relevance(features: torch.Tensor, text: str | torch.Tensor,
                    encoder: TextEncoder | None = None) -> torch.Tensor:
    """Relevance [V,H,W] in [0,1] of language features [V,H,W,512] to a text query (or its [512] embedding).

    Cosine similarity mapped from [-1,1] to [0,1]; features are L2-normalised first (rendered features of
    low-alpha pixels are shorter than unit length).
    """
    if isinstance(text, str):
        if not text.strip():
            raise TextEncoderError("empty text query; give a class or phrase, e.g. --text vehicle")
        text = (encoder or default_encoder()).encode([text])[0]
    emb = F.normalize(text.to(features.device).float(), dim=-1)
    return (F.normalize(features.float(), dim=-1) @ emb + 1) / 2


def save_relevance_png(relevance: torch.Tensor, out_png: str | os.PathLike,
                       images: np.ndarray | None = None) -> Path:
    """Write relevance [V,H,W] (cameras side by side, under the RGB images [V,H,W,3] uint8 when given)."""
    from PIL import Image

    rel = relevance.detach().cpu().float().clamp(0, 1).numpy()
    heat = np.concatenate(list(_colormap(rel)), axis=1)                  # [H, V*W, 3]
    if images is not None:
        heat = np.concatenate([np.concatenate(list(images), axis=1), heat], axis=0)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(heat).save(out)
    return out


def _colormap(x: np.ndarray) -> np.ndarray:
    """[...] in [0,1] -> [...,3] uint8, dark blue -> red -> yellow (no matplotlib needed)."""
    r = np.clip(2 * x, 0, 1)
    g = np.clip(2 * x - 1, 0, 1)
    b = np.clip(0.5 - x, 0, 0.5)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def query(model: Any, protocol_or_clip: Any, text: str, out_png: str | os.PathLike,
          store: Any = None, encoder: TextEncoder | None = None) -> Path:
    """Render a relevance map of `text` for one window and write it to `out_png`.

    protocol_or_clip: a Clip (its frames are the context; the map is rendered at its first timestep's
    cameras) or a Protocol (its first scene's first window, read from `store`; context frames as the
    protocol says, rendered at the first target frame). `model` must produce language features.
    """
    if not isinstance(text, str) or not text.strip():
        raise TextEncoderError("empty text query; give a class or phrase, e.g. --text vehicle")
    from slarm_bench.clip import Clip

    if isinstance(protocol_or_clip, Clip):
        context, target = protocol_or_clip, protocol_or_clip.select([0])
    else:
        protocol = protocol_or_clip
        if store is None:
            from slarm_bench.store import Store

            store = Store()
        scene = protocol.scenes[0]
        start = protocol.window_starts(store.num_frames(protocol.dataset, protocol.split, scene))[0]
        frames = [start + i for i in range(protocol.window_length)]
        window = store.read_window(protocol.dataset, protocol.split, scene, frames)
        context, target = window.select(list(protocol.context)), window.select([protocol.targets[0]])
    scene_obj = model.reconstruct(context)
    h, w = target.images.shape[2:4]
    pred = model.render(scene_obj, target.cam_to_world[0], target.intrinsics[0], float(target.time[0]),
                        (h, w))
    if pred.features is None:
        raise TextEncoderError(f"model {getattr(model, 'name', model)!r} produces no language features; "
                               f"query needs a language-aligned model such as slarm")
    enc = encoder or getattr(model, "text_encoder", None) or default_encoder()
    return save_relevance_png(query_relevance(pred.features, text, enc), out_png, target.images[0])
