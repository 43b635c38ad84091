"""The `Gaussians` and `Render` containers shared by every model and both rasterizer backends.

All tensors are batched: B scenes of N Gaussians, V cameras per scene, images H x W.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from slarm_bench.errors import SlarmBenchError


class RenderError(SlarmBenchError, ValueError):
    """Bad input to the renderer: Gaussians or cameras that cannot be rendered."""


TimeLike = float | Tensor


@dataclass
class Gaussians:
    """A batch of 3D Gaussians, optionally moving.

    means [B,N,3] world frame (metres); quats [B,N,4] (w, x, y, z), raw: the renderer normalises them;
    scales [B,N,3] standard deviations along the Gaussian's axes (metres, >= 0); opacities [B,N] in [0,1];
    colors [B,N,3] (RGB, [0,1] scale); features [B,N,C] optional extra channels of any width
    (language features, ...), alpha-composited like the colours.
    motion [B,N,K,3] optional Taylor coefficients m_1..m_K of the means about `origin_time`
    ([B] or [B,N], seconds): mean(t) = mean + sum_i m_i dt^i / i!, dt = t - origin_time. K = 1 is a
    constant velocity (m/s), K = 2 adds an acceleration, K = 3 a jerk.
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    colors: Tensor
    features: Tensor | None = None
    motion: Tensor | None = None
    origin_time: Tensor | None = None

    def __post_init__(self) -> None:
        if self.means.dim() != 3 or self.means.shape[-1] != 3:
            raise RenderError(f"Gaussians.means must be [B,N,3], got {tuple(self.means.shape)}; "
                              "add a batch dimension with .unsqueeze(0) for a single scene.")
        b, n = self.means.shape[:2]
        expect = {"quats": (b, n, 4), "scales": (b, n, 3), "opacities": (b, n), "colors": (b, n, 3)}
        for name, shape in expect.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise RenderError(f"Gaussians.{name} must be {list(shape)} to match means "
                                  f"{list(self.means.shape)}, got {list(got)}.")
        if self.features is not None and (self.features.dim() != 3 or self.features.shape[:2] != (b, n)):
            raise RenderError(f"Gaussians.features must be [B,N,C] = [{b},{n},C], "
                              f"got {list(self.features.shape)}.")
        if self.motion is not None:
            if self.motion.dim() != 4 or self.motion.shape[:2] != (b, n) or self.motion.shape[-1] != 3 \
                    or self.motion.shape[2] < 1:
                raise RenderError(f"Gaussians.motion must be [B,N,K,3] = [{b},{n},K>=1,3], "
                                  f"got {list(self.motion.shape)}.")
            if self.origin_time is None:
                raise RenderError("Gaussians.motion is set but origin_time is not: give origin_time [B] or "
                                  "[B,N] (seconds) so the motion has a reference time.")
        if self.origin_time is not None:
            if tuple(self.origin_time.shape) not in ((b,), (b, n)):
                raise RenderError(f"Gaussians.origin_time must be [B]=[{b}] or [B,N]=[{b},{n}], "
                                  f"got {list(self.origin_time.shape)}.")

    # -------------------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.means.shape[0]

    @property
    def num_gaussians(self) -> int:
        return self.means.shape[1]

    @property
    def motion_order(self) -> int:
        """K, the number of Taylor coefficients (0 for a static scene)."""
        return 0 if self.motion is None else self.motion.shape[2]

    @property
    def device(self) -> torch.device:
        return self.means.device

    def _dt(self, t: TimeLike) -> Tensor:
        """Time since origin as [B,N,1] (seconds)."""
        t = torch.as_tensor(t, dtype=self.means.dtype, device=self.means.device)
        if t.dim() == 0:
            t = t.expand(self.batch_size)
        if tuple(t.shape) != (self.batch_size,):
            raise RenderError(f"time must be a number or a [B]=[{self.batch_size}] tensor, "
                              f"got shape {list(t.shape)}.")
        origin = self.origin_time.to(self.means.dtype)
        origin = origin[:, None] if origin.dim() == 1 else origin
        return (t[:, None] - origin)[..., None]

    def at_time(self, t: TimeLike) -> Tensor:
        """Means [B,N,3] at time t (scalar or [B], seconds): mean + sum_i m_i dt^i / i!."""
        if self.motion is None:
            return self.means
        dt = self._dt(t)
        out = self.means
        power = torch.ones_like(dt)
        for i in range(self.motion_order):
            power = power * dt
            out = out + self.motion[:, :, i] * (power / math.factorial(i + 1))
        return out

    def velocity_at(self, t: TimeLike) -> Tensor:
        """Velocity [B,N,3] (m/s) at time t: d/dt of `at_time` = sum_i m_i dt^(i-1) / (i-1)!."""
        if self.motion is None:
            return torch.zeros_like(self.means)
        dt = self._dt(t)
        out = torch.zeros_like(self.means)
        power = torch.ones_like(dt)
        for i in range(self.motion_order):
            out = out + self.motion[:, :, i] * (power / math.factorial(i))
            power = power * dt
        return out

    # -------------------------------------------------------------------------------------------------
    def to(self, *args, **kwargs) -> Gaussians:
        """Like Tensor.to, applied to every tensor field."""
        return replace(self, **{f.name: getattr(self, f.name).to(*args, **kwargs)
                                for f in fields(self) if getattr(self, f.name) is not None})

    def select(self, index: Tensor) -> Gaussians:
        """The Gaussians at `index` along N (a [M] long or [N] bool tensor, shared by the batch)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name == "origin_time" and value.dim() == 1):
                out[f.name] = value
            else:
                out[f.name] = value[:, index]
        return Gaussians(**out)

    def validate(self) -> None:
        """Raise RenderError for values no renderer can draw (one device sync for all checks)."""
        finite = [torch.isfinite(getattr(self, f.name)).all() for f in fields(self)
                  if getattr(self, f.name) is not None]
        quat_norm_ok = (self.quats.detach().norm(dim=-1) > 1e-12).all() if self.num_gaussians else \
            torch.tensor(True)
        checks = torch.stack([
            torch.stack(finite).all(),
            quat_norm_ok.to(finite[0].device),
            (self.scales.detach() >= 0).all(),
            ((self.opacities.detach() >= 0) & (self.opacities.detach() <= 1)).all(),
        ]).cpu()
        if checks.all():
            return
        if not checks[0]:
            bad = [f.name for f in fields(self) if getattr(self, f.name) is not None
                   and not torch.isfinite(getattr(self, f.name)).all()]
            raise RenderError(f"Gaussians have non-finite values (NaN or inf) in {', '.join(bad)}; "
                              "check the model's outputs (a diverged training run?).")
        if not checks[1]:
            raise RenderError("Gaussians.quats has a zero-norm quaternion that cannot be normalised; "
                              "give every Gaussian a non-zero (w, x, y, z).")
        if not checks[2]:
            raise RenderError("Gaussians.scales has negative values; scales are standard deviations in "
                              "metres: pass them through exp() or softplus().")
        raise RenderError("Gaussians.opacities must lie in [0, 1]; pass them through a sigmoid.")

    # -------------------------------------------------------------------------------------------------
    @staticmethod
    def concat(parts: Sequence[Gaussians]) -> Gaussians:
        """Join Gaussians of the same batch size along N (e.g. static background + moving objects).

        Optional fields must be present in all parts or in none, and motion orders must match; origin
        times are kept per Gaussian ([B,N]) when the parts' origins differ.
        """
        if not parts:
            raise RenderError("Gaussians.concat needs at least one part.")
        _check_same_optional(parts, "Gaussians.concat")
        out = {}
        for f in fields(Gaussians):
            values = [getattr(p, f.name) for p in parts]
            if values[0] is None:
                out[f.name] = None
            elif f.name == "origin_time":
                if all(v.dim() == 1 for v in values) and all(torch.equal(v, values[0]) for v in values):
                    out[f.name] = values[0]
                else:
                    out[f.name] = torch.cat([v[:, None].expand(-1, p.num_gaussians) if v.dim() == 1 else v
                                             for v, p in zip(values, parts)], dim=1)
            else:
                out[f.name] = torch.cat(values, dim=1)
        return Gaussians(**out)

    @staticmethod
    def stack(parts: Sequence[Gaussians]) -> Gaussians:
        """Batch scenes along B. Scenes with fewer Gaussians are padded with invisible ones
        (opacity 0, which every backend culls), so the result renders exactly like the parts."""
        if not parts:
            raise RenderError("Gaussians.stack needs at least one part.")
        _check_same_optional(parts, "Gaussians.stack")
        n = max(p.num_gaussians for p in parts)
        padded = [_pad(p, n) for p in parts]
        out = {}
        for f in fields(Gaussians):
            values = [getattr(p, f.name) for p in padded]
            if values[0] is None:
                out[f.name] = None
            elif f.name == "origin_time" and any(v.dim() == 2 for v in values):
                out[f.name] = torch.cat([v[:, None].expand(-1, n) if v.dim() == 1 else v for v in values])
            else:
                out[f.name] = torch.cat(values, dim=0)
        return Gaussians(**out)


def _check_same_optional(parts: Sequence[Gaussians], what: str) -> None:
    for name in ("features", "motion", "origin_time"):
        present = {getattr(p, name) is not None for p in parts}
        if len(present) > 1:
            raise RenderError(f"{what}: `{name}` is set in some parts and not in others; give it to all.")
    if len({p.motion_order for p in parts}) > 1:
        raise RenderError(f"{what}: parts have different motion orders "
                          f"{sorted({p.motion_order for p in parts})}; pad the lower orders with zeros.")
    if parts[0].features is not None and len({p.features.shape[-1] for p in parts}) > 1:
        raise RenderError(f"{what}: parts have different feature widths.")
    if what.endswith("concat") and len({p.batch_size for p in parts}) > 1:
        raise RenderError(f"{what}: parts have different batch sizes {[p.batch_size for p in parts]}.")


def _pad(g: Gaussians, n: int) -> Gaussians:
    extra = n - g.num_gaussians
    if extra == 0:
        return g
    b = g.batch_size

    def pad(t: Tensor, fill: Sequence[float] | float) -> Tensor:
        block = torch.zeros(b, extra, *t.shape[2:], dtype=t.dtype, device=t.device)
        block[...] = torch.as_tensor(fill, dtype=t.dtype, device=t.device)
        return torch.cat([t, block], dim=1)

    origin = g.origin_time
    if origin is not None and origin.dim() == 2:
        origin = pad(origin, 0.0)
    return Gaussians(
        means=pad(g.means, 0.0), quats=pad(g.quats, (1.0, 0.0, 0.0, 0.0)), scales=pad(g.scales, 0.0),
        opacities=pad(g.opacities, 0.0), colors=pad(g.colors, 0.0),
        features=None if g.features is None else pad(g.features, 0.0),
        motion=None if g.motion is None else pad(g.motion, 0.0), origin_time=origin,
    )


@dataclass
class Render:
    """What `render()` returns.

    rgb [B,V,H,W,3]: colours on the [0,1] scale, composited over the background and passed through the
    colour transform when given; not clamped (metrics clamp).
    depth [B,V,H,W]: expected z-depth in gsplat's "ED" sense, sum_i w_i z_i / max(alpha, 1e-10)
    (w_i = alpha_i T_i the compositing weights), so 0 where nothing was drawn.
    alpha [B,V,H,W]: accumulated opacity, sum_i w_i = 1 - final transmittance.
    features [B,V,H,W,C], flow [B,V,H,W,3] (m/s, world frame): sum_i w_i f_i, NOT divided by alpha.
    backend: "gsplat" or "torch", the rasterizer that produced it.
    """

    rgb: Tensor
    depth: Tensor
    alpha: Tensor
    features: Tensor | None = None
    flow: Tensor | None = None
    backend: str = "torch"
