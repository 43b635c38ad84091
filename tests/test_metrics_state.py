"""State: split-and-merge, rebuild from rows, and all-reduce over processes equal one object that saw all."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from slarm_bench.errors import SlarmBenchError, UnknownNameError
from slarm_bench.metrics import Sample, build_metrics

KNOBS = {"image_masks": ["full", "dynamic"], "lpips": None, "depth_valid": [0.01, 200], "flow": True,
         "semantic": True, "num_classes": 4}


def _batch(seed: int, b: int = 3, h: int = 12, w: int = 16) -> Sample:
    g = torch.Generator().manual_seed(seed)
    gt_depth = torch.rand(b, h, w, generator=g) * 50
    gt_depth[gt_depth < 10] = 0
    dynamic = torch.zeros(b, h, w, dtype=torch.bool)
    dynamic[0, 2:6, 3:9] = True  # only the first image of a batch has dynamic pixels
    gt_sem = torch.randint(0, 4, (b, h, w), generator=g).to(torch.uint8)
    gt_sem[-1] = 255  # the last image is unlabelled
    return Sample(
        rgb=torch.rand(b, h, w, 3, generator=g), gt_rgb=torch.rand(b, h, w, 3, generator=g),
        depth=gt_depth + torch.randn(b, h, w, generator=g), gt_depth=gt_depth,
        flow=3 * torch.randn(b, h, w, 3, generator=g), gt_flow=3 * torch.randn(b, h, w, 3, generator=g),
        ground=torch.rand(b, h, w, generator=g) < 0.3, dynamic=dynamic,
        semantic=torch.randint(0, 4, (b, h, w), generator=g), gt_semantic=gt_sem,
    )


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        for field in ("mean", "std", "count"):
            x, y = a[k][field], b[k][field]
            same = (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12, abs=1e-12)
            assert same, (k, field, x, y)


def test_split_and_merge_equals_one_object() -> None:
    whole, part1, part2 = build_metrics(KNOBS), build_metrics(KNOBS), build_metrics(KNOBS)
    for seed in range(4):
        whole.update(_batch(seed))
        (part1 if seed % 2 else part2).update(_batch(seed))
    part1.merge(json.loads(json.dumps(part2.state())))  # states survive a JSON round trip
    _assert_same(whole.summary(), part1.summary())
    s = whole.summary()
    assert s["psnr_dynamic"]["count"] == 4 and s["psnr"]["count"] == 12 and s["miou"]["count"] == 8
    assert s["flow_epe3d"]["average"] == "pixel" and s["depth_rmse"]["higher_is_better"] is False


def test_rebuild_from_rows_equals_live_state() -> None:
    live, rebuilt = build_metrics(KNOBS), build_metrics(KNOBS)
    rows = []
    for seed in range(3):
        rows += live.update(_batch(seed))
    rebuilt.add_rows(json.loads(json.dumps(rows)))  # NaN survives Python's JSON
    _assert_same(live.summary(), rebuilt.summary())
    live.reset()
    assert live.summary()["psnr"]["count"] == 0 and math.isnan(live.compute()["psnr"])


def test_merge_of_other_knobs_and_unknown_knob_raise() -> None:
    a = build_metrics(KNOBS)
    b = build_metrics({**KNOBS, "image_masks": ["full"]})
    with pytest.raises(SlarmBenchError, match="psnr_dynamic"):
        a.merge(b.state())
    with pytest.raises(UnknownNameError, match="flow_zero_below"):
        build_metrics({"flow_zero_belowe": 1.0})


def _worker(rank: int, world: int, init_file: str, queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    suite = build_metrics(KNOBS)
    for seed in range(rank, 4, world):  # disjoint shares of the batches
        suite.update(_batch(seed))
    suite.all_reduce()
    queue.put((rank, suite.summary()))
    dist.destroy_process_group()


def test_all_reduce_over_two_processes_equals_one_object(tmp_path) -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, 2, str(tmp_path / "init"), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    whole = build_metrics(KNOBS)
    for seed in range(4):
        whole.update(_batch(seed))
    _assert_same(whole.summary(), results[0])
    _assert_same(whole.summary(), results[1])
