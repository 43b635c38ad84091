"""Image metrics: PSNR, SSIM (scikit-image's definition, in torch), LPIPS (the `lpips` package).

Definitions follow REFERENCE.md section 2:
- PSNR = -10 log10(MSE), MSE over all pixels and channels of clamp(pred, 0, 1) - gt; the masked variants
  take the MSE over the masked pixels only (all three channels).
- SSIM equals skimage.metrics.structural_similarity(pred, gt, data_range=1, channel_axis=-1) with its
  defaults: 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance (N / (N - 1)), mean over channels,
  and a border of (7 - 1) // 2 = 3 pixels cropped before averaging the SSIM map.
  Masked SSIM = mean of the (channel-averaged) SSIM map over the mask *restricted to the cropped interior*:
  it equals averaging skimage's `full=True` map over `mask & interior`, so an all-true mask gives exactly
  the unmasked SSIM, and border pixels (whose windows skimage fills by reflection) never count. An image
  whose mask has no interior pixel has no masked SSIM (NaN, left out of the average).
- Masked variants ("nonsky", "dynamic") are undefined (NaN) for an image without a pixel in the mask, so
  e.g. dynamic PSNR is averaged only over images with at least one dynamic pixel.
Predictions are clamped to [0, 1] before PSNR, SSIM and LPIPS (a no-op for renders that keep the [0,1]
contract). Computation is in float64 (cheap here) so the values match scikit-image to ~1e-12.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from slarm_bench.errors import check_name
from slarm_bench.metrics.base import (
    MASKS,
    Metric,
    MetricInputError,
    MetricUnavailableError,
    Sample,
    ValueSpec,
    batched,
    masked_mean,
    nan_where,
    sample_mask,
)

SSIM_WIN = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check_rgb(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.shape != gt.shape or pred.shape[-1] != 3:
        raise MetricInputError(
            f"rgb {tuple(pred.shape)} and gt_rgb {tuple(gt.shape)} must both be [B,H,W,3]: pass images of "
            "the same size."
        )


def _rgb_pair(pred: torch.Tensor, gt: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamp pred to [0,1], read a uint8 gt as /255, both to `dtype`; shapes must match ([B,H,W,3])."""
    _check_rgb(pred, gt)
    gt = gt.to(dtype) / 255.0 if gt.dtype == torch.uint8 else gt.to(dtype)
    return pred.to(dtype).clamp(0.0, 1.0), gt


# ---------------------------------------------------------------------------------------------------------
# Functional
def squared_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(clamp(pred, 0, 1) - gt)^2 [B,H,W,3] in float64."""
    pred, gt = batched(pred, 3), batched(gt, 3)
    _check_rgb(pred, gt)
    d = pred.to(torch.float64, copy=True).clamp_(0.0, 1.0)  # in place on a copy: fewer passes on a CPU
    g = gt.to(torch.float64)
    d.sub_(g.div_(255.0) if gt.dtype == torch.uint8 else g)
    return d.mul_(d)


def mse_from_squared_error(se: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image MSE [B] over all channels of the masked pixels; NaN where the mask is empty."""
    if mask is None:
        return se.flatten(1).mean(1)
    # where() on [B,H,W,1] rather than a channel mean first: a reduction over the size-3 axis is slow
    count = mask.flatten(1).sum(1).to(se.dtype) * se.shape[-1]
    zero = torch.zeros((), dtype=se.dtype, device=se.device)
    total = torch.where(mask[..., None], se, zero).flatten(1).sum(1)
    return nan_where(total / count.clamp_min(1), count == 0)


