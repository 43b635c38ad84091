"""Compiled (numba) shading of single samples: synthetic_shade's textures, sky and lighting, one sample at
a time, for the anti-aliasing sub-samples (synthetic_antialias), which are too many and too scattered for
the per-surface numpy passes of the primary image.

Each function repeats its numpy reference (synthetic_shade.sky_colour, ground_albedo, material_albedo,
lambert and the product in shade_sorted) operation by operation with the same dtypes: float32 where numpy
computes in float32 (float32 arrays with Python constants, which numpy 2 casts to float32, comparisons
included), float64 where numpy promotes (numpy float64 scalars and arrays, Python floats times boolean
masks). No fastmath. The elementary functions (sin, pow) are the C library's, which may differ from numpy's
own vectorised ones in the last bit, so a colour can differ by a float32 ulp (and, rarely, an exposed
sample by one 8-bit level): tests/test_synthetic_antialias.py checks the agreement. A change to a texture
in synthetic_shade must be repeated here (that test fails otherwise).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from slarm_bench.data.synthetic_scene import (
    M_CANOPY,
    M_CAR_BODY,
    M_CAR_CABIN,
    M_CLOTHES,
    M_FACADE,
    M_HEAD,
    M_TRUCK,
    M_TRUNK,
    Scene,
)
from slarm_bench.data.synthetic_shade import GLASS, WHITE_PAINT, YELLOW_PAINT

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
F = np.float32
_F0, _F1, _F2 = F(0.0), F(1.0), F(2.0)
_SKY_CLOUD = np.array([0.96, 0.96, 0.97])
_PAVING = np.array([0.6, 0.58, 0.55])
_CURB = np.array([0.75, 0.74, 0.72])
_FACADE_TOP = np.array([0.32, 0.31, 0.3])
_HEADLAMP, _TAIL_LAMP = np.array([0.95, 0.95, 0.85]), np.array([0.7, 0.06, 0.05])
_TROUSERS, _HAIR = np.array([0.16, 0.17, 0.26]), np.array([0.12, 0.09, 0.07])


def scene_params(scene: Scene) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(sky: horizon 3, zenith 3, cloud phases 4, sun 3, asphalt; road: road edges lo, hi, y_right, y_left,
    y_centre, lane width, lanes same / opposite, cross-street x (nan if none) and half width), tuples of
    floats (passed by value: arrays would cost reference counting on every call), each value computed as
    synthetic_shade computes it."""
    road = scene.road
    lo, hi = road.road_edges
    sky = [*scene.sky_horizon, *scene.sky_zenith, *scene.cloud_phase, *scene.sun, scene.asphalt]
    cross = np.nan if road.cross_x is None else road.cross_x
    values = [lo, hi, road.y_right, road.y_left, road.y_centre, road.lane_width, road.n_same, road.n_opp, cross,
              road.cross_half]
    return tuple(float(v) for v in sky), tuple(float(v) for v in values)


def texture_table(prims32) -> tuple[np.ndarray, ...]:
    """(colour, half, param, facade style, facade window spacing) [P,...] float32 of a float32 primitive
    table (shade.surface_tables), the per-primitive values material_albedo derives, computed as it does."""
    param = prims32.param
    return prims32.colour, prims32.half, param, np.floor(param / 100.0), np.mod(param, 100.0) / 10.0


@numba.njit(**_JIT)
def _frac(x):
    return x - np.floor(x)


@numba.njit(**_JIT)
def _fade(fp, period):
    """synthetic_shade.fade in float32 (period float32)."""
    return min(max(_F1 - _F2 * fp / period, _F0), _F1)


@numba.njit(**_JIT)
def sky_rgb(dx, dy, dz, sky):
    """synthetic_shade.sky_colour of one float32 direction: float64 (r, g, b)."""
    norm = np.sqrt(dx * dx + dy * dy + dz * dz)
    d0, d1, d2 = dx / norm, dy / norm, dz / norm
    el = min(max(d2, _F0), _F1)
    mix = np.float64(min(max(el * F(2.5), _F0), _F1) ** F(0.7))
    qx = d0 / (el + F(0.08))
    qy = d1 / (el + F(0.08))
    dens = (
        np.sin(np.float64(F(1.3) * qx) + sky[6]) * np.sin(np.float64(F(1.1) * qy) + sky[7])
        + 0.5 * np.sin(np.float64(F(2.7) * qx - F(1.9) * qy) + sky[8])
        + 0.25 * np.sin(np.float64(F(5.3) * qx + F(4.1) * qy) + sky[9])
    )
    cloud = min(max((dens - 0.35) * 1.6, 0.0), 1.0) * np.float64(min(max(el * F(8.0), _F0), _F1)) * 0.85
    r = sky[0] + mix * (sky[3] - sky[0])
    g = sky[1] + mix * (sky[4] - sky[1])
    b = sky[2] + mix * (sky[5] - sky[2])
    return r + cloud * (_SKY_CLOUD[0] - r), g + cloud * (_SKY_CLOUD[1] - g), b + cloud * (_SKY_CLOUD[2] - b)


