"""SLARM as a slarm-bench Model: batch reconstruction and streaming, rendering with language features.

Presets: slarm-b8 and slarm-t (batch, block-causal global attention over the context timesteps), slarm-w
(streaming, window of W = 3 timesteps) and slarm-f (streaming, full attention) sharing slarm-t's weights,
slarm-t-o1 / slarm-t-o2 (motion order 1 / 2 ablations) and slarm (the best shipped checkpoint, for now
slarm-t's: the path named by `checkpoint:` in baselines/slarm-t.yaml, else random weights, said in the
provenance).

Streaming: `start()` gives a fresh session; `step(state, frame)` takes one timestep (all cameras) and returns
(state, Scene). Each global block keeps the rotated keys/values of recent timesteps in a `KVCache` of
preallocated buffers that a step writes in place: the window variant a ring of W timesteps (slot = step
mod W, overwriting the oldest; a timestep attends to itself and W - 1 predecessors, and after W steps
every step has the same shapes and buffers), the full one all timesteps (capacity doubled when full).
Keys are cached after their rotary encoding, which depends only on a token's place in its frame, and
attention does not depend on key order, so the ring's slot order does not matter. Batch `reconstruct`
applies the same rule as a block-causal mask, so full streaming and batch give the same Gaussians. Since
the cache is updated in place, each state steps once (stepping an older state of a session raises).
Option `compile` (e.g. "reduce-overhead") runs the window variant's full-ring steps through torch.compile
(CUDA graphs on a GPU); the model then keeps one cache for all its sessions, so that its buffers keep their
addresses, and only the newest session can step. With `compile`, render() also runs the sky colour and
the feature decoding + class query compiled (fused kernels, no CUDA graphs). The Scene of a step holds the
Gaussians of the last `render_timesteps` timesteps (default: the attention window, all for full attention)
in `gaussians` and the step's own in `payload["step_gaussians"]`, since the harness renders targets from the
last step's Scene.

Streaming validates without host syncs: a step computes its Gaussians' validity flag on the device
(render.validity_flag, inside the compiled graph when compiled) and keeps a render.GaussianCheck of it (read
back asynchronously). Invalid Gaussians (NaN, inf, ...) raise the renderer's RenderError, prefixed with the
step, no later than the next of: rendering a Scene that holds them, the next step, start()/reset(),
synchronize() (each waits for the device to reach the check if it has not; gsplat has, once it returns).
Rendering a streaming Scene checks the cameras on the host (render.check_cameras, before they are sent) and
calls render(check=False); other Scenes (reconstruct) render with check=True as before.
"""

from __future__ import annotations

import hashlib
import itertools
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
from slarm_bench.models.checkpoint import load_into, load_safetensors, safetensors_path, shipped_checkpoint
from slarm_bench.models.layers import pixel_centre_grid
from slarm_bench.models.slarm_net import KVCache, SlarmConfig, SlarmFrames, SlarmNet, slarm_config
from slarm_bench.render import GaussianCheck, Gaussians, check_cameras, render, resolve_backend, validity_flag
from slarm_bench.render.gaussians import RenderError

ATTENTION_MODES = ("causal", "window", "full")
DEFAULT_WINDOW = 3
# torch.compile modes the `compile` option takes (True means "reduce-overhead": CUDA graphs on a GPU).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Timesteps a full-attention cache holds before its first doubling.
FULL_CACHE_START = 4
# Tolerance on time comparisons between streamed frames (clip times are float64 seconds).
TIME_EPS = 1e-6


class SlarmInputError(SlarmBenchError, ValueError):
    """A frame or clip that the SLARM model cannot take (order, cameras, size, time gap)."""


