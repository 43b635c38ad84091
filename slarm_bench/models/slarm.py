"""SLARM as a slarm-bench Model: batch reconstruction and streaming, rendering with language features.

Presets: slarm-b8 and slarm-t (batch, block-causal global attention over the context timesteps), slarm-w
(streaming, window of W = 3 timesteps) and slarm-f (streaming, full attention) sharing slarm-t's weights,
slarm-t-o1 / slarm-t-o2 (motion order 1 / 2 ablations) and slarm (the best shipped checkpoint, for now
slarm-t's: the path named by `checkpoint:` in baselines/slarm-t.yaml, else random weights, said in the
provenance).

Streaming: `start()` gives a fresh session; `step(state, frame)` takes one timestep (all cameras) and returns
(state, Scene). Each global block keeps the rotated keys/values of earlier timesteps: the last W - 1 for
the window variant (so a timestep attends to itself and W - 1 predecessors; the cache never holds more than
W timesteps), all for the full one. Batch `reconstruct` applies the same rule as a block-causal mask, so
full streaming and batch give the same Gaussians. The Scene of a step holds the Gaussians of the last
`render_timesteps` timesteps (default: the attention window, all for full attention) in `gaussians` and
the step's own in `payload["step_gaussians"]`, since the harness renders targets from the last step's Scene.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slarm_bench.clip import SLARM_CLASSES, Clip
from slarm_bench.errors import SlarmBenchError, check_name
from slarm_bench.geometry import camera_rays_torch
from slarm_bench.metrics.semantic import predict_semantic
from slarm_bench.models.base import Prediction, Scene, StreamingModel
from slarm_bench.models.checkpoint import load_into, load_safetensors, shipped_checkpoint
from slarm_bench.models.layers import pixel_centre_grid
from slarm_bench.models.slarm_net import SlarmConfig, SlarmFrames, SlarmNet, slarm_config
from slarm_bench.render import Gaussians, render, resolve_backend

ATTENTION_MODES = ("causal", "window", "full")
DEFAULT_WINDOW = 3
# Tolerance on time comparisons between streamed frames (clip times are float64 seconds).
TIME_EPS = 1e-6


class SlarmInputError(SlarmBenchError, ValueError):
    """A frame or clip that the SLARM model cannot take (order, cameras, size, time gap)."""


@dataclass
class StreamState:
    """A streaming session: per global block the cached (k, v) [B,heads,M,hd] of earlier timesteps."""

    t0: float | None = None
    last_time: float | None = None
    fps: float | None = None
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    cached_timesteps: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)   # recent timesteps' Gaussians, sky, affine
    steps: int = 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class SlarmModel(StreamingModel):
    """SLARM reconstruction (batch and streaming) with rendering of rgb, depth, flow and semantics."""

    produces = ("rgb", "depth", "flow", "semantic")

    def __init__(self, cfg: SlarmConfig | None = None, preset: str = "slarm-t", checkpoint: str | None = None,
                 attention: str = "causal", window: int = DEFAULT_WINDOW, device: str = "cpu",
                 backend: str = "auto", clip_weights: str | None = None, text_seed: int = 0,
                 render_timesteps: int | None = None, dtype: torch.dtype | None = None, **_: Any):
        check_name("SLARM attention mode", attention, ATTENTION_MODES)
        if window < 1:
            raise SlarmInputError(f"SLARM window must be at least 1 timestep, got {window}")
        self.device, self.backend = device, resolve_backend(backend)
        self.attention, self.window = attention, window
        self.render_timesteps = render_timesteps
        self.preset, self.checkpoint = preset, None if checkpoint is None else Path(checkpoint)
        self.clip_weights, self.text_seed = clip_weights, text_seed
        self.dtype = dtype
        self._checkpoint_sha: str | None = None
        if self.checkpoint is not None:
            state, config = load_safetensors(self.checkpoint)
            cfg = SlarmConfig.from_dict(config)
            self.net = load_into(SlarmNet(cfg), state, f"checkpoint {self.checkpoint}", preset)
            ckpt = self.checkpoint
            stem = ckpt.with_suffix("") if ckpt.suffix == ".safetensors" else ckpt
            self._checkpoint_sha = _sha256(stem.with_name(stem.name + ".safetensors"))
        else:
            self.net = SlarmNet(cfg or slarm_config(preset))
        self.net = self.net.to(device).eval()
        self._text: Any = None
        self._class_emb: torch.Tensor | None = None

    # ---------------------------------------------------------------------------------------------------
    @property
    def cfg(self) -> SlarmConfig:
        return self.net.cfg

    @property
    def text_encoder(self) -> Any:
        if self._text is None:
            from slarm_bench.text import default_encoder

            self._text = default_encoder(self.clip_weights, self.text_seed)
        return self._text

    def class_embeddings(self) -> torch.Tensor:
        """[9,512] text embeddings of clip.SLARM_CLASSES on the model's device."""
        if self._class_emb is None:
            self._class_emb = self.text_encoder.encode(list(SLARM_CLASSES)).to(self.device)
        return self._class_emb

    def _mask_window(self) -> int | None:
        return self.window if self.attention == "window" else None

    def _inputs(self, clip: Clip) -> tuple[torch.Tensor, ...]:
        """Clip -> images [1,T,V,3,H,W] in [-1,1], poses [1,T,V,4,4], intrinsics [1,T,V,3,3]."""
        cfg = self.cfg
        if clip.num_cameras != cfg.num_cameras:
            raise SlarmInputError(f"{self.name}: the clip has {clip.num_cameras} cameras but the model takes "
                                  f"{cfg.num_cameras}; use a protocol with {cfg.num_cameras} cameras")
        if tuple(clip.images.shape[2:4]) != cfg.image_size:
            raise SlarmInputError(f"{self.name}: images are {tuple(clip.images.shape[2:4])} but the model is "
                                  f"built for {cfg.image_size}; use a protocol of that image size")
        dev = self.device
        img = torch.from_numpy(np.ascontiguousarray(clip.images)).to(dev).permute(0, 1, 4, 2, 3)
        img = img.float()[None] / 127.5 - 1.0
        c2w = torch.from_numpy(np.asarray(clip.cam_to_world, np.float32)).to(dev)[None]
        k = torch.from_numpy(np.asarray(clip.intrinsics, np.float32)).to(dev)[None]
        return img, c2w, k

    def _autocast(self) -> Any:
        dev = torch.device(self.device).type
        return torch.autocast(dev, dtype=self.dtype, enabled=self.dtype is not None)

    @staticmethod
    def _fps(clip: Clip) -> float:
        fps = clip.meta.get("fps")
        if not fps or fps <= 0:
            raise SlarmInputError(f"clip {clip.meta.get('scene')} has no positive meta['fps']; the rendered "
                                  f"flow is a backward difference over one frame period")
        return float(fps)

    def _gaussians(self, out: SlarmFrames, times: np.ndarray) -> Gaussians:
        """SlarmFrames of T timesteps (B = 1) -> Gaussians [1,N], origin time = each frame's time (s)."""
        b, t, v, h, w = out.opacities.shape
        flat = lambda x: x.reshape(b, t * v * h * w, *x.shape[5:]).float()  # noqa: E731
        origin = torch.as_tensor(np.asarray(times, np.float64), dtype=torch.float32, device=out.means.device)
        origin = origin[None, :, None].expand(b, t, v * h * w).reshape(b, -1)
        return Gaussians(means=flat(out.means), quats=flat(out.quats), scales=flat(out.scales),
                         opacities=flat(out.opacities), colors=flat(out.colors), features=flat(out.features),
                         motion=flat(out.motion), origin_time=origin.contiguous())

    # ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, context: Clip) -> Scene:
        img, c2w, k = self._inputs(context)
        times = np.asarray(context.time, np.float64)
        model_time = torch.tensor((times - times[0]) / self.cfg.time_span, dtype=torch.float32,
                                  device=self.device)[None]
        with self._autocast():
            out = self.net(img, c2w, k, model_time, window=self._mask_window())
        sky = out.sky_tokens.float().mean(dim=(1, 2))[:, None]
        return Scene(gaussians=self._gaussians(out, times), sky=sky,
                     affine=out.affine.mean(dim=1), payload={"fps": self._fps(context), "frames": out})

    def start(self) -> StreamState:
        if self.attention == "causal":
            raise SlarmInputError(f"{self.name} is a batch preset; stream with slarm-w (window) or slarm-f "
                                  f"(full attention)")
        return StreamState()

    def reset(self) -> StreamState:
        """A fresh streaming session (same as start())."""
        return self.start()

    def _check_frame(self, state: StreamState, frame: Clip) -> tuple[float, float]:
        if frame.num_frames != 1:
            raise SlarmInputError(f"{self.name}.step takes one timestep (all cameras), got "
                                  f"{frame.num_frames}; "
                                  f"pass clip.select([i])")
        t, fps = float(frame.time[0]), self._fps(frame)
        if state.last_time is not None:
            if t <= state.last_time + TIME_EPS:
                raise SlarmInputError(f"{self.name}: frame at {t:.3f} s is not after the last step "
                                      f"({state.last_time:.3f} s); stream frames in time order, or reset()")
            limit = (self.window + 1) / fps
            if self.attention == "window" and t - state.last_time > limit + TIME_EPS:
                raise SlarmInputError(f"{self.name}: {t - state.last_time:.3f} s since the last step exceeds "
                                      f"the window's {self.window + 1} frame periods ({limit:.3f} s); "
                                      f"reset() and start a new session")
        return t, fps

    @torch.no_grad()
    def step(self, state: StreamState, frame: Clip) -> tuple[StreamState, Scene]:
        t, fps = self._check_frame(state, frame)
        img, c2w, k = self._inputs(frame)
        t0 = t if state.t0 is None else state.t0
        model_time = torch.tensor([[(t - t0) / self.cfg.time_span]], dtype=torch.float32, device=self.device)
        with self._autocast():
            out, kvs = self.net.forward_step(img, c2w, k, model_time, state.kv)
        keep = None if self.attention == "full" else self.window - 1
        new_kv = []
        n = kvs[0][0].shape[2]                                         # tokens per timestep
        for i, (kk, vv) in enumerate(kvs):
            if state.kv is not None:
                kk, vv = torch.cat([state.kv[i][0], kk], dim=2), torch.cat([state.kv[i][1], vv], dim=2)
            if keep is not None:
                kk, vv = kk[:, :, max(0, kk.shape[2] - keep * n):], vv[:, :, max(0, vv.shape[2] - keep * n):]
            new_kv.append((kk, vv))
        cached = new_kv[0][0].shape[2] // n
        own = {"gaussians": self._gaussians(out, np.array([t])),
               "sky": out.sky_tokens.float().mean(dim=(1, 2)),
               "affine": out.affine[:, 0]}
        span = self.render_timesteps or (None if self.attention == "full" else self.window)
        kept = (state.kept + [own])[-span:] if span else state.kept + [own]
        new_state = StreamState(t0=t0, last_time=t, fps=fps, kv=new_kv if cached else None,
                                cached_timesteps=cached, kept=kept, steps=state.steps + 1)
        gaussians = own["gaussians"] if len(kept) == 1 else Gaussians.concat([e["gaussians"] for e in kept])
        sky = torch.stack([e["sky"] for e in kept]).mean(0)[:, None]
        affine = torch.stack([e["affine"] for e in kept]).mean(0)
        return new_state, Scene(gaussians=gaussians, sky=sky, affine=affine,
                                payload={"fps": fps, "step_gaussians": own["gaussians"], "time": t})

    # ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, scene: Scene, cam_to_world: np.ndarray, intrinsics: np.ndarray, time: float,
               size: tuple[int, int]) -> Prediction:
        dev = self.device
        h, w = int(size[0]), int(size[1])
        c2w = torch.from_numpy(np.asarray(cam_to_world, np.float32)).to(dev)[None]
        k = torch.from_numpy(np.asarray(intrinsics, np.float32)).to(dev)[None]
        _, dirs = camera_rays_torch(k, c2w, pixel_centre_grid(h, w, torch.device(dev)))
        background = self.net.sky_color(scene.sky.float(), dirs.reshape(1, -1, h, w, 3))
        affine = scene.affine if scene.affine.shape[1] == c2w.shape[1] else None
        out = render(scene.gaussians, c2w, k, (h, w), time=float(time), backend=self.backend,
                     background=background, color_transform=affine, features=True, flow=True,
                     flow_dt=1.0 / scene.payload["fps"], near=self.cfg.near, far=self.cfg.far)
        feats = self.net.decode_features(out.features[0])
        semantic = predict_semantic(feats, self.class_embeddings(),
                                    others_index=SLARM_CLASSES.index("others"))
        return Prediction(rgb=out.rgb[0].clamp(0, 1), depth=out.depth[0], flow=out.flow[0], semantic=semantic,
                          features=feats)

    def provenance(self) -> dict[str, Any]:
        return {"model": self.name, "preset": self.preset, "config": self.cfg.to_dict(),
                "checkpoint": str(self.checkpoint) if self.checkpoint else "none: random weights",
                "checkpoint_sha256": self._checkpoint_sha, "attention": self.attention,
                "window": self.window if self.attention == "window" else None,
                "text_encoder": self.text_encoder.provenance(), "renderer_backend": self.backend,
                "dtype": str(self.dtype) if self.dtype else "float32"}

    def checkpoint_sha256(self) -> str | None:
        return self._checkpoint_sha

    def synchronize(self) -> None:
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize()


