"""Waymo lidar: range images to points, per-point velocity labels, ground segmentation. numpy only.

Range-image facts (Waymo Open Dataset v1 `RangeImage`, dataset.proto comments):
- `range_image_compressed`: zlib'd MatrixFloat [H,W,4] = range (m, <= 0 means no return), intensity,
  elongation, is-in-no-label-zone.
- `range_image_pose_compressed` (TOP lidar, first return only, shared by the second): [H,W,6] = roll,
  pitch, yaw, x, y, z of the vehicle-to-world transform at the time each pixel was measured; the rotation
  is yaw about z, then pitch about y, then roll about x: R = Rz(yaw) Ry(pitch) Rx(roll).
- `range_image_flow_compressed` (scene-flow release): [H,W,4+] = vx, vy, vz (m/s, vehicle frame), class
  (-1 = no flow label, 0 = background, 1..4 = vehicle, pedestrian, sign, cyclist).
- Row 0 is the highest beam. Column c has azimuth ((W - c - 0.5) / W * 2 - 1) * pi - az0 where az0 is the
  lidar's mounting yaw atan2(E[1,0], E[0,0]) of its extrinsic E (sensor to vehicle).
- Beam inclinations: the calibration's `beam_inclinations` (non-uniform, TOP) or, when empty, H values
  uniformly spaced between min and max at bin centres; both listed from the lowest beam up.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from slarm_bench.errors import SlarmBenchError

try:  # optional accelerator: zlib-ng inflates the same streams to the same bytes about twice as fast
    from zlib_ng import zlib_ng as _inflater  # type: ignore[import-not-found]
except ImportError:  # the standard zlib gives identical output, only slower
    _inflater = zlib
_INFLATE_ERRORS = (zlib.error, _inflater.error)
try:  # optional accelerator: libdeflate inflates a whole buffer ~25 % faster than zlib-ng, given its size
    import deflate as _libdeflate  # type: ignore[import-not-found]
except ImportError:  # zlib(-ng) alone: identical bytes
    _libdeflate = None

FLOW_NO_LABEL = -1
GROUND_FIT_POINTS = 20_000


class WaymoLidarError(SlarmBenchError):
    """A range image that cannot be decoded."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def inflate(compressed: bytes, what: str = "range image", sizes: dict[str, int] | None = None,
            size_key: str | None = None) -> bytes | bytearray:
    """zlib stream -> its bytes. `sizes` remembers the inflated size per `size_key` (default `what`) across
    frames: with a size known, libdeflate (when installed) inflates in one shot into a buffer of that size
    (an upper bound is enough: streams of one key may differ a little); it checks the Adler-32 like zlib, and
    any failure (larger stream, corrupt stream) goes to zlib, which gives the bytes or the error."""
    key = what if size_key is None else size_key
    hint = sizes.get(key) if sizes is not None else None
    if hint is not None and _libdeflate is not None:
        try:
            return _libdeflate.zlib_decompress(compressed, hint)
        except _libdeflate.DeflateError:
            pass
    try:
        buf = _inflater.decompress(compressed)
    except _INFLATE_ERRORS as exc:
        raise WaymoLidarError(f"{what}: zlib data is corrupt ({exc}); re-download the segment") from exc
    if sizes is not None:
        sizes[key] = max(len(buf), hint or 0)
    return buf


def decode_matrix_float(compressed: bytes, what: str = "range image", sizes: dict[str, int] | None = None,
                        size_key: str | None = None) -> np.ndarray:
    """zlib'd serialized MatrixFloat -> float32 array of its shape (read-only view of the inflated bytes).

    Parses the two fields directly (packed float data = field 1, MatrixShape = field 2): going through
    the protobuf runtime would copy a million floats one Python object at a time. `sizes`, `size_key`: see
    `inflate`.
    """
    raw = inflate(compressed, what, sizes, size_key)
    buf = memoryview(raw).toreadonly()  # slices of a memoryview share the buffer: no copy of the floats
    data: np.ndarray | None = None
    dims: list[int] = []
    pos, end = 0, len(buf)
    try:
        while pos < end:
            tag, pos = _varint(buf, pos)
            field, wire = tag >> 3, tag & 7
            if wire == 2:
                length, pos = _varint(buf, pos)
                chunk = buf[pos:pos + length]
                pos += length
                if field == 1:
                    data = np.frombuffer(chunk, "<f4")
                elif field == 2:
                    dims = _parse_shape(bytes(chunk))
            elif wire == 5:  # unpacked float, legal but unusual
                if field == 1:
                    value = np.frombuffer(buf[pos:pos + 4], "<f4")
                    data = value if data is None else np.concatenate([data, value])
                pos += 4
            elif wire == 0:
                _, pos = _varint(buf, pos)
            elif wire == 1:
                pos += 8
            else:
                raise ValueError(f"unexpected wire type {wire}")
    except (IndexError, ValueError) as exc:
        raise WaymoLidarError(f"{what}: malformed MatrixFloat ({exc})") from exc
    if data is None:
        data = np.zeros(0, np.float32)
    if int(np.prod(dims)) != data.size:
        raise WaymoLidarError(f"{what}: MatrixFloat holds {data.size} values for shape {dims}")
    return data.reshape(dims).astype(np.float32, copy=False)


