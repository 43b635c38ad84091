"""Adaptive supersampling of the synthetic camera images (the generator's `antialias=S` option).

A real pixel integrates the light over its area; one ray through its centre aliases every geometric edge
and hard texture edge. After the primary pass (one ray per pixel centre, which alone makes every ground
truth field), `Supersampler.camera` finds the pixels whose colour is likely aliased and replaces their
colour with the box-filtered mean of an S x S regular grid of rays inside the pixel:

- an edge pixel: the surface hit by its centre ray (sky, ground, or which primitive) differs from that of
  any of its 8 neighbours. The 3x3 neighbourhood's centres surround the pixel, so a straight silhouette
  edge that crosses the pixel's area always puts a different surface under one of them. (Depth is
  continuous within one surface: the primitives are convex and the ground is a plane, so no depth
  criterion is needed.) An object thinner than a pixel that no centre ray of the neighbourhood hits is
  not detected: it stays missing, as with one ray per pixel.
- a contrast pixel: the sum over R, G, B of the absolute difference of its exposed 8-bit colour and that
  of a neighbour exceeds CONTRAST_THRESHOLD (texture edges: windows, lane markings, grout lines; box
  edges between two faces of one primitive).

Sub-sample (i, j) of pixel (row, col) goes through (col + (j + 0.5) / S, row + (i + 0.5) / S). It is cast
against the same primitives and ground with the same arithmetic (`cast_subsamples` repeats
kernels.cast_kernel's operations) and shaded like a primary sample: the same textures (numba copies of
synthetic_shade's, synthetic_shade_kernels, equal to them to float32 round-off), with the texture
footprint of a pixel of the image (the closed-form prefilter of synthetic_shade is the pixel's, the S x S
box then integrates the geometry), the same lighting and the same per-camera exposure to 8 bits. The S^2
exposed 8-bit values are averaged in float32 and rounded half to even, as
`np.round(images.astype(np.float32).reshape(..., S, ..., S, 3).mean(...))` averages a render at S times
the resolution (with that footprint) down, so a supersampled pixel equals that reference's pixel (tested;
identical bytes when this was written). For odd S the centre sub-sample is the primary ray itself (same
direction bits), so it is reused, not recast.

Only colours change: depth, flow, semantics, instances, masks, boxes and lidar keep the primary pass's
point samples. Everything is deterministic (numba kernels without fastmath or threads, as in
synthetic_kernels). Tests: tests/test_synthetic_antialias.py; fidelity and speed: benchmarks/bench_antialias.py.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from slarm_bench.data import synthetic_kernels as kernels
from slarm_bench.data import synthetic_raycast as rc
from slarm_bench.data import synthetic_shade_kernels as sk
from slarm_bench.data.synthetic_kernels import _MIN_COS, BOX, CYLINDER, EPS, _nan_max, _nan_min
from slarm_bench.data.synthetic_scene import Scene

MAX_SAMPLES = 16
# Sum over R, G, B of |difference| (8-bit levels) between neighbours above which a pixel is supersampled
# (benchmarks/bench_antialias.py measures the fidelity and speed it trades).
CONTRAST_THRESHOLD = 64
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
_NEIGHBOURS = ((0, 1), (1, -1), (1, 0), (1, 1))  # half of the 8: each pair is visited once


@numba.njit(**_JIT)
def edge_pixels(t_hit, idx, image, height, width, threshold):
    """Row-major indices [M] int64 of the pixels to supersample (see the module docstring).

    t_hit [N] float64 (inf = sky) and idx [N] int32 (-1 = ground or sky) of the primary rays, image [N,3]
    uint8 the exposed primary colours, N = height * width; threshold in summed 8-bit levels."""
    n = height * width
    surface = np.empty(n, np.int64)
    for p in range(n):
        surface[p] = idx[p] if math.isfinite(t_hit[p]) else -2
    flag = np.zeros(n, np.bool_)
    for r in range(height):
        for c in range(width):
            p = r * width + c
            for dr, dc in _NEIGHBOURS:
                rr, cc = r + dr, c + dc
                if rr >= height or cc < 0 or cc >= width:
                    continue
                q = rr * width + cc
                differs = surface[p] != surface[q]
                if not differs:
                    contrast = 0
                    for ch in range(3):
                        contrast += abs(np.int64(image[p, ch]) - np.int64(image[q, ch]))
                    differs = contrast > threshold
                if differs:
                    flag[p] = True
                    flag[q] = True
    return np.nonzero(flag)[0]


@numba.njit(**_JIT)
def subsample_rays(pixels, width, samples, skip_centre, x_rot, y_rot, rot2, origin_z, dirs, norm, t_ground):
    """World directions (camera z = 1) dirs [M*n,3], their norms [M*n] and ground-plane hits t_ground
    [M*n] of the n sub-samples of each pixel in pixels [M]: row-major over the S x S grid, for odd S
    (skip_centre) without the centre, which is the primary ray.

    x_rot [W,S,3] = rot[:, 0] * x and y_rot [H,S,3] = rot[:, 1] * y of the sub-sample columns and rows
    (`direction_tables`), rot2 [3] = rot[:, 2]: each direction is (rot[:, 0] x + rot[:, 1] y) + rot[:, 2]
    as in synthetic._camera_directions, the norm as `np.sqrt((d * d).sum(-1))`, the ground hit as
    synthetic_raycast.ground_hits."""
    s = 0
    centre = samples // 2
    for m in range(pixels.shape[0]):
        row, col = pixels[m] // width, pixels[m] % width
        for a in range(samples):
            for b in range(samples):
                if skip_centre and a == centre and b == centre:
                    continue
                for i in range(3):
                    dirs[s, i] = x_rot[col, b, i] + y_rot[row, a, i] + rot2[i]
                dz = dirs[s, 2]
                norm[s] = np.sqrt(dirs[s, 0] * dirs[s, 0] + dirs[s, 1] * dirs[s, 1] + dz * dz)
                t_ground[s] = -origin_z / dz if origin_z > 0 and dz < -EPS else np.inf
                s += 1


def direction_tables(samples: int, k: np.ndarray, rot: np.ndarray, height: int, width: int):
    """(x_rot [W,S,3], y_rot [H,S,3]) of `subsample_rays`: rot[:, 0] * x and rot[:, 1] * y with
    x = (col + (j + 0.5) / S - cx) / fx and y = (row + (i + 0.5) / S - cy) / fy."""
    grid = (np.arange(samples) + 0.5) / samples
    x = (np.arange(width)[:, None] + grid[None, :] - k[0, 2]) / k[0, 0]
    y = (np.arange(height)[:, None] + grid[None, :] - k[1, 2]) / k[1, 1]
    return np.ascontiguousarray(rot[:, 0] * x[..., None]), np.ascontiguousarray(rot[:, 1] * y[..., None])


@numba.njit(**_JIT)
def cast_subsamples(pixels, n_sub, width, dirs, kind, rel, cos_yaw, sin_yaw, half, rel_sq, rects, best, index):
    """kernels.cast_kernel for the n_sub sub-sample rays dirs [M*n_sub,3] of each pixel in pixels [M]
    (row-major, increasing): primitive i is tested against the sub-samples of the listed pixels inside
    rects[i], in primitive order and with the same operations, updating best [M*n_sub] (ground hits on
    entry) and index [M*n_sub] int32 (-1 on entry).

    rects are the primary cast's rc.camera_rects, which hold every pixel that any point of a primitive's
    projection [lo, hi] falls in, not only centres: pixel j (a sub-sample in (j, j + 1)) can see it only
    if lo - 1 < j < hi, and the window [floor(lo - 0.5), ceil(hi - 0.5)] contains every such j."""
    for i in range(kind.shape[0]):
        r0, r1, c0, c1 = rects[i, 0], rects[i, 1], rects[i, 2], rects[i, 3]
        if r1 <= r0 or c1 <= c0:
            continue
        rx, ry, rz = rel[i, 0], rel[i, 1], rel[i, 2]
        c, s = cos_yaw[i], sin_yaw[i]
        ox, oy = c * rx + s * ry, -s * rx + c * ry
        hx, hy, hz = half[i, 0], half[i, 1], half[i, 2]
        cc = rx * rx + ry * ry - hx * hx if kind[i] == CYLINDER else rel_sq[i] - hx * hx
        if kind[i] != BOX and kind[i] != CYLINDER and cc <= 0:
            continue  # a sphere around the origin is never hit (cast_kernel skips it too)
        top = not (rz - hz) * hz <= 0
        bottom = not (rz + hz) * -hz <= 0
        for r in range(r0, r1):
            lo = np.searchsorted(pixels, r * width + c0)
            hi = np.searchsorted(pixels, r * width + c1)
            for ray in range(lo * n_sub, hi * n_sub):
                dx, dy, dz = dirs[ray, 0], dirs[ray, 1], dirs[ray, 2]
                if kind[i] == BOX:
                    t = _box(c, s, ox, oy, rz, hx, hy, hz, dx, dy, dz)
                elif kind[i] == CYLINDER:
                    t = _cylinder(rx, ry, rz, hx, hz, cc, top, bottom, dx, dy, dz)
                else:
                    t = _sphere(rx, ry, rz, cc, dx, dy, dz)
                if t < best[ray]:
                    best[ray] = t
                    index[ray] = i


@numba.njit(**_JIT)
def _box(c, s, ox, oy, oz, hx, hy, hz, dx, dy, dz):
    inv = 1.0 / (c * dx + s * dy)
    t1 = (-hx - ox) * inv
    t2 = (hx - ox) * inv
    t_near = _nan_max(-np.inf, _nan_min(t1, t2))
    t_far = _nan_min(np.inf, _nan_max(t1, t2))
    inv = 1.0 / (-s * dx + c * dy)
    t1 = (-hy - oy) * inv
    t2 = (hy - oy) * inv
    t_near = _nan_max(t_near, _nan_min(t1, t2))
    t_far = _nan_min(t_far, _nan_max(t1, t2))
    inv = 1.0 / dz
    t1 = (-hz - oz) * inv
    t2 = (hz - oz) * inv
    t_near = _nan_max(t_near, _nan_min(t1, t2))
    t_far = _nan_min(t_far, _nan_max(t1, t2))
    return t_near if t_near <= t_far and t_near > EPS else np.inf


@numba.njit(**_JIT)
def _cylinder(rx, ry, rz, rad, hz, cc, top, bottom, dx, dy, dz):
    out = np.inf
    if cc > 0:
        a = dx * dx + dy * dy
        b = 2.0 * (rx * dx + ry * dy)
        disc = b * b - 4.0 * a * cc
        t = (-b - np.sqrt(disc)) / (2.0 * a)
        z = rz + t * dz
        if disc >= 0 and t > EPS and abs(z) <= hz:
            out = t
    for cap, seen in ((hz, top), (-hz, bottom)):
        if not seen:
            continue
        t = (cap - rz) / dz
        px = rx + t * dx
        py = ry + t * dy
        if t > EPS and px * px + py * py <= rad * rad and t < out:
            out = t
    return out


@numba.njit(**_JIT)
def _sphere(rx, ry, rz, cc, dx, dy, dz):
    a = dx * dx + dy * dy + dz * dz
    b = 2.0 * (rx * dx + ry * dy + rz * dz)
    disc = b * b - 4.0 * a * cc
    t = (-b - np.sqrt(disc)) / (2.0 * a)
    return t if disc >= 0 and t > EPS else np.inf


@numba.njit(**_JIT)
def shade_subsamples(best, index, dirs, norm, origin, focal, kind, material, frame32, table, sky, road, gain,
                     n_sub, sums):
    """Shade and expose the n_sub sub-sample rays of each pixel (best [M*n_sub] hit parameter, inf = sky;
    index [M*n_sub] primitive, -1 = ground) and add their 8-bit values to sums [M,3] int64.

    The primary pass's operations (kernels.sort_pixels' hit point, float32 copies and footprint scale
    t |d| / focal, shade.shade_sorted's footprint and lighting, kernels.expose) with the numba textures of
    synthetic_shade_kernels. frame32 = (cos yaw, sin yaw, centre, half) float32 (shade.surface_tables),
    table = synthetic_shade_kernels.texture_table; sky, road from synthetic_shade_kernels.scene_params."""
    cos32, sin32, centre32, half32 = frame32
    colour32, _, param32, style32, spacing32 = table
    lam_up = sk.lambert(0.0, 0.0, 1.0, sky)
    for m in range(sums.shape[0]):
        for s in range(m * n_sub, (m + 1) * n_sub):
            t, i = best[s], index[s]
            dx, dy, dz = np.float32(dirs[s, 0]), np.float32(dirs[s, 1]), np.float32(dirs[s, 2])
            if not math.isfinite(t):
                r, g, b = sk.sky_rgb(dx, dy, dz, sky)
                rgb = (np.float32(r), np.float32(g), np.float32(b))
            else:
                x = np.float32(origin[0] + t * dirs[s, 0])
                y = np.float32(origin[1] + t * dirs[s, 1])
                z = np.float32(origin[2] + t * dirs[s, 2])
                dn = np.float32(norm[s])
                dist = np.float32(t * norm[s] / focal)
                if i < 0:
                    fp = dist / max(abs(dz) / dn, _MIN_COS)
                    r, g, b = sk.ground_albedo(x, y, fp, sky[13], road)
                    lam = lam_up
                else:
                    hx, hy, hz = half32[i, 0], half32[i, 1], half32[i, 2]
                    lx, ly, lz, face, n0, n1, n2, fp = kernels.surface_point(
                        kind[i], x, y, z, dx, dy, dz, dn, dist, cos32[i], sin32[i], centre32[i, 0], centre32[i, 1],
                        centre32[i, 2], hx, hy, hz,
                    )
                    r, g, b = sk.material_albedo(
                        material[i], lx, ly, lz, z, face, fp, colour32[i, 0], colour32[i, 1], colour32[i, 2], hx, hy,
                        hz, param32[i], style32[i], spacing32[i],
                    )
                    lam = sk.lambert(n0, n1, n2, sky)
                rgb = (np.float32(r * lam), np.float32(g * lam), np.float32(b * lam))
            for c in range(3):  # kernels.expose
                v = np.float64(rgb[c]) * gain[c]
                v = min(max(v, 0.0), 1.0)
                sums[m, c] += np.int64(np.rint(v * 255.0))


@numba.njit(**_JIT)
def resolve(sums, samples, pixels, image):
    """image[pixels[m]] = the mean of pixel m's S^2 exposed sub-samples: sums [M,3] of the shaded ones plus,
    for odd S, the primary (centre) sample already in image [N,3] uint8; averaged in float32 and rounded
    half to even, as np.round(x.astype(np.float32).mean(...)) of the S^2 values."""
    count = samples * samples
    centre = samples % 2 == 1
    for m in range(pixels.shape[0]):
        for c in range(3):
            total = sums[m, c] + (np.int64(image[pixels[m], c]) if centre else 0)
            image[pixels[m], c] = np.uint8(np.rint(np.float32(total) / np.float32(count)))


class Supersampler:
    """Adaptive S x S supersampling of the camera images of one sequence: `camera` per image, after the
    primary pass. `supersampled` counts the pixels replaced (for benchmarks)."""

    def __init__(self, samples: int, threshold: int | None = None, select: str = "adaptive"):
        self.samples, self.select = int(samples), select
        self.threshold = int(CONTRAST_THRESHOLD if threshold is None else threshold)
        self.n_sub = self.samples**2 - self.samples % 2  # odd S: the centre is the primary ray
        self.supersampled = 0
        self._scene: Scene | None = None
        self._scene_params: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())

    def camera(
        self,
        world: Scene,
        prims: rc.Primitives,
        tables: tuple,
        cam_to_world: np.ndarray,
        k: np.ndarray,
        rects: np.ndarray,
        t_hit: np.ndarray,
        idx: np.ndarray,
        gain: np.ndarray,
        image: np.ndarray,
    ) -> None:
        """Supersample the pixels of one camera image [H,W,3] uint8 (the exposed primary colours, changed in
        place) that `edge_pixels` selects (all of them with select="all": the full S x S reference).
        t_hit, idx [H*W] and rects are the primary cast's; tables = shade.surface_tables(prims)."""
        height, width = image.shape[:2]
        flat = image.reshape(-1, 3)
        if self.select == "all":
            pixels = np.arange(height * width, dtype=np.int64)
        else:
            pixels = edge_pixels(t_hit, idx, flat, height, width, self.threshold)
        if not pixels.size:
            return
        self.supersampled += int(pixels.size)
        n_sub = self.n_sub
        n = pixels.size * n_sub
        origin = np.ascontiguousarray(cam_to_world[:3, 3], np.float64)
        dirs, norm, best = np.empty((n, 3)), np.empty(n), np.empty(n)
        rot = np.ascontiguousarray(cam_to_world[:3, :3], np.float64)
        x_rot, y_rot = direction_tables(self.samples, k, rot, height, width)
        subsample_rays(pixels, width, self.samples, n_sub < self.samples**2, x_rot, y_rot, rot[:, 2].copy(),
                       origin[2], dirs, norm, best)
        index = np.full(n, -1, np.int32)
        if len(prims):
            rel = origin - prims.centre
            cast_subsamples(pixels, n_sub, width, dirs, np.ascontiguousarray(prims.kind, np.int8), rel,
                            np.cos(prims.yaw), np.sin(prims.yaw), np.ascontiguousarray(prims.half, np.float64),
                            (rel * rel).sum(axis=1), rects, best, index)
        sums = np.zeros((pixels.size, 3), np.int64)
        shade_subsamples(best, index, dirs, norm, origin, k[0, 0], np.ascontiguousarray(prims.kind, np.int8),
                         prims.material, tables[0], sk.texture_table(tables[1]),
                         *self._params(world), np.asarray(gain, np.float64), n_sub, sums)
        resolve(sums, self.samples, pixels, flat)

    def _params(self, world: Scene) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self._scene is not world:
            self._scene, self._scene_params = world, sk.scene_params(world)
        return self._scene_params
