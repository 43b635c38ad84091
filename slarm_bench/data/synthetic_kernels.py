"""Compiled (numba) inner loops of the synthetic generator: ray casting, pixel sorting and scattering, and
the lidar z-buffer.

Each kernel performs the same IEEE operations in the same order as the numpy code it replaces (kept as the
readable reference: `synthetic_raycast.cast_reference`, `geometry.project_points` + `geometry.z_buffer`),
with no fastmath (so no fused multiply-adds or reassociation) and no threads, so the outputs are the same
bytes. Kernels are compiled on first use and cached on disk next to this file (numba's `cache=True`).
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba
except ImportError as err:  # a hard dependency: the numpy fallback would be tens of times slower
    raise ImportError(
        "the synthetic dataset generator needs numba: install it with `pip install 'numba>=0.60'`"
    ) from err

BOX, CYLINDER, SPHERE = 0, 1, 2
EPS = 1e-6
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}  # numpy semantics for x / 0: inf or nan
# numpy's minimum / maximum propagate NaN (0 * inf in the slab test); `_nan_min` / `_nan_max` do the same.


@numba.njit(**_JIT)
def _nan_min(a: float, b: float) -> float:
    if a != a or b != b:
        return np.nan
    return a if a <= b else b


@numba.njit(**_JIT)
def _nan_max(a: float, b: float) -> float:
    if a != a or b != b:
        return np.nan
    return a if a >= b else b


@numba.njit(**_JIT)
def cast_kernel(dirs, kind, rel, cos_yaw, sin_yaw, half, rel_sq, rects, best, index) -> None:
    """Nearest hits of rays dirs [R,C,3] against P primitives (see `synthetic_raycast.cast`), updating
    best [R,C] float64 and index [R,C] int32 in place. rel [P,3] = origin - centre; rel_sq [P] = rel . rel;
    cos_yaw, sin_yaw [P]; half [P,3]; rects [P,4] int64 windows (row0, row1, col0, col1)."""
    for i in range(kind.shape[0]):
        r0, r1, c0, c1 = rects[i, 0], rects[i, 1], rects[i, 2], rects[i, 3]
        if r1 <= r0 or c1 <= c0:
            continue
        rx, ry, rz = rel[i, 0], rel[i, 1], rel[i, 2]
        if kind[i] == BOX:
            c, s = cos_yaw[i], sin_yaw[i]
            ox, oy, oz = c * rx + s * ry, -s * rx + c * ry, rz
            hx, hy, hz = half[i, 0], half[i, 1], half[i, 2]
            for r in range(r0, r1):
                for col in range(c0, c1):
                    dx, dy, dz = dirs[r, col, 0], dirs[r, col, 1], dirs[r, col, 2]
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
                    if t_near <= t_far and t_near > EPS and t_near < best[r, col]:
                        best[r, col] = t_near
                        index[r, col] = i
        elif kind[i] == CYLINDER:
            rad, hz = half[i, 0], half[i, 2]
            cc = rx * rx + ry * ry - rad * rad
            top = not (rz - hz) * hz <= 0
            bottom = not (rz + hz) * -hz <= 0
            for r in range(r0, r1):
                for col in range(c0, c1):
                    dx, dy, dz = dirs[r, col, 0], dirs[r, col, 1], dirs[r, col, 2]
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
                    if out < best[r, col]:
                        best[r, col] = out
                        index[r, col] = i
        else:
            rad = half[i, 0]
            cc = rel_sq[i] - rad * rad
            if cc <= 0:
                continue
            for r in range(r0, r1):
                for col in range(c0, c1):
                    dx, dy, dz = dirs[r, col, 0], dirs[r, col, 1], dirs[r, col, 2]
                    a = dx * dx + dy * dy + dz * dz
                    b = 2.0 * (rx * dx + ry * dy + rz * dz)
                    disc = b * b - 4.0 * a * cc
                    t = (-b - np.sqrt(disc)) / (2.0 * a)
                    if disc >= 0 and t > EPS and t < best[r, col]:
                        best[r, col] = t
                        index[r, col] = i


@numba.njit(**_JIT)
def sort_pixels(t_hit, idx, dirs, dir_norm, origin, material, kind, focal, buffers):
    """Order the N pixels of one camera by surface key (0 sky, 1 ground, 2 + 3 * material + kind), stably,
    and gather what shading needs in that order, in one pass.

    t_hit [N] (inf = sky), idx [N] int32 (-1 = ground or sky), dirs [N,3], dir_norm [N], origin [3],
    material / kind [P] of the primitives, focal = fx. Fills `buffers` (from `pixel_buffers(N)`, reused
    from camera to camera: fresh pages cost more than the work) with order [N] int64 (sorted -> pixel)
    and, sorted: t [N] (0 on sky), idx [N], points [N,3] float64, points32 [N,3], dirs32 [N,3],
    dir_norm32 [N] and the footprint scale t * |d| / fx [N] float32. Returns the counts [K] of each key.
    """
    n = t_hit.shape[0]
    key = np.empty(n, np.int64)
    n_keys = 2
    for j in range(n):
        if not math.isfinite(t_hit[j]):
            k = 0
        elif idx[j] < 0:
            k = 1
        else:
            k = 2 + 3 * np.int64(material[idx[j]]) + np.int64(kind[idx[j]])
        key[j] = k
        n_keys = max(n_keys, k + 1)
    counts = np.zeros(n_keys, np.int64)
    for j in range(n):
        counts[key[j]] += 1
    start = np.zeros(n_keys, np.int64)
    for k in range(1, n_keys):
        start[k] = start[k - 1] + counts[k - 1]
    order, t_s, id_s, pts, pts32, d32, dn32, dist = buffers
    # A counting sort (stable, like np.argsort(kind="stable")); reading pixels in order and scattering the
    # writes is faster than gathering the reads.
    for j in range(n):
        i = start[key[j]]
        start[key[j]] += 1
        order[i] = j
        t = t_hit[j] if math.isfinite(t_hit[j]) else 0.0
        t_s[i] = t
        id_s[i] = idx[j]
        for c in range(3):
            p = origin[c] + t * dirs[j, c]
            pts[i, c] = p
            pts32[i, c] = np.float32(p)
            d32[i, c] = np.float32(dirs[j, c])
        dn32[i] = np.float32(dir_norm[j])
        dist[i] = np.float32(t * dir_norm[j] / focal)
    return counts


def pixel_buffers(n: int) -> tuple[np.ndarray, ...]:
    """The output buffers of `sort_pixels` for N pixels: order, t, idx, points, points32, dirs32,
    dir_norm32, footprint scale."""
    return (
        np.empty(n, np.int64),
        np.empty(n),
        np.empty(n, np.int32),
        np.empty((n, 3)),
        np.empty((n, 3), np.float32),
        np.empty((n, 3), np.float32),
        np.empty(n, np.float32),
        np.empty(n, np.float32),
    )


@numba.njit(**_JIT)
def expose(order, rgb, gain, image) -> None:
    """image[order[i]] = uint8(round(255 * clip(rgb[i] * gain, 0, 1))): rgb [N,3] float32 sorted, gain [3]
    float64, image [N,3] uint8 in pixel order. The product is float64 and rounds half to even, as numpy's
    `np.round(np.clip(rgb * gain, 0, 1) * 255).astype(np.uint8)` does."""
    for i in range(order.shape[0]):
        for c in range(3):
            x = np.float64(rgb[i, c]) * gain[c]
            x = min(max(x, 0.0), 1.0)
            image[order[i], c] = np.uint8(np.rint(x * 255.0))


@numba.njit(**_JIT)
def scatter_rows(order, src, dst) -> None:
    """dst[order[i]] = src[i] for rows of src [N,C] into dst [N,C] (undoes `sort_pixels`' order)."""
    for i in range(order.shape[0]):
        for c in range(src.shape[1]):
            dst[order[i], c] = src[i, c]


@numba.njit(**_JIT)
def lidar_z_buffer(points, world_to_cam, intrinsics, depth, near) -> None:
    """Nearest-wins z-buffer of world points [N,3] in one camera into depth [H,W] float32 (0 = none).

    Same arithmetic and tie rule (lowest index wins) as geometry.project_points + geometry.z_buffer; the
    rotation's products are summed in the order numpy's einsum uses there ((x + z) + y), so the bytes agree.
    """
    height, width = depth.shape
    best = np.full((height, width), np.inf)
    r, tr = world_to_cam[:3, :3], world_to_cam[:3, 3]
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    for i in range(points.shape[0]):
        x, y, z = points[i, 0], points[i, 1], points[i, 2]
        zc = (r[2, 0] * x + r[2, 2] * z) + r[2, 1] * y + tr[2]
        if not zc > near:
            continue
        xc = (r[0, 0] * x + r[0, 2] * z) + r[0, 1] * y + tr[0]
        col = np.floor((xc / zc) * fx + cx)
        if not (col >= 0 and col < width):
            continue
        yc = (r[1, 0] * x + r[1, 2] * z) + r[1, 1] * y + tr[1]
        row = np.floor((yc / zc) * fy + cy)
        if not (row >= 0 and row < height):
            continue
        ri, ci = int(row), int(col)
        if zc < best[ri, ci]:
            best[ri, ci] = zc
            depth[ri, ci] = np.float32(zc)


@numba.njit(**_JIT)
def surface_frame(kind, ids, points, dirs, dir_norm, dist, cos_yaw, sin_yaw, centre, half):
    """Local coordinates [N,3], face id [N] and world normal [N,3] of points [N,3] float32 on primitives
    ids [N] of one `kind`, and their footprints (dist / max(cos incidence, 0.05)) [N] float32.

    Same float32 operations as `synthetic_shade.surface_frame` (its reference). dirs [N,3], dir_norm [N],
    dist [N] float32 (sorted, from `sort_pixels`); cos_yaw, sin_yaw [P], centre [P,3], half [P,3] float32.
    """
    n = ids.shape[0]
    local = np.empty((n, 3), np.float32)
    normal = np.empty((n, 3), np.float32)
    face = np.zeros(n, np.int64)
    fp = np.empty(n, np.float32)
    for j in range(n):
        p = ids[j]
        l0, l1, l2, f, w0, w1, w2, footprint = surface_point(
            kind, points[j, 0], points[j, 1], points[j, 2], dirs[j, 0], dirs[j, 1], dirs[j, 2], dir_norm[j],
            dist[j], cos_yaw[p], sin_yaw[p], centre[p, 0], centre[p, 1], centre[p, 2], half[p, 0], half[p, 1],
            half[p, 2],
        )
        local[j, 0], local[j, 1], local[j, 2] = l0, l1, l2
        normal[j, 0], normal[j, 1], normal[j, 2] = w0, w1, w2
        face[j] = f
        fp[j] = footprint
    return local, face, normal, fp


_CAP_TOL = np.float32(1.0 - 1e-6)
_ZERO, _ONE, _MIN_COS = np.float32(0.0), np.float32(1.0), np.float32(0.05)


@numba.njit(**_JIT)
def surface_point(kind, x, y, z, dx, dy, dz, dn, dist, c, s, cx, cy, cz, hx, hy, hz):
    """`surface_frame` of one float32 point (x, y, z) seen along (dx, dy, dz) of norm dn with footprint scale
    dist, on a primitive of `kind` with cos / sin yaw c, s, centre (cx, cy, cz) and half extents (hx, hy,
    hz): (local x, y, z, face, normal x, y, z, footprint). Scalars only: array arguments would cost
    reference counting on every call."""
    r0 = x - cx
    r1 = y - cy
    r2 = z - cz
    l0 = c * r0 + s * r1
    l1 = -s * r0 + c * r1
    l2 = r2
    n0, n1, n2 = _ZERO, _ZERO, _ZERO
    face = 0
    if kind == BOX:
        # np.argmax: the first of equal maxima; np.sign: -1, 0 or 1.
        best = abs(l0) / hx
        q = abs(l1) / hy
        if q > best:
            best, face = q, 1
        q = abs(l2) / hz
        if q > best:
            best, face = q, 2
        v = l0 if face == 0 else (l1 if face == 1 else l2)
        sgn = _ONE if v > 0 else (-_ONE if v < 0 else _ZERO)
        if face == 0:
            n0 = sgn
        elif face == 1:
            n1 = sgn
        else:
            n2 = sgn
    elif kind == CYLINDER:
        if abs(l2) >= hz * _CAP_TOL:
            n2 = _ONE
            face = 2
        else:
            n0, n1 = l0 / hx, l1 / hx
    else:
        n0, n1, n2 = l0 / hx, l1 / hx, l2 / hx
    w0 = c * n0 - s * n1
    w1 = s * n0 + c * n1
    cos_p = abs(w0 * dx + w1 * dy + n2 * dz) / dn
    return l0, l1, l2, face, w0, w1, n2, dist / max(cos_p, _MIN_COS)