def psnr(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image PSNR (dB) [B] of pred, gt [B,H,W,3] in [0,1]; mask [B,H,W] bool (None = whole image).

    NaN for an image with an empty mask; +inf for an exact prediction. numpy arrays and single images
    ([H,W,3], [H,W]) are accepted too (as for ssim).
    """
    mask = None if mask is None else batched(mask, 2).bool()
    return -10.0 * torch.log10(mse_from_squared_error(squared_error(pred, gt), mask))


def _box_sum_1d(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over every full window of 7 along `dim` ('valid'), by doubling: 4 adds instead of 6."""
    n = x.shape[dim]
    s2 = x.narrow(dim, 0, n - 1) + x.narrow(dim, 1, n - 1)  # s2[i] = x[i] + x[i+1]
    s4 = s2.narrow(dim, 0, n - 3) + s2.narrow(dim, 2, n - 3)  # s4[i] = x[i..i+3]
    m = n - 6
    return s4.narrow(dim, 0, m) + s2.narrow(dim, 4, m) + x.narrow(dim, 6, m)  # x[i..i+6]


def _box_mean(x: torch.Tensor, win: int) -> torch.Tensor:
    """Mean over every full win x win window ('valid'): [N,C,H,W] -> [N,C,H-win+1,W-win+1].

    Separable window sums by shifted adds (exact to ~1e-16 in float64, and several times faster on a
    CPU than avg_pool2d or running cumulative sums).
    """
    assert win == 7, "the doubling sum is written for skimage's default 7x7 window"
    return _box_sum_1d(_box_sum_1d(x, -1), -2).div_(win * win)


def ssim_map(pred: torch.Tensor, gt: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Channel-mean SSIM map of the cropped interior [B,H-6,W-6] for pred, gt [B,H,W,3] (float64).

    Equal to skimage's `full=True` map, averaged over channels, sliced to [3:-3, 3:-3].
    """
    pred, gt = batched(pred, 3), batched(gt, 3)
    _check_rgb(pred, gt)
    if min(pred.shape[1:3]) < SSIM_WIN:
        raise MetricInputError(
            f"SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN} pixels; got {tuple(pred.shape[1:3])}."
        )
    b, h, w, nch = pred.shape
    # Written into one preallocated float64 buffer with in-place ops: fewer allocations and passes over
    # memory, which is what bounds this on a CPU. maps[:, c] = (x, y, x^2 + y^2, x y) of channel c; only
    # the sum x^2 + y^2 enters SSIM, so it is filtered as one map.
    maps = torch.empty(b, nch, 4, h, w, dtype=torch.float64, device=pred.device)
    x, y = maps[:, :, 0], maps[:, :, 1]
    x.copy_(pred.permute(0, 3, 1, 2)).clamp_(0.0, 1.0)
    y.copy_(gt.permute(0, 3, 1, 2))
    if gt.dtype == torch.uint8:
        y.div_(255.0)
    torch.mul(x, x, out=maps[:, :, 2]).addcmul_(y, y)
    torch.mul(x, y, out=maps[:, :, 3])
    n = SSIM_WIN * SSIM_WIN
    cov_norm = n / (n - 1)  # skimage's use_sample_covariance=True
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    total = None
    for c in range(nch):  # one channel at a time keeps the intermediates in cache
        ux, uy, usq, uxy = _box_mean(maps[:, c], SSIM_WIN).unbind(1)
        uxuy = ux * uy
        u2 = (ux * ux).addcmul_(uy, uy)
        num = uxuy.mul(2.0).add_(c1).mul_(uxy.sub_(uxuy).mul_(2.0 * cov_norm).add_(c2))
        den = (u2 + c1).mul_(usq.sub_(u2).mul_(cov_norm).add_(c2))
        s = num.div_(den)
        total = s if total is None else total.add_(s)
    return total.div_(nch)


def interior(mask: torch.Tensor) -> torch.Tensor:
    """Crop a [B,H,W] mask to the SSIM interior [B,H-6,W-6]."""
    pad = (SSIM_WIN - 1) // 2
    return mask[:, pad:-pad, pad:-pad]


def ssim(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image SSIM [B]; with mask [B,H,W], the mean of the SSIM map over mask & interior (NaN if empty)."""
    smap = ssim_map(pred, gt)
    return masked_mean(smap, None if mask is None else interior(batched(mask, 2).bool()))[0]


# ---------------------------------------------------------------------------------------------------------
# Stateful metrics
def _check_masks(masks: Sequence[str]) -> tuple[str, ...]:
    for m in masks:
        check_name("mask variant", m, MASKS)
    return tuple(masks)


class PSNRMetric(Metric):
    """PSNR (dB) per image, averaged over images; one key per mask: psnr, psnr_nonsky, psnr_dynamic."""

    name, higher_is_better, unit = "psnr", True, "dB"
    chunk_size = 2

    def __init__(self, masks: Sequence[str] = ("full",), max_db: float | None = 100.0) -> None:
        # An exact prediction has PSNR +inf, which makes every mean over images +inf (a 1-pixel dynamic
        # region copied unchanged does it); capping at max_db (MSE floored at 10^(-max_db/10)) keeps the
        # means finite and is recorded in the notes. max_db=None gives the uncapped definition.
        self.masks = _check_masks(masks)
        self.max_db = max_db
        cap = f"; capped at {max_db:g} dB (MSE floored at 1e{-max_db / 10:g})" if max_db is not None else ""
        super().__init__(
            ValueSpec(f"psnr{MASKS[m][0]}", True, "dB", notes=f"mask={m}; pred clamped to [0,1]{cap}")
            for m in self.masks
        )

    def _values(self, sample: Sample) -> dict[str, tuple[torch.Tensor, None]]:
        sample.require("rgb", "gt_rgb", metric=self.name)
        se = squared_error(sample.rgb, sample.gt_rgb)  # one error image serves every mask variant
        floor = 0.0 if self.max_db is None else 10.0 ** (-self.max_db / 10.0)
        return {
            key: (-10.0 * torch.log10(mse_from_squared_error(se, sample_mask(sample, m, self.name))
                                      .clamp_min(floor)), None)
            for key, m in zip(self.specs, self.masks)
        }


class SSIMMetric(Metric):
    """SSIM per image (scikit-image definition), averaged over images; one key per mask variant."""

    name, higher_is_better, unit = "ssim", True, ""

    def __init__(self, masks: Sequence[str] = ("full",)) -> None:
        self.masks = _check_masks(masks)
        super().__init__(
            ValueSpec(f"ssim{MASKS[m][0]}", True, "",
                      notes=f"mask={m} (restricted to the 3-pixel-cropped interior); skimage defaults")
            for m in self.masks
        )

    def _values(self, sample: Sample) -> dict[str, tuple[torch.Tensor, None]]:
        sample.require("rgb", "gt_rgb", metric=self.name)
        smap = ssim_map(sample.rgb, sample.gt_rgb)  # one map serves every mask variant
        out = {}
        for key, m in zip(self.specs, self.masks):
            mask = sample_mask(sample, m, self.name)
            out[key] = (masked_mean(smap, None if mask is None else interior(mask))[0], None)
        return out


# ---------------------------------------------------------------------------------------------------------
# LPIPS
LPIPS_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def lpips_backbone_path(net: str) -> Path:
    """Where torchvision keeps the backbone weights LPIPS needs: $TORCH_HOME/hub/checkpoints/<file>."""
    check_name("LPIPS backbone", net, LPIPS_BACKBONE_FILES)
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILES[net]


def _build_lpips(net: str):
    """lpips.LPIPS with its shipped linear layers and a randomly initialised trunk (never downloads).

    pnet_rand=True makes lpips call torchvision's constructor without pretrained weights, so nothing is
    fetched; the trunk weights are then loaded (or left random) by the caller.
    """
    try:
        import lpips
    except ImportError as e:
        raise MetricUnavailableError(f"LPIPS needs the `lpips` package ({e}): pip install lpips.") from e
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)  # torchvision's 'pretrained' deprecation
        return lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False).eval()


