"""Vectorised ray casting of analytic primitives for the synthetic dataset.

All rays of one cast share one origin (a camera centre or the lidar) and are laid out on a 2D grid (image
rows x columns, or lidar beams x azimuth steps). Each primitive is tested only against the rays inside its
conservative 2D footprint on that grid (`camera_rects`, `lidar_rects`), so the cost scales with the covered
area, not rays x objects. Primitives: yawed boxes, vertical capped cylinders, spheres; the ground plane z = 0
is handled by the caller (`ground_hits`). The ray parameter t is in units of the direction vectors: with
camera directions of camera-z 1 it is the z-depth, with unit directions the range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slarm_bench import geometry
from slarm_bench.data.synthetic_kernels import BOX, CYLINDER, EPS, cast_kernel
from slarm_bench.data.synthetic_kernels import SPHERE as SPHERE  # re-exported: the kind codes live here too

_EDGES = np.array(
    [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
)  # the 12 edges of geometry.box_corners' ordering


@dataclass
class Primitives:
    """A table of P primitives in the world frame.

    kind int8 [P] (BOX, CYLINDER, SPHERE); centre float64 [P,3]; yaw float64 [P] (about +z); half float64
    [P,3] (box half extents; cylinder r, r, half height; sphere r, r, r); material int16 [P]; colour
    float64 [P,3] (base albedo); param float64 [P] (material parameter); label uint8 [P] (class index);
    owner int32 [P] (agent index, -1 = static world).
    """

    kind: np.ndarray
    centre: np.ndarray
    yaw: np.ndarray
    half: np.ndarray
    material: np.ndarray
    colour: np.ndarray
    param: np.ndarray
    label: np.ndarray
    owner: np.ndarray

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> Primitives:
        """rows of (kind, centre3, yaw, half3, material, colour3, param, label, owner)."""
        if not rows:
            return cls(
                np.zeros(0, np.int8),
                np.zeros((0, 3)),
                np.zeros(0),
                np.zeros((0, 3)),
                np.zeros(0, np.int16),
                np.zeros((0, 3)),
                np.zeros(0),
                np.zeros(0, np.uint8),
                np.zeros(0, np.int32),
            )
        cols = list(zip(*rows))
        return cls(
            np.array(cols[0], np.int8),
            np.array(cols[1], np.float64),
            np.array(cols[2], np.float64),
            np.array(cols[3], np.float64),
            np.array(cols[4], np.int16),
            np.array(cols[5], np.float64),
            np.array(cols[6], np.float64),
            np.array(cols[7], np.uint8),
            np.array(cols[8], np.int32),
        )

    @staticmethod
    def concat(parts: list[Primitives]) -> Primitives:
        names = ("kind", "centre", "yaw", "half", "material", "colour", "param", "label", "owner")
        return Primitives(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))

    def corners(self) -> np.ndarray:
        """[P,8,3] corners of each primitive's bounding box (geometry.box_corners ordering)."""
        return geometry.box_corners(self.centre, 2.0 * self.half, self.yaw)


def camera_rects(
    corners: np.ndarray,
    world_to_cam: np.ndarray,
    intrinsics: np.ndarray,
    height: int,
    width: int,
    near: float = 0.05,
) -> np.ndarray:
    """[P,4] int (row0, row1, col0, col1), half-open, of the pixels whose centres may see each primitive.

    The bounding box is clipped against the near plane (corners in front plus edge crossings), so boxes
    partly behind the camera keep a tight rectangle. Culled primitives get an empty rectangle.
    corners [P,8,3] come from `Primitives.corners`.
    """
    rot, tr = world_to_cam[:3, :3], world_to_cam[:3, 3]
    cam = corners[..., 0:1] * rot[:, 0] + corners[..., 1:2] * rot[:, 1] + corners[..., 2:3] * rot[:, 2] + tr
    a, b = cam[:, _EDGES[:, 0]], cam[:, _EDGES[:, 1]]
    za, zb = a[..., 2], b[..., 2]
    crosses = (za - near) * (zb - near) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(crosses, (near - za) / (zb - za), 0.0)
    cut = a + alpha[..., None] * (b - a)
    pts = np.concatenate([cam, cut], axis=1)
    ok = np.concatenate([cam[..., 2] >= near, crosses], axis=1)
    z = np.where(ok, pts[..., 2], 1.0)
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    u = fx * pts[..., 0] / z + cx
    v = fy * pts[..., 1] / z + cy
    big = 1e9
    u_min = np.where(ok, u, big).min(axis=1)
    u_max = np.where(ok, u, -big).max(axis=1)
    v_min = np.where(ok, v, big).min(axis=1)
    v_max = np.where(ok, v, -big).max(axis=1)
    # Pixel j has its centre at j + 0.5: it can see [u_min, u_max] when j in [u_min - 0.5, u_max - 0.5].
    rects = np.stack(
        [np.floor(v_min - 0.5), np.ceil(v_max - 0.5) + 1, np.floor(u_min - 0.5), np.ceil(u_max - 0.5) + 1],
        axis=1,
    )
    rects = np.clip(np.nan_to_num(rects), -1, [height, height, width, width]).astype(np.int64)
    rects[:, 0::2] = np.maximum(rects[:, 0::2], 0)
    rects[~ok.any(axis=1)] = 0
    return rects


