"""Textures and shading of the synthetic dataset.

Textures are closed-form functions of object coordinates (world coordinates for the static world, the
primitive's own frame for agents), so a surface keeps its colour as it moves. They are structured (lane
markings, tiles, windows, bricks, low-frequency sinusoids), never per-pixel noise, and their fine detail
fades out where a pixel's footprint on the surface exceeds half the pattern's period (a closed-form
mip-map), which keeps far surfaces free of aliasing and the images compressible.

synthetic_shade_kernels repeats sky_colour, ground_albedo, material_albedo and lambert one sample at a time
for the anti-aliasing sub-samples: a change here must be made there too (tests/test_synthetic_antialias.py
compares them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from slarm_bench.data import synthetic_kernels as kernels
from slarm_bench.data.synthetic_raycast import BOX, CYLINDER, Primitives
from slarm_bench.data.synthetic_scene import (
    M_CANOPY,
    M_CAR_BODY,
    M_CAR_CABIN,
    M_CLOTHES,
    M_FACADE,
    M_HEAD,
    M_TRUCK,
    M_TRUNK,
    ROAD,
    SIDEWALK,
    SKY,
    Scene,
)

GLASS = np.array([0.11, 0.14, 0.2])
WHITE_PAINT = np.array([0.9, 0.9, 0.87])
YELLOW_PAINT = np.array([0.86, 0.7, 0.18])


def fade(footprint: np.ndarray, period: float) -> np.ndarray:
    """Contrast kept by a pattern of `period` metres seen with pixel `footprint` metres: 1 -> 0."""
    return np.clip(1.0 - 2.0 * footprint / period, 0.0, 1.0)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def sky_colour(scene: Scene, dirs: np.ndarray) -> np.ndarray:
    """[N,3] sky radiance for world directions [N,3]: a gradient plus clouds, a function of direction only
    (the sky is at infinity)."""
    d = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    el = np.clip(d[:, 2], 0.0, 1.0)
    mix = np.clip(el * 2.5, 0.0, 1.0) ** 0.7
    col = scene.sky_horizon + mix[:, None] * (scene.sky_zenith - scene.sky_horizon)
    qx = d[:, 0] / (el + 0.08)
    qy = d[:, 1] / (el + 0.08)
    ph = scene.cloud_phase
    dens = (
        np.sin(1.3 * qx + ph[0]) * np.sin(1.1 * qy + ph[1])
        + 0.5 * np.sin(2.7 * qx - 1.9 * qy + ph[2])
        + 0.25 * np.sin(5.3 * qx + 4.1 * qy + ph[3])
    )
    cloud = np.clip((dens - 0.35) * 1.6, 0.0, 1.0) * np.clip(el * 8.0, 0.0, 1.0) * 0.85
    return col + cloud[:, None] * (np.array([0.96, 0.96, 0.97]) - col)


def ground_albedo(
    scene: Scene, x: np.ndarray, y: np.ndarray, fp: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Albedo [N,3] and road flag [N] of ground points (x, y), pixel footprints fp [N] (m)."""
    road = scene.road
    is_road = road.is_road(x, y)
    a = scene.asphalt * (
        1.0
        + 0.07 * np.sin(0.31 * x + 0.5 * np.sin(0.13 * y)) * np.sin(0.23 * y + 0.7)
        + 0.05 * np.sin(0.071 * x - 0.05 * y) * fade(fp, 10.0)
    )
    out = np.repeat(a[:, None], 3, axis=1)
    out[:, 2] *= 1.04
    lo, hi = road.road_edges
    in_lanes = (y >= road.y_right - 0.2) & (y <= road.y_left + 0.2)
    if road.cross_x is not None:
        in_lanes &= np.abs(x - road.cross_x) > road.cross_half
    mark_fade = fade(fp, 0.5)
    white = np.zeros(x.shape, bool)
    for yb in (road.y_right, road.y_left):
        white |= np.abs(y - yb) < 0.08
    dashed = _frac(x / 12.0) < 0.25
    for i in range(1, road.n_same):
        white |= (np.abs(y - (road.y_right + i * road.lane_width)) < 0.07) & dashed
    for i in range(1, road.n_opp):
        white |= (np.abs(y - (road.y_centre + i * road.lane_width)) < 0.07) & dashed
    yellow = np.abs(np.abs(y - road.y_centre) - 0.12) < 0.06
    for mask, paint in ((white & in_lanes, WHITE_PAINT), (yellow & in_lanes, YELLOW_PAINT)):
        k = mark_fade[mask, None]
        out[mask] = out[mask] * (1 - k) + paint * k
    # Sidewalk: paving tiles with grout lines and a bright curb stone along the road edge.
    side = ~is_road
    xs, ys = x[side], y[side]
    base = np.array([0.6, 0.58, 0.55]) * (1.0 + 0.05 * np.sin(0.17 * xs + 0.11 * ys))[:, None]
    grout = ((_frac(xs / 1.2) < 0.04) | (_frac(ys / 1.2) < 0.04)) * fade(fp[side], 1.2)
    base *= (1.0 - 0.2 * grout)[:, None]
    curb = (np.abs(ys - lo) < 0.3) | (np.abs(ys - hi) < 0.3)
    base[curb] = np.array([0.75, 0.74, 0.72])
    out[side] = base
    return out, is_road


