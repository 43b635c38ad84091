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
from dataclasses import dataclass

import numpy as np

from slarm_bench.errors import SlarmBenchError

FLOW_NO_LABEL = -1


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


def decode_matrix_float(compressed: bytes, what: str = "range image") -> np.ndarray:
    """zlib'd serialized MatrixFloat -> float32 array of its shape.

    Parses the two fields directly (packed float data = field 1, MatrixShape = field 2): going through
    the protobuf runtime would copy a million floats one Python object at a time.
    """
    try:
        buf = zlib.decompress(compressed)
    except zlib.error as exc:
        raise WaymoLidarError(f"{what}: zlib data is corrupt ({exc}); re-download the segment") from exc
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
                    dims = _parse_shape(chunk)
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
    """Per-lidar constants: unit ray directions in the vehicle frame [H,W,3] and the lidar origin [3]."""

    directions_vehicle: np.ndarray
    directions_sensor: np.ndarray
    extrinsic: np.ndarray

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
    """
    flat = np.flatnonzero(range_m.reshape(-1) > 0)
    r = range_m.reshape(-1)[flat].astype(np.float64)
    pts = geom.directions_vehicle.reshape(-1, 3)[flat] * r[:, None] + geom.extrinsic[:3, 3]
    if pixel_pose is not None:
        if frame_pose is None:
            raise WaymoLidarError("a per-pixel lidar pose needs the frame pose")
        pp = pixel_pose.reshape(-1, 6)[flat].astype(np.float64)
        rot = euler_to_matrix(pp[:, 0], pp[:, 1], pp[:, 2])
        world = np.einsum("nij,nj->ni", rot, pts) + pp[:, 3:6]
        inv = np.linalg.inv(np.asarray(frame_pose, np.float64))
        pts = world @ inv[:3, :3].T + inv[:3, 3]
    return pts.astype(np.float32), flat


def label_velocities(flow_image: np.ndarray, flat: np.ndarray, min_speed: float = 0.5) -> np.ndarray:
    """Per-point velocity (m/s, vehicle frame) [N,3] from a flow range image [H,W,C>=4] at pixels `flat`.

    REFERENCE.md rules: class -1 (no label) counts as zero velocity; speeds under `min_speed` are zeroed.
    """
    if flow_image.ndim != 3 or flow_image.shape[-1] < 4:
        raise WaymoLidarError(f"flow range image must be [H,W,4+], got {list(flow_image.shape)}")
    f = flow_image.reshape(-1, flow_image.shape[-1])[flat]
    vel = f[:, :3].astype(np.float32).copy()
    vel[f[:, 3] == FLOW_NO_LABEL] = 0.0
    vel[np.linalg.norm(vel, axis=1) < min_speed] = 0.0
    return vel


def ground_points(points: np.ndarray, threshold: float = 0.2, iterations: int = 5,
                  radius: float = 40.0, seed_quantile: float = 0.1, seed_band: float = 0.3) -> np.ndarray:
    """Boolean [N]: points on the ground plane, by iterated least squares (no sampling).

    points [N,3] in a vehicle frame (z up). Seeds: points within `radius` m horizontally whose height is
    within `seed_band` m of the `seed_quantile` height quantile; fit z = a x + b y + c; keep points within
    `threshold` m of the plane; refit `iterations` times. Deterministic for a given point set.
    """
    n = points.shape[0]
    if n < 3:
        return np.zeros(n, bool)
    p = points.astype(np.float64)
    near = np.hypot(p[:, 0], p[:, 1]) < radius
    if near.sum() < 3:
        return np.zeros(n, bool)
    z_seed = np.quantile(p[near, 2], seed_quantile)
    inliers = near & (p[:, 2] < z_seed + seed_band)
    design = np.column_stack([p[:, 0], p[:, 1], np.ones(n)])
    coef = np.zeros(3)
    for _ in range(iterations):
        if inliers.sum() < 3:
            return np.zeros(n, bool)
        a = design[inliers]
        coef = np.linalg.solve(a.T @ a, a.T @ p[inliers, 2])  # 3x3 normal equations: fast for 1e6 points
        residual = p[:, 2] - design @ coef
        new = near & (np.abs(residual) < threshold)
        if np.array_equal(new, inliers):
            break
        inliers = new
    return np.abs(p[:, 2] - design @ coef) < threshold