def lidar_rects(
    prims: Primitives, corners: np.ndarray, origin: np.ndarray, elevations: np.ndarray, azimuths: np.ndarray
) -> np.ndarray:
    """[P,4] (row0, row1, col0, col1) over a lidar grid of evenly spaced `elevations` [R] (descending) and
    `azimuths` [C] (ascending, radians, world frame), conservative."""
    rel = prims.centre - origin
    c, s = np.cos(prims.yaw), np.sin(prims.yaw)
    # Nearest horizontal distance from the lidar to each footprint (0 if the lidar is above it).
    lx = np.abs(c * rel[:, 0] + s * rel[:, 1]) - prims.half[:, 0]
    ly = np.abs(-s * rel[:, 0] + c * rel[:, 1]) - prims.half[:, 1]
    d_min = np.hypot(np.maximum(lx, 0), np.maximum(ly, 0))
    corners = corners[:, ::2, :2] - origin[:2]  # the 4 footprint corners
    d_max = np.hypot(corners[..., 0], corners[..., 1]).max(axis=1)
    z_top = rel[:, 2] + prims.half[:, 2]
    z_bot = rel[:, 2] - prims.half[:, 2]
    with np.errstate(divide="ignore"):
        el_hi = np.where(z_top > 0, np.arctan2(z_top, d_min), np.arctan2(z_top, d_max))
        el_lo = np.where(z_bot < 0, np.arctan2(z_bot, d_min), np.arctan2(z_bot, d_max))
    az_c = np.arctan2(rel[:, 1], rel[:, 0])
    az = np.arctan2(corners[..., 1], corners[..., 0])
    delta = np.mod(az - az_c[:, None] + np.pi, 2 * np.pi) - np.pi
    az_lo, az_hi = az_c + delta.min(axis=1), az_c + delta.max(axis=1)
    inside = d_min <= 0
    el_step = elevations[0] - elevations[1]
    az_step = azimuths[1] - azimuths[0]
    rows = len(elevations)
    cols = len(azimuths)
    r0 = np.floor((elevations[0] - el_hi) / el_step)
    r1 = np.ceil((elevations[0] - el_lo) / el_step) + 1
    c0 = np.floor((az_lo - azimuths[0]) / az_step)
    c1 = np.ceil((az_hi - azimuths[0]) / az_step) + 1
    rects = np.stack([r0, r1, c0, c1], axis=1)
    rects[inside] = [0, rows, 0, cols]
    rects = np.clip(rects, 0, [rows, rows, cols, cols]).astype(np.int64)
    return rects


