"""Depth RMSE (m): per image sqrt(mean((rendered expected depth - lidar depth)^2)) over valid lidar pixels,
then averaged over images (REFERENCE.md section 2).

Validity is a protocol knob, an open interval on the lidar depth: STORM d > 0 -> (0, inf); SLARM
0.01 < d < 200 -> (0.01, 200). Mask variants intersect with validity: dynamic depth RMSE = dynamic AND
valid. An image with no valid pixel in its mask has no value (NaN, left out of the average).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from slarm_bench.errors import check_name
from slarm_bench.metrics.base import (
    MASKS,
    Metric,
    MetricInputError,
    Sample,
    ValueSpec,
    batched,
    masked_mean,
    sample_mask,
)

STORM_DEPTH_RANGE = (0.0, math.inf)
SLARM_DEPTH_RANGE = (0.01, 200.0)


def valid_depth(gt_depth: torch.Tensor, valid_range: tuple[float, float] = STORM_DEPTH_RANGE) -> torch.Tensor:
    """Bool mask [B,H,W] of lidar depths strictly inside (lo, hi)."""
    lo, hi = valid_range
    return (gt_depth > lo) & (gt_depth < hi)


def depth_rmse(pred: torch.Tensor, gt: torch.Tensor, valid_range: tuple[float, float] = STORM_DEPTH_RANGE,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image depth RMSE [B] (m) of pred, gt [B,H,W] over valid (& mask) pixels; NaN where none."""
    pred, gt = batched(pred, 2), batched(gt, 2)
    mask = None if mask is None else batched(mask, 2)
    return _rmse(_squared_error(pred, gt), valid_depth(gt, valid_range), mask)


def _squared_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    if pred.shape != gt.shape:
        raise MetricInputError(
            f"depth {tuple(pred.shape)} and gt_depth {tuple(gt.shape)} must both be [B,H,W]: render depth "
            "at the ground truth's size."
        )
    d = pred.to(torch.float64) - gt.to(torch.float64)
    return d.mul_(d)


def _rmse(se: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return masked_mean(se, valid if mask is None else valid & mask.bool())[0].sqrt()


class DepthRMSEMetric(Metric):
    """Depth RMSE (m), lower is better; keys depth_rmse, depth_rmse_nonsky, depth_rmse_dynamic."""

    name, higher_is_better, unit = "depth_rmse", False, "m"
    chunk_size = 4

    def __init__(self, valid_range: tuple[float, float] = STORM_DEPTH_RANGE,
                 masks: Sequence[str] = ("full",)) -> None:
        lo, hi = (float(v) for v in valid_range)
        if not lo < hi:
            raise MetricInputError(f"depth valid range {valid_range} is empty: give (low, high), low < high.")
        self.valid_range = (lo, hi)
        for m in masks:
            check_name("mask variant", m, MASKS)
        self.masks = tuple(masks)
        super().__init__(
            ValueSpec(f"depth_rmse{MASKS[m][0]}", False, "m", notes=f"mask={m}; valid lidar {lo} < d < {hi}")
            for m in self.masks
        )

    def _values(self, sample: Sample) -> dict[str, tuple[torch.Tensor, None]]:
        sample.require("depth", "gt_depth", metric=self.name)
        se = _squared_error(sample.depth, sample.gt_depth)  # shared by every mask variant
        valid = valid_depth(sample.gt_depth, self.valid_range)
        return {
            key: (_rmse(se, valid, sample_mask(sample, m, self.name)), None)
            for key, m in zip(self.specs, self.masks)
        }
