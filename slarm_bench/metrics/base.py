"""Metric base: per-image values, sum/count state that merges across objects and processes.

Every metric value (a "key", e.g. `psnr_dynamic`) keeps five numbers in a float64 state row:

    wsum    sum of value * weight         (the weighted mean is wsum / wcount)
    wcount  sum of weights
    n       number of images with a defined value
    vsum    sum of per-image values        (for the std over images)
    vsq     sum of squared per-image values

Image-averaged keys use weight 1, so their mean is the plain mean over images. Pixel-weighted keys (scene
flow) use the image's pixel count as weight, so their mean is sum(e) / number of pixels over all images,
while `std` is always the population std (ddof=0) of the per-image values. Images whose value is not
defined (NaN, e.g. dynamic PSNR without dynamic pixels) are left out of every column.

Because the state is a sum, splitting the images over several objects or processes and merging (or
all-reducing) gives the same result as one object that saw them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from slarm_bench.errors import SlarmBenchError, check_name

STATE_COLUMNS = ("wsum", "wcount", "n", "vsum", "vsq")


class MetricInputError(SlarmBenchError, ValueError):
    """Inputs to a metric of the wrong shape, or a mask the metric needs that the sample lacks."""


class MetricUnavailableError(SlarmBenchError):
    """A metric that cannot run here (e.g. LPIPS backbone weights missing); the message says how to fix it."""


@dataclass(frozen=True)
class ValueSpec:
    """What one metric value means: direction, unit, averaging, and how it was made (`notes`)."""

    key: str
    higher_is_better: bool
    unit: str
    average: str = "image"  # "image": mean over images; "pixel": weighted by the image's pixel count
    weight_key: str | None = None  # per-image row field holding the pixel count of a pixel-weighted key
    notes: str = ""


# ---------------------------------------------------------------------------------------------------------
# Inputs
def as_tensor(x: Any) -> torch.Tensor | None:
    """numpy array or tensor -> tensor on the input's device (numpy -> CPU); None stays None."""
    if x is None or isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.ascontiguousarray(x))


def batched(x: Any, base_ndim: int) -> torch.Tensor:
    """Tensor with a leading batch dim: numpy -> tensor, one image [H,W(,3)] -> [1,H,W(,3)]."""
    t = as_tensor(x)
    return t.unsqueeze(0) if t.ndim == base_ndim else t


# Field -> number of dimensions of one unbatched image.
_FIELD_NDIM = {
    "rgb": 3, "gt_rgb": 3, "depth": 2, "gt_depth": 2, "flow": 3, "gt_flow": 3,
    "semantic": 2, "gt_semantic": 2, "sky": 2, "dynamic": 2, "ground": 2,
}


@dataclass
class Sample:
    """Predictions and ground truth for one image or a batch of B images (leading batch dim optional).

    rgb, gt_rgb     [B,H,W,3] float in [0,1] (gt may be uint8, read as /255); pred is clamped where the
                    definition says so
    depth, gt_depth [B,H,W] z-depth in metres (rendered expected depth; lidar, 0 = no return)
    flow, gt_flow   [B,H,W,3] world-frame velocity, m/s
    semantic        [B,H,W] int predicted class index; gt_semantic [B,H,W] uint8, 255 = unlabelled
    sky, dynamic, ground  [B,H,W] bool masks; None when the dataset has none (never zeros)
    Unbatched fields ([H,W,3], [H,W]) get a batch dim of 1. numpy arrays become CPU tensors.
    """

    rgb: Any = None
    gt_rgb: Any = None
    depth: Any = None
    gt_depth: Any = None
    flow: Any = None
    gt_flow: Any = None
    semantic: Any = None
    gt_semantic: Any = None
    sky: Any = None
    dynamic: Any = None
    ground: Any = None

    def __post_init__(self) -> None:
        batch = None
        for f in fields(self):
            t = as_tensor(getattr(self, f.name))
            if t is None:
                continue
            base = _FIELD_NDIM[f.name]
            if t.ndim == base:
                t = t.unsqueeze(0)
            if t.ndim != base + 1:
                raise MetricInputError(
                    f"Sample.{f.name} has shape {tuple(t.shape)}; expected {base} dims (one image) or "
                    f"{base + 1} (a batch): pass [B,H,W{',3' if base == 3 else ''}]."
                )
            if batch is not None and t.shape[0] != batch:
                raise MetricInputError(
                    f"Sample.{f.name} has batch size {t.shape[0]} but other fields have {batch}: "
                    "pass the same images in every field."
                )
            batch = t.shape[0]
            setattr(self, f.name, t)

    def split(self, size: int) -> list[Sample]:
        """Views of `size` images each (the last may be shorter)."""
        n = self.batch_size
        if n <= size:
            return [self]
        parts = []
        for start in range(0, n, size):
            part = Sample.__new__(Sample)
            for f in fields(self):
                t = getattr(self, f.name)
                setattr(part, f.name, None if t is None else t[start:start + size])
            parts.append(part)
        return parts

    @property
    def device(self) -> torch.device:
        for f in fields(self):
            t = getattr(self, f.name)
            if t is not None:
                return t.device
        return torch.device("cpu")

    @property
    def batch_size(self) -> int:
        for f in fields(self):
            t = getattr(self, f.name)
            if t is not None:
                return int(t.shape[0])
        return 0

    def require(self, *names: str, metric: str) -> None:
        """Raise MetricInputError naming the first field in `names` that is None."""
        for name in names:
            if getattr(self, name) is None:
                raise MetricInputError(
                    f"metric {metric!r} needs Sample.{name}, which is None: provide it, or drop the metric "
                    "(or the mask variant) from the protocol's metric knobs."
                )


