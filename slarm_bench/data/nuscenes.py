"""nuScenes adapter: a dataroot read through nuscenes-devkit -> one `clip.Sequence` per scene.

Frames. rate="keyframes": one frame per sample (2 Hz). rate="sweeps": one frame per image of the reference
camera (CAM_FRONT when chosen, else the first chosen camera; about 12 Hz) from the scene's first keyframe to
its last. Each frame groups, for every chosen camera, its image nearest the reference image's time;
`time` is the reference image's timestamp minus the first one's. meta["camera_time"][t][v] keeps each
image's own time (s, same origin): nuScenes cameras fire at different times.

World frame of a Sequence: the ego frame of the first reference image, levelled (its yaw and position only,
z up), so annotated boxes, which turn about the global z axis, stay yaw-only. meta["sequence_world_to_global"]
keeps that pose (float64).

Per-pixel fields:
- images resized to height x width (JPEG draft scaling, then bilinear); intrinsics scaled with
  geometry.scale_intrinsics; cam_to_world = world_from_global @ ego_to_global(t_cam) @ cam_to_ego (nuScenes
  camera axes are already OpenCV's: the devkit projects with x / z to columns, y / z to rows, z = depth).
- depth: the LIDAR_TOP sweep nearest each frame's reference time, moved to each camera's time through the
  ego poses (lidar -> ego(t_lidar) -> global -> ego(t_cam) -> camera) and z-buffered (nearest point).
- flow: world-frame m/s of the winning lidar point from tracked boxes (geometry.box_track_flow): boxes are
  interpolated to the sweep's time and differenced against the far end of their keyframe segment; points
  outside boxes have zero world velocity; |v| < 0.5 m/s is set to 0 (annotation jitter), as for Waymo's
  box flow. None when the scene has a single keyframe (no track to difference).
- dynamic_box: filled rectangles (geometry.box_rectangle_mask) of boxes with >= 1 lidar point and horizontal
  speed > 1 m/s, moved to each camera's time with their velocity; dynamic: |flow| > 1 m/s at lidar pixels.
- ground: lidar ground points (waymo_lidar.ground_points, in the sweep's ego frame) at the winning point.
- semantic: lidarseg labels of keyframe sweeps mapped to clip.SLARM_CLASSES at the winning point (255
  elsewhere and for `noise`); None when the dataroot has no lidarseg for the scene. sky: None (unknown).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from slarm_bench import geometry
from slarm_bench.clip import SCHEMA_VERSION, SLARM_CLASSES, UNLABELLED, Boxes, Sequence
from slarm_bench.data.nuscenes_db import (
    DEVKIT_ERRORS,
    BoxTracks,
    NuScenesDataError,
    channel_chain,
    load_devkit,
    pose_of,
    scene_samples,
    split_scene_names,
    version_splits,
)
from slarm_bench.data.waymo_lidar import ground_points
from slarm_bench.errors import SlarmBenchError, check_name

CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT")
DEFAULT_CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT")
LIDAR = "LIDAR_TOP"
RATES = ("keyframes", "sweeps")
RATE_FPS = {"keyframes": 2.0, "sweeps": 12.0}
DYNAMIC_SPEED = 1.0
FLOW_MIN_SPEED = 0.5
NEAR = 0.01
SWEEP_MARGIN_US = 50_000  # cameras of the last keyframe may fire up to ~50 ms after the reference camera


def slarm_label(category: str) -> int:
    """nuScenes (or Lyft) category name -> index into SLARM_CLASSES; 255 for lidarseg `noise`."""
    c = category
    if c == "noise":
        return UNLABELLED
    if c.startswith(
        (
            "vehicle.car",
            "vehicle.truck",
            "vehicle.bus",
            "vehicle.construction",
            "vehicle.emergency",
            "vehicle.trailer",
        )
    ) or c in ("car", "truck", "bus", "other_vehicle", "emergency_vehicle"):
        return SLARM_CLASSES.index("vehicle")
    if c in ("vehicle.bicycle", "bicycle"):
        return SLARM_CLASSES.index("bicycle")
    if c in ("vehicle.motorcycle", "motorcycle"):
        return SLARM_CLASSES.index("motorcycle")
    if c.startswith("human.pedestrian") or c == "pedestrian":
        return SLARM_CLASSES.index("people")
    if c == "flat.driveable_surface":
        return SLARM_CLASSES.index("road")
    if c == "flat.sidewalk":
        return SLARM_CLASSES.index("sidewalk")
    if c == "static.manmade":
        return SLARM_CLASSES.index("buildings")
    return SLARM_CLASSES.index("others")


def track_id(instance_token: str) -> int:
    """Stable positive int64 for an instance token (first 63 bits of its BLAKE2b digest)."""
    digest = hashlib.blake2b(instance_token.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def load_image(path: Path, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """JPEG -> uint8 [height,width,3] and the raw (width, height)."""
    from PIL import Image

    if not path.is_file():
        raise NuScenesDataError(f"image file {path} is missing: unpack the camera blobs of this dataroot")
    with Image.open(path) as im:
        raw_size = im.size
        if raw_size != (width, height):
            im.draft("RGB", (width, height))  # DCT scaling: decode at >= the target size, much faster
            im = im.convert("RGB").resize((width, height), Image.BILINEAR)
        return np.asarray(im.convert("RGB")), raw_size


def load_lidar(path: Path) -> np.ndarray:
    """.pcd.bin (float32 x, y, z, intensity, ring) -> points [N,3] float32 in the lidar frame."""
    if not path.is_file():
        raise NuScenesDataError(f"lidar file {path} is missing: unpack the lidar blobs of this dataroot")
    raw = np.fromfile(path, np.float32)
    if raw.size % 5:
        raise NuScenesDataError(
            f"lidar file {path} holds {raw.size} floats, not a multiple of 5: re-download it"
        )
    return raw.reshape(-1, 5)[:, :3].copy()


def project(
    points: np.ndarray, cam_from_points: np.ndarray, k: np.ndarray, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """z-buffer of points [N,3] in one OpenCV camera -> depth [h,w] float32, winning point index [h,w]."""
    rot = cam_from_points[:3, :3].astype(np.float32)
    trans = cam_from_points[:3, 3].astype(np.float32)
    z_all = points @ rot[2] + trans[2]
    front = np.flatnonzero(z_all > NEAR)
    z = z_all[front]
    proj = (k.astype(np.float32) @ rot)[:2]
    offset = k[:2].astype(np.float32) @ trans
    uv = (points[front] @ proj.T + offset) / z[:, None]
    depth, idx = geometry.z_buffer(uv, z, h, w, near=NEAR)
    hit = idx >= 0
    idx[hit] = front[idx[hit]]
    return depth, idx


def _nearest(records: list[dict[str, Any]], t_us: int) -> dict[str, Any]:
    times = np.array([r["timestamp"] for r in records], np.int64)
    return records[int(np.argmin(np.abs(times - t_us)))]


class _Scene:
    """Everything of one scene needed to assemble its Sequence."""

    def __init__(self, nusc: Any, name: str, cameras: list[str], rate: str) -> None:
        self.nusc = nusc
        scenes = {s["name"]: s for s in nusc.scene}
        record = scenes[check_name("nuScenes scene", name, scenes)]
        self.samples = scene_samples(nusc, record)
        if not self.samples:
            raise NuScenesDataError(f"scene {name} has no samples: its tables are incomplete")
        have = set(self.samples[0]["data"])
        absent = [c for c in [*cameras, LIDAR] if c not in have]
        if absent:
            raise NuScenesDataError(
                f"scene {name} has no channels {absent}; it has {sorted(have)}: choose cameras among those"
            )
        self.tracks = BoxTracks(nusc, self.samples)
        if self.tracks.count == 0:
            raise NuScenesDataError(
                f"scene {name} has no box annotations (a test-split scene?): flow and "
                "dynamic masks need them; prepare train or val scenes"
            )
        ref = "CAM_FRONT" if "CAM_FRONT" in cameras else cameras[0]
        if rate == "keyframes":
            self.ref = [nusc.get("sample_data", s["data"][ref]) for s in self.samples]
            self.images = [[nusc.get("sample_data", s["data"][c]) for c in cameras] for s in self.samples]
            self.lidar = [nusc.get("sample_data", s["data"][LIDAR]) for s in self.samples]
        else:
            self.ref = channel_chain(nusc, self.samples, ref, 0)
            chains = {c: channel_chain(nusc, self.samples, c, SWEEP_MARGIN_US) for c in cameras}
            lidar = channel_chain(nusc, self.samples, LIDAR, SWEEP_MARGIN_US)
            self.images = [
                [r if c == ref else _nearest(chains[c], r["timestamp"]) for c in cameras] for r in self.ref
            ]
            self.lidar = [_nearest(lidar, r["timestamp"]) for r in self.ref]
        self.reference_camera = ref


class NuScenesAdapter:
    """`slarm-bench prepare nuscenes`: a nuScenes dataroot (any version) -> one Sequence per scene."""

    name = "nuscenes"

    def __init__(
        self,
        raw: str | os.PathLike,
        version: str = "v1.0-trainval",
        cameras: list[str] | tuple[str, ...] | None = None,
        height: int = 160,
        width: int = 288,
        rate: str = "sweeps",
        **_: Any,
    ) -> None:
        self.raw = Path(raw)
        self.version = str(version)
        self.cameras = [check_name("nuScenes camera", c, CAMERAS) for c in (cameras or DEFAULT_CAMERAS)]
        if len(set(self.cameras)) != len(self.cameras):
            raise SlarmBenchError(f"cameras {self.cameras} repeat a name: list each camera once")
        if height <= 0 or width <= 0:
            raise SlarmBenchError(f"image size must be positive, got {height}x{width}")
        self.height, self.width = int(height), int(width)
        self.rate = check_name("nuScenes rate", rate, RATES)
        self.nusc = load_devkit(self.raw, self.version)

    def splits(self) -> list[str]:
        return version_splits(self.version)

    def scenes(self, split: str) -> list[str]:
        check_name(f"split of {self.version}", split, self.splits())
        present = [s["name"] for s in self.nusc.scene]
        wanted = split_scene_names(split)
        return present if wanted is None else [n for n in present if n in set(wanted)]

    def build(self, split: str, scene: str) -> Sequence:
        names = self.scenes(split)
        check_name(f"{split} scene in {self.raw}", scene, names)
        try:
            return build_sequence(self.nusc, scene, self.cameras, self.height, self.width, self.rate)
        except SlarmBenchError:
            raise
        except DEVKIT_ERRORS as exc:
            raise NuScenesDataError(
                f"scene {scene}: nuscenes-devkit failed ({type(exc).__name__}: {exc}): "
                "the dataroot's tables or files are inconsistent"
            ) from exc


def build_sequence(
    nusc: Any, scene: str, cameras: list[str], height: int, width: int, rate: str = "sweeps"
) -> Sequence:
    """One scene -> Sequence (see the module docstring for every field's rule)."""
    sc = _Scene(nusc, scene, cameras, rate)
    root = Path(nusc.dataroot)
    t_count, v_count = len(sc.ref), len(cameras)
    ego0 = pose_of(nusc.get("ego_pose", sc.ref[0]["ego_pose_token"]))
    yaw0 = np.arctan2(ego0[1, 0], ego0[0, 0])
    world_to_global = geometry.make_pose(geometry.rotation_z(yaw0), ego0[:3, 3])
    world_from_global = geometry.invert_pose(world_to_global)
    t_ref0 = sc.ref[0]["timestamp"]
    hasher = hashlib.sha256()

    images = np.zeros((t_count, v_count, height, width, 3), np.uint8)
    intr = np.zeros((t_count, v_count, 3, 3), np.float32)
    c2w = np.zeros((t_count, v_count, 4, 4))  # world frame
    cam_from_global = np.zeros((t_count, v_count, 4, 4))
    cam_time = np.zeros((t_count, v_count))
    calib_cache: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    def calib(token: str) -> tuple[np.ndarray, np.ndarray | None]:
        if token not in calib_cache:
            rec = nusc.get("calibrated_sensor", token)
            k = np.asarray(rec["camera_intrinsic"], np.float64) if rec.get("camera_intrinsic") else None
            calib_cache[token] = (pose_of(rec), k)
        return calib_cache[token]

    for t, row in enumerate(sc.images):
        for v, sd in enumerate(row):
            img, (w0, h0) = load_image(root / sd["filename"], height, width)
            images[t, v] = img
            sensor_to_ego, k = calib(sd["calibrated_sensor_token"])
            if k is None or k.shape != (3, 3):
                raise NuScenesDataError(
                    f"{cameras[v]} calibration {sd['calibrated_sensor_token']} has no 3x3 "
                    "camera_intrinsic: the calibrated_sensor table is broken"
                )
            intr[t, v] = geometry.scale_intrinsics(k, width / w0, height / h0)
            cam_to_global = pose_of(nusc.get("ego_pose", sd["ego_pose_token"])) @ sensor_to_ego
            c2w[t, v] = world_from_global @ cam_to_global
            cam_from_global[t, v] = geometry.invert_pose(cam_to_global)
            cam_time[t, v] = (sd["timestamp"] - t_ref0) * 1e-6
            hasher.update(sd["token"].encode())

    time = np.array([(r["timestamp"] - t_ref0) * 1e-6 for r in sc.ref], np.float64)
    depth = np.zeros((t_count, v_count, height, width), np.float32)
    ground = np.zeros((t_count, v_count, height, width), bool)
    has_flow = len(sc.tracks.times) >= 2
    flow = np.zeros((t_count, v_count, height, width, 3), np.float32) if has_flow else None
    lidarseg = getattr(nusc, "lidarseg", None) or []
    semantic = np.full((t_count, v_count, height, width), UNLABELLED, np.uint8) if lidarseg else None
    semantic_frames = [0] * t_count
    box_parts = []
    for t, sd in enumerate(sc.lidar):
        hasher.update(sd["token"].encode())
        pts = load_lidar(root / sd["filename"])
        lidar_to_ego, _ = calib(sd["calibrated_sensor_token"])
        ego_to_global = pose_of(nusc.get("ego_pose", sd["ego_pose_token"]))
        lidar_to_global = ego_to_global @ lidar_to_ego
        is_ground = ground_points(geometry.transform_points(lidar_to_ego, pts))
        labels = _lidarseg_labels(nusc, sd, pts.shape[0]) if semantic is not None else None
        semantic_frames[t] = int(labels is not None)
        winners = []
        for v in range(v_count):
            d, idx = project(pts, cam_from_global[t, v] @ lidar_to_global, intr[t, v], height, width)
            depth[t, v] = d
            hit = idx >= 0
            ground[t, v][hit] = is_ground[idx[hit]]
            if labels is not None:
                semantic[t, v][hit] = labels[idx[hit]]
            winners.append((hit, idx[hit]))
        state = sc.tracks.at(sd["timestamp"])
        box_parts.append((t, state))
        if flow is not None:
            needed = np.unique(np.concatenate([w[1] for w in winners]))
            vel = _box_flow(
                sc.tracks,
                state,
                geometry.transform_points(lidar_to_global, pts[needed].astype(np.float64)),
                sd["timestamp"],
            )
            vel = geometry.rotate_vectors(world_from_global[:3, :3], vel.astype(np.float64)).astype(
                np.float32
            )
            lookup = np.searchsorted(needed, np.arange(pts.shape[0]))
            for v, (hit, win) in enumerate(winners):
                flow[t, v][hit] = vel[lookup[win]]

    boxes = _world_boxes(box_parts, world_from_global)
    lidar_time = np.array([(sd["timestamp"] - t_ref0) * 1e-6 for sd in sc.lidar])
    dynamic_box = _dynamic_box(boxes, c2w, intr, cam_time, lidar_time, height, width)
    dynamic = ((np.linalg.norm(flow, axis=-1) > DYNAMIC_SPEED) & (depth > 0)) if flow is not None else None
    meta = {
        "dataset": "nuscenes",
        "scene": scene,
        "camera_names": list(cameras),
        "label_names": list(SLARM_CLASSES),
        "fps": RATE_FPS[rate],
        "frame_indices": list(range(t_count)),
        "schema_version": SCHEMA_VERSION,
        "source_checksum": f"sha256:{hasher.hexdigest()}",
        "reference_camera": sc.reference_camera,
        "rate": rate,
        "version": nusc.version,
        "sequence_world_to_global": world_to_global.tolist(),
        "camera_time": cam_time.tolist(),
        "lidar_time": lidar_time.tolist(),
        "sample_data_tokens": [[sd["token"] for sd in row] for row in sc.images],
        "lidar_tokens": [sd["token"] for sd in sc.lidar],
        "depth_rule": "z-buffer: nearest LIDAR_TOP point per pixel, moved to each camera's time",
        "flow_source": "boxes" if flow is not None else None,
        "flow_min_speed": FLOW_MIN_SPEED,
        "dynamic_speed": DYNAMIC_SPEED,
        "semantic_frames": semantic_frames,
        "undistorted": True,
    }
    seq = Sequence(
        images=images,
        intrinsics=intr,
        cam_to_world=c2w.astype(np.float32),
        time=time,
        meta=meta,
        depth=depth,
        flow=flow,
        sky=None,
        dynamic=dynamic,
        ground=ground,
        semantic=semantic,
        boxes=boxes,
        dynamic_box=dynamic_box,
    )
    seq.validate()
    return seq


def _lidarseg_labels(nusc: Any, sd: dict[str, Any], n: int) -> np.ndarray | None:
    """SLARM class per point of a lidar sweep with lidarseg labels, else None."""
    index = getattr(nusc, "_lidarseg_by_sd", None)
    if index is None:
        index = {r["sample_data_token"]: r for r in nusc.lidarseg}
        lut = np.full(256, UNLABELLED, np.uint8)
        for idx, name in nusc.lidarseg_idx2name_mapping.items():
            lut[int(idx)] = slarm_label(name)
        nusc._lidarseg_by_sd, nusc._lidarseg_lut = index, lut
    rec = index.get(sd["token"])
    if rec is None:
        return None
    path = Path(nusc.dataroot) / rec["filename"]
    if not path.is_file():
        raise NuScenesDataError(
            f"lidarseg file {path} is missing: unpack the lidarseg archive of this version"
        )
    raw = np.fromfile(path, np.uint8)
    if raw.size != n:
        raise NuScenesDataError(
            f"lidarseg file {path} has {raw.size} labels for {n} points: it belongs to "
            "another sweep; re-download it"
        )
    return nusc._lidarseg_lut[raw]


def _box_flow(tracks: BoxTracks, state: Any, pts_global: np.ndarray, t_us: int) -> np.ndarray:
    """Global-frame velocity [N,3] of global points at time t from the boxes' motion to the segment's end."""
    partner = tracks.flow_partner(t_us)
    if partner is None or partner == t_us or len(state.instances) == 0:
        return np.zeros(pts_global.shape, np.float32)
    other = tracks.at(partner)
    ids = {inst: track_id(inst) for inst in state.instances + other.instances}
    vel = geometry.box_track_flow(
        pts_global, _as_boxes(state, ids, 0), _as_boxes(other, ids, 0), (partner - t_us) * 1e-6
    )
    vel[np.linalg.norm(vel, axis=1) < FLOW_MIN_SPEED] = 0.0
    return vel


def _as_boxes(state: Any, ids: dict[str, int], frame: int) -> Boxes:
    m = len(state.instances)
    return Boxes(
        frame=np.full(m, frame, np.int32),
        track_id=np.array([ids[i] for i in state.instances], np.int64),
        label=np.array([slarm_label(c) for c in state.category], np.uint8).reshape(m),
        centre=state.centre.astype(np.float32).reshape(m, 3),
        size=np.maximum(state.size, 1e-3).astype(np.float32).reshape(m, 3),
        yaw=state.yaw.astype(np.float32).reshape(m),
        velocity=state.velocity.astype(np.float32).reshape(m, 3),
        acceleration=np.full((m, 3), np.nan, np.float32),
        num_points=state.num_points.astype(np.int32).reshape(m),
    )


def _world_boxes(parts: list[tuple[int, Any]], world_from_global: np.ndarray) -> Boxes:
    out = []
    for t, state in parts:
        if not state.instances:
            continue
        ids = {i: track_id(i) for i in state.instances}
        out.append(geometry.transform_boxes(world_from_global, _as_boxes(state, ids, t)))
    if not out:
        return Boxes.empty()
    return Boxes(**{k: np.concatenate([p.as_dict()[k] for p in out]) for k in Boxes._DTYPES})


def _dynamic_box(
    boxes: Boxes,
    c2w: np.ndarray,
    intr: np.ndarray,
    cam_time: np.ndarray,
    box_time: np.ndarray,
    height: int,
    width: int,
) -> np.ndarray:
    """Rectangles of moving boxes per camera [T,V,H,W]; boxes move from their time to each camera's."""
    t_count, v_count = c2w.shape[:2]
    mask = np.zeros((t_count, v_count, height, width), bool)
    speed = np.nan_to_num(np.hypot(boxes.velocity[:, 0], boxes.velocity[:, 1]))
    moving = (boxes.num_points >= 1) & (speed > DYNAMIC_SPEED)
    for t in range(t_count):
        sel = moving & (boxes.frame == t)
        if not sel.any():
            continue
        for v in range(v_count):
            shift = boxes.velocity[sel].astype(np.float64) * (cam_time[t, v] - box_time[t])
            corners = geometry.box_corners(boxes.centre[sel] + shift, boxes.size[sel], boxes.yaw[sel])
            mask[t, v] = geometry.box_rectangle_mask(corners, c2w[t, v], intr[t, v], height, width)
    return mask
