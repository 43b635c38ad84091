"""A small nuScenes-schema dataroot with known geometry, for tests and benchmarks (no real data).

The ego drives along its heading `yaw` at `speed` m/s on the global plane; keyframes every 0.5 s with
`sweeps` camera and lidar sweeps between them; cameras fire `camera_offset_us` after the lidar. The three
front cameras look ahead, 55 degrees left and right. One car (instance "car") drives at `car_velocity` m/s
(global) and one barrier stands still; the lidar sweep holds `points` random points plus one point at
the centre of each box and one straight ahead of CAM_FRONT. All 13 tables are written, and lidarseg labels
for the keyframe sweeps when `lidarseg` is set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slarm_bench import geometry
from slarm_bench.data.nuscenes_db import TABLES

T0_US = 1_532_402_927_000_000
KEYFRAME_US = 500_000
CAMERA_YAWS = {"CAM_FRONT_LEFT": np.deg2rad(55.0), "CAM_FRONT": 0.0, "CAM_FRONT_RIGHT": np.deg2rad(-55.0)}
CAMERA_MOUNT = np.array([1.5, 0.0, 1.5])
LIDAR_MOUNT = np.array([0.9, 0.0, 1.8])
CATEGORIES = ("noise", "vehicle.car", "movable_object.barrier", "flat.driveable_surface", "static.manmade")


@dataclass
class SynthSpec:
    samples: int = 3
    sweeps: int = 1  # extra sweeps between keyframes (camera and lidar)
    width: int = 64
    height: int = 36
    focal: float = 40.0
    points: int = 200
    speed: float = 5.0
    yaw: float = 0.3
    camera_offset_us: int = 20_000
    car_start: tuple[float, float, float] = (12.0, -1.0, 0.8)  # ego frame at t = 0
    car_velocity: tuple[float, float, float] = (0.0, 4.0, 0.0)  # global frame
    barrier: tuple[float, float, float] = (15.0, 4.0, 0.5)
    lidarseg: bool = True
    version: str = "v1.0-mini"
    scene: str = "scene-0061"
    seed: int = 0
    jpeg_quality: int = 90


def ego_pose(spec: SynthSpec, t_us: int) -> np.ndarray:
    """Ego-to-global [4,4] at time t."""
    s = (t_us - T0_US) * 1e-6
    start = np.array([400.0, 1100.0, 0.0])
    heading = np.array([np.cos(spec.yaw), np.sin(spec.yaw), 0.0])
    return geometry.make_pose(geometry.rotation_z(spec.yaw), start + spec.speed * s * heading)


def camera_to_ego(channel: str) -> np.ndarray:
    return geometry.make_pose(
        geometry.rotation_z(CAMERA_YAWS[channel]) @ geometry.OPENCV_TO_FLU, CAMERA_MOUNT
    )


def lidar_to_ego() -> np.ndarray:
    return geometry.make_pose(np.eye(3), LIDAR_MOUNT)


def intrinsics(spec: SynthSpec) -> np.ndarray:
    return geometry.intrinsics_matrix(spec.focal, spec.focal, spec.width / 2, spec.height / 2)


def car_centre(spec: SynthSpec, t_us: int) -> np.ndarray:
    """Global centre of the car at time t."""
    start = geometry.transform_points(ego_pose(spec, T0_US), np.array(spec.car_start))
    return start + np.array(spec.car_velocity) * (t_us - T0_US) * 1e-6


def barrier_centre(spec: SynthSpec) -> np.ndarray:
    return geometry.transform_points(ego_pose(spec, T0_US), np.array(spec.barrier))


CAR_SIZE_WLH = (2.0, 4.0, 1.6)
BARRIER_SIZE_WLH = (2.0, 0.5, 1.0)


def _q(rot: np.ndarray) -> list[float]:
    return [float(x) for x in geometry.matrix_to_quaternion(rot)]


def lidar_points(spec: SynthSpec, t_us: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lidar-frame points [N,5] float32 and their lidarseg category indices [N] at time t."""
    lidar_from_global = geometry.invert_pose(ego_pose(spec, t_us) @ lidar_to_ego())
    n = spec.points
    rand = np.column_stack([rng.uniform(-30, 30, n), rng.uniform(-30, 30, n), rng.uniform(-1.7, 3.0, n)])
    labels = rng.choice([0, 3, 4], size=n).astype(np.uint8)
    special = [car_centre(spec, t_us), barrier_centre(spec)]
    cam = ego_pose(spec, t_us) @ camera_to_ego("CAM_FRONT")
    ahead = geometry.transform_points(cam, np.array([0.0, 0.0, 10.0]))  # CAM_FRONT optical axis, 10 m
    fixed = geometry.transform_points(lidar_from_global, np.array([*special, ahead]))
    xyz = np.vstack([fixed, rand])
    out = np.zeros((xyz.shape[0], 5), np.float32)
    out[:, :3] = xyz
    return out, np.concatenate([np.array([1, 2, 4], np.uint8), labels])