@numba.njit(**_JIT)
def _paint(value, k, paint):
    """out * (1 - k) + paint * k of synthetic_shade.ground_albedo's lane markings, for one channel."""
    return F(np.float64(value * (_F1 - k)) + paint * np.float64(k))


@numba.njit(**_JIT)
def ground_albedo(x, y, fp, asphalt, road):
    """synthetic_shade.ground_albedo of one float32 ground point (x, y) and footprint fp: float32
    (r, g, b). road: the road values of `scene_params`."""
    lo, hi, y_right, y_left, y_centre, lane = road[0], road[1], road[2], road[3], road[4], road[5]
    n_same, n_opp, cross_x, cross_half = int(road[6]), int(road[7]), road[8], road[9]
    crossing = not math.isnan(cross_x)
    is_road = (y >= F(lo)) and (y <= F(hi))
    if crossing:
        is_road = is_road or abs(x - F(cross_x)) <= F(cross_half)
    if not is_road:  # sidewalk: paving tiles, grout lines, curb stones
        tile = np.float64(_F1 + F(0.05) * np.sin(F(0.17) * x + F(0.11) * y))
        lines = (_frac(x / F(1.2)) < F(0.04)) or (_frac(y / F(1.2)) < F(0.04))
        grout = (_F1 if lines else _F0) * _fade(fp, F(1.2))
        scale = np.float64(_F1 - F(0.2) * grout)
        if abs(y - F(lo)) < F(0.3) or abs(y - F(hi)) < F(0.3):
            return F(_CURB[0]), F(_CURB[1]), F(_CURB[2])
        return F(_PAVING[0] * tile * scale), F(_PAVING[1] * tile * scale), F(_PAVING[2] * tile * scale)
    a = F(asphalt) * (
        _F1
        + F(0.07) * np.sin(F(0.31) * x + F(0.5) * np.sin(F(0.13) * y)) * np.sin(F(0.23) * y + F(0.7))
        + F(0.05) * np.sin(F(0.071) * x - F(0.05) * y) * _fade(fp, F(10.0))
    )
    r, g, b = a, a, a * F(1.04)
    in_lanes = (y >= F(y_right - 0.2)) and (y <= F(y_left + 0.2))
    if crossing:
        in_lanes = in_lanes and abs(x - F(cross_x)) > F(cross_half)
    if not in_lanes:
        return r, g, b
    white = abs(y - F(y_right)) < F(0.08) or abs(y - F(y_left)) < F(0.08)
    dashed = _frac(x / F(12.0)) < F(0.25)
    for i in range(1, n_same):
        white = white or (abs(y - F(y_right + i * lane)) < F(0.07) and dashed)
    for i in range(1, n_opp):
        white = white or (abs(y - F(y_centre + i * lane)) < F(0.07) and dashed)
    yellow = abs(abs(y - F(y_centre)) - F(0.12)) < F(0.06)
    k = _fade(fp, F(0.5))
    if white:
        r, g, b = _paint(r, k, WHITE_PAINT[0]), _paint(g, k, WHITE_PAINT[1]), _paint(b, k, WHITE_PAINT[2])
    if yellow:
        r, g, b = _paint(r, k, YELLOW_PAINT[0]), _paint(g, k, YELLOW_PAINT[1]), _paint(b, k, YELLOW_PAINT[2])
    return r, g, b


@numba.njit(**_JIT)
def _facade(c0, c1, c2, style, spacing, u, z, face, fp):
    """The M_FACADE branch of synthetic_shade.material_albedo: float64 (r, g, b)."""
    if face == 2:
        return _FACADE_TOP[0], _FACADE_TOP[1], _FACADE_TOP[2]
    wall_k = _F1 + F(0.06) * np.sin(F(0.21) * u + F(0.3) * z) * _fade(fp, F(8.0))
    zf = _frac(z / F(3.2))
    shift = 0.5 if _frac(z / F(0.6)) < F(0.5) else 0.0
    brick = style == 1 and ((_frac(z / F(0.3)) < F(0.15)) or (_frac(np.float64(u / F(0.9)) + shift) < 0.06))
    panel = style == 2 and ((zf < F(0.06)) or (_frac(u / (_F2 * spacing)) < F(0.03)))
    # numpy evaluates every term for every point; a term multiplied by an exact 0 is skipped here (the sum
    # is the same: x - 0.0 * f == x and x + 0.0 * f == x for finite f).
    dim = 1.0
    if brick:
        dim = dim - 0.25 * np.float64(_fade(fp, F(0.6)))
    if panel:
        dim = dim - 0.3 * np.float64(_fade(fp, F(3.0)))
    us = _frac(u / spacing)
    window = us > F(0.22) and us < F(0.78) and zf > F(0.3) and zf < F(0.85) and z > F(3.2)
    u2 = _frac(u / (_F2 * spacing))
    shop = z > F(0.4) and z < F(2.6) and u2 > F(0.08) and u2 < F(0.92)
    k = _fade(fp, spacing * F(0.8)) if window or shop else _F0
    keep, k64 = _F1 - k, np.float64(k)
    r = np.float64(F(np.float64(c0 * wall_k) * dim) * keep)
    g = np.float64(F(np.float64(c1 * wall_k) * dim) * keep)
    b = np.float64(F(np.float64(c2 * wall_k) * dim) * keep)
    if k64 == 0.0:
        return r, g, b
    glass_k = np.float64(_F1 + F(0.25) * np.sin(F(2.3) * np.floor(u / spacing) + F(1.7) * np.floor(z / F(3.2))))
    return r + GLASS[0] * glass_k * k64, g + GLASS[1] * glass_k * k64, b + GLASS[2] * glass_k * k64