def material_albedo(
    mat: int,
    prims: Primitives,
    idx: np.ndarray,
    local: np.ndarray,
    height: np.ndarray,
    face: np.ndarray,
    fp: np.ndarray,
) -> np.ndarray:
    """Albedo [N,3] of points on primitives of one material `mat`.

    idx [N] rows of `prims`; local [N,3] point in the primitive frame; height [N] above the ground (m);
    face [N] int: 0/1/2 the box axis of the face (x, y, z), for cylinders 0 side and 2 cap; fp [N] footprint.
    """
    colour = prims.colour[idx].astype(np.float32, copy=False)
    half = prims.half[idx].astype(np.float32, copy=False)
    lx, ly, lz = local[:, 0], local[:, 1], local[:, 2]
    along = np.where(face == 0, ly, lx)  # horizontal coordinate on a vertical box face
    if mat == M_FACADE:
        param = prims.param[idx].astype(np.float32, copy=False)
        style = np.floor(param / 100.0)
        spacing = np.mod(param, 100.0) / 10.0
        u, z = along, height
        wall = colour * (1.0 + 0.06 * np.sin(0.21 * u + 0.3 * z) * fade(fp, 8.0))[:, None]
        zf = _frac(z / 3.2)
        brick = (style == 1) & (
            (_frac(z / 0.3) < 0.15) | (_frac(u / 0.9 + 0.5 * (_frac(z / 0.6) < 0.5)) < 0.06)
        )
        panel = (style == 2) & ((zf < 0.06) | (_frac(u / (2 * spacing)) < 0.03))
        wall *= (1.0 - 0.25 * brick * fade(fp, 0.6) - 0.3 * panel * fade(fp, 3.0))[:, None]
        us = _frac(u / spacing)
        window = (us > 0.22) & (us < 0.78) & (zf > 0.3) & (zf < 0.85) & (z > 3.2)
        u2 = _frac(u / (2 * spacing))
        shop = (z > 0.4) & (z < 2.6) & (u2 > 0.08) & (u2 < 0.92)
        glass = GLASS * (1.0 + 0.25 * np.sin(2.3 * np.floor(u / spacing) + 1.7 * np.floor(z / 3.2)))[:, None]
        k = ((window | shop) * fade(fp, spacing * 0.8))[:, None]
        res = wall * (1 - k) + glass * k
        res[face == 2] = np.array([0.32, 0.31, 0.3])
        return res
    if mat == M_CAR_BODY:
        res = colour.copy()
        res[height < 0.32] = 0.07  # tyres and sills
        lamp = (face == 0) & (np.abs(ly) > half[:, 1] - 0.35) & (height > 0.5) & (height < 0.68)
        front = lx > 0
        res[lamp & front] = np.array([0.95, 0.95, 0.85])
        res[lamp & ~front] = np.array([0.7, 0.06, 0.05])
        return res
    if mat == M_CAR_CABIN:
        hu = np.where(face == 0, half[:, 1], half[:, 0])
        pane = (
            (face != 2) & (np.abs(along) < hu - 0.12) & (lz > -half[:, 2] + 0.04) & (lz < half[:, 2] - 0.07)
        )
        res = colour.copy()
        res[pane] = GLASS
        return res
    if mat == M_TRUCK:
        res = colour * (1.0 - 0.15 * (_frac(along / 1.2) < 0.05) * fade(fp, 1.2))[:, None]
        res[height < 0.5] = 0.08
        return res
    if mat == M_CLOTHES:
        res = colour * (0.88 + 0.12 * np.sign(np.sin(height * 22.0)) * fade(fp, 0.3))[:, None]
        res[(prims.param[idx] == 0) & (height < 0.8)] = np.array([0.16, 0.17, 0.26])  # trousers
        return res
    if mat == M_HEAD:
        res = colour.copy()
        res[lz > 0.035] = np.array([0.12, 0.09, 0.07])  # hair
        return res
    if mat == M_TRUNK:
        return colour * (0.85 + 0.15 * np.sin(20.0 * (lx + ly)) * fade(fp, 0.3))[:, None]
    if mat == M_CANOPY:
        ph = prims.param[idx].astype(np.float32, copy=False)
        v = (
            0.85
            + 0.15 * fade(fp, 1.0) * np.sin(4.0 * lx + ph) * np.sin(4.0 * ly)
            + 0.1 * np.sin(3.0 * lz + ph)
        )
        return colour * v[:, None]
    return colour  # M_POLE, M_BIKE: plain