# Mask variants shared by image and depth metrics: name -> (key suffix, needed field, mask of the sample).
MASKS: dict[str, tuple[str, str | None, Callable[[Sample], torch.Tensor | None]]] = {
    "full": ("", None, lambda s: None),
    "nonsky": ("_nonsky", "sky", lambda s: ~s.sky.bool()),
    "dynamic": ("_dynamic", "dynamic", lambda s: s.dynamic.bool()),
    # Static scene: neither sky nor a moving object (needs both masks; the sky check is in `sample_mask`).
    "static": ("_static", "dynamic", lambda s: ~s.dynamic.bool() & ~s.sky.bool()),
}


def sample_mask(sample: Sample, variant: str, metric: str) -> torch.Tensor | None:
    """[B,H,W] bool mask of a variant ('full' -> None), raising if the sample lacks the field it needs."""
    check_name("mask variant", variant, MASKS)
    _, field, fn = MASKS[variant]
    if field is not None:
        sample.require(field, metric=f"{metric} ({variant})")
    if variant == "static":
        sample.require("sky", metric=f"{metric} ({variant})")
    return fn(sample)


# ---------------------------------------------------------------------------------------------------------
# Metric
class Metric:
    """A stateful metric (family) that produces one or more values per image.

    Subclasses set `name`, `higher_is_better`, `unit` (of the family's values), fill `self.specs` in
    __init__ and implement `_values(sample) -> {key: (values [B] float64, weights [B] or None)}`,
    with NaN where a value is not defined for an image.
    """

    name: str = "metric"
    higher_is_better: bool = True
    unit: str = ""
    chunk_size: int = 1  # images per internal step on the CPU (see update)

    def __init__(self, specs: Iterable[ValueSpec]) -> None:
        self.specs: dict[str, ValueSpec] = {s.key: s for s in specs}
        self._state = torch.zeros(len(self.specs), len(STATE_COLUMNS), dtype=torch.float64)

    # -- per image ------------------------------------------------------------------------------------
    def _values(self, sample: Sample) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        raise NotImplementedError

    @torch.no_grad()
    def update(self, sample: Sample) -> dict[str, list[float]]:
        """Score a batch; returns the per-image values just added ({key: [B floats]}, NaN = undefined),
        plus, for pixel-weighted keys, their pixel counts under the spec's `weight_key`."""
        # Scoring a few images at a time keeps the float64 intermediates in cache: several times faster
        # on a CPU than whole-batch tensors (benchmarks/bench_metrics.py).
        size = self.chunk_size if sample.device.type == "cpu" else sample.batch_size
        parts = [self._values(part) for part in sample.split(size)]
        values = {
            key: (torch.cat([p[key][0] for p in parts]),
                  None if parts[0][key][1] is None else torch.cat([p[key][1] for p in parts]))
            for key in parts[0]
        }
        rows: dict[str, list[float]] = {}
        for i, (key, spec) in enumerate(self.specs.items()):
            v, w = values[key]
            v = v.detach().to("cpu", torch.float64)
            w = torch.ones_like(v) if w is None else w.detach().to("cpu", torch.float64)
            ok = ~torch.isnan(v)
            vo, wo = v[ok], w[ok]
            self._state[i] += torch.stack(
                [(vo * wo).sum(), wo.sum(), ok.sum().to(torch.float64), vo.sum(), (vo * vo).sum()]
            )
            rows[key] = v.tolist()
            if spec.weight_key is not None:
                rows[spec.weight_key] = w.tolist()
        return rows

    def add_rows(self, rows: Iterable[Mapping[str, float]]) -> None:
        """Re-accumulate from per-image result rows (as written by `update`), e.g. when resuming a run."""
        for row in rows:
            for i, (key, spec) in enumerate(self.specs.items()):
                v = float(row.get(key, math.nan))
                if math.isnan(v):
                    continue
                w = 1.0 if spec.weight_key is None else float(row[spec.weight_key])
                self._state[i] += torch.tensor([v * w, w, 1.0, v, v * v], dtype=torch.float64)

    # -- state ------------------------------------------------------------------------------------------
    def state(self) -> dict[str, float]:
        """Sums and counts as a flat dict {'<key>/<column>': float} (JSON-friendly)."""
        return {
            f"{key}/{col}": float(self._state[i, j])
            for i, key in enumerate(self.specs)
            for j, col in enumerate(STATE_COLUMNS)
        }

    def merge(self, other: Mapping[str, float] | Metric) -> None:
        """Add another object's state (a Metric of the same keys, or its `state()` dict)."""
        other_state = other.state() if isinstance(other, Metric) else other
        for i, key in enumerate(self.specs):
            for j, col in enumerate(STATE_COLUMNS):
                name = f"{key}/{col}"
                if name not in other_state:
                    raise MetricInputError(
                        f"cannot merge state into {self.name!r}: {name!r} is missing; merge states of "
                        "metrics built with the same knobs."
                    )
                self._state[i, j] += float(other_state[name])

    def reset(self) -> None:
        self._state.zero_()

    def all_reduce(self) -> None:
        """Sum the state over torch.distributed ranks (no-op if not initialised); every rank must call it."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        state = self._state
        if torch.distributed.get_backend() == "nccl":
            state = state.to(torch.device("cuda", torch.cuda.current_device()))
        torch.distributed.all_reduce(state, op=torch.distributed.ReduceOp.SUM)
        self._state = state.cpu()

    # -- results ----------------------------------------------------------------------------------------
    def compute(self) -> dict[str, float]:
        """{key: mean} (image mean, or pixel-weighted mean for pixel keys); NaN where nothing was scored."""
        out = {}
        for i, key in enumerate(self.specs):
            wsum, wcount = float(self._state[i, 0]), float(self._state[i, 1])
            out[key] = wsum / wcount if wcount > 0 else math.nan
        return out

    def summary(self) -> dict[str, dict[str, Any]]:
        """{key: {mean, std (over images, ddof=0), count, higher_is_better, unit, average, notes}}"""
        means = self.compute()
        out = {}
        for i, (key, spec) in enumerate(self.specs.items()):
            n, vsum, vsq = (float(x) for x in self._state[i, 2:])
            std = math.sqrt(max(vsq / n - (vsum / n) ** 2, 0.0)) if n > 0 else math.nan
            if n > 0 and math.isinf(vsum):
                std = math.nan  # e.g. an image with PSNR = inf (exact prediction)
            out[key] = {
                "mean": means[key], "std": std, "count": int(n),
                "higher_is_better": spec.higher_is_better, "unit": spec.unit,
                "average": spec.average, "notes": spec.notes,
            }
        return out


def nan_where(values: torch.Tensor, undefined: torch.Tensor) -> torch.Tensor:
    """values [B] with NaN where `undefined` [B] is True."""
    return torch.where(undefined, torch.full_like(values, math.nan), values)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean of x [B,H,W] over mask [B,H,W] (None = all): (mean [B], count [B]); NaN if empty."""
    if mask is None:
        count = torch.full((x.shape[0],), float(x[0].numel()), dtype=x.dtype, device=x.device)
        return x.flatten(1).mean(1), count
    count = mask.flatten(1).sum(1).to(x.dtype)
    # where(), not x * mask: values outside the mask may be NaN or inf and must not leak in
    total = torch.where(mask, x, torch.zeros_like(x)).flatten(1).sum(1)
    return nan_where(total / count.clamp_min(1), count == 0), count