def _parse_shape(buf: bytes) -> list[int]:
    dims: list[int] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if field == 1 and wire == 2:
            length, pos = _varint(buf, pos)
            stop = pos + length
            while pos < stop:
                value, pos = _varint(buf, pos)
                dims.append(value)
        elif field == 1 and wire == 0:
            value, pos = _varint(buf, pos)
            dims.append(value)
        else:
            raise ValueError(f"unexpected field {field} in MatrixShape")
    return dims


def encode_matrix_float(array: np.ndarray) -> bytes:
    """float array -> zlib'd serialized MatrixFloat (the inverse of decode_matrix_float; for fixtures)."""
    array = np.ascontiguousarray(array, "<f4")

    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            out.append(b | (0x80 if v else 0))
            if not v:
                return bytes(out)

    data = array.tobytes()
    dims = b"".join(varint(d) for d in array.shape)
    shape = b"\x0a" + varint(len(dims)) + dims
    msg = b"\x0a" + varint(len(data)) + data + b"\x12" + varint(len(shape)) + shape
    return zlib.compress(msg, 1)


def beam_inclinations(height: int, inclinations: list[float] | np.ndarray, incl_min: float,
                      incl_max: float) -> np.ndarray:
    """Inclination (rad) of each range-image row [H], row 0 the highest beam."""
    incl = np.asarray(inclinations, np.float64)
    if incl.size == 0:
        incl = incl_min + (np.arange(height) + 0.5) / height * (incl_max - incl_min)
    if incl.size != height:
        raise WaymoLidarError(f"lidar calibration has {incl.size} beam inclinations for a range image of "
                              f"{height} rows")
    return incl[::-1].copy()


