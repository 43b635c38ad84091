"""Scene-flow metrics per pixel (m/s), REFERENCE.md section 2.

e = ||pred - gt||, r = e / ||gt||:
  EPE3D = mean(e); Acc5 = 100 * mean(e < 0.05 or r < 0.05); Acc10 = same with 0.1;
  angle = mean(arccos(clamp(dot(pred/||pred||, gt/||gt||), -1, 1))) over pixels with ||gt|| > 0.1 (radians).
Pixels scored: valid lidar depth (the protocol's range) and not ground. Predicted speeds below
`zero_below` (1 m/s) are set to 0 before scoring (None turns that off).

Averaging (a decision): the summary value is pixel-weighted over all kept pixels of all kept images
(sum of e / number of pixels), which is what "per pixel ... mean(e)" says; each image's own mean and its
pixel count go into the per-image rows (`flow_pixels`, `flow_angle_pixels`), so the summary can be rebuilt
from rows. r < t is evaluated as e < t ||gt|| (no division; a zero gt vector never passes on r).
A predicted vector of length zero (e.g. zeroed below 1 m/s) has no direction: like F.normalize, it is
taken as the zero vector, so its dot product is 0 and its angle error pi/2.

Which frames are scored is protocol logic; `keep_flow_window` / `keep_flow_timestep` are its filters.
"""

from __future__ import annotations

import torch

from slarm_bench.metrics.base import Metric, MetricInputError, Sample, ValueSpec, batched, nan_where
from slarm_bench.metrics.depth import STORM_DEPTH_RANGE, valid_depth

FLOW_KEYS = ("flow_epe3d", "flow_acc5", "flow_acc10", "flow_angle")


def _speed(flow) -> torch.Tensor:
    flow = torch.as_tensor(flow)
    if flow.shape[-1] != 3:
        raise MetricInputError(f"flow must end in a 3-vector axis [...,3]; got shape {tuple(flow.shape)}.")
    return torch.linalg.vector_norm(flow.to(torch.float64), dim=-1)


def keep_flow_window(gt_flows, threshold: float = 1.0, valid=None) -> bool:
    """STORM's filter: score a window's flow only if its max ground-truth speed exceeds `threshold` (m/s).

    gt_flows [...,H,W,3] (any frames and cameras of the window); valid [...,H,W] optionally restricts the
    pixels looked at (ground truth is zero where there is no lidar, so it is rarely needed).
    """
    speed = _speed(gt_flows)
    if valid is not None:
        speed = torch.where(torch.as_tensor(valid).bool(), speed, torch.zeros_like(speed))
    return bool(speed.numel() > 0 and speed.max() > threshold)


def keep_flow_timestep(gt_flows_of_all_cameras, threshold: float = 1.0, valid=None) -> bool:
    """SLARM's filter: score a timestep only if the max ground-truth speed over its cameras [V,H,W,3]
    exceeds `threshold` (m/s). The same test as `keep_flow_window`, applied to one timestep."""
    return keep_flow_window(gt_flows_of_all_cameras, threshold, valid)


def flow_errors(pred: torch.Tensor, gt: torch.Tensor, keep: torch.Tensor, zero_below: float | None = 1.0,
                angle_min_gt: float = 0.1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-image flow metrics of pred, gt [B,H,W,3] over keep [B,H,W] bool.

    Returns {key: (value [B] float64, pixel count [B])}; values NaN where an image has no pixel.
    """
    pred, gt, keep = batched(pred, 3), batched(gt, 3), batched(keep, 2)
    if pred.shape != gt.shape or pred.shape[-1] != 3:
        raise MetricInputError(
            f"flow {tuple(pred.shape)} and gt_flow {tuple(gt.shape)} must both be [B,H,W,3]: render flow at "
            "the ground truth's size."
        )
    # channel-first planes [3,B,H,W]: norms become sums of three contiguous planes (fast on a CPU)
    p = pred.permute(3, 0, 1, 2).to(torch.float64).contiguous()
    g = gt.permute(3, 0, 1, 2).to(torch.float64).contiguous()

    def norm(v: torch.Tensor) -> torch.Tensor:
        return (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()

    pred_norm = norm(p)
    if zero_below is not None:
        small = pred_norm < zero_below
        p = torch.where(small, torch.zeros((), dtype=p.dtype, device=p.device), p)
        pred_norm = torch.where(small, torch.zeros((), dtype=p.dtype, device=p.device), pred_norm)
    e = norm(p - g)
    gt_norm = norm(g)
    keep = keep.bool()
    n = keep.flatten(1).sum(1).to(torch.float64)

    def mean_over(x: torch.Tensor, m: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).flatten(1).sum(1)
        return nan_where(total / count.clamp_min(1), count == 0)

    out = {"flow_epe3d": (mean_over(e, keep, n), n)}
    for key, t in (("flow_acc5", 0.05), ("flow_acc10", 0.1)):
        ok = keep & ((e < t) | (e < t * gt_norm))
        out[key] = (nan_where(100.0 * ok.flatten(1).sum(1).to(torch.float64) / n.clamp_min(1), n == 0), n)
    akeep = keep & (gt_norm > angle_min_gt)
    an = akeep.flatten(1).sum(1).to(torch.float64)
    # unit vectors as F.normalize makes them (eps 1e-12): a zero prediction stays zero, so cos = 0
    dot = (p * g).sum(0) / (pred_norm.clamp_min(1e-12) * gt_norm.clamp_min(1e-12))
    out["flow_angle"] = (mean_over(torch.arccos(dot.clamp(-1.0, 1.0)), akeep, an), an)
    return out


class FlowMetric(Metric):
    """Scene flow EPE3D (m/s, lower), Acc5 / Acc10 (%, higher), angle error (rad, lower); pixel-weighted."""

    name, higher_is_better, unit = "flow", False, "m/s"
    chunk_size = 2

    def __init__(self, valid_range: tuple[float, float] = STORM_DEPTH_RANGE, exclude_ground: bool = True,
                 zero_below: float | None = 1.0, angle_min_gt: float = 0.1) -> None:
        self.valid_range = (float(valid_range[0]), float(valid_range[1]))
        self.exclude_ground, self.zero_below, self.angle_min_gt = exclude_ground, zero_below, angle_min_gt
        notes = (f"pixels: valid lidar {self.valid_range[0]} < d < {self.valid_range[1]}"
                 f"{', not ground' if exclude_ground else ''}; pred |v| < {zero_below} m/s set to 0")
        px = "flow_pixels"
        super().__init__([
            ValueSpec("flow_epe3d", False, "m/s", "pixel", px, notes),
            ValueSpec("flow_acc5", True, "%", "pixel", px, notes),
            ValueSpec("flow_acc10", True, "%", "pixel", px, notes),
            ValueSpec("flow_angle", False, "rad", "pixel", "flow_angle_pixels",
                      f"{notes}; over pixels with |gt| > {angle_min_gt} m/s"),
        ])

    def _values(self, sample: Sample) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        sample.require("flow", "gt_flow", "gt_depth", metric=self.name)
        keep = valid_depth(sample.gt_depth, self.valid_range)
        if self.exclude_ground:
            sample.require("ground", metric=self.name)
            keep = keep & ~sample.ground.bool()
        return flow_errors(sample.flow, sample.gt_flow, keep, self.zero_below, self.angle_min_gt)
