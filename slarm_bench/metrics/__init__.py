"""Scoring: PSNR, SSIM, LPIPS, depth RMSE, scene flow, semantics (definitions in REFERENCE.md section 2).

Each metric is a small stateful object (see base.py): `update(Sample)` scores a batch and returns the
per-image values, `state()` / `merge()` / `all_reduce()` combine sums and counts across objects and ranks,
`compute()` / `summary()` give the averages. `build_metrics(knobs)` builds the set a protocol asks for.

    suite = build_metrics(protocol_metric_knobs)        # MetricSuite; suite.unavailable: {key: reason}
    rows = suite.update(Sample(rgb=render_rgb, gt_rgb=clip_images, depth=..., gt_depth=..., sky=...,
                               dynamic=..., ground=..., flow=..., gt_flow=...))   # one dict per image
    suite.all_reduce()                                   # every rank, when running under torchrun
    summary = suite.summary()                            # {key: {mean, std, count, higher_is_better, ...}}
On a resumed run, `suite.add_rows(rows_already_written)` rebuilds the state from per-image rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from slarm_bench.errors import check_name
from slarm_bench.metrics.base import (
    Metric,
    MetricInputError,
    MetricUnavailableError,
    Sample,
    ValueSpec,
)
from slarm_bench.metrics.depth import SLARM_DEPTH_RANGE, STORM_DEPTH_RANGE, DepthRMSEMetric, depth_rmse
from slarm_bench.metrics.flow import FlowMetric, flow_errors, keep_flow_timestep, keep_flow_window
from slarm_bench.metrics.image import (
    LPIPSMetric,
    PSNRMetric,
    SSIMMetric,
    lpips_available,
    lpips_backbone_path,
    psnr,
    ssim,
    ssim_map,
)
from slarm_bench.metrics.semantic import SemanticMetric, predict_semantic, semantic_scores

# Metric knobs a protocol may set, with their defaults.
DEFAULT_KNOBS: dict[str, Any] = {
    "psnr": True,
    "ssim": True,
    "image_masks": ["full"],        # any of full, nonsky, dynamic (PSNR and SSIM)
    "lpips": "alex",                # "alex", "vgg" or None (off)
    "lpips_weights": None,          # backbone file; None = torch hub cache
    "depth": True,
    "depth_valid": [0.0, None],     # open interval on lidar depth; None = no upper bound
    "depth_masks": ["full"],
    "flow": False,
    "flow_zero_below": 1.0,         # predicted |v| below this (m/s) set to 0; None = off
    "flow_exclude_ground": True,
    "semantic": False,
    "num_classes": None,
}


class MetricSuite:
    """The metrics of one protocol; LPIPS that cannot run is listed in `unavailable` with the reason."""

    def __init__(self, metrics: Iterable[Metric], unavailable: Mapping[str, str] | None = None,
                 knobs: Mapping[str, Any] | None = None) -> None:
        self.metrics = list(metrics)
        self.unavailable = dict(unavailable or {})
        self.knobs = dict(knobs or {})

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    @property
    def specs(self) -> dict[str, ValueSpec]:
        return {k: s for m in self.metrics for k, s in m.specs.items()}

    def update(self, sample: Sample) -> list[dict[str, float]]:
        """Score a batch with every metric; one row {key: value} per image (NaN = undefined)."""
        merged: dict[str, list[float]] = {}
        for m in self.metrics:
            merged.update(m.update(sample))
        return [{k: v[i] for k, v in merged.items()} for i in range(sample.batch_size)]

    def add_rows(self, rows: Iterable[Mapping[str, float]]) -> None:
        rows = list(rows)
        for m in self.metrics:
            m.add_rows(rows)

    def state(self) -> dict[str, dict[str, float]]:
        return {m.name: m.state() for m in self.metrics}

    def merge(self, state: Mapping[str, Mapping[str, float]]) -> None:
        for m in self.metrics:
            m.merge(state[m.name])

    def reset(self) -> None:
        for m in self.metrics:
            m.reset()

    def all_reduce(self) -> None:
        """Sum states over torch.distributed ranks; every rank must call it (no-op when not distributed)."""
        for m in self.metrics:
            m.all_reduce()

    def compute(self) -> dict[str, float]:
        return {k: v for m in self.metrics for k, v in m.compute().items()}

    def summary(self) -> dict[str, dict[str, Any]]:
        return {k: v for m in self.metrics for k, v in m.summary().items()}


def build_metrics(knobs: Mapping[str, Any] | None = None) -> MetricSuite:
    """Metrics for a protocol's knobs (see DEFAULT_KNOBS; unknown knobs raise with a 'did you mean')."""
    k = dict(DEFAULT_KNOBS)
    for name, value in (knobs or {}).items():
        check_name("metric knob", name, DEFAULT_KNOBS)
        k[name] = value
    lo, hi = k["depth_valid"]
    valid_range = (float(lo), math.inf if hi is None else float(hi))
    metrics: list[Metric] = []
    unavailable: dict[str, str] = {}
    if k["psnr"]:
        metrics.append(PSNRMetric(k["image_masks"]))
    if k["ssim"]:
        metrics.append(SSIMMetric(k["image_masks"]))
    if k["lpips"]:
        try:
            metrics.append(LPIPSMetric(k["lpips"], backbone_weights=k["lpips_weights"]))
        except MetricUnavailableError as e:
            unavailable[f"lpips_{k['lpips']}"] = str(e)
    if k["depth"]:
        metrics.append(DepthRMSEMetric(valid_range, k["depth_masks"]))
    if k["flow"]:
        metrics.append(FlowMetric(valid_range, k["flow_exclude_ground"], k["flow_zero_below"]))
    if k["semantic"]:
        metrics.append(SemanticMetric(k["num_classes"]))
    return MetricSuite(metrics, unavailable, k)


__all__ = [
    "Metric", "MetricSuite", "Sample", "ValueSpec", "MetricInputError", "MetricUnavailableError",
    "DEFAULT_KNOBS", "build_metrics",
    "PSNRMetric", "SSIMMetric", "LPIPSMetric", "DepthRMSEMetric", "FlowMetric", "SemanticMetric",
    "psnr", "ssim", "ssim_map", "depth_rmse", "flow_errors", "semantic_scores", "predict_semantic",
    "keep_flow_window", "keep_flow_timestep", "lpips_available", "lpips_backbone_path",
    "STORM_DEPTH_RANGE", "SLARM_DEPTH_RANGE",
]
