"""The renderer on CPU: closed-form footprints, compositing, culling, depth, motion, gradients, errors."""

from __future__ import annotations

import pytest
import torch

from slarm_bench.errors import SlarmBenchError
from slarm_bench.render import Gaussians, RenderError, render, resolve_backend
from slarm_bench.render import torch_backend as tb

H, W, F = 24, 32, 40.0
CX, CY = 16.5, 12.5  # principal point on the centre of pixel (row 12, col 16)


def cams(v: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    c2w = torch.eye(4).expand(1, v, 4, 4).clone()
    k = torch.tensor([[F, 0, CX], [0, F, CY], [0, 0, 1.0]]).expand(1, v, 3, 3).clone()
    return c2w, k


def make(means, scales, opacities, colors, **kw) -> Gaussians:
    means = torch.as_tensor(means, dtype=torch.float32).reshape(1, -1, 3)
    n = means.shape[1]
    scales = torch.as_tensor(scales, dtype=torch.float32).reshape(1, n, -1).expand(1, n, 3).clone()
    quats = torch.tensor([1.0, 0, 0, 0]).expand(1, n, 4).clone()
    return Gaussians(means=means, quats=quats, scales=scales,
                     opacities=torch.as_tensor(opacities, dtype=torch.float32).reshape(1, n),
                     colors=torch.as_tensor(colors, dtype=torch.float32).reshape(1, n, 3), **kw)


def draw(g: Gaussians, **kw):
    c2w, k = cams()
    return render(g, c2w, k, (H, W), backend="torch", **kw)


def test_single_isotropic_gaussian_footprint():
    z, s, o = 4.0, 0.1, 0.8
    out = draw(make([[0, 0, z]], [s], [o], [[1, 0, 0]]))
    alpha = out.alpha[0, 0]
    assert alpha[12, 16].item() == pytest.approx(o, rel=1e-6)
    var = (F * s / z) ** 2 + 0.3  # EWA footprint plus gsplat's low-pass filter
    rows, cols = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    r2 = (cols - CX) ** 2 + (rows - CY) ** 2
    expect = o * torch.exp(-0.5 * r2 / var)
    expect = torch.where(expect >= 1 / 255, expect, torch.zeros_like(expect))
    torch.testing.assert_close(alpha, expect, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.rgb[0, 0, ..., 0], expect, atol=1e-6, rtol=1e-5)
    assert out.depth[0, 0, 12, 16].item() == pytest.approx(z, rel=1e-5)
    assert (out.depth[0, 0][expect == 0] == 0).all()


def test_anisotropic_projection_matches_ewa_formula():
    # An off-axis Gaussian: cov2d = J Sigma J^T + 0.3 I with J at the projected mean (inside the clamp).
    mean = torch.tensor([[0.5, -0.3, 5.0]])
    cov = tb.quat_scale_to_covar(torch.tensor([[0.9, 0.2, -0.3, 0.1]]), torch.tensor([[0.3, 0.1, 0.05]]))
    k = torch.tensor([[F, 0, CX], [0, F, CY], [0, 0, 1.0]])
    p = tb.project(mean, cov, torch.tensor([0.9]), torch.eye(4), k, H, W, 0.2, 400.0, 0.3)
    x, y, z = mean[0].double()
    j = torch.tensor([[F / z, 0, -F * x / z**2], [0, F / z, -F * y / z**2]], dtype=torch.float64)
    cov2d = j @ cov[0].double() @ j.T + 0.3 * torch.eye(2, dtype=torch.float64)
    inv = torch.linalg.inv(cov2d)
    torch.testing.assert_close(p["conics"][0].double(), torch.stack([inv[0, 0], inv[0, 1], inv[1, 1]]),
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(p["means2d"][0].double(), torch.stack([F * x / z + CX, F * y / z + CY]))


def test_jacobian_clamped_outside_the_view():
    # x/z far beyond the 1.3x field-of-view limit: the Jacobian uses the clamped x/z (gsplat/3DGS).
    mean = torch.tensor([[40.0, 0.0, 2.0]])
    cov = tb.quat_scale_to_covar(torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[20.0, 20.0, 20.0]]))
    k = torch.tensor([[F, 0, CX], [0, F, CY], [0, 0, 1.0]])
    p = tb.project(mean, cov, torch.tensor([1.0]), torch.eye(4), k, H, W, 0.2, 400.0, 0.3)
    lim = (W - CX) / F + 0.3 * 0.5 * W / F
    z = 2.0
    j = torch.tensor([[F / z, 0, -F * lim / z], [0, F / z, 0.0]], dtype=torch.float64)
    cov2d = j @ (400.0 * torch.eye(3, dtype=torch.float64)) @ j.T + 0.3 * torch.eye(2, dtype=torch.float64)
    inv = torch.linalg.inv(cov2d)
    torch.testing.assert_close(p["conics"][0].double(), torch.stack([inv[0, 0], inv[0, 1], inv[1, 1]]),
                               rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("swap", [False, True])
def test_two_gaussians_composite_front_to_back(swap):
    front = ([0, 0, 2.0], [0.2], 0.6, [1, 0, 0])
    back = ([0, 0, 6.0], [0.6], 0.5, [0, 1, 0])
    items = [back, front] if swap else [front, back]
    g = make(*[[it[i] for it in items] for i in range(4)])
    out = draw(g)
    rgb, alpha, depth = out.rgb[0, 0, 12, 16], out.alpha[0, 0, 12, 16], out.depth[0, 0, 12, 16]
    torch.testing.assert_close(rgb, torch.tensor([0.6, 0.4 * 0.5, 0.0]), atol=1e-6, rtol=1e-5)
    assert alpha.item() == pytest.approx(0.8, rel=1e-6)
    assert depth.item() == pytest.approx((0.6 * 2.0 + 0.2 * 6.0) / 0.8, rel=1e-5)


def test_transmittance_cutoff_is_exclusive():
    # Opaque Gaussians (alpha clamps at 0.999): after the first T = 1e-3; the second would take T to
    # 1e-6 <= 1e-4, so the pixel stops before it (gsplat semantics) and only the first contributes.
    g = make([[0, 0, 2.0], [0, 0, 3.0], [0, 0, 4.0]], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0],
             [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    out = draw(g)
    torch.testing.assert_close(out.rgb[0, 0, 12, 16], torch.tensor([0.999, 0.0, 0.0]))
    assert out.alpha[0, 0, 12, 16].item() == pytest.approx(0.999, rel=1e-6)
    assert out.depth[0, 0, 12, 16].item() == pytest.approx(2.0, rel=1e-5)


def test_behind_camera_and_near_far_culling():
    assert draw(make([[0, 0, -3.0]], [0.5], [0.9], [[1, 1, 1]])).alpha.abs().max() == 0
    assert draw(make([[0, 0, 0.15]], [0.05], [0.9], [[1, 1, 1]])).alpha.abs().max() == 0  # z < near
    assert draw(make([[0, 0, 0.25]], [0.05], [0.9], [[1, 1, 1]])).alpha.max() > 0.5
    assert draw(make([[0, 0, 30.0]], [1.0], [0.9], [[1, 1, 1]]), far=20.0).alpha.abs().max() == 0


def test_background_and_color_transform():
    g = make([[0, 0, 4.0]], [0.1], [0.5], [[1, 0, 0]])
    sky = torch.tensor([0.0, 0.0, 1.0]).expand(1, 1, H, W, 3)
    affine = torch.zeros(1, 1, 3, 4)
    affine[..., :3, :3] = 2 * torch.eye(3)
    affine[..., :, 3] = 0.1
    out = draw(g, background=sky, color_transform=affine)
    expect = 2 * torch.tensor([0.5, 0.0, 0.5]) + 0.1
    torch.testing.assert_close(out.rgb[0, 0, 12, 16], expect)
    torch.testing.assert_close(out.rgb[0, 0, 0, 0], torch.tensor([0.1, 0.1, 2.1]))


def test_feature_channels_and_empty_scene():
    feats = torch.arange(5.0).reshape(1, 1, 5)
    g = make([[0, 0, 4.0]], [0.1], [0.5], [[1, 0, 0]], features=feats)
    out = draw(g)
    assert out.features.shape == (1, 1, H, W, 5)
    torch.testing.assert_close(out.features[0, 0, 12, 16], 0.5 * feats[0, 0])
    assert draw(g, features=False).features is None
    empty = Gaussians(means=torch.zeros(1, 0, 3), quats=torch.zeros(1, 0, 4), scales=torch.zeros(1, 0, 3),
                      opacities=torch.zeros(1, 0), colors=torch.zeros(1, 0, 3))
    out = draw(empty, background=torch.full((1, 1, H, W, 3), 0.25))
    assert torch.isfinite(out.depth).all() and (out.alpha == 0).all() and (out.rgb == 0.25).all()


def test_taylor_motion_orders_1_to_3():
    m = torch.tensor([[[[1.0, 0, 0], [0, 2.0, 0], [0, 0, 6.0]]]])  # v, a, jerk for one Gaussian
    base = dict(means=torch.tensor([[[1.0, 2.0, 3.0]]]), quats=torch.tensor([[[1.0, 0, 0, 0]]]),
                scales=torch.full((1, 1, 3), 0.1), opacities=torch.tensor([[0.5]]),
                colors=torch.zeros(1, 1, 3), origin_time=torch.tensor([0.5]))
    dt = 1.5
    for k in (1, 2, 3):
        g = Gaussians(**base, motion=m[:, :, :k])
        expect = torch.tensor([1.0 + dt, 2.0 + (2.0 * dt**2 / 2 if k >= 2 else 0),
                               3.0 + (6.0 * dt**3 / 6 if k >= 3 else 0)])
        torch.testing.assert_close(g.at_time(2.0)[0, 0], expect)
        vel = torch.tensor([1.0, 2.0 * dt if k >= 2 else 0, 6.0 * dt**2 / 2 if k >= 3 else 0])
        torch.testing.assert_close(g.velocity_at(torch.tensor([2.0]))[0, 0], vel)
    g = Gaussians(**base)
    assert torch.equal(g.at_time(5.0), g.means) and (g.velocity_at(5.0) == 0).all()


def test_rendered_flow_and_per_camera_time():
    g = make([[0, 0, 4.0]], [0.1], [0.5], [[1, 0, 0]], motion=torch.tensor([[[[0.4, 0, 0]]]]),
             origin_time=torch.tensor([0.0]))
    c2w, k = cams(2)
    out = render(g, c2w, k, (H, W), time=torch.tensor([[0.0, 1.0]]), backend="torch")
    torch.testing.assert_close(out.flow[0, 0, 12, 16], torch.tensor([0.2, 0.0, 0.0]))
    # At t=1 the Gaussian moved 0.4 m right = 4 px at z=4, f=40: its peak is at column 20.
    assert out.alpha[0, 1, 12].argmax().item() == 20 and out.alpha[0, 0, 12].argmax().item() == 16
    diff = render(g, c2w[:, :1], k[:, :1], (H, W), time=1.0, backend="torch", flow_dt=0.1)
    torch.testing.assert_close(diff.flow[0, 0, 12, 20], torch.tensor([0.2, 0.0, 0.0]), atol=1e-5, rtol=1e-4)
    with pytest.raises(RenderError, match="time="):
        render(g, c2w, k, (H, W), backend="torch")


def test_stack_and_concat_render_like_the_parts():
    a = make([[0, 0, 4.0], [0.3, 0, 5.0]], [0.1, 0.2], [0.5, 0.7], [[1, 0, 0], [0, 1, 0]])
    b = make([[0.2, 0.1, 3.0]], [0.15], [0.9], [[0, 0, 1]])
    batch = Gaussians.stack([a, b])
    assert batch.means.shape == (2, 2, 3) and batch.opacities[1, 1] == 0
    c2w, k = cams()
    out = render(batch, c2w.expand(2, 1, 4, 4), k.expand(2, 1, 3, 3), (H, W), backend="torch")
    torch.testing.assert_close(out.rgb[1], draw(b).rgb[0])
    both = Gaussians.concat([a, b])
    assert both.num_gaussians == 3


def test_torch_backend_matches_brute_force_reference():
    """Tiles, depth segments and early exit against a per-pixel loop over all Gaussians."""
    gen = torch.Generator().manual_seed(0)
    n = 60
    z = torch.rand(n, generator=gen) * 8 + 1
    means = torch.stack([(torch.rand(n, generator=gen) - 0.5) * z, (torch.rand(n, generator=gen) - 0.5) * z,
                         z], -1)
    cov = tb.quat_scale_to_covar(torch.randn(n, 4, generator=gen), torch.rand(n, 3, generator=gen) * 0.3)
    opac = torch.rand(n, generator=gen)
    k = torch.tensor([[F, 0, CX], [0, F, CY], [0, 0, 1.0]])
    p = tb.project(means, cov, opac, torch.eye(4), k, H, W, 0.2, 400.0, 0.3)
    vals = torch.rand(len(p["ids"]), 2, generator=gen)
    img, alpha = tb.rasterize_image(p["means2d"], p["conics"], p["opacities"], vals, p["radii"],
                                    p["depths"], H, W, tile_size=8, segment=3, budget=256)
    order = torch.argsort(p["depths"], stable=True)
    rows, cols = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    ref = torch.zeros(H, W, 2)
    t = torch.ones(H, W)
    done = torch.zeros(H, W, dtype=torch.bool)
    for g in order.tolist():  # sequential front-to-back, one Gaussian at a time, as gsplat's kernel
        dx, dy = p["means2d"][g, 0] - cols, p["means2d"][g, 1] - rows
        a_, b_, c_ = p["conics"][g]
        sigma = 0.5 * (a_ * dx**2 + c_ * dy**2) + b_ * dx * dy
        al = torch.clamp_max(p["opacities"][g] * torch.exp(-sigma), 0.999)
        take = (sigma >= 0) & (al >= 1 / 255) & ~done
        stop = take & (t * (1 - al) <= 1e-4)
        done |= stop
        take &= ~stop
        ref += torch.where(take, al * t, 0.0)[..., None] * vals[g]
        t = torch.where(take, t * (1 - al), t)
    ref_a = 1 - t
    torch.testing.assert_close(img, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alpha, ref_a, atol=1e-5, rtol=1e-4)


def test_gradients_finite_and_nonzero():
    gen = torch.Generator().manual_seed(1)
    n = 40
    z = torch.rand(n, generator=gen) * 5 + 2
    means = torch.stack([(torch.rand(n, generator=gen) - 0.5) * z * 0.5,
                         (torch.rand(n, generator=gen) - 0.5) * z * 0.5, z], -1)[None].requires_grad_()
    quats = torch.randn(1, n, 4, generator=gen).requires_grad_()
    scales = (torch.rand(1, n, 3, generator=gen) * 0.2 + 0.05).requires_grad_()
    opac = (torch.rand(1, n, generator=gen) * 0.8 + 0.1).requires_grad_()
    colors = torch.rand(1, n, 3, generator=gen).requires_grad_()
    g = Gaussians(means=means, quats=quats, scales=scales, opacities=opac, colors=colors)
    out = draw(g)
    loss = (out.rgb * torch.rand_like(out.rgb)).sum() + out.depth.mean() + out.alpha.sum()
    loss.backward()
    for t in (means, quats, scales, opac, colors):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_bad_inputs_raise_render_errors():
    good = dict(means=[[0, 0, 4.0]], scales=[0.1], opacities=[0.5], colors=[[1, 0, 0]])
    with pytest.raises(RenderError, match="non-finite"):
        draw(make(**{**good, "means": [[0, float("nan"), 4.0]]}))
    with pytest.raises(RenderError, match="negative"):
        draw(make(**{**good, "scales": [-0.1]}))
    g = make(**good)
    g.quats = torch.zeros(1, 1, 4)
    with pytest.raises(RenderError, match="zero-norm"):
        draw(g)
    with pytest.raises(RenderError, match="non-invertible"):
        render(make(**good), torch.zeros(1, 1, 4, 4), cams()[1], (H, W), backend="torch")
    with pytest.raises(RenderError, match=r"\[B,N,3\]"):
        Gaussians(means=torch.zeros(4, 3), quats=torch.zeros(4, 4), scales=torch.zeros(4, 3),
                  opacities=torch.zeros(4), colors=torch.zeros(4, 3))
    with pytest.raises(RenderError, match="origin_time"):
        make(**good, motion=torch.zeros(1, 1, 1, 3))
    with pytest.raises(SlarmBenchError, match="Did you mean"):
        resolve_backend("torhc")
    if not torch.cuda.is_available():
        with pytest.raises(RenderError, match="CUDA"):
            resolve_backend("gsplat")
        assert resolve_backend("auto") == "torch"