class LPIPSMetric(Metric):
    """LPIPS v0.1 per image (lower is better), averaged over images; key `lpips_<net>`.

    net: "alex" (default) or "vgg". backbone_weights: a torchvision state-dict file of the backbone; None
    looks for it in the torch hub cache (`lpips_backbone_path(net)`) and raises MetricUnavailableError if
    it is absent. random_init_seed: build a randomly initialised backbone with this seed instead (tests
    only; the value is then meaningless as a perceptual score, and its notes say so).
    Inputs: pred clamped to [0,1], both images scaled to [-1,1] as the lpips package expects.
    """

    name, higher_is_better, unit = "lpips", False, ""

    def __init__(self, net: str = "alex", backbone_weights: str | Path | None = None,
                 random_init_seed: int | None = None) -> None:
        check_name("LPIPS backbone", net, LPIPS_BACKBONE_FILES)
        self.net = net
        if random_init_seed is None:
            path = Path(backbone_weights) if backbone_weights is not None else lpips_backbone_path(net)
            if not path.is_file():
                raise MetricUnavailableError(
                    f"LPIPS ({net}) unavailable: backbone weights {path} not found; copy torchvision's "
                    f"{LPIPS_BACKBONE_FILES[net]} there (or pass its path), no download is attempted."
                )
            self.model = _build_lpips(net)
            self._load_backbone(path)
            source = f"backbone weights {path.name}"
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(random_init_seed)
                self.model = _build_lpips(net)
            source = f"RANDOM backbone (seed {random_init_seed}), for tests only"
        self.model.requires_grad_(False)
        self.notes = f"LPIPS v0.1, {net} backbone ({source}), inputs scaled to [-1,1]"
        super().__init__([ValueSpec(f"lpips_{net}", False, "", notes=self.notes)])

    def _load_backbone(self, path: Path) -> None:
        """Load a torchvision backbone state dict (features.<i>.*) into lpips' slices (slice<k>.<i>.*)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        mapped = {}
        for name in self.model.net.state_dict():
            _, idx, param = name.split(".")
            src = f"features.{idx}.{param}"
            if src not in state:
                raise MetricUnavailableError(
                    f"LPIPS ({self.net}): {path} has no {src!r}; give torchvision's {self.net} weights file."
                )
            mapped[name] = state[src]
        self.model.net.load_state_dict(mapped, strict=True)

    def _values(self, sample: Sample) -> dict[str, tuple[torch.Tensor, None]]:
        sample.require("rgb", "gt_rgb", metric=self.name)
        p, g = _rgb_pair(sample.rgb, sample.gt_rgb, torch.float32)
        device = p.device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        to_net = lambda x: x.permute(0, 3, 1, 2) * 2.0 - 1.0  # noqa: E731
        with torch.no_grad():
            val = self.model(to_net(p), to_net(g)).flatten()
        return {f"lpips_{self.net}": (val.to(torch.float64), None)}


def lpips_available(net: str = "alex") -> tuple[bool, str]:
    """(True, "") if LPIPS can be built from the cache, else (False, reason naming the missing file)."""
    with contextlib.suppress(ImportError):
        import lpips  # noqa: F401

        path = lpips_backbone_path(net)
        if path.is_file():
            return True, ""
        return False, f"backbone weights {path} not found"
    return False, "the `lpips` package is not installed"


__all__ = [
    "psnr", "ssim", "ssim_map", "interior", "PSNRMetric", "SSIMMetric", "LPIPSMetric",
    "lpips_backbone_path", "lpips_available", "LPIPS_BACKBONE_FILES",
]
