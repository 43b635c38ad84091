"""Glue between a protocol's metric knobs and the metric objects: scores one rendered timestep.

The Scorer owns one metric object per value family and mask, so a mask a dataset lacks (e.g. no sky
masks on nuScenes) drops only that variant. Rows hold per-image values; the metric objects hold sums and
counts, re-filled from the rows of finished windows when a run resumes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from slarm_bench.clip import Clip
from slarm_bench.errors import SlarmBenchError
from slarm_bench.metrics.base import Metric, Sample
from slarm_bench.metrics.depth import DepthRMSEMetric
from slarm_bench.metrics.flow import FlowMetric, keep_flow_window
from slarm_bench.metrics.image import PSNRMetric, SSIMMetric, lpips_available
from slarm_bench.metrics.semantic import SemanticMetric
from slarm_bench.models.base import Model, Prediction
from slarm_bench.protocols import Protocol

IMAGE_MASKS = ("full", "nonsky", "dynamic", "static")


class AcceleratingFlowMetric(FlowMetric):
    """Flow metrics restricted to pixels of agents accelerating faster than a threshold (keys `*_accel`)."""

    name = "flow_accel"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from dataclasses import replace

        self.specs = {f"{k}_accel": replace(s, key=f"{k}_accel", weight_key=f"{s.weight_key}_accel",
                                            notes=s.notes + "; pixels of agents with |a| above threshold")
                      for k, s in self.specs.items()}

    def _values(self, sample: Sample) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        values = super()._values(sample)
        return {f"{k}_accel": v for k, v in values.items()}


class Scorer:
    """Scores Predictions against a window's ground truth under one protocol."""

    def __init__(self, protocol: Protocol, device: str = "cpu", lpips: bool = True):
        self.protocol = protocol
        self.device = device
        depth_range = (protocol.depth.min_depth, protocol.depth.max_depth)
        # One object per family for all masks, so SSIM's map is computed once per image.
        self.image: list[Metric] = [PSNRMetric(IMAGE_MASKS), SSIMMetric(IMAGE_MASKS)]
        self.lpips: Metric | None = None
        self.lpips_reason = ""
        if lpips:
            ok, reason = lpips_available(protocol.lpips_net)
            if ok:
                from slarm_bench.metrics.image import LPIPSMetric

                self.lpips = LPIPSMetric(protocol.lpips_net)
            else:
                self.lpips_reason = f"LPIPS unavailable: {reason}"
        self.depth = DepthRMSEMetric(depth_range, ["full", "dynamic"])
        flow_kwargs = dict(valid_range=depth_range, exclude_ground=protocol.flow.exclude_ground,
                           zero_below=protocol.flow.pred_zero_below)
        self.flow = FlowMetric(**flow_kwargs) if protocol.flow.enabled else None
        self.flow_accel = AcceleratingFlowMetric(**flow_kwargs) if protocol.flow.enabled else None
        self.semantic = SemanticMetric(len(protocol.semantic_classes)) if protocol.semantic else None
        self._window_keep: dict[int, bool] = {}

    # -- bookkeeping --------------------------------------------------------------------------------------
    def metrics(self) -> list[Metric]:
        out = [*self.image, self.depth]
        out += [m for m in (self.lpips, self.flow, self.flow_accel, self.semantic) if m is not None]
        return out

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Accumulate rows as read back from frames.jsonl (null = undefined for that image)."""
        clean = [{k: (math.nan if v is None else v) for k, v in row.items()} for row in rows]
        for metric in self.metrics():
            metric.add_rows(clean)

    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for metric in self.metrics():
            out.update(metric.summary())
        return out

    def not_produced(self, model: Model) -> dict[str, str]:
        out = {}
        for field_name, keys in (("depth", ("depth_rmse",)), ("flow", ("flow_epe3d",)),
                                 ("semantic", ("miou",))):
            if field_name not in model.produces:
                for key in keys:
                    out[key] = f"{model.name} does not produce {field_name}"
        if self.lpips is None and self.lpips_reason:
            out[f"lpips_{self.protocol.lpips_net}"] = self.lpips_reason
        return out

    def provenance(self) -> dict[str, Any]:
        return {m.name + "/" + key: spec.notes for m in self.metrics() for key, spec in m.specs.items()}

    # -- scoring ------------------------------------------------------------------------------------------
    def score(self, pred: Prediction, window: Clip, pos: int, images: bool = True,
              flow: bool = False) -> list[dict[str, Any]]:
        """Per-camera rows for window position `pos`: image metrics if `images`, flow metrics if `flow`."""
        num_cams = window.num_cameras
        rows: list[dict[str, Any]] = [{} for _ in range(num_cams)]
        gt = self._ground_truth(window, pos)
        # A mask the dataset lacks makes its variant undefined (NaN, left out), never "all pixels".
        sky = gt["sky"] if gt["sky"] is not None else torch.ones_like(gt["rgb"][..., 0], dtype=torch.bool)
        dynamic = gt["dynamic"] if gt["dynamic"] is not None else torch.zeros_like(sky)
        if images:
            rgb = pred.rgb.float()
            sample = Sample(rgb=rgb, gt_rgb=gt["rgb"], sky=sky, dynamic=dynamic)
            for metric in self.image:
                _merge(rows, metric.update(sample))
            if self.lpips is not None:
                _merge(rows, self.lpips.update(Sample(rgb=rgb, gt_rgb=gt["rgb"])))
            if pred.depth is not None and gt["depth"] is not None:
                _merge(rows, self.depth.update(Sample(depth=pred.depth.float(), gt_depth=gt["depth"],
                                                      dynamic=dynamic)))
            if self.semantic is not None and pred.semantic is not None and gt["semantic"] is not None:
                _merge(rows, self.semantic.update(Sample(semantic=pred.semantic, gt_semantic=gt["semantic"])))
        if flow and self.flow is not None and pred.flow is not None and gt["flow"] is not None \
                and self._keep_flow(window, pos, gt):
            ground = gt["ground"] if gt["ground"] is not None else torch.zeros_like(gt["depth"], dtype=torch.bool)
            sample = Sample(flow=pred.flow.float(), gt_flow=gt["flow"], gt_depth=gt["depth"], ground=ground)
            _merge(rows, self.flow.update(sample))
            accel = self._accelerating_mask(window, pos)
            if accel is not None:
                sub = Sample(flow=pred.flow.float(), gt_flow=gt["flow"],
                             gt_depth=torch.where(accel, gt["depth"], torch.zeros_like(gt["depth"])),
                             ground=ground)
                _merge(rows, self.flow_accel.update(sub))
        return rows

    def _ground_truth(self, window: Clip, pos: int) -> dict[str, torch.Tensor | None]:
        p = self.protocol
        dev = self.device

        def get(name: str) -> torch.Tensor | None:
            arr = getattr(window, name)
            return None if arr is None else torch.from_numpy(np.ascontiguousarray(arr[pos])).to(dev)

        images = get("images")
        if p.semantic and window.semantic is not None and tuple(window.label_names) != p.semantic_classes:
            raise SlarmBenchError(f"dataset labels {window.label_names} differ from protocol {p.name}'s classes "
                                  f"{list(p.semantic_classes)}: re-prepare the dataset")
        return {"rgb": images.float() / 255.0, "sky": get("sky"), "dynamic": get(p.dynamic_mask),
                "depth": get(p.depth.field), "flow": get("flow"), "ground": get("ground"),
                "semantic": get("semantic")}

    def _keep_flow(self, window: Clip, pos: int, gt: dict[str, torch.Tensor | None]) -> bool:
        knobs = self.protocol.flow
        valid = gt["depth"] > self.protocol.depth.min_depth
        if knobs.filter == "none":
            return True
        if knobs.filter == "timestep":
            return keep_flow_window(gt["flow"], knobs.threshold, valid)
        if knobs.filter == "window":
            key = id(window)
            if key not in self._window_keep:
                self._window_keep.clear()
                positions = list(self.protocol.flow_target_positions())
                depth = getattr(window, self.protocol.depth.field)[positions]
                flows = torch.from_numpy(window.flow[positions])
                self._window_keep[key] = keep_flow_window(flows, knobs.threshold,
                                                          torch.from_numpy(depth > self.protocol.depth.min_depth))
            return self._window_keep[key]
        raise SlarmBenchError(f"protocol {self.protocol.name}: unknown flow filter {knobs.filter!r}")

    def _accelerating_mask(self, window: Clip, pos: int) -> torch.Tensor | None:
        """[V,H,W] pixels of agents whose |acceleration| at this frame exceeds the protocol threshold."""
        if window.instance is None or window.boxes is None:
            return None
        boxes = window.boxes
        at = boxes.frame == pos
        acc = np.linalg.norm(boxes.acceleration[at], axis=-1)
        ids = boxes.track_id[at][np.nan_to_num(acc, nan=0.0) > self.protocol.flow.accelerating_threshold]
        mask = np.isin(window.instance[pos], ids.astype(np.int64))
        return torch.from_numpy(mask).to(self.device)


def _merge(rows: list[dict[str, Any]], values: dict[str, list[float]]) -> None:
    for key, per_image in values.items():
        for row, v in zip(rows, per_image):
            row[key] = None if (isinstance(v, float) and math.isnan(v)) else v