def cast(
    origin: np.ndarray,
    dirs: np.ndarray,
    prims: Primitives,
    rects: np.ndarray,
    t_max: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of rays from one `origin` [3] with directions dirs [R,C,3] against `prims`.

    Only rays inside rects[i] are tested against primitive i. t_max [R,C] (optional) is an already known
    nearer hit (e.g. the ground). Returns t [R,C] (inf where nothing is hit nearer than t_max) and the index
    of the primitive hit [R,C] int32 (-1 = none).
    """
    rows, cols = dirs.shape[:2]
    best = np.full((rows, cols), np.inf) if t_max is None else np.array(t_max, np.float64)
    index = np.full((rows, cols), -1, np.int32)
    if len(prims) == 0:
        return best, index
    origin = np.asarray(origin, np.float64)
    rel = origin - prims.centre
    # Per-primitive scalars, as the reference (`_hit_*`) computes them one primitive at a time (numpy's
    # array cos, sin and row sums give the same bits as its scalar ones).
    cos_yaw, sin_yaw = np.cos(prims.yaw), np.sin(prims.yaw)
    rel_sq = (rel * rel).sum(axis=1)
    cast_kernel(
        np.ascontiguousarray(dirs, np.float64),
        np.ascontiguousarray(prims.kind, np.int8),
        rel,
        cos_yaw,
        sin_yaw,
        np.ascontiguousarray(prims.half, np.float64),
        rel_sq,
        np.ascontiguousarray(rects, np.int64),
        best,
        index,
    )
    return best, index


def cast_reference(
    origin: np.ndarray,
    dirs: np.ndarray,
    prims: Primitives,
    rects: np.ndarray,
    t_max: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`cast` with numpy array operations per primitive: the readable reference the kernel is tested
    against (same arguments and results)."""
    rows, cols = dirs.shape[:2]
    best = np.full((rows, cols), np.inf) if t_max is None else t_max.copy()
    index = np.full((rows, cols), -1, np.int32)
    dx, dy, dz = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    for i in np.nonzero((rects[:, 1] > rects[:, 0]) & (rects[:, 3] > rects[:, 2]))[0]:
        r0, r1, c0, c1 = rects[i]
        win = (slice(r0, r1), slice(c0, c1))
        rel = origin - prims.centre[i]
        kind = prims.kind[i]
        if kind == BOX:
            t = _hit_box(rel, prims.yaw[i], prims.half[i], dx[win], dy[win], dz[win])
        elif kind == CYLINDER:
            t = _hit_cylinder(rel, prims.half[i], dx[win], dy[win], dz[win])
        else:
            t = _hit_sphere(rel, prims.half[i, 0], dx[win], dy[win], dz[win])
        closer = t < best[win]
        if closer.any():
            best[win] = np.where(closer, t, best[win])
            index[win] = np.where(closer, i, index[win])
    return best, index


def ground_hits(origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Ray parameter of the z = 0 plane [R,C] (inf for rays that do not go down)."""
    dz = dirs[..., 2]
    with np.errstate(divide="ignore"):
        t = np.where(dz < -EPS, -origin[2] / np.where(dz < -EPS, dz, -1.0), np.inf)
    return t if origin[2] > 0 else np.full(dz.shape, np.inf)


def _hit_box(
    rel: np.ndarray, yaw: float, half: np.ndarray, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray
) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    o = (c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2])
    d = (c * dx + s * dy, -s * dx + c * dy, dz)
    t_near = np.full(dx.shape, -np.inf)
    t_far = np.full(dx.shape, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(3):
            inv = 1.0 / d[k]
            t1 = (-half[k] - o[k]) * inv
            t2 = (half[k] - o[k]) * inv
            t_near = np.maximum(t_near, np.minimum(t1, t2))
            t_far = np.minimum(t_far, np.maximum(t1, t2))
    hit = (t_near <= t_far) & (t_near > EPS)
    return np.where(hit, t_near, np.inf)


def _hit_cylinder(
    rel: np.ndarray, half: np.ndarray, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray
) -> np.ndarray:
    r, hz = half[0], half[2]
    a = dx * dx + dy * dy
    b = 2.0 * (rel[0] * dx + rel[1] * dy)
    cc = rel[0] * rel[0] + rel[1] * rel[1] - r * r
    out = np.full(dx.shape, np.inf)
    if cc > 0:  # the origin is outside the infinite cylinder: the side is seen from outside
        disc = b * b - 4.0 * a * cc
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (-b - np.sqrt(disc)) / (2.0 * a)
        z = rel[2] + t * dz
        side = (disc >= 0) & (t > EPS) & (np.abs(z) <= hz)
        out = np.where(side, t, out)
    for cap in (hz, -hz):
        if (rel[2] - cap) * cap <= 0:  # the cap faces away from the origin
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (cap - rel[2]) / dz
            px = rel[0] + t * dx
            py = rel[1] + t * dy
        on = (t > EPS) & (px * px + py * py <= r * r)
        out = np.where(on & (t < out), t, out)
    return out


def _hit_sphere(rel: np.ndarray, r: float, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
    a = dx * dx + dy * dy + dz * dz
    b = 2.0 * (rel[0] * dx + rel[1] * dy + rel[2] * dz)
    cc = float(rel @ rel) - r * r
    if cc <= 0:
        return np.full(dx.shape, np.inf)
    disc = b * b - 4.0 * a * cc
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2.0 * a)
    return np.where((disc >= 0) & (t > EPS), t, np.inf)
