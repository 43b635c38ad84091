"""LPIPS against lpips.LPIPS with the same randomly initialised backbone; no downloads, clear absence."""

from __future__ import annotations

import warnings

import lpips
import pytest
import torch

from slarm_bench.metrics import LPIPSMetric, MetricUnavailableError, Sample, build_metrics, lpips_available
from slarm_bench.metrics.image import lpips_backbone_path


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Any attempt to fetch weights fails the test; the torch cache points at an empty folder."""
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _reference(net: str, state: dict) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    ref.load_state_dict(state)
    return ref.eval()


def _images(n: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(n, h, w, 3, generator=g)
    return a, (a + 0.2 * torch.randn(n, h, w, 3, generator=g)).clamp(0, 1)


@pytest.mark.parametrize(
    "net,size", [("alex", (64, 96)), pytest.param("vgg", (32, 48), marks=pytest.mark.slow)]
)
def test_matches_lpips_package_with_same_random_backbone(net: str, size: tuple[int, int]) -> None:
    metric = LPIPSMetric(net, random_init_seed=3)
    ref = _reference(net, metric.model.state_dict())
    pred, gt = _images(2, *size)
    ours = metric.update(Sample(rgb=pred, gt_rgb=gt))[f"lpips_{net}"]
    with torch.no_grad():
        expected = ref(pred.permute(0, 3, 1, 2) * 2 - 1, gt.permute(0, 3, 1, 2) * 2 - 1).flatten().tolist()
    assert ours == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert ours[0] > 0
    assert "[-1,1]" in metric.specs[f"lpips_{net}"].notes and "RANDOM" in metric.notes
    assert metric.higher_is_better is False


def test_linear_layers_are_the_shipped_calibrated_ones(tmp_path) -> None:
    metric = LPIPSMetric("alex", random_init_seed=0)
    shipped = torch.load(lpips.__path__[0] + "/weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    assert torch.equal(metric.model.state_dict()["lin0.model.1.weight"], shipped["lin0.model.1.weight"])


def test_seed_makes_backbone_reproducible() -> None:
    a = LPIPSMetric("alex", random_init_seed=5).model.state_dict()["net.slice1.0.weight"]
    b = LPIPSMetric("alex", random_init_seed=5).model.state_dict()["net.slice1.0.weight"]
    c = LPIPSMetric("alex", random_init_seed=6).model.state_dict()["net.slice1.0.weight"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_loads_torchvision_backbone_file(tmp_path) -> None:
    # A torchvision-format file (keys features.<index>.weight/bias, as in alexnet-owt-7be5be79.pth) with
    # random values; built from known shapes rather than torchvision's AlexNet to keep the test fast.
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3),
              10: (256, 256, 3, 3)}
    g = torch.Generator().manual_seed(7)
    state = {}
    for i, shape in shapes.items():
        state[f"features.{i}.weight"] = 0.05 * torch.randn(shape, generator=g)
        state[f"features.{i}.bias"] = 0.01 * torch.randn(shape[0], generator=g)
    state["classifier.1.weight"] = torch.zeros(2, 2)  # extra keys of the real file are ignored
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    metric = LPIPSMetric("alex", backbone_weights=path)
    assert torch.equal(metric.model.net.slice1[0].weight, state["features.0.weight"])
    assert torch.equal(getattr(metric.model.net.slice5, "10").bias, state["features.10.bias"])
    ref = _reference("alex", metric.model.state_dict())
    pred, gt = _images(1, 48, 64)
    with torch.no_grad():
        expected = float(ref(pred.permute(0, 3, 1, 2), gt.permute(0, 3, 1, 2), normalize=True))
    assert metric.update(Sample(rgb=pred, gt_rgb=gt))["lpips_alex"][0] == pytest.approx(expected, rel=1e-6)
    # the torch-hub cache location is found too
    cached = lpips_backbone_path("alex")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    assert lpips_available("alex") == (True, "")
    assert "alexnet-owt-7be5be79.pth" in LPIPSMetric("alex").notes


def test_missing_backbone_is_reported_and_the_rest_still_runs() -> None:
    expected_path = lpips_backbone_path("alex")
    with pytest.raises(MetricUnavailableError, match="alexnet-owt-7be5be79.pth") as err:
        LPIPSMetric("alex")
    assert str(expected_path) in str(err.value)
    ok, reason = lpips_available("vgg")
    assert not ok and "vgg16-397923af.pth" in reason
    suite = build_metrics({"lpips": "alex", "depth": False})
    assert "lpips_alex" in suite.unavailable and str(expected_path) in suite.unavailable["lpips_alex"]
    pred, gt = _images(1, 16, 16)
    rows = suite.update(Sample(rgb=pred, gt_rgb=gt))
    assert "psnr" in rows[0] and "ssim" in rows[0] and "lpips_alex" not in rows[0]