@numba.njit(**_JIT)
def material_albedo(mat, lx, ly, lz, height, face, fp, c0, c1, c2, hx, hy, hz, param, style, spacing):
    """synthetic_shade.material_albedo of one point: material `mat`, float32 local (lx, ly, lz), height and
    footprint fp, face id, and the primitive's float32 colour, half extents, param, facade style and
    spacing (texture_table). float64 (r, g, b), each equal to the float32 or float64 value numpy computes."""
    along = ly if face == 0 else lx
    if mat == M_FACADE:
        return _facade(c0, c1, c2, style, spacing, along, height, face, fp)
    if mat == M_CAR_BODY:
        if face == 0 and abs(ly) > hy - F(0.35) and height > F(0.5) and height < F(0.68):
            if lx > 0:
                return np.float64(F(_HEADLAMP[0])), np.float64(F(_HEADLAMP[1])), np.float64(F(_HEADLAMP[2]))
            return np.float64(F(_TAIL_LAMP[0])), np.float64(F(_TAIL_LAMP[1])), np.float64(F(_TAIL_LAMP[2]))
        if height < F(0.32):  # tyres and sills
            return np.float64(F(0.07)), np.float64(F(0.07)), np.float64(F(0.07))
        return np.float64(c0), np.float64(c1), np.float64(c2)
    if mat == M_CAR_CABIN:
        hu = hy if face == 0 else hx
        if face != 2 and abs(along) < hu - F(0.12) and lz > -hz + F(0.04) and lz < hz - F(0.07):
            return np.float64(F(GLASS[0])), np.float64(F(GLASS[1])), np.float64(F(GLASS[2]))
        return np.float64(c0), np.float64(c1), np.float64(c2)
    if mat == M_TRUCK:
        if height < F(0.5):
            return 0.08, 0.08, 0.08
        k = 1.0 - (0.15 if _frac(along / F(1.2)) < F(0.05) else 0.0) * np.float64(_fade(fp, F(1.2)))
        return np.float64(c0) * k, np.float64(c1) * k, np.float64(c2) * k
    if mat == M_CLOTHES:
        if param == 0 and height < F(0.8):  # trousers
            return np.float64(F(_TROUSERS[0])), np.float64(F(_TROUSERS[1])), np.float64(F(_TROUSERS[2]))
        k = F(0.88) + F(0.12) * np.sign(np.sin(height * F(22.0))) * _fade(fp, F(0.3))
        return np.float64(c0 * k), np.float64(c1 * k), np.float64(c2 * k)
    if mat == M_HEAD:
        if lz > F(0.035):  # hair
            return np.float64(F(_HAIR[0])), np.float64(F(_HAIR[1])), np.float64(F(_HAIR[2]))
        return np.float64(c0), np.float64(c1), np.float64(c2)
    if mat == M_TRUNK:
        k = F(0.85) + F(0.15) * np.sin(F(20.0) * (lx + ly)) * _fade(fp, F(0.3))
        return np.float64(c0 * k), np.float64(c1 * k), np.float64(c2 * k)
    if mat == M_CANOPY:
        ph = param
        k = (
            F(0.85)
            + F(0.15) * _fade(fp, _F1) * np.sin(F(4.0) * lx + ph) * np.sin(F(4.0) * ly)
            + F(0.1) * np.sin(F(3.0) * lz + ph)
        )
        return np.float64(c0 * k), np.float64(c1 * k), np.float64(c2 * k)
    return np.float64(c0), np.float64(c1), np.float64(c2)  # M_POLE, M_BIKE: plain


@numba.njit(**_JIT)
def lambert(n0, n1, n2, sky):
    """synthetic_shade.lambert of one normal (sun = sky[10:13]): float64."""
    cos = np.float64(n0) * sky[10] + np.float64(n1) * sky[11] + np.float64(n2) * sky[12]
    return 0.62 + 0.45 * max(cos, 0.0)
