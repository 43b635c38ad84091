"""benchmarks/bench_motion_learned.py: the motion-token entropy it reports for STORM models."""

from __future__ import annotations

import math

import torch

from tests.benchmark_script import load_benchmark


def test_token_entropy_is_one_for_a_uniform_softmax_and_zero_for_one_token():
    bench = load_benchmark("bench_motion_learned")
    k = 16
    uniform = torch.full((3, k), 1.0 / k)
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 5, 15]), k).float()
    two = torch.zeros(1, k)
    two[0, :2] = 0.5                                   # two tokens equally: log 2 / log 16 = 0.25
    assert torch.allclose(bench.token_entropy(uniform), torch.ones(3), atol=1e-6)
    assert torch.allclose(bench.token_entropy(one_hot), torch.zeros(3), atol=1e-6)
    assert math.isclose(float(bench.token_entropy(two)), 0.25, abs_tol=1e-6)
