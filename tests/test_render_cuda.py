"""Parity of the gsplat and torch backends on the GPU (skipped without CUDA and gsplat)."""

from __future__ import annotations

import pytest
import torch

from slarm_bench.render import render
from slarm_bench.render.scenes import random_scene

pytestmark = pytest.mark.cuda


def _needs_gsplat() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("gsplat")


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


@pytest.mark.parametrize("num,size", [(10_000, (160, 240)), (50_000, (96, 160))])
def test_backends_agree_on_images_and_gradients(num, size):
    _needs_gsplat()
    outs, grads = {}, {}
    for backend in ("torch", "gsplat"):
        g, c2w, k = random_scene(num, batch=1, cameras=3, size=size, features=5, motion_order=1,
                                 seed=3, device="cuda")
        params = [g.means, g.quats, g.scales, g.opacities, g.colors, g.features, g.motion]
        for p in params:
            p.requires_grad_(True)
        out = render(g, c2w, k, size, time=0.2, backend=backend)
        weights = torch.Generator(device="cuda").manual_seed(0)
        loss = sum((x * torch.rand(x.shape, generator=weights, device="cuda")).sum()
                   for x in (out.rgb, out.alpha, out.features, out.flow)) + (out.depth * 0.01).sum()
        loss.backward()
        outs[backend] = out
        grads[backend] = [p.grad.clone() for p in params]
    a, b = outs["torch"], outs["gsplat"]
    for name in ("rgb", "alpha", "features", "flow"):
        diff = (getattr(a, name) - getattr(b, name)).abs()
        assert diff.mean() < 1e-3, (name, diff.mean().item())
        assert diff.max() < 2e-2, (name, diff.max().item())
    solid = (a.alpha > 0.5) & (b.alpha > 0.5)
    rel = ((a.depth - b.depth).abs() / b.depth.clamp_min(1.0))[solid]
    assert rel.mean() < 1e-3 and rel.max() < 2e-2, (rel.mean().item(), rel.max().item())
    for name, ga, gb in zip(("means", "quats", "scales", "opacities", "colors", "features", "motion"),
                            grads["torch"], grads["gsplat"]):
        assert _cosine(ga, gb) > 0.99, (name, _cosine(ga, gb))
