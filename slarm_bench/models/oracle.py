"""Oracle models: one Gaussian per context pixel built from ground truth, the pipeline's sanity ceiling.

`oracle` places a Gaussian at every context pixel with a surface (exact dense depth where the dataset has
it, else lidar depth), coloured by the pixel, carrying the one-hot ground-truth class as a feature and
moving with the ground-truth velocity at its own context time (constant velocity, order 1): where agents
keep a constant velocity over the window its flow error is near zero, and the error elsewhere is exactly
what a first-order motion model misses. `oracle-static` is the same without motion.
Sky pixels get no Gaussian; the background is the nearest context image of the same camera (the sky is at
infinity, so it barely changes over a 2 s window).

Rendering is layered per target camera: first the Gaussians of the same camera at the nearest context time,
then everything else composited behind what that layer leaves uncovered. Splatting all context frames in
one depth-sorted pass would interleave samples of the same surface from other times and cameras (other
sub-pixel positions, other exposures) and blur the result by several dB; the oracle is the ceiling, so it
takes the best view first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from slarm_bench.clip import SLARM_CLASSES, Clip
from slarm_bench.errors import SlarmBenchError
from slarm_bench.geometry import camera_rays
from slarm_bench.models.base import Model, Prediction, Scene
from slarm_bench.render import Gaussians, render, resolve_backend

#: Gaussian radius as a fraction of the pixel footprint (depth / focal), and the renderer's 2D low-pass
#: variance (px^2) the oracle renders with: a splat of about 0.6 px. Smaller splats leave sub-pixel gaps
#: once the view moves; larger ones (or gsplat's default 0.3 px^2) let closer neighbours bleed in. A sweep
#: on synthetic windows put the best static-region PSNR here (benchmarks/README: oracle).
FOOTPRINT = 0.5
EPS2D = 0.1
OPACITY = 0.99


class GroundTruthOracle(Model):
    context_fields = ("depth_dense", "depth", "flow", "semantic", "sky")
    produces = ("rgb", "depth", "flow", "semantic")

    def __init__(self, motion: bool = True, device: str = "cpu", backend: str = "auto", **_: Any):
        self.motion = motion
        self.device = device
        self.backend = resolve_backend(backend)

    def reconstruct(self, context: Clip) -> Scene:
        depth = context.depth_dense if context.depth_dense is not None else context.depth
        if depth is None:
            raise SlarmBenchError(f"{self.name} needs ground-truth depth in the context; this dataset has "
                                  "none")
        t, v, h, w = depth.shape
        means, colors, feats, vels, times, radius, views = [], [], [], [], [], [], []
        num_classes = len(SLARM_CLASSES)
        for ti in range(t):
            origins, dirs = camera_rays(context.intrinsics[ti], context.cam_to_world[ti], h, w)  # [V,H,W,3]
            valid = depth[ti] > 0
            pts = origins + depth[ti][..., None] * dirs
            means.append(pts[valid])
            colors.append(context.images[ti][valid].astype(np.float32) / 255.0)
            if context.semantic is not None:
                labels = context.semantic[ti][valid].astype(np.int64)
                onehot = np.zeros((labels.size, num_classes), np.float32)
                ok = labels < num_classes
                onehot[np.nonzero(ok)[0], labels[ok]] = 1.0
                feats.append(onehot)
            if self.motion and context.flow is not None:
                vels.append(context.flow[ti][valid])
            else:
                vels.append(np.zeros((int(valid.sum()), 3), np.float32))
            times.append(np.full(int(valid.sum()), context.time[ti]))
            views.append(np.broadcast_to((ti * v + np.arange(v))[:, None, None], (v, h, w))[valid])
            # An isotropic Gaussian about as wide as the pixel's footprint at that depth.
            focal = np.broadcast_to(context.intrinsics[ti, :, 0, 0][:, None, None], (v, h, w))
            radius.append(FOOTPRINT * depth[ti][valid] / focal[valid])
        dev = self.device
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(np.concatenate(a))).float().to(dev)  # noqa: E731
        mean_t = as_t(means)
        n = mean_t.shape[0]
        gaussians = Gaussians(
            means=mean_t[None], quats=torch.tensor([1.0, 0, 0, 0], device=dev).expand(1, n, 4).contiguous(),
            scales=as_t(radius)[None, :, None].expand(1, n, 3).contiguous(),
            opacities=torch.full((1, n), OPACITY, device=dev), colors=as_t(colors)[None],
            features=as_t(feats)[None] if feats else None,
            motion=as_t(vels)[None, :, None, :], origin_time=as_t(times)[None])
        return Scene(gaussians=gaussians, payload={
            "images": torch.from_numpy(context.images).to(dev), "time": np.asarray(context.time),
            "view": torch.from_numpy(np.concatenate(views)).to(dev), "num_cameras": v})

    def render(self, scene: Scene, cam_to_world: np.ndarray, intrinsics: np.ndarray, time: float,
               size: tuple[int, int]) -> Prediction:
        dev = self.device
        nearest = int(np.argmin(np.abs(scene.payload["time"] - time)))
        c2w = torch.from_numpy(cam_to_world).float().to(dev)
        ks = torch.from_numpy(intrinsics).float().to(dev)
        parts = [self._render_camera(scene, nearest, cam, c2w[cam], ks[cam], time, size)
                 for cam in range(c2w.shape[0])]
        rgb, depth, flow, feats = (torch.stack([p[i] for p in parts]) for i in range(4))
        semantic = feats.argmax(-1) if feats.shape[-1] else None
        return Prediction(rgb=rgb.clamp(0, 1), depth=depth, flow=flow, semantic=semantic)

    def _render_camera(self, scene: Scene, nearest: int, cam: int, c2w: torch.Tensor, k: torch.Tensor,
                       time: float, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Two layers: same camera at the nearest context time, then the rest behind its gaps."""
        g = scene.gaussians
        best = scene.payload["view"] == nearest * scene.payload["num_cameras"] + cam
        background = scene.payload["images"][nearest, cam].float()[None, None] / 255.0  # [1,1,H,W,3]
        layers = [render(g.select(sel), c2w[None, None], k[None, None], size, time=time, backend=self.backend,
                         flow=True, eps2d=EPS2D) for sel in (best, ~best)]
        front, back = layers[0], layers[1]
        a1, a2 = front.alpha[0, 0], back.alpha[0, 0]
        behind = (1 - a1)[..., None]
        rgb = front.rgb[0, 0] + behind * (back.rgb[0, 0] + (1 - a2)[..., None] * background[0, 0])
        alpha = a1 + (1 - a1) * a2
        depth = (a1 * front.depth[0, 0] + (1 - a1) * a2 * back.depth[0, 0]) / alpha.clamp_min(1e-10)
        flow = front.flow[0, 0] + behind * back.flow[0, 0]
        if front.features is None:
            return rgb, depth, flow, rgb.new_zeros((*size, 0))
        # Uncovered pixels show the background, which is sky wherever the context had no surface.
        sky = torch.zeros_like(front.features[0, 0])
        sky[..., SLARM_CLASSES.index("sky")] = 1.0
        feats = front.features[0, 0] + behind * back.features[0, 0] + (1 - alpha)[..., None] * sky
        return rgb, depth, flow, feats

    def provenance(self) -> dict[str, Any]:
        return {"model": self.name, "motion": "ground-truth velocity, order 1" if self.motion else "none",
                "renderer_backend": self.backend, "uses_ground_truth": True}


def make_oracle(**options: Any) -> GroundTruthOracle:
    return GroundTruthOracle(motion=True, **options)


def make_static_oracle(**options: Any) -> GroundTruthOracle:
    return GroundTruthOracle(motion=False, **options)