# -------------------------------------------------------------------------------------------------------
# Factories (registry entries).
def _make(preset: str, attention: str, checkpoint: str | os.PathLike | None = None, **options: Any
          ) -> SlarmModel:
    return SlarmModel(preset=preset, checkpoint=checkpoint, attention=attention, **options)


def make_slarm_b8(**options: Any) -> SlarmModel:
    return _make("slarm-b8", "causal", **options)


def make_slarm_t(**options: Any) -> SlarmModel:
    return _make("slarm-t", "causal", **options)


def make_slarm_t_o1(**options: Any) -> SlarmModel:
    return _make("slarm-t-o1", "causal", **options)


def make_slarm_t_o2(**options: Any) -> SlarmModel:
    return _make("slarm-t-o2", "causal", **options)


def _shipped(options: dict[str, Any]) -> dict[str, Any]:
    if options.get("checkpoint") is None:
        options["checkpoint"] = shipped_checkpoint("slarm-t")
    return options


def make_slarm_w(**options: Any) -> SlarmModel:
    """Streaming, window of `window` (default 3) timesteps; slarm-t weights (shipped checkpoint if any)."""
    return _make(options.pop("preset", "slarm-t"), "window", **_shipped(options))


def make_slarm_f(**options: Any) -> SlarmModel:
    """Streaming, full attention; slarm-t weights (shipped checkpoint if any)."""
    return _make(options.pop("preset", "slarm-t"), "full", **_shipped(options))


def make_slarm(**options: Any) -> SlarmModel:
    """The best shipped SLARM checkpoint (for now slarm-t's), random slarm-t weights when none is shipped."""
    return _make("slarm-t", "causal", **_shipped(options))