def surface_frame(
    kind: int, prims: Primitives, idx: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local coordinates [N,3], face id [N] and world normal [N,3] of points [N,3] on primitives idx [N],
    all of one `kind`."""
    dtype = points.dtype
    c, s = np.cos(prims.yaw[idx]).astype(dtype), np.sin(prims.yaw[idx]).astype(dtype)
    rel = points - prims.centre[idx].astype(dtype)
    local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], axis=1)
    half = prims.half[idx].astype(dtype)
    n = local.shape[0]
    if kind == BOX:
        ratio = np.abs(local) / half
        face = np.argmax(ratio, axis=1)
        n_local = np.zeros_like(local)
        rows = np.arange(n)
        n_local[rows, face] = np.sign(local[rows, face])
    elif kind == CYLINDER:
        cap = np.abs(local[:, 2]) >= half[:, 2] * (1.0 - 1e-6)
        n_local = local / half[:, :1]
        n_local[:, 2] = 0.0
        n_local[cap] = np.array([0.0, 0.0, 1.0])
        face = np.where(cap, 2, 0)
    else:
        n_local = local / half[:, :1]
        face = np.zeros(n, np.int64)
    normal = np.stack(
        [c * n_local[:, 0] - s * n_local[:, 1], s * n_local[:, 0] + c * n_local[:, 1], n_local[:, 2]], axis=1
    )
    return local, face, normal


def lambert(normal: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """[N] brightness: ambient sky light plus a sun term."""
    # Explicit products rather than a BLAS call: results must not depend on the BLAS build or threads.
    cos = normal[:, 0] * sun[0] + normal[:, 1] * sun[1] + normal[:, 2] * sun[2]
    return 0.62 + 0.45 * np.clip(cos, 0.0, None)


def surface_tables(prims: Primitives) -> tuple[tuple[np.ndarray, ...], Primitives]:
    """The float32 copies of a primitive table that `shade_sorted` works with: (cos yaw, sin yaw, centre,
    half) for kernels.surface_frame, and the table with float32 colour, half and param for the textures
    (they cast each gathered value the same way). Computed once per frame, shared by its cameras."""
    cos32, sin32 = np.cos(prims.yaw).astype(np.float32), np.sin(prims.yaw).astype(np.float32)
    half32 = prims.half.astype(np.float32)
    frame32 = (cos32, sin32, prims.centre.astype(np.float32), half32)
    prims32 = dataclasses.replace(
        prims, colour=prims.colour.astype(np.float32), half=half32, param=prims.param.astype(np.float32)
    )
    return frame32, prims32


def shade_sorted(
    world: Scene,
    prims: Primitives,
    tables: tuple[tuple[np.ndarray, ...], Primitives],
    counts: np.ndarray,
    buffers: tuple[np.ndarray, ...],
    sky_rgb: Callable[[int, int], np.ndarray],
    labels: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Linear colours [N,3] float32 (before exposure) and, when `labels`, semantic classes [N] uint8 of N
    samples sorted by surface key: `counts` and `buffers` come from kernels.sort_pixels, `tables` from
    `surface_tables(prims)`, and sky_rgb(a, b) gives the sky radiance [b-a,3] of sorted samples a..b.

    Each texture runs once per surface key on a contiguous slice. `dist` (the footprint scale that
    sort_pixels was given) is divided by cos(incidence) here (ground) or in kernels.surface_frame."""
    order, t_s, id_s, pts, pts32, d32, dn32, dist = buffers
    frame32, prims32 = tables
    bounds = np.concatenate([[0], np.cumsum(counts)])
    n = t_s.size
    rgb = np.zeros((n, 3), np.float32)
    semantic = np.full(n, SKY, np.uint8) if labels else None
    for key_value in np.nonzero(np.diff(bounds))[0]:
        a, b = bounds[key_value], bounds[key_value + 1]
        if key_value == 0:
            rgb[a:b] = sky_rgb(a, b)
        elif key_value == 1:
            cos_g = np.abs(d32[a:b, 2]) / dn32[a:b]
            fp = dist[a:b] / np.maximum(cos_g, 0.05)
            albedo, is_road = ground_albedo(world, pts32[a:b, 0], pts32[a:b, 1], fp)
            rgb[a:b] = albedo * lambert(np.array([[0.0, 0.0, 1.0]]), world.sun)[:, None]
            if labels:
                semantic[a:b] = np.where(is_road, ROAD, SIDEWALK)
        else:
            mat, kind = divmod(int(key_value) - 2, 3)
            ids = id_s[a:b]
            local, face, normal, fp = kernels.surface_frame(
                kind, ids, pts32[a:b], d32[a:b], dn32[a:b], dist[a:b], *frame32
            )
            albedo = material_albedo(mat, prims32, ids, local, pts32[a:b, 2], face, fp)
            rgb[a:b] = albedo * lambert(normal, world.sun)[:, None]
            if labels:
                semantic[a:b] = prims.label[ids]
    return rgb, semantic