@dataclass
class StreamState:
    """A streaming session: `kv` the session's KVCache (None before its first step), `cached_timesteps` the
    timesteps it holds (this step's included: at most W for the window). The cache is updated in place, so
    a state steps once: step the state that the last step returned (or reset())."""

    t0: float | None = None
    last_time: float | None = None
    fps: float | None = None
    kv: KVCache | None = None
    cached_timesteps: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)   # recent timesteps' Gaussians, sky, affine, check
    steps: int = 0
    session: int = 0        # the cache's session number (each first step starts a new one)


_FRAME_FIELDS = tuple(SlarmFrames.__dataclass_fields__)


def _cached_step(net: SlarmNet, *args: Any) -> tuple[torch.Tensor, ...]:
    """SlarmNet.forward_cached as a tuple of tensors (what torch.compile wraps), then the validity flag of
    its Gaussians (render.validity_flag; compiled into the same graph: no extra launches, no sync)."""
    out = net.forward_cached(*args)
    flag = validity_flag(out.means, out.quats, out.scales, out.opacities, out.colors, out.features, out.motion)
    return (*(getattr(out, name) for name in _FRAME_FIELDS), flag)


def _sky_colors(net: SlarmNet, sky: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Sky colour of every ray (what `render` composites behind the Gaussians); fp32."""
    return net.sky_color(sky.float(), dirs)


def _decode_and_classify(net: SlarmNet, features: torch.Tensor, class_emb: torch.Tensor,
                         dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rendered features [...,F] -> (language features [...,L] fp32, class index per pixel [...])."""
    with torch.autocast(features.device.type, dtype=dtype, enabled=dtype is not None):
        feats = net.decode_features(features).float()
    return feats, predict_semantic(feats, class_emb, others_index=SLARM_CLASSES.index("others"))


def _compile_mode(option: str | bool | None) -> str | None:
    if option is None or option is False:
        return None
    return "reduce-overhead" if option is True else check_name("SLARM compile mode", option, COMPILE_MODES)


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
                 render_timesteps: int | None = None, dtype: torch.dtype | None = None,
                 compile: str | bool | None = None, **_: Any):
        check_name("SLARM attention mode", attention, ATTENTION_MODES)
        self.compile = _compile_mode(compile)
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
            self._checkpoint_sha = _sha256(safetensors_path(self.checkpoint))
        else:
            self.net = SlarmNet(cfg or slarm_config(preset))
        self.net = self.net.to(device).eval()
        self._text: Any = None
        self._class_emb: torch.Tensor | None = None
        self._sessions = itertools.count(1)
        self._shared_kv: KVCache | None = None       # with `compile`: one cache for every session
        self._compiled_step: Any = None
        # With `compile`, the per-pixel heads around the rasterizer (sky colour, feature decoding and the
        # class query) run as fused kernels too: after gsplat's host sync every eager launch is exposed.
        # No CUDA graphs there: their outputs are the Prediction's, which a replay would overwrite.
        self._sky_fn: Any = _sky_colors
        self._heads_fn: Any = _decode_and_classify
        if self.compile is not None:
            self._sky_fn = torch.compile(_sky_colors, dynamic=False)
            self._heads_fn = torch.compile(_decode_and_classify, dynamic=False)
        self._pixel_grids: dict[tuple[int, int], torch.Tensor] = {}
        self._pending: list[GaussianCheck] = []     # streaming steps' checks not read yet (see module doc)
        # device copies of the last step's cameras and of the last render's (with its ray directions), by
        # content: rendering the cameras just stepped or rendered (a live viewer) copies nothing
        self._step_cams: tuple[tuple, torch.Tensor, torch.Tensor] | None = None
        self._render_cams: tuple[tuple, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

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
        img = self._to_device(np.ascontiguousarray(clip.images)).permute(0, 1, 4, 2, 3)
        img = img.float()[None] / 127.5 - 1.0
        c2w = self._to_device(np.asarray(clip.cam_to_world, np.float32))[None]
        k = self._to_device(np.asarray(clip.intrinsics, np.float32))[None]
        return img, c2w, k

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """numpy -> the model's device; to CUDA through pinned memory, asynchronously (no host sync)."""
        t = torch.from_numpy(array)
        if torch.device(self.device).type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

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
        times = np.asarray(times, np.float64)
        if t == 1:    # a streaming step: a fill on the device (the same float32 value), no host copy
            origin = torch.full((b, v * h * w), float(times[0]), dtype=torch.float32, device=out.means.device)
        else:
            origin = torch.as_tensor(times, dtype=torch.float32, device=out.means.device)
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
        self._raise_pending()
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
        if not abs(t) <= float(np.finfo(np.float32).max):     # also NaN; the Gaussians' origin time is float32
            raise SlarmInputError(f"{self.name}: frame time {t} s is not a finite float32 number")
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

    def _new_cache(self) -> KVCache:
        cfg = self.cfg
        gh, gw = cfg.grid
        dtype = self.dtype or next(self.net.parameters()).dtype      # the keys' dtype (autocast's if on)
        ring = self.attention == "window"
        return KVCache(cfg.depth, 1, cfg.num_heads, cfg.num_cameras * (cfg.num_special + gh * gw),
                       cfg.embed_dim // cfg.num_heads, self.window if ring else FULL_CACHE_START, ring, dtype,
                       self.device, next(self._sessions))

    def _cache_for(self, state: StreamState) -> KVCache:
        """The session's cache (a new one, or the model's shared one re-used, at a session's first step),
        checked to be at this state (the cache is updated in place)."""
        kv = state.kv
        if kv is None:
            if not (self.compile and self.attention == "window"):
                return self._new_cache()
            # compiled steps: the same buffers for every session (static addresses for CUDA graphs)
            kv = self._shared_kv
            if kv is None or kv.dtype != (self.dtype or next(self.net.parameters()).dtype):
                kv = self._shared_kv = self._new_cache()
                for t in kv.k + kv.v:
                    torch._dynamo.mark_static_address(t)
            kv.reset(next(self._sessions))
            return kv
        if kv.session != state.session:
            raise SlarmInputError(f"{self.name}: this streaming session was superseded by a newer one (with "
                                  f"compile, the model keeps one KV cache for all sessions); reset()")
        if kv.steps != state.steps:
            raise SlarmInputError(f"{self.name}: this stream state is {kv.steps - state.steps} step(s) old; "
                                  f"the KV cache is updated in place, so step the state the last step "
                                  f"returned, or reset()")
        return kv

    def _forward_cached(self, img: torch.Tensor, c2w: torch.Tensor, k: torch.Tensor, model_time: torch.Tensor,
                        kv: KVCache) -> tuple[SlarmFrames, torch.Tensor]:
        """(the step's SlarmFrames, the device validity flag of its Gaussians)."""
        ks, vs, index, static = kv.slot_views(index_tensor=self.compile is not None)
        rope = self.net.step_rope(img.device)
        if not (static and self.compile):
            outs = _cached_step(self.net, img, c2w, k, model_time, ks, vs, index, rope)
            return SlarmFrames(*outs[:-1]), outs[-1]
        if self._compiled_step is None:
            self._compiled_step = torch.compile(_cached_step, mode=self.compile, dynamic=False)
            for t in rope:
                torch._dynamo.mark_static_address(t)
        cuda_graphs = img.device.type == "cuda" and self.compile in ("reduce-overhead", "max-autotune")
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        outs = self._compiled_step(self.net, img, c2w, k, model_time, ks, vs, index, rope)
        if cuda_graphs:     # the graph's outputs are overwritten by its next replay; the Scene keeps them
            outs = tuple(o.clone() for o in outs)
        return SlarmFrames(*outs[:-1]), outs[-1]

    @torch.no_grad()
    def step(self, state: StreamState, frame: Clip) -> tuple[StreamState, Scene]:
        self._raise_pending()               # an earlier step's invalid Gaussians
        t, fps = self._check_frame(state, frame)
        img, c2w, k = self._inputs(frame)
        self._step_cams = (self._camera_key(frame.cam_to_world[0], frame.intrinsics[0]), c2w[:, 0], k[:, 0])
        kv = self._cache_for(state)
        t0 = t if state.t0 is None else state.t0
        # a fill on the device (no host-to-device copy, no sync)
        model_time = torch.full((1, 1), (t - t0) / self.cfg.time_span, dtype=torch.float32, device=img.device)
        with self._autocast():
            out, flag = self._forward_cached(img, c2w, k, model_time, kv)
        kv.advance()
        own = {"gaussians": self._gaussians(out, np.array([t])),
               "sky": out.sky_tokens.float().mean(dim=(1, 2)),
               "affine": out.affine[:, 0]}
        # the flag covers every field but origin_time, which _check_frame checked on the host
        own["check"] = GaussianCheck(own["gaussians"], flag,
                                     f"{self.name} streaming step {state.steps + 1} (t = {t:.3f} s): ")
        self._pending.append(own["check"])
        span = self.render_timesteps or (None if self.attention == "full" else self.window)
        kept = (state.kept + [own])[-span:] if span else state.kept + [own]
        new_state = StreamState(t0=t0, last_time=t, fps=fps, kv=kv, cached_timesteps=kv.timesteps, kept=kept,
                                steps=state.steps + 1, session=kv.session)
        gaussians = own["gaussians"] if len(kept) == 1 else Gaussians.concat([e["gaussians"] for e in kept])
        sky = torch.stack([e["sky"] for e in kept]).mean(0)[:, None]
        affine = torch.stack([e["affine"] for e in kept]).mean(0)
        return new_state, Scene(gaussians=gaussians, sky=sky, affine=affine,
                                payload={"fps": fps, "step_gaussians": own["gaussians"], "time": t,
                                         "checks": [e["check"] for e in kept]})

    # ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, scene: Scene, cam_to_world: np.ndarray, intrinsics: np.ndarray, time: float,
               size: tuple[int, int]) -> Prediction:
        """A streaming step's Scene (payload "checks") renders without a host sync of its own: cameras
        checked on the host, render(check=False), its Gaussians' checks read once the rasterizer has waited
        for the device (see the module doc). Other Scenes render with check=True."""
        h, w = int(size[0]), int(size[1])
        checks: list[GaussianCheck] | None = scene.payload.get("checks")
        c2w, k, dirs = self._render_cameras(cam_to_world, intrinsics, h, w, host_check=checks is not None)
        background = self._sky_fn(self.net, scene.sky, dirs)
        affine = scene.affine if scene.affine.shape[1] == c2w.shape[1] else None
        self._raise_invalid(checks, wait=False)     # those the device has reached: before rasterizing them
        try:
            out = render(scene.gaussians, c2w, k, (h, w), time=float(time), backend=self.backend,
                         background=background, color_transform=affine, features=True, flow=True,
                         flow_dt=1.0 / scene.payload["fps"], near=self.cfg.near, far=self.cfg.far,
                         check=checks is None)
        except RuntimeError:                # a rasterizer failing on invalid Gaussians: say that instead
            self._raise_invalid(checks)
            raise
        self._raise_invalid(checks)         # with gsplat, which waits for the device inside: no wait here
        feats, semantic = self._heads_fn(self.net, out.features[0], self.class_embeddings(), self.dtype)
        return Prediction(rgb=out.rgb[0].clamp(0, 1), depth=out.depth[0], flow=out.flow[0], semantic=semantic,
                          features=feats)

    def _raise_invalid(self, checks: list[GaussianCheck] | None, wait: bool = True) -> None:
        for check in checks or ():
            try:
                check.raise_if_invalid(wait)
            except RenderError:     # reported: no longer pending, so that reset() starts afresh
                self._pending = [c for c in self._pending if c is not check]
                raise

    def _raise_pending(self) -> None:
        """Raise for an earlier streaming step whose Gaussians are invalid (GaussianCheck), waiting for the
        device to reach its check if it has not (where the loop synchronises or renders, it has)."""
        pending, self._pending = self._pending, []
        self._raise_invalid(pending)

    @staticmethod
    def _camera_key(cam_to_world: np.ndarray, intrinsics: np.ndarray) -> tuple:
        c2w, k = np.asarray(cam_to_world, np.float32), np.asarray(intrinsics, np.float32)
        return c2w.shape, k.shape, c2w.tobytes(), k.tobytes()

    def _render_cameras(self, cam_to_world: np.ndarray, intrinsics: np.ndarray, h: int, w: int,
                        host_check: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Device cameras [1,V,4,4], [1,V,3,3] and ray directions [1,V,H,W,3]; the last step's or render's
        when the values are the same. host_check: render.check_cameras first (no device work)."""
        c2w_np, k_np = np.asarray(cam_to_world, np.float32)[None], np.asarray(intrinsics, np.float32)[None]
        if host_check:
            check_cameras(c2w_np, k_np, 1, (h, w))
        key = self._camera_key(cam_to_world, intrinsics)
        if self._render_cams is not None and self._render_cams[0] == (key, h, w):
            return self._render_cams[1:]
        if self._step_cams is not None and self._step_cams[0] == key:
            c2w, k = self._step_cams[1:]
        else:
            c2w, k = self._to_device(c2w_np), self._to_device(k_np)
        if (h, w) not in self._pixel_grids:
            self._pixel_grids[(h, w)] = pixel_centre_grid(h, w, torch.device(self.device))
        _, dirs = camera_rays_torch(k, c2w, self._pixel_grids[(h, w)])
        self._render_cams = ((key, h, w), c2w, k, dirs.reshape(1, -1, h, w, 3))
        return self._render_cams[1:]

    def provenance(self) -> dict[str, Any]:
        return {"model": self.name, "preset": self.preset, "config": self.cfg.to_dict(),
                "checkpoint": str(self.checkpoint) if self.checkpoint else "none: random weights",
                "checkpoint_sha256": self._checkpoint_sha, "attention": self.attention,
                "window": self.window if self.attention == "window" else None,
                "text_encoder": self.text_encoder.provenance(), "renderer_backend": self.backend,
                "dtype": str(self.dtype) if self.dtype else "float32",
                **({"compile": f"{self.compile} (window steps)"} if self.compile else {})}

    def checkpoint_sha256(self) -> str | None:
        return self._checkpoint_sha

    def synchronize(self) -> None:
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize()
        self._raise_pending()


# -------------------------------------------------------------------------------------------------------
# Factories (registry entries).
def _make(preset: str, attention: str, checkpoint: str | os.PathLike | None = None, **options: Any
          ) -> SlarmModel:
    return SlarmModel(preset=preset, checkpoint=checkpoint, attention=attention, **options)


def make_slarm_b8(**options: Any) -> SlarmModel:
    return _make("slarm-b8", "causal", **options)


def make_slarm_t(**options: Any) -> SlarmModel:
    """slarm-t with the weights its card ships (checkpoints/slarm-t.safetensors) unless given others."""
    return _make("slarm-t", "causal", **_shipped(options))


def make_slarm_t_o1(**options: Any) -> SlarmModel:
    """The order-1 ablation with the weights its card ships (baselines/slarm-t-o1.yaml) unless given others."""
    return _make("slarm-t-o1", "causal", **_shipped(options, "slarm-t-o1"))


def make_slarm_t_o2(**options: Any) -> SlarmModel:
    """The order-2 ablation with the weights its card ships (baselines/slarm-t-o2.yaml) unless given others."""
    return _make("slarm-t-o2", "causal", **_shipped(options, "slarm-t-o2"))


def _shipped(options: dict[str, Any], card: str = "slarm-t") -> dict[str, Any]:
    if options.get("checkpoint") is None:
        options["checkpoint"] = shipped_checkpoint(card)
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