def make_dataroot(root: str | Path, spec: SynthSpec | None = None) -> Path:
    """Write the dataroot under `root` and return it."""
    from PIL import Image

    spec = spec or SynthSpec()
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    tables: dict[str, list[dict]] = {t: [] for t in TABLES}
    tables["category"] = [
        {"token": f"cat-{i}", "name": n, "description": "", "index": i} for i, n in enumerate(CATEGORIES)
    ]
    tables["log"] = [
        {
            "token": "log-0",
            "logfile": "synthetic",
            "vehicle": "synthetic",
            "date_captured": "2018-07-24",
            "location": "singapore-onenorth",
        }
    ]
    tables["map"] = [
        {
            "token": "map-0",
            "log_tokens": ["log-0"],
            "category": "semantic_prior",
            "filename": "maps/map-0.png",
        }
    ]
    (root / "maps").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "maps" / "map-0.png")
    channels = [*CAMERA_YAWS, "LIDAR_TOP"]
    for ch in channels:
        modality = "lidar" if ch == "LIDAR_TOP" else "camera"
        tables["sensor"].append({"token": f"sensor-{ch}", "channel": ch, "modality": modality})
        pose = lidar_to_ego() if modality == "lidar" else camera_to_ego(ch)
        tables["calibrated_sensor"].append(
            {
                "token": f"calib-{ch}",
                "sensor_token": f"sensor-{ch}",
                "translation": pose[:3, 3].tolist(),
                "rotation": _q(pose[:3, :3]),
                "camera_intrinsic": intrinsics(spec).tolist() if modality == "camera" else [],
            }
        )
    step = KEYFRAME_US // (spec.sweeps + 1)
    n_times = (spec.samples - 1) * (spec.sweeps + 1) + 1
    sample_tokens = [f"sample-{k}" for k in range(spec.samples)]
    for k, tok in enumerate(sample_tokens):
        tables["sample"].append(
            {
                "token": tok,
                "timestamp": T0_US + k * KEYFRAME_US,
                "scene_token": "scene-0",
                "prev": sample_tokens[k - 1] if k else "",
                "next": sample_tokens[k + 1] if k + 1 < spec.samples else "",
            }
        )
    tables["scene"] = [
        {
            "token": "scene-0",
            "log_token": "log-0",
            "nbr_samples": spec.samples,
            "first_sample_token": sample_tokens[0],
            "last_sample_token": sample_tokens[-1],
            "name": spec.scene,
            "description": "synthetic",
        }
    ]
    seg_dir = root / "lidarseg" / spec.version
    if spec.lidarseg:
        seg_dir.mkdir(parents=True, exist_ok=True)
    colour = {"CAM_FRONT_LEFT": (200, 40, 40), "CAM_FRONT": (40, 200, 40), "CAM_FRONT_RIGHT": (40, 40, 200)}
    for ch in channels:
        offset = 0 if ch == "LIDAR_TOP" else spec.camera_offset_us
        kind = "LIDAR_TOP" if ch == "LIDAR_TOP" else ch
        for i in range(n_times):
            t_us = T0_US + i * step + offset
            key = i % (spec.sweeps + 1) == 0
            folder = "samples" if key else "sweeps"
            ext = "pcd.bin" if ch == "LIDAR_TOP" else "jpg"
            filename = f"{folder}/{kind}/synthetic__{kind}__{t_us}.{ext}"
            path = root / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            token = f"sd-{ch}-{i}"
            if ch == "LIDAR_TOP":
                pts, labels = lidar_points(spec, t_us, rng)
                pts.tofile(path)
                if key and spec.lidarseg:
                    labels.tofile(seg_dir / f"{token}_lidarseg.bin")
                    tables.setdefault("lidarseg", []).append(
                        {
                            "token": token,
                            "sample_data_token": token,
                            "filename": f"lidarseg/{spec.version}/{token}_lidarseg.bin",
                        }
                    )
            else:
                img = np.empty((spec.height, spec.width, 3), np.uint8)
                img[:] = colour[ch]
                Image.fromarray(img).save(path, quality=spec.jpeg_quality)
            tables["ego_pose"].append(
                {
                    "token": token,
                    "timestamp": t_us,
                    "rotation": _q(ego_pose(spec, t_us)[:3, :3]),
                    "translation": ego_pose(spec, t_us)[:3, 3].tolist(),
                }
            )
            tables["sample_data"].append(
                {
                    "token": token,
                    "sample_token": sample_tokens[i // (spec.sweeps + 1) + (0 if key else 1)],
                    "ego_pose_token": token,
                    "calibrated_sensor_token": f"calib-{ch}",
                    "timestamp": t_us,
                    "fileformat": "pcd" if ch == "LIDAR_TOP" else "jpg",
                    "is_key_frame": key,
                    "height": 0 if ch == "LIDAR_TOP" else spec.height,
                    "width": 0 if ch == "LIDAR_TOP" else spec.width,
                    "filename": filename,
                    "prev": f"sd-{ch}-{i - 1}" if i else "",
                    "next": f"sd-{ch}-{i + 1}" if i + 1 < n_times else "",
                }
            )
    _annotations(spec, tables, sample_tokens)
    table_dir = root / spec.version
    table_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (table_dir / f"{name}.json").write_text(json.dumps(rows))
    return root


def _annotations(spec: SynthSpec, tables: dict[str, list[dict]], sample_tokens: list[str]) -> None:
    objects = {"car": ("cat-1", CAR_SIZE_WLH), "barrier": ("cat-2", BARRIER_SIZE_WLH)}
    for inst, (cat, size) in objects.items():
        toks = [f"ann-{inst}-{k}" for k in range(spec.samples)]
        tables["instance"].append(
            {
                "token": inst,
                "category_token": cat,
                "nbr_annotations": spec.samples,
                "first_annotation_token": toks[0],
                "last_annotation_token": toks[-1],
            }
        )
        for k, tok in enumerate(toks):
            t_us = T0_US + k * KEYFRAME_US
            centre = car_centre(spec, t_us) if inst == "car" else barrier_centre(spec)
            tables["sample_annotation"].append(
                {
                    "token": tok,
                    "sample_token": sample_tokens[k],
                    "instance_token": inst,
                    "visibility_token": "",
                    "attribute_tokens": [],
                    "translation": centre.tolist(),
                    "size": list(size),
                    "rotation": _q(geometry.rotation_z(spec.yaw)),
                    "prev": toks[k - 1] if k else "",
                    "next": toks[k + 1] if k + 1 < spec.samples else "",
                    "num_lidar_pts": 1,
                    "num_radar_pts": 0,
                }
            )
