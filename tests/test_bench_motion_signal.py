"""benchmarks/bench_motion_signal.py: the pixel blocks that --pool shares one velocity over."""

from __future__ import annotations

import torch

from tests.benchmark_script import load_benchmark


def _probe_module():
    return load_benchmark("bench_motion_signal")


def test_block_ids_group_pixels_of_one_image_and_block_only():
    probe = _probe_module()
    t, v, h, w, pool = 2, 3, 5, 7, 4                  # partial blocks at the right and bottom edges
    index = torch.arange(t * v * h * w)
    ids = probe.block_ids(index, (h, w), pool).reshape(t, v, h, w)
    frame, cam, y, x = torch.meshgrid(*(torch.arange(n) for n in (t, v, h, w)), indexing="ij")
    key = ((frame * v + cam) * 10 + y // pool) * 10 + x // pool    # the block each pixel must fall in
    # Same id exactly when same (frame, camera, block row, block column).
    same_id = ids.reshape(-1, 1) == ids.reshape(1, -1)
    same_key = key.reshape(-1, 1) == key.reshape(1, -1)
    assert torch.equal(same_id, same_key)
    assert int(ids.max()) + 1 == t * v * 2 * 2       # ceil(5/4) x ceil(7/4) blocks per image
    # A subset (one camera's Gaussians, as the probe passes) gets dense ids 0..B-1.
    sub = probe.block_ids(index.reshape(t, v, h, w)[:, 1].reshape(-1), (h, w), pool)
    assert sorted(set(sub.tolist())) == list(range(t * 4))
