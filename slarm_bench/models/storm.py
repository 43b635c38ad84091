"""STORM as a benchmark model: `storm-b8`, `storm-t` and `static-t` (REFERENCE.md section 4).

reconstruct: the context clip's images (uint8 -> [-1,1]), poses, intrinsics and times ((t - t_ctx0) /
time_span) go through StormNet once; the scene is one Gaussian per context pixel, moving with the
network's per-pixel forward velocity as an order-1 motion (m/s) about its own context frame's time (s).
static-t has no motion heads, so its Gaussians stay put and its flow is zero.

Colour spaces: STORM's raw Gaussian colours, its sky colours and its affine colour transform all live in
the [-1,1] space of the network input (the released code has no sigmoid on colours). Rendering is linear in
the colours, so the Gaussians and the sky are mapped to [0,1] as (c + 1) / 2 before the renderer composites
them (rgb + (1 - alpha) sky), and the affine is applied in the [-1,1] space: x = 2 rgb - 1, x' = affine(x)
(`storm_net.apply_affine` semantics of the model's `cfg.affine`), rgb' = (x' + 1) / 2, clamped to [0,1]
for the Prediction (training uses the unclamped values).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slarm_bench.clip import Clip
from slarm_bench.errors import SlarmBenchError, check_name
from slarm_bench.models.base import Model, Prediction, Scene
from slarm_bench.models.checkpoint import (
    CheckpointError,
    load_into,
    load_official_checkpoint,
    load_safetensors,
    shipped_checkpoint,
)
from slarm_bench.models.storm_net import StormConfig, StormNet, StormOutput, storm_config
from slarm_bench.render import Gaussians, render, resolve_backend
from slarm_bench.train_options import MOTION_HEAD_INITS

DTYPES = ("auto", "bf16", "fp32")
RANDOM_WEIGHTS = "random weights (no checkpoint)"


class StormModelError(SlarmBenchError):
    """Input that a STORM model cannot take (image size, camera count, options)."""


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def init_for_training(net: StormNet, motion_head_init: str = "reference") -> StormNet:
    """Training initialisation on top of `StormNet.reset_parameters`: the affine head starts at the identity
    colour transform (zero weights, identity bias) so early gradients reach the Gaussians' colours instead of
    being scaled by a random per-channel factor. An initialisation only: the forward is unchanged.

    motion_head_init="xavier" draws the motion key and query MLPs' weights Xavier-uniform instead of
    trunc-normal 0.02. With 0.02 both factors of q . k are tiny, so the softmax over the motion tokens
    starts exactly uniform and the gradient of each factor is proportional to the other: every pixel mixes
    the same bases and nothing separates moving from static pixels (a trained storm-t still has weight
    entropy 0.88 of the maximum). Xavier starts each pixel on a random, spatially smooth choice of tokens.
    A probe, not a fix: trained so, storm-t puts every pixel on one token by step 800 (README, STORM table)."""
    if motion_head_init not in MOTION_HEAD_INITS:
        raise StormModelError(f"motion_head_init {motion_head_init!r} is not one of "
                              f"{', '.join(MOTION_HEAD_INITS)}")
    if net.affine_linear is not None:
        with torch.no_grad():
            net.affine_linear.weight.zero_()
            net.affine_linear.bias.copy_(torch.eye(3, 4).flatten())
    if motion_head_init == "xavier":
        if net.cfg.static:
            raise StormModelError("motion_head_init='xavier' needs a model with motion tokens; this "
                                  "configuration is static (num_motion_tokens=0)")
        for mlp in (net.motion_key_head, *net.motion_query_heads):
            for linear in (mlp.fc1, mlp.fc2):
                nn.init.xavier_uniform_(linear.weight)
    return net


def gaussians_from_output(out: StormOutput, origin_time: torch.Tensor, static: bool) -> Gaussians:
    """StormOutput of B samples -> Gaussians [B, T*V*H*W] in [0,1] colours.

    origin_time [B,T] seconds of each context frame (the renderer's time axis); motion = forward velocity
    as order-1 Taylor coefficient [B,N,1,3] (None for a static model).
    """
    b, t = out.means.shape[:2]
    n_per_t = out.means[0, 0].numel() // 3
    flat = lambda x, c: x.reshape(b, -1, c)  # noqa: E731
    motion, times = None, None
    if not static:
        motion = flat(out.forward_flow, 3)[:, :, None, :]
        times = origin_time.to(out.means.dtype)[:, :, None].expand(b, t, n_per_t).reshape(b, -1)
    return Gaussians(means=flat(out.means, 3), quats=flat(out.quats, 4), scales=flat(out.scales, 3),
                     opacities=out.opacities.reshape(b, -1), colors=(flat(out.colors, 3) + 1.0) * 0.5,
                     motion=motion, origin_time=times)


def render_views(net: StormNet, gaussians: Gaussians, sky_token: torch.Tensor | None,
                 affine: torch.Tensor | None, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                 time: torch.Tensor | float, size: tuple[int, int], backend: str,
                 check: bool = True) -> dict[str, torch.Tensor]:
    """Render B scenes into V cameras at one time each: cam_to_world [B,V,4,4], intrinsics [B,V,3,3],
    time [B] or float seconds -> {"rgb" [B,V,H,W,3] in [0,1] unclamped, "depth" [B,V,H,W] expected z-depth,
    "alpha" [B,V,H,W], "flow" [B,V,H,W,3] m/s world}. fp32 throughout (no autocast)."""
    h, w = size
    cfg = net.cfg
    with torch.autocast(cam_to_world.device.type, enabled=False):
        background = None
        if sky_token is not None:
            _, dirs = net.plucker_embedder.rays(intrinsics.float(), cam_to_world.float(), h, w,
                                                cfg.pixel_shift)
            background = (net.sky_color(sky_token.float(), dirs) + 1.0) * 0.5        # [B,V,H,W,3]
        out = render(gaussians, cam_to_world.float(), intrinsics.float(), (h, w), time=time, backend=backend,
                     near=cfg.near, far=cfg.far, background=background, flow=True, check=check)
        rgb = out.rgb
        if affine is not None:
            rgb = (net.apply_affine(rgb * 2.0 - 1.0, affine.float()[:, :, None, None]) + 1.0) * 0.5
    return {"rgb": rgb, "depth": out.depth, "alpha": out.alpha, "flow": out.flow}


def context_inputs(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [...,T,V,H,W,3] -> float [...,T,V,3,H,W] in [-1,1]."""
    x = images.float().div(127.5).sub(1.0)
    return x.movedim(-1, -3)


class StormModel(Model):
    """A STORM network behind the benchmark's Model interface (see the module docstring)."""

    produces = ("rgb", "depth", "flow")

    def __init__(self, preset: str = "storm-t", checkpoint: str | os.PathLike | None = None,
                 device: str = "auto", backend: str = "auto", dtype: str = "auto", trust_pickle: bool = False,
                 config: StormConfig | dict | None = None, time_span: float = 2.0, seed: int = 0,
                 **_: Any) -> None:
        check_name("dtype", dtype, DTYPES)
        self.preset = preset
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.backend = resolve_backend(backend)
        self.dtype = ("bf16" if self.device.type == "cuda" else "fp32") if dtype == "auto" else dtype
        self.time_span = float(time_span)
        self._sha256: str | None = None
        self._notes: list[str] = []
        if isinstance(config, dict):
            config = StormConfig.from_dict(config)
        if checkpoint is None:
            cfg = config or storm_config(preset)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = init_for_training(StormNet(cfg))
            self.weights = RANDOM_WEIGHTS
        else:
            net = self._load(Path(checkpoint), preset, config, trust_pickle)
        self.net = net.to(self.device).eval()
        self.cfg = self.net.cfg
        self.name = preset

    def _load(self, path: Path, preset: str, config: StormConfig | None, trust_pickle: bool) -> StormNet:
        stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
        if path.suffix in (".safetensors", ".json") or stem.with_name(stem.name + ".json").is_file():
            state_dict, cfg_dict = load_safetensors(stem)
            try:
                cfg = StormConfig.from_dict(cfg_dict)
            except SlarmBenchError as err:
                raise CheckpointError(f"checkpoint {stem}.json: {err}") from err
            tensors = stem.with_name(stem.name + ".safetensors")
            self.weights = f"safetensors {tensors.name} (config from its JSON)"
        else:
            if path.suffix not in (".pth", ".pt", ".ckpt", ".bin"):
                raise CheckpointError(f"checkpoint {path}: expected a .safetensors file with its .json "
                                      f"beside it, or an official STORM .pth (with trust_pickle=True)")
            state_dict = load_official_checkpoint(path, trust_pickle)
            cfg = config or storm_config(preset)
            tensors = path
            self.weights = f"official torch checkpoint {path.name} (config of preset {preset})"
        net = load_into(StormNet(cfg), state_dict, f"checkpoint {path}", f"StormNet {preset}")
        self._sha256 = file_sha256(tensors)
        return net

    # ---------------------------------------------------------------------------------------------------
    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bf16")

    @torch.no_grad()
    def reconstruct(self, context: Clip) -> Scene:
        cfg = self.cfg
        t, v, h, w = context.images.shape[:4]
        if h % cfg.patch_size or w % cfg.patch_size:
            raise StormModelError(f"{self.name}: image size {h}x{w} is not a multiple of the patch size "
                                  f"{cfg.patch_size}; use a protocol size that is (the model was built for "
                                  f"{cfg.image_size[0]}x{cfg.image_size[1]})")
        if cfg.use_affine and v != cfg.num_cameras:
            raise StormModelError(f"{self.name}: the context has {v} cameras but the model has one affine "
                                  f"token for each of {cfg.num_cameras}; use a protocol with "
                                  f"{cfg.num_cameras}")
        if (h, w) != tuple(cfg.image_size):
            note = (f"position embedding resampled (bicubic) from {cfg.grid[0]}x{cfg.grid[1]} to "
                    f"{h // cfg.patch_size}x{w // cfg.patch_size} patches for {h}x{w} images")
            if note not in self._notes:
                self._notes.append(note)
        dev = self.device
        images = context_inputs(torch.from_numpy(np.ascontiguousarray(context.images)).to(dev))[None]
        c2w = torch.from_numpy(context.cam_to_world).float().to(dev)[None]
        k = torch.from_numpy(context.intrinsics).float().to(dev)[None]
        seconds = torch.from_numpy(np.asarray(context.time, np.float64)).float().to(dev)
        net_time = ((seconds - seconds[0]) / self.time_span)[None]
        with self._autocast():
            out = self.net(images, c2w, k, net_time)
        gaussians = gaussians_from_output(out, seconds[None], cfg.static)
        return Scene(gaussians=gaussians, sky=out.sky_token, affine=out.affine)

    @torch.no_grad()
    def render(self, scene: Scene, cam_to_world: np.ndarray, intrinsics: np.ndarray, time: float,
               size: tuple[int, int]) -> Prediction:
        dev = self.device
        c2w = torch.from_numpy(np.asarray(cam_to_world)).float().to(dev)[None]
        k = torch.from_numpy(np.asarray(intrinsics)).float().to(dev)[None]
        affine = scene.affine
        if affine is not None and affine.shape[1] != c2w.shape[1]:
            raise StormModelError(f"{self.name}: {c2w.shape[1]} target cameras but the scene has "
                                  f"{affine.shape[1]} per-camera colour transforms; render the context "
                                  f"cameras")
        out = render_views(self.net, scene.gaussians, scene.sky, affine, c2w, k, float(time), size,
                           self.backend)
        return Prediction(rgb=out["rgb"][0].clamp(0.0, 1.0), depth=out["depth"][0], flow=out["flow"][0])

    def provenance(self) -> dict[str, Any]:
        return {"model": self.name, "preset": self.preset, "weights": self.weights,
                "checkpoint_sha256": self._sha256, "renderer_backend": self.backend,
                "network_dtype": self.dtype, "render_dtype": "fp32", "device": str(self.device),
                "time_span_s": self.time_span, "config": self.cfg.to_dict(),
                "motion": "none (static)" if self.cfg.static else "per-pixel forward velocity, order 1",
                "colour": "raw [-1,1] colours, sky and affine; mapped to [0,1] as (c+1)/2",
                "notes": list(self._notes)}

    def checkpoint_sha256(self) -> str | None:
        return self._sha256

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def make_storm_b8(**options: Any) -> StormModel:
    return StormModel(preset="storm-b8", **options)


def make_storm_t(**options: Any) -> StormModel:
    """storm-t with the weights its card ships (checkpoints/storm-t.safetensors) unless given others."""
    if options.get("checkpoint") is None:
        options["checkpoint"] = shipped_checkpoint("storm-t")
    return StormModel(preset="storm-t", **options)


def make_static_t(**options: Any) -> StormModel:
    """static-t with the weights its card ships (checkpoints/static-t.safetensors) unless given others."""
    if options.get("checkpoint") is None:
        options["checkpoint"] = shipped_checkpoint("static-t")
    return StormModel(preset="static-t", **options)
