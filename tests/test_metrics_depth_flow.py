"""Depth RMSE and scene-flow metrics on hand-computed cases; the flow frame filters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slarm_bench.errors import SlarmBenchError
from slarm_bench.metrics import (
    SLARM_DEPTH_RANGE,
    DepthRMSEMetric,
    FlowMetric,
    Sample,
    depth_rmse,
    keep_flow_timestep,
    keep_flow_window,
)


def test_depth_rmse_validity_ranges_and_dynamic_mask() -> None:
    gt = torch.tensor([[[0.0, 5.0], [10.0, 250.0]]])
    pred = torch.tensor([[[1.0, 6.0], [13.0, 0.0]]])
    assert float(depth_rmse(pred, gt)) == pytest.approx(math.sqrt((1 + 9 + 250**2) / 3))
    assert float(depth_rmse(pred, gt, SLARM_DEPTH_RANGE)) == pytest.approx(math.sqrt(5))
    dyn = torch.tensor([[[True, False], [False, True]]])
    assert float(depth_rmse(pred, gt, mask=dyn)) == pytest.approx(250.0)
    assert math.isnan(float(depth_rmse(pred, gt, SLARM_DEPTH_RANGE, mask=dyn)))  # dynamic AND valid: none


def test_depth_metric_averages_rmse_over_images() -> None:
    gt = np.array([[[2.0, 0.0]], [[4.0, 4.0]], [[0.0, 0.0]]], np.float32)  # image 3 has no lidar
    pred = np.array([[[5.0, 9.0]], [[4.0, 6.0]], [[1.0, 1.0]]], np.float32)
    m = DepthRMSEMetric()
    rows = m.update(Sample(depth=pred, gt_depth=gt))
    assert rows["depth_rmse"][:2] == pytest.approx([3.0, math.sqrt(2)]) and math.isnan(rows["depth_rmse"][2])
    assert m.compute()["depth_rmse"] == pytest.approx((3 + math.sqrt(2)) / 2)  # not sqrt of pooled MSE
    assert m.higher_is_better is False and m.specs["depth_rmse"].unit == "m"
    with pytest.raises(SlarmBenchError, match="empty"):
        DepthRMSEMetric((5.0, 1.0))
    with pytest.raises(SlarmBenchError, match="gt_depth"):
        m.update(Sample(depth=pred[:, :, :1], gt_depth=gt))


def _flow_case() -> Sample:
    """Six pixels of one image: four scored, one ground, one without lidar."""
    gt = [[2, 0, 0], [0, 0.05, 0], [3, 0, 0], [0, 0, 0], [1.5, 0, 0], [5, 0, 0]]
    pred = [[2.04, 0, 0], [0.5, 0, 0], [0, 3, 0], [0, 0, 0.5], [9, 9, 9], [0, 0, 0]]
    depth = [10, 10, 10, 10, 10, 0]
    ground = [False, False, False, False, True, False]
    t = lambda x, dt=torch.float64: torch.tensor(x, dtype=dt)[None]  # noqa: E731  [1,6,...] = H 1, W 6
    return Sample(flow=t(pred), gt_flow=t(gt), gt_depth=t(depth), ground=t(ground, torch.bool))


def test_flow_metrics_hand_computed() -> None:
    m = FlowMetric()
    rows = m.update(_flow_case())
    e = [0.04, 0.05, math.sqrt(18), 0.0]  # pred 0.5 m/s vectors are zeroed first
    assert rows["flow_epe3d"][0] == pytest.approx(sum(e) / 4)
    assert rows["flow_acc5"][0] == pytest.approx(50.0)  # 0.05 is not < 0.05, and r = 1 there
    assert rows["flow_acc10"][0] == pytest.approx(75.0)
    assert rows["flow_angle"][0] == pytest.approx(math.pi / 4)  # |gt| > 0.1 at two pixels: 0 and pi/2
    assert rows["flow_pixels"] == [4.0] and rows["flow_angle_pixels"] == [2.0]
    assert m.specs["flow_acc5"].higher_is_better and not m.specs["flow_epe3d"].higher_is_better


def test_flow_zeroing_knob_and_relative_accuracy() -> None:
    rows = FlowMetric(zero_below=None).update(_flow_case())
    e = [0.04, math.sqrt(0.25 + 0.0025), math.sqrt(18), 0.5]
    assert rows["flow_epe3d"][0] == pytest.approx(sum(e) / 4)
    # relative test: gt 10 m/s, error 0.3 m/s -> r = 0.03 passes Acc5 though e > 0.05
    s = Sample(flow=torch.tensor([[[10.3, 0.0, 0.0]]]), gt_flow=torch.tensor([[[10.0, 0.0, 0.0]]]),
               gt_depth=torch.tensor([[1.0]]), ground=torch.tensor([[False]]))
    assert FlowMetric().update(s)["flow_acc5"] == [100.0]


def test_flow_summary_is_pixel_weighted() -> None:
    m = FlowMetric()
    m.update(_flow_case())
    one = Sample(flow=torch.zeros(1, 1, 3), gt_flow=torch.tensor([[[0.0, 2.0, 0.0]]]),
                 gt_depth=torch.ones(1, 1), ground=torch.zeros(1, 1, dtype=torch.bool))
    m.update(one)
    e = [0.04, 0.05, math.sqrt(18), 0.0, 2.0]
    assert m.compute()["flow_epe3d"] == pytest.approx(sum(e) / 5)
    assert m.compute()["flow_angle"] == pytest.approx((0 + math.pi / 2 + math.pi / 2) / 3)


def test_flow_needs_ground_mask_unless_told_not_to() -> None:
    s = _flow_case()
    s.ground = None
    with pytest.raises(SlarmBenchError, match="ground"):
        FlowMetric().update(s)
    assert FlowMetric(exclude_ground=False).update(s)["flow_pixels"] == [5.0]


def test_flow_frame_filters() -> None:
    flows = np.zeros((3, 4, 5, 3), np.float32)
    flows[1, 2, 3] = [0.0, -1.0, 0.0]  # exactly 1 m/s: not kept (strictly greater)
    assert not keep_flow_window(flows) and not keep_flow_timestep(flows)
    flows[2, 0, 0] = [0.0, 0.0, 1.2]
    assert keep_flow_window(flows) and keep_flow_timestep(torch.from_numpy(flows))
    assert not keep_flow_window(flows, threshold=2.0)
    valid = np.ones(flows.shape[:-1], bool)
    valid[2, 0, 0] = False
    assert not keep_flow_window(flows, valid=valid)
