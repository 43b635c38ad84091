"""PSNR and SSIM against scikit-image; masked variants; batching and input handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from slarm_bench.errors import SlarmBenchError, UnknownNameError
from slarm_bench.metrics import PSNRMetric, Sample, SSIMMetric, build_metrics, psnr, ssim, ssim_map
from slarm_bench.metrics.image import interior

RNG = np.random.default_rng(0)


def _pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Random and structured (gradient, checkerboard, flat, saturated) image pairs, float64 in [0,1]."""
    h, w = 40, 56
    a = RNG.random((h, w, 3))
    b = np.clip(a + 0.1 * RNG.standard_normal(a.shape), 0, 1)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    grad = np.stack([xx, yy, 0.5 * (xx + yy)], -1)
    checker = np.repeat(((np.indices((h, w)).sum(0) // 4) % 2)[..., None], 3, -1).astype(np.float64)
    flat = np.full((h, w, 3), 0.3)
    odd = RNG.random((23, 31, 3))
    return [(a, b), (grad, np.clip(grad ** 1.3, 0, 1)), (checker, 0.8 * checker + 0.1), (flat, grad),
            (checker, grad), (odd, np.clip(odd[::-1] * 0.9, 0, 1))]


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x)[None]


@pytest.mark.parametrize("i", range(6))
def test_psnr_and_ssim_match_skimage(i: int) -> None:
    pred, gt = _pairs()[i]
    ref_ssim = structural_similarity(pred, gt, data_range=1, channel_axis=-1)
    assert abs(float(ssim(_t(pred), _t(gt))) - ref_ssim) < 1e-9
    if not np.array_equal(pred, gt):
        ref_psnr = peak_signal_noise_ratio(gt, pred, data_range=1)
        assert abs(float(psnr(_t(pred), _t(gt))) - ref_psnr) < 1e-9


def test_float32_inputs_match_skimage_on_the_same_values() -> None:
    pred, gt = (x.astype(np.float32) for x in _pairs()[0])
    ref = structural_similarity(pred.astype(np.float64), gt.astype(np.float64), data_range=1, channel_axis=-1)
    assert abs(float(ssim(_t(pred), _t(gt))) - ref) < 1e-9
    ref_p = peak_signal_noise_ratio(gt.astype(np.float64), pred.astype(np.float64), data_range=1)
    assert abs(float(psnr(_t(pred), _t(gt))) - ref_p) < 1e-9


def test_prediction_is_clamped_before_scoring() -> None:
    pred, gt = _pairs()[0]
    wild = pred * 1.6 - 0.3
    clamped = np.clip(wild, 0, 1)
    assert abs(float(psnr(_t(wild), _t(gt))) - peak_signal_noise_ratio(gt, clamped, data_range=1)) < 1e-9
    ref = structural_similarity(clamped, gt, data_range=1, channel_axis=-1)
    assert abs(float(ssim(_t(wild), _t(gt))) - ref) < 1e-9


def test_ssim_map_is_skimage_full_map_interior() -> None:
    pred, gt = _pairs()[0]
    _, full = structural_similarity(pred, gt, data_range=1, channel_axis=-1, full=True)
    ours = ssim_map(_t(pred), _t(gt))[0].numpy()
    np.testing.assert_allclose(ours, full.mean(-1)[3:-3, 3:-3], atol=1e-12)


def test_masked_psnr_and_ssim() -> None:
    pred, gt = _pairs()[0]
    mask = np.zeros(pred.shape[:2], bool)
    mask[2:20, 5:30] = True  # reaches into the 3-pixel border: those pixels are left out of SSIM
    mse = ((pred - gt) ** 2)[mask].mean()
    assert abs(float(psnr(_t(pred), _t(gt), _t(mask))) - (-10 * math.log10(mse))) < 1e-9
    _, full = structural_similarity(pred, gt, data_range=1, channel_axis=-1, full=True)
    inner = np.zeros_like(mask)
    inner[3:-3, 3:-3] = True
    expected = full.mean(-1)[mask & inner].mean()
    assert abs(float(ssim(_t(pred), _t(gt), _t(mask))) - expected) < 1e-12
    everything = np.ones_like(mask)
    assert abs(float(ssim(_t(pred), _t(gt), _t(everything))) - float(ssim(_t(pred), _t(gt)))) < 1e-12
    border_only = ~inner
    assert math.isnan(float(ssim(_t(pred), _t(gt), _t(border_only))))
    assert interior(_t(mask)).shape == (1, pred.shape[0] - 6, pred.shape[1] - 6)


def test_metric_objects_average_masked_variants_over_defined_images() -> None:
    (p1, g1), (p2, g2) = _pairs()[0], (_pairs()[0][1], _pairs()[0][0])
    dyn = np.zeros((2, *p1.shape[:2]), bool)
    dyn[0, 10:20, 10:20] = True  # image 1 has no dynamic pixel
    sky = np.zeros_like(dyn)
    sky[:, :8] = True
    sample = Sample(rgb=np.stack([p1, p2]), gt_rgb=np.stack([g1, g2]), dynamic=dyn, sky=sky)
    m = PSNRMetric(["full", "nonsky", "dynamic"])
    rows = m.update(sample)
    assert math.isnan(rows["psnr_dynamic"][1]) and not math.isnan(rows["psnr_dynamic"][0])
    out = m.compute()
    assert out["psnr_dynamic"] == pytest.approx(rows["psnr_dynamic"][0])
    assert out["psnr"] == pytest.approx(np.mean(rows["psnr"]))
    assert m.summary()["psnr_dynamic"]["count"] == 1
    s = SSIMMetric(["full", "dynamic"])
    srows = s.update(sample)
    assert srows["ssim"][0] == pytest.approx(structural_similarity(p1, g1, data_range=1, channel_axis=-1))
    assert math.isnan(srows["ssim_dynamic"][1])


def test_batched_equals_one_by_one_and_uint8_gt() -> None:
    pred = RNG.random((3, 24, 32, 3)).astype(np.float32)
    gt8 = (RNG.random((3, 24, 32, 3)) * 255).astype(np.uint8)
    batched = PSNRMetric().update(Sample(rgb=pred, gt_rgb=gt8))["psnr"]
    for i in range(3):
        ref = peak_signal_noise_ratio(gt8[i] / 255.0, pred[i].astype(np.float64), data_range=1)
        one = PSNRMetric().update(Sample(rgb=pred[i], gt_rgb=gt8[i]))["psnr"]
        assert batched[i] == pytest.approx(ref, abs=1e-9) and one[0] == pytest.approx(ref, abs=1e-9)
    ssims = SSIMMetric().update(Sample(rgb=pred, gt_rgb=gt8))["ssim"]
    for i in range(3):
        ref = structural_similarity(pred[i].astype(np.float64), gt8[i] / 255.0, data_range=1, channel_axis=-1)
        assert ssims[i] == pytest.approx(ref, abs=1e-9)


def test_bad_inputs_raise_one_line_errors() -> None:
    pred = np.zeros((16, 16, 3), np.float32)
    with pytest.raises(SlarmBenchError, match="sky"):
        PSNRMetric(["nonsky"]).update(Sample(rgb=pred, gt_rgb=pred))
    with pytest.raises(UnknownNameError, match="dynamic"):
        PSNRMetric(["dynamik"])
    with pytest.raises(SlarmBenchError, match="same size"):
        psnr(torch.zeros(1, 8, 8, 3), torch.zeros(1, 8, 9, 3))
    with pytest.raises(SlarmBenchError, match="batch"):
        Sample(rgb=np.zeros((2, 8, 8, 3)), gt_rgb=np.zeros((3, 8, 8, 3)))
    with pytest.raises(SlarmBenchError, match="7x7"):
        ssim(torch.zeros(1, 5, 9, 3), torch.zeros(1, 5, 9, 3))


def test_inputs_are_not_modified() -> None:
    for dtype in (torch.float32, torch.float64):
        pred, gt = torch.rand(2, 16, 16, 3, dtype=dtype) * 1.4 - 0.2, torch.rand(2, 16, 16, 3, dtype=dtype)
        p0, g0 = pred.clone(), gt.clone()
        depth, gt_depth = torch.rand(2, 16, 16, dtype=dtype), torch.rand(2, 16, 16, dtype=dtype)
        d0 = depth.clone()
        build_metrics({"lpips": None}).update(Sample(rgb=pred, gt_rgb=gt, depth=depth, gt_depth=gt_depth))
        assert torch.equal(pred, p0) and torch.equal(gt, g0) and torch.equal(depth, d0)


def test_exact_prediction_gives_infinite_psnr() -> None:
    x = torch.rand(1, 8, 8, 3)
    assert math.isinf(float(psnr(x, x)))
    assert float(ssim(x, x)) == pytest.approx(1.0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    pred, gt = _pairs()[0]
    cpu = (float(psnr(_t(pred), _t(gt))), float(ssim(_t(pred), _t(gt))))
    gpu = (float(psnr(_t(pred).cuda(), _t(gt).cuda())), float(ssim(_t(pred).cuda(), _t(gt).cuda())))
    assert gpu == pytest.approx(cpu, abs=1e-9)


def test_functional_api_takes_numpy_single_images() -> None:
    pred, gt = _pairs()[0]
    mask = np.zeros(pred.shape[:2], bool)
    mask[5:30, 5:40] = True
    assert float(psnr(pred, gt, mask)) == pytest.approx(float(psnr(_t(pred), _t(gt), _t(mask))))
    ref = structural_similarity(pred, gt, data_range=1, channel_axis=-1)
    assert float(ssim(pred, gt)) == pytest.approx(ref, abs=1e-9)