def euler_to_matrix(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """[...] roll, pitch, yaw -> [...,3,3] rotation Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.stack([
        np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
        np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
        np.stack([-sp, cp * sr, cp * cr], -1),
    ], -2)


@dataclass
class LidarGeometry:
    """Per-lidar constants: unit ray directions in the vehicle frame [H,W,3] and the lidar origin [3].

    `directions32` [3,H*W] and `origin32` [3] are float32 copies laid out for per-coordinate vector math.
    """

    directions_vehicle: np.ndarray
    directions_sensor: np.ndarray
    extrinsic: np.ndarray
    directions32: np.ndarray = field(init=False, repr=False)
    origin32: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.directions32 = np.ascontiguousarray(self.directions_vehicle.reshape(-1, 3).T, np.float32)
        self.origin32 = np.asarray(self.extrinsic[:3, 3], np.float32)

    @classmethod
    def from_calibration(cls, extrinsic: np.ndarray, height: int, width: int,
                         inclinations: list[float] | np.ndarray, incl_min: float,
                         incl_max: float) -> LidarGeometry:
        extrinsic = np.asarray(extrinsic, np.float64).reshape(4, 4)
        incl = beam_inclinations(height, inclinations, incl_min, incl_max)
        az0 = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
        azimuth = ((width - np.arange(width) - 0.5) / width * 2.0 - 1.0) * np.pi - az0
        ci, si = np.cos(incl)[:, None], np.sin(incl)[:, None]
        ca, sa = np.cos(azimuth)[None], np.sin(azimuth)[None]
        dirs = np.stack([ci * ca, ci * sa, np.broadcast_to(si, (height, width))], -1)
        return cls(directions_vehicle=dirs @ extrinsic[:3, :3].T, directions_sensor=dirs, extrinsic=extrinsic)


def range_image_to_points(range_m: np.ndarray, geom: LidarGeometry, pixel_pose: np.ndarray | None = None,
                          frame_pose: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Points of one range image in the vehicle frame of the frame's pose.

    range_m [H,W] (<= 0: no return); pixel_pose [H,W,6] (roll, pitch, yaw, x, y, z vehicle-to-world at
    each pixel's time; TOP lidar) with frame_pose [4,4] vehicle-to-world of the frame: each point is moved
    from the vehicle frame at its own time to the frame's vehicle frame (rolling-shutter correction).
    Returns points [N,3] float32 and the flat pixel indices [N] of the valid pixels (row-major).

    The points array is the transpose of a C-ordered [3,N] one (column-major [N,3]), so that each
    coordinate is a contiguous vector for the projections downstream. Arithmetic is float32 except for
    the pose composition (float64, per pose): the error is below 2e-5 m for ranges up to 100 m.
    """
    rng = range_m.reshape(-1)
    flat = np.flatnonzero(rng > 0)
    r = rng[flat].astype(np.float32, copy=False)
    pts = np.take(geom.directions32, flat, axis=1)
    pts *= r
    pts += geom.origin32[:, None]
    if pixel_pose is not None:
        if frame_pose is None:
            raise WaymoLidarError("a per-pixel lidar pose needs the frame pose")
        mats, per_column = pose_matrices(pixel_pose, frame_pose)
        m = np.take(mats.T, flat % range_m.shape[-1] if per_column else flat, axis=1)  # [12,N] per point
        out = np.empty_like(pts)
        for i in range(3):
            np.multiply(m[3 * i], pts[0], out=out[i])
            out[i] += m[3 * i + 1] * pts[1]
            out[i] += m[3 * i + 2] * pts[2]
            out[i] += m[9 + i]
        pts = out
    return pts.T, flat


def pose_matrices(pixel_pose: np.ndarray, frame_pose: np.ndarray) -> tuple[np.ndarray, bool]:
    """Transforms from the vehicle frame at pixel time to the frame's vehicle frame, float32 [U,12]
    (row-major rotation, then translation), and whether they are per column (U = W) or per pixel (U = H*W,
    row-major). pixel_pose [H,W,6] (roll, pitch, yaw, x, y, z); frame_pose [4,4] vehicle to world.

    A spinning lidar fires a column at one instant, so its pose image is usually constant down each
    column: then only W transforms are built (a pure speed-up; the arithmetic per pose is the same)."""
    h, w = pixel_pose.shape[:2]
    pp = pixel_pose.reshape(h, w, 6)
    per_column = bool((pp == pp[:1]).all())
    poses = (pp[0] if per_column else pp.reshape(-1, 6)).astype(np.float64)
    frame_pose = np.asarray(frame_pose, np.float64)
    rot_f_t = frame_pose[:3, :3].T
    # relative translation first, in float64: global coordinates (km) would lose mm in float32
    rot = rot_f_t @ euler_to_matrix(poses[:, 0], poses[:, 1], poses[:, 2])        # [U,3,3]
    trans = (poses[:, 3:6] - frame_pose[:3, 3]) @ rot_f_t.T                        # [U,3]
    mats = np.concatenate([rot.reshape(-1, 9), trans], axis=1)                     # [U,12]
    return np.ascontiguousarray(mats, np.float32), per_column


def label_velocities(flow_image: np.ndarray, flat: np.ndarray, min_speed: float = 0.5) -> np.ndarray:
    """Per-point velocity (m/s, vehicle frame) [N,3] from a flow range image [H,W,C>=4] at pixels `flat`.

    REFERENCE.md rules: class -1 (no label) counts as zero velocity; speeds under `min_speed` are zeroed.
    """
    if flow_image.ndim != 3 or flow_image.shape[-1] < 4:
        raise WaymoLidarError(f"flow range image must be [H,W,4+], got {list(flow_image.shape)}")
    f = np.take(flow_image.reshape(-1, flow_image.shape[-1]), flat, axis=0)
    vel = f[:, :3].astype(np.float32)
    speed = np.sqrt(vel[:, 0] * vel[:, 0] + vel[:, 1] * vel[:, 1] + vel[:, 2] * vel[:, 2])
    vel[(f[:, 3] == FLOW_NO_LABEL) | (speed < min_speed)] = 0.0
    return vel


def ground_plane(points: np.ndarray, threshold: float = 0.2, iterations: int = 5, radius: float = 40.0,
                 seed_quantile: float = 0.1, seed_band: float = 0.3,
                 max_points: int = GROUND_FIT_POINTS) -> np.ndarray | None:
    """Coefficients (a, b, c) of the ground plane z = a x + b y + c [3] by iterated least squares, or None.

    points [N,3] in a vehicle frame (z up). Above `max_points` points the fit uses a fixed-seed random
    sample of that many (`ground_sample`; deterministic; the least-squares plane of 20 000 points differs
    from that of all points by millimetres, so only points that close to the threshold change class).
    The fit itself: `fit_ground_plane`.
    """
    n = points.shape[0]
    if n < 3:
        return None
    pick = ground_sample(n, max_points)
    return fit_ground_plane(points if pick is None else points[pick], threshold, iterations, radius,
                            seed_quantile, seed_band)


def ground_sample(n: int, max_points: int = GROUND_FIT_POINTS) -> np.ndarray | None:
    """Sorted indices (int64, repeats possible) of the points of N that `ground_plane` fits, or None: all."""
    if n <= max_points:
        return None
    # a seeded random sample: a stride would alias with the range images' row and column structure
    return np.sort(np.random.default_rng(0).integers(0, n, max(int(max_points), 3)))


def fit_ground_plane(points: np.ndarray, threshold: float = 0.2, iterations: int = 5, radius: float = 40.0,
                     seed_quantile: float = 0.1, seed_band: float = 0.3) -> np.ndarray | None:
    """`ground_plane`'s fit on points [K,3] (all of them, in float64), or None.

    Seeds: points within `radius` m horizontally whose height is within `seed_band` m of the
    `seed_quantile` height quantile; fit; keep points within `threshold` m of the plane; refit.
    """
    p = np.asarray(points, np.float64)
    near = np.hypot(p[:, 0], p[:, 1]) < radius
    if near.sum() < 3:
        return None
    z_seed = np.quantile(p[near, 2], seed_quantile)
    inliers = near & (p[:, 2] < z_seed + seed_band)
    design = np.column_stack([p[:, 0], p[:, 1], np.ones(p.shape[0])])
    coef = None
    for _ in range(iterations):
        if inliers.sum() < 3:
            return None
        a = design[inliers]
        coef = np.linalg.solve(a.T @ a, a.T @ p[inliers, 2])  # 3x3 normal equations
        new = near & (np.abs(p[:, 2] - design @ coef) < threshold)
        if np.array_equal(new, inliers):
            break
        inliers = new
    return coef


def classify_ground(points: np.ndarray, coef: np.ndarray | None, threshold: float = 0.2) -> np.ndarray:
    """Boolean [N]: points [N,3] within `threshold` m (vertically) of the plane `coef` (all False if None)."""
    if coef is None:
        return np.zeros(points.shape[0], bool)
    p = np.asarray(points, np.float64)
    return np.abs(p[:, 2] - (coef[0] * p[:, 0] + coef[1] * p[:, 1] + coef[2])) < threshold


def ground_points(points: np.ndarray, threshold: float = 0.2, iterations: int = 5,
                  radius: float = 40.0, seed_quantile: float = 0.1, seed_band: float = 0.3) -> np.ndarray:
    """Boolean [N]: points on the ground plane (`ground_plane`, then `classify_ground`). Deterministic."""
    coef = ground_plane(points, threshold, iterations, radius, seed_quantile, seed_band)
    return classify_ground(points, coef, threshold)


@dataclass
class LabelFlow:
    """Velocity labels of a frame's points, read on demand (usually for the few that reach an image).

    One block per range image, in the order its points were concatenated: the flow range image [H,W,C>=4]
    (or a zero-argument callable returning it, called only if one of the block's points is taken: most
    frames have lidars whose points reach no camera) and the flat pixel [N_k] of each of the block's
    points. `take` applies `label_velocities`' rules.
    """

    images: list[np.ndarray | Callable[[], np.ndarray]]
    pixels: list[np.ndarray]
    min_speed: float = 0.5

    def __len__(self) -> int:
        return int(sum(p.size for p in self.pixels))

    def take(self, index: np.ndarray) -> np.ndarray:
        """Velocities [M,3] float32 (m/s, vehicle frame) of the points `index` [M] of the frame."""
        index = np.asarray(index, np.int64)
        out = np.zeros((index.size, 3), np.float32)
        ascending = bool(np.all(index[1:] >= index[:-1]))  # the usual case: slice instead of masking
        start = 0
        for image, pixels in zip(self.images, self.pixels):
            stop = start + pixels.size
            if ascending:
                lo, hi = np.searchsorted(index, [start, stop])
                sel: slice | np.ndarray = slice(int(lo), int(hi))
            else:
                sel = np.flatnonzero((index >= start) & (index < stop))
            part = index[sel]
            if part.size:
                if callable(image):
                    image = image()
                out[sel] = label_velocities(image, pixels[part - start], self.min_speed)
            start = stop
        return out
