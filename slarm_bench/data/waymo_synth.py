"""Build Waymo v1 `Frame` records with the official schema, for tests and benchmarks (no real data needed).

Range images are made from geometry (e.g. a flat wall at a known distance) with the exact inverse of
`waymo_lidar`'s conventions, so decoded points can be checked to the millimetre.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from slarm_bench.data.waymo_frame import CAMERA_NAMES, LASER_NAMES, load_schema
from slarm_bench.data.waymo_lidar import LidarGeometry, encode_matrix_float


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png16_bytes(label: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(label, np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def wall_range_image(geom: LidarGeometry, distance: float, max_azimuth: float = np.pi / 2) -> np.ndarray:
    """[H,W] ranges of a lidar (at its extrinsic's origin) seeing the plane x = `distance` (vehicle frame);
    -1 (no return) where the ray does not reach it within `max_azimuth` of straight ahead."""
    d = geom.directions_vehicle
    origin_x = geom.extrinsic[0, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (distance - origin_x) / d[..., 0]
    ahead = np.abs(np.arctan2(d[..., 1], d[..., 0])) < max_azimuth
    return np.where(ahead & (r > 0) & np.isfinite(r), r, -1.0).astype(np.float32)


def make_frame(*, context_name: str = "synthetic", timestamp_micros: int = 1_000_000,
               pose: np.ndarray | None = None, cameras: dict[str, dict[str, Any]] | None = None,
               lasers: dict[str, dict[str, Any]] | None = None,
               boxes: list[dict[str, Any]] | None = None) -> bytes:
    """Serialized Frame.

    cameras: name -> {width, height, intrinsic [9], extrinsic [4,4], image uint8 [H,W,3] (optional: no
      image bytes if absent), pose [4,4] (optional, defaults to the frame pose), panoptic uint16 [H,W]
      and divisor (optional)}.
    lasers: name -> {extrinsic [4,4], inclinations [H] (lowest first) or inclination_range (min, max),
      range [H,W] or
      [H,W,4], range2 (optional second return), flow [H,W,4] (optional), pixel_pose [H,W,6] (TOP only,
      optional)}; calibration only if no range given.
    boxes: {id, type (Label.Type int), centre [3], size [3] (l, w, h), heading, speed [3], num_points}.
    """
    pb2 = load_schema()
    pose = np.eye(4) if pose is None else np.asarray(pose, np.float64)
    frame = pb2.Frame()
    frame.context.name = context_name
    frame.timestamp_micros = int(timestamp_micros)
    frame.pose.transform.extend(pose.reshape(-1).tolist())
    for name, cam in (cameras or {}).items():
        cid = CAMERA_NAMES.index(name) + 1
        cal = frame.context.camera_calibrations.add()
        cal.name = cid
        cal.width, cal.height = int(cam["width"]), int(cam["height"])
        cal.intrinsic.extend([float(x) for x in cam["intrinsic"]])
        cal.extrinsic.transform.extend(np.asarray(cam.get("extrinsic", np.eye(4)), float).reshape(-1).tolist())
        if cam.get("image") is None:
            continue
        img = frame.images.add()
        img.name = cid
        img.image = jpeg_bytes(cam["image"])
        img.pose.transform.extend(np.asarray(cam.get("pose", pose), float).reshape(-1).tolist())
        img.pose_timestamp = cam.get("timestamp", timestamp_micros * 1e-6)
        if cam.get("panoptic") is not None:
            img.camera_segmentation_label.panoptic_label = png16_bytes(cam["panoptic"])
            img.camera_segmentation_label.panoptic_label_divisor = int(cam.get("divisor", 1000))
    for name, las in (lasers or {}).items():
        lid = LASER_NAMES.index(name) + 1
        cal = frame.context.laser_calibrations.add()
        cal.name = lid
        cal.extrinsic.transform.extend(np.asarray(las.get("extrinsic", np.eye(4)), float).reshape(-1).tolist())
        if las.get("inclinations") is not None:  # non-uniform beams, lowest first (the TOP lidar)
            incl = [float(x) for x in las["inclinations"]]
            cal.beam_inclinations.extend(incl)
            cal.beam_inclination_min, cal.beam_inclination_max = min(incl), max(incl)
        else:
            lo, hi = las.get("inclination_range", (-0.3, 0.1))
            cal.beam_inclination_min, cal.beam_inclination_max = float(lo), float(hi)
        if las.get("range") is None:
            continue
        laser = frame.lasers.add()
        laser.name = lid
        for ret, key in ((laser.ri_return1, "range"), (laser.ri_return2, "range2")):
            if las.get(key) is None:
                continue
            rng = np.asarray(las[key], np.float32)
            if rng.ndim == 2:
                rng = np.stack([rng, np.ones_like(rng), np.zeros_like(rng), np.zeros_like(rng)], -1)
            ret.range_image_compressed = encode_matrix_float(rng)
            if las.get("flow") is not None:
                ret.range_image_flow_compressed = encode_matrix_float(las["flow"])
        if las.get("pixel_pose") is not None:
            laser.ri_return1.range_image_pose_compressed = encode_matrix_float(las["pixel_pose"])
    for b in boxes or []:
        lb = frame.laser_labels.add()
        lb.id = b["id"]
        lb.type = int(b.get("type", 1))
        lb.box.center_x, lb.box.center_y, lb.box.center_z = (float(x) for x in b["centre"])
        lb.box.length, lb.box.width, lb.box.height = (float(x) for x in b["size"])
        lb.box.heading = float(b.get("heading", 0.0))
        sx, sy, sz = (float(x) for x in b.get("speed", (0.0, 0.0, 0.0)))
        lb.metadata.speed_x, lb.metadata.speed_y, lb.metadata.speed_z = sx, sy, sz
        lb.num_lidar_points_in_box = int(b.get("num_points", 10))
    return frame.SerializeToString()
