"""Analytic planar trajectories for the synthetic dataset.

A trajectory is a speed profile v(t) and a heading profile psi(t), both closed-form with closed-form time
derivatives, so velocity v*(cos psi, sin psi) and acceleration dv/dt * T + v * dpsi/dt * N are exact. The
position is the integral of the velocity, computed with fixed-order Gauss-Legendre quadrature over pieces of
at most 50 ms: for these smooth profiles (time scales >= 0.5 s) the error is at float64 round-off, and the
fixed node set keeps it deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)
_PIECE = 0.05  # seconds per quadrature piece


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Quintic smoothstep, 0 for x <= 0 and 1 for x >= 1, C2 continuous."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def smoothstep_d(x: np.ndarray) -> np.ndarray:
    """Derivative of `smoothstep` with respect to x (peak 1.875 at x = 0.5)."""
    inside = (x > 0.0) & (x < 1.0)
    xc = np.clip(x, 0.0, 1.0)
    return np.where(inside, 30.0 * xc * xc * (1.0 - xc) * (1.0 - xc), 0.0)


def bump(x: np.ndarray) -> np.ndarray:
    """16 x^2 (1 - x)^2 on [0, 1], 0 outside: peak 1 at 0.5, integral 8/15, C1 continuous."""
    xc = np.clip(x, 0.0, 1.0)
    return 16.0 * xc * xc * (1.0 - xc) * (1.0 - xc)


def bump_d(x: np.ndarray) -> np.ndarray:
    xc = np.clip(x, 0.0, 1.0)
    inside = (x > 0.0) & (x < 1.0)
    return np.where(inside, 32.0 * xc * (1.0 - xc) * (1.0 - 2.0 * xc), 0.0)


BUMP_INTEGRAL = 8.0 / 15.0


@dataclass
class SpeedProfile:
    """v(t) = v0 + dv * smoothstep((t - t_step) / d_step) + (a / w)(cos(phi) - cos(w t + phi)).

    The first term is a smooth acceleration or braking event (peak |acc| = 1.875 |dv| / d_step), the second
    an oscillating acceleration a sin(w t + phi) (non-zero jerk everywhere). Units m/s, s, rad/s.
    """

    v0: float
    dv: float = 0.0
    t_step: float = 0.0
    d_step: float = 1.0
    a: float = 0.0
    w: float = 1.0
    phi: float = 0.0

    def speed(self, t: np.ndarray) -> np.ndarray:
        x = (t - self.t_step) / self.d_step
        osc = (self.a / self.w) * (np.cos(self.phi) - np.cos(self.w * t + self.phi))
        return self.v0 + self.dv * smoothstep(x) + osc

    def accel(self, t: np.ndarray) -> np.ndarray:
        x = (t - self.t_step) / self.d_step
        return self.dv * smoothstep_d(x) / self.d_step + self.a * np.sin(self.w * t + self.phi)


@dataclass
class HeadingProfile:
    """psi(t) = psi0 + turn * smoothstep((t - t_turn) / d_turn) + sway * bump((t - t_sway) / d_sway).

    `turn` is a lasting heading change (a turn), `sway` a temporary one that returns (a lane change).
    """

    psi0: float
    turn: float = 0.0
    t_turn: float = 0.0
    d_turn: float = 1.0
    sway: float = 0.0
    t_sway: float = 0.0
    d_sway: float = 1.0

    def heading(self, t: np.ndarray) -> np.ndarray:
        return (
            self.psi0
            + self.turn * smoothstep((t - self.t_turn) / self.d_turn)
            + self.sway * bump((t - self.t_sway) / self.d_sway)
        )

    def rate(self, t: np.ndarray) -> np.ndarray:
        return (
            self.turn * smoothstep_d((t - self.t_turn) / self.d_turn) / self.d_turn
            + self.sway * bump_d((t - self.t_sway) / self.d_sway) / self.d_sway
        )


@dataclass
class Trajectory:
    """Planar rigid-body motion of a reference point starting at `start` (x, y) at t = 0, at height z."""

    start: tuple[float, float]
    z: float
    speed: SpeedProfile
    heading: HeadingProfile

    def _velocity_xy(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = self.speed.speed(t)
        psi = self.heading.heading(t)
        return v * np.cos(psi), v * np.sin(psi)

    def position(self, t: np.ndarray) -> np.ndarray:
        """[...] times (s) -> [...,3] positions (m)."""
        t = np.asarray(t, np.float64)
        flat = t.reshape(-1)
        mag = np.abs(flat)
        sign = np.sign(flat)
        # Pieces on a fixed grid (0, 50 ms, 100 ms, ...) plus one partial piece up to |t|: nearby times share
        # their pieces, so positions are consistent with the exact velocities to round-off.
        full = np.floor(mag / _PIECE)
        n_full = int(full.max(initial=0.0))
        lo = np.arange(n_full + 1)[None, :] * _PIECE * np.ones((flat.size, 1))
        hi = np.minimum(lo + _PIECE, mag[:, None])
        hi = np.maximum(hi, lo)  # pieces beyond |t| have zero length
        mid, half = 0.5 * (hi + lo), 0.5 * (hi - lo)
        times = sign[:, None, None] * (mid[..., None] + half[..., None] * _GL_NODES)
        wts = (half[..., None] * _GL_WEIGHTS).reshape(flat.size, -1)
        vx, vy = self._velocity_xy(times.reshape(flat.size, -1))
        x = self.start[0] + sign * (vx * wts).sum(axis=1)
        y = self.start[1] + sign * (vy * wts).sum(axis=1)
        out = np.stack([x, y, np.full_like(x, self.z)], axis=-1)
        return out.reshape(*t.shape, 3)

    def state(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Exact kinematics at times t [...]: position [...,3], yaw [...], velocity [...,3],
        acceleration [...,3] (world, m/s and m/s^2), yaw_rate [...] (rad/s), speed [...]."""
        t = np.asarray(t, np.float64)
        v = self.speed.speed(t)
        dv = self.speed.accel(t)
        psi = self.heading.heading(t)
        dpsi = self.heading.rate(t)
        c, s = np.cos(psi), np.sin(psi)
        zero = np.zeros_like(v)
        vel = np.stack([v * c, v * s, zero], axis=-1)
        # d/dt (v (cos, sin)) = dv (cos, sin) + v dpsi (-sin, cos)
        acc = np.stack([dv * c - v * dpsi * s, dv * s + v * dpsi * c, zero], axis=-1)
        return {
            "position": self.position(t),
            "yaw": psi,
            "velocity": vel,
            "acceleration": acc,
            "yaw_rate": dpsi,
            "speed": np.abs(v),
        }
