"""Simple baselines that need no training: `nearest` (and, with the renderer, the oracles)."""

from __future__ import annotations

from typing import Any

import numpy as np

from slarm_bench.clip import Clip
from slarm_bench.models.base import Model, Prediction, Scene


class NearestFrame(Model):
    """For each target, the context image of the same camera closest in time (earlier one on ties).

    Produces RGB only: depth, flow and semantics are reported as not produced.
    """

    produces = ("rgb",)

    def __init__(self, device: str = "cpu", **_: Any):
        self.device = device

    def reconstruct(self, context: Clip) -> Scene:
        import torch

        images = torch.from_numpy(context.images).to(self.device)  # [T,V,H,W,3] uint8
        return Scene(payload={"images": images, "time": np.asarray(context.time, np.float64)})

    def render(self, scene: Scene, cam_to_world: np.ndarray, intrinsics: np.ndarray, time: float,
               size: tuple[int, int]) -> Prediction:
        times = scene.payload["time"]
        nearest = int(np.argmin(np.abs(times - time)))
        rgb = scene.payload["images"][nearest].float() / 255.0  # [V,H,W,3]
        if tuple(rgb.shape[1:3]) != tuple(size):
            import torch.nn.functional as F

            rgb = F.interpolate(rgb.permute(0, 3, 1, 2), size=size, mode="bilinear",
                                align_corners=False).permute(0, 2, 3, 1)
        return Prediction(rgb=rgb)

    def provenance(self) -> dict[str, Any]:
        return {"model": self.name, "rule": "nearest context time, same camera"}


def make_nearest(**options: Any) -> NearestFrame:
    return NearestFrame(**options)
