"""Oracle models: one Gaussian per context pixel built from ground truth, the pipeline's sanity ceiling.

`oracle` places a Gaussian at every context pixel with a surface (exact dense depth where the dataset has
it, else lidar depth), coloured by the pixel, carrying the one-hot ground-truth class as a feature and
moving with the ground-truth velocity at its own context time (constant velocity, order 1): where agents
keep a constant velocity over the window its flow error is near zero, and the error elsewhere is exactly
what a first-order motion model misses. `oracle-static` is the same without motion.
Sky pixels get no Gaussian; the background is the nearest context image of the same camera (the sky is at
infinity, so it barely changes over a 2 s window).
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

#: Gaussian radius as a fraction of the pixel footprint (depth / focal): a little over half a pixel, so
#: neighbouring Gaussians overlap into an opaque surface without blurring it.
FOOTPRINT = 0.6
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
            raise SlarmBenchError(f"{self.name} needs ground-truth depth in the context; this dataset has none")
        t, v, h, w = depth.shape
        means, colors, feats, vels, times, radius = [], [], [], [], [], []
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
        return Scene(gaussians=gaussians, payload={"images": torch.from_numpy(context.images).to(dev),
                                                   "time": np.asarray(context.time)})

    def render(self, scene: Scene, cam_to_world: np.ndarray, intrinsics: np.ndarray, time: float,
               size: tuple[int, int]) -> Prediction:
        dev = self.device
        nearest = int(np.argmin(np.abs(scene.payload["time"] - time)))
        background = scene.payload["images"][nearest].float()[None] / 255.0  # [1,V,H,W,3]
        out = render(scene.gaussians, torch.from_numpy(cam_to_world).float().to(dev)[None],
                     torch.from_numpy(intrinsics).float().to(dev)[None], size, time=time,
                     backend=self.backend, background=background, flow=True)
        semantic = None
        if out.features is not None:
            # Low-alpha pixels show the background, which is sky wherever the context had no surface.
            sky = torch.zeros_like(out.features[0])
            sky[..., SLARM_CLASSES.index("sky")] = 1.0
            feats = out.features[0] + (1 - out.alpha[0])[..., None] * sky
            semantic = feats.argmax(-1)
        return Prediction(rgb=out.rgb[0].clamp(0, 1), depth=out.depth[0], flow=out.flow[0], semantic=semantic)

    def provenance(self) -> dict[str, Any]:
        return {"model": self.name, "motion": "ground-truth velocity, order 1" if self.motion else "none",
                "renderer_backend": self.backend, "uses_ground_truth": True}


def make_oracle(**options: Any) -> GroundTruthOracle:
    return GroundTruthOracle(motion=True, **options)


def make_static_oracle(**options: Any) -> GroundTruthOracle:
    return GroundTruthOracle(motion=False, **options)
