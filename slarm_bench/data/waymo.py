"""Waymo Open Dataset v1 adapter: segment TFRecords -> `clip.Sequence`, with no TensorFlow.

Layout of `raw`: raw/<split>/segment-*.tfrecord (split = training | validation), one segment per file.
A Sequence's world frame is the vehicle frame of the segment's first frame (x forward, y left, z up);
meta["sequence_world_to_global"] keeps Waymo's global pose of it (float64), which float32 could not hold.

Per-pixel fields (REFERENCE.md sections 1-3):
- images: resized with JPEG DCT scaling; side cameras keep their aspect and are padded below
  (meta["valid_height"][camera] rows are real; padding is black, depth 0, semantic 255, masks False).
  Intrinsics are pinhole, scaled; the images are not undistorted (coefficients in meta["distortion"]).
- cam_to_world = world_from_global @ ego_to_global(image pose time) @ cam_to_ego @ OPENCV_TO_FLU.
- depth: all lidar points of the frame projected into each camera, nearest point per pixel (z-buffer,
  waymo_project: float32 projection, so a point within ~1e-4 px of a pixel border may land next door).
  Each frame is projected as soon as it is decoded; only the points that win a pixel are kept.
- flow: world-frame velocity of the winning point: labels (scene-flow release; class -1 counts as 0,
  |v| < 0.5 m/s set to 0, rotated vehicle -> world), or, without labels, tracked boxes
  (geometry.box_track_flow; same 0.5 m/s floor); meta["flow_source"] = "labels" | "boxes".
- ground: lidar ground points (waymo_lidar.ground_plane, fitted on a fixed-seed sample of 20 000 points,
  then classify_ground) at the winning point; dynamic: |flow| > 1 m/s.
- dynamic_box: filled rectangles of boxes with >= 1 lidar point and |(vx, vy)| > 1 m/s.
- semantic: Waymo panoptic camera labels mapped to SLARM's classes at labelled (frame, camera) pairs,
  255 elsewhere; None if the segment has none. sky: from the labels, only when every image is labelled
  (else None: an absent mask is never faked with zeros; the semantic field still carries "sky").
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from slarm_bench import geometry
from slarm_bench.clip import SCHEMA_VERSION, SLARM_CLASSES, UNLABELLED, Boxes, Sequence
from slarm_bench.config import cards_dir
from slarm_bench.data.tfrecord import read_records
from slarm_bench.data.waymo_frame import (
    BOX_TYPE_TO_SLARM,
    CAMERA_NAMES,
    DEFAULT_CAMERAS,
    FrameData,
    WaymoDataError,
    decode_frame,
    load_schema,
    parse_frame,
    target_sizes,
)
from slarm_bench.data.waymo_kernels import scatter_hits
from slarm_bench.data.waymo_project import NEAR, FramePixels, frame_pixels, frame_pixels_fused
from slarm_bench.errors import SlarmBenchError, check_name

SPLITS = ("training", "validation")
FPS = 10.0
DYNAMIC_SPEED = 1.0
FLOW_MIN_SPEED = 0.5


def track_id(waymo_id: str) -> int:
    """Stable positive int64 for a Waymo object id string (first 63 bits of its BLAKE2b digest)."""
    digest = hashlib.blake2b(waymo_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def segment_report(path: str | os.PathLike) -> dict[str, Any]:
    """What a segment file holds, per field: frames, cameras, lidars, labels; and `missing`, the absent ones."""
    pb2 = load_schema()
    frames = cams = seg = lidar = flow = boxes = 0
    cam_names: set[str] = set()
    calib_cams: set[str] = set()
    for i, data in enumerate(read_records(path)):
        f = parse_frame(data, f"{path}: record {i}")
        frames += 1
        calib_cams |= {CAMERA_NAMES[c.name - 1] for c in f.context.camera_calibrations if 1 <= c.name <= 5}
        for im in f.images:
            if im.image:
                cams += 1
                cam_names.add(CAMERA_NAMES[im.name - 1] if 1 <= im.name <= 5 else str(im.name))
                seg += int(bool(im.camera_segmentation_label.panoptic_label))
        for las in f.lasers:
            lidar += int(bool(las.ri_return1.range_image_compressed))
            flow += int(bool(las.ri_return1.range_image_flow_compressed))
        boxes += len(f.laser_labels)
    del pb2
    report: dict[str, Any] = {
        "frames": frames, "images": cams, "cameras": sorted(cam_names), "calibrated_cameras": sorted(calib_cams),
        "lidar_range_images": lidar, "flow_labels": flow, "camera_segmentation": seg, "boxes": boxes,
    }
    report["missing"] = [k for k in ("images", "lidar_range_images", "flow_labels", "camera_segmentation",
                                     "boxes") if report[k] == 0]
    return report


def build_sequence(path: str | os.PathLike, cameras: list[str] | tuple[str, ...] = DEFAULT_CAMERAS,
                   height: int = 320, width: int = 480, lidar_returns: tuple[int, ...] = (1, 2),
                   scene: str | None = None, max_frames: int | None = None) -> Sequence:
    """One segment file -> Sequence (see the module docstring for every field's rule)."""
    path = Path(path)
    cameras = [check_name("camera", c, CAMERA_NAMES) for c in cameras]
    load_schema()
    hasher = hashlib.sha256()
    frames: list[FrameData] = []
    pixels: list[FramePixels | None] = []
    world_from_global: np.ndarray | None = None
    cache: dict[Any, Any] = {}
    sizes: dict[str, tuple[int, int]] | None = None
    for i, data in enumerate(read_records(path)):
        if max_frames is not None and i >= max_frames:
            break
        hasher.update(data)
        frame = parse_frame(data, f"{path}: record {i}")
        if sizes is None:
            calibs = {CAMERA_NAMES[c.name - 1]: c for c in frame.context.camera_calibrations
                      if 1 <= c.name <= 5}
            absent = [c for c in cameras if c not in calibs]
            if absent:
                raise WaymoDataError(f"{path}: segment has no calibration for cameras {absent}; it has "
                                     f"{sorted(calibs)}: choose among those with --cameras")
            sizes = target_sizes(calibs, cameras, height, width)
        try:
            f = decode_frame(frame, cameras, sizes, lidar_returns, cache, FLOW_MIN_SPEED, lidar_points=False)
            if world_from_global is None:
                world_from_global = geometry.invert_pose(f.pose)
            # project now and keep only the winning points: a segment's clouds would not fit in memory
            pixels.append(_frame_pixels(f, cameras, sizes, world_from_global, cache.setdefault("work", {})))
        except SlarmBenchError as exc:
            raise WaymoDataError(f"{path}: record {i}: {exc}") from exc
        frames.append(f)
    if not frames:
        raise WaymoDataError(f"{path}: the file holds no frames")
    _check_cameras(path, frames, cameras)
    assert sizes is not None
    return _assemble(frames, pixels, cameras, sizes, height, width, scene or _scene_name(path),
                     hasher.hexdigest())


def _frame_pixels(f: FrameData, cameras: list[str], sizes: dict[str, tuple[int, int]],
                  world_from_global: np.ndarray, work: dict[str, np.ndarray] | None = None) -> FramePixels | None:
    """The frame's lidar (range images: compiled path; points: numpy reference) z-buffered into its cameras
    (poses and intrinsics as `_assemble` writes them); drops it from `f`. None without lidar or cameras."""
    points, labels, blocks = f.points, f.velocity, f.blocks
    f.points = f.velocity = f.blocks = None
    if (points is None and blocks is None) or any(c not in f.cameras for c in cameras):
        return None
    vehicle_to_world = world_from_global @ f.pose
    views = []
    for name in cameras:
        cam = f.cameras[name]
        c2w = geometry.flu_cam_to_opencv(world_from_global @ cam.ego_to_global @ cam.cam_to_ego)
        k = cam.intrinsics.astype(np.float32)  # the Sequence stores float32 intrinsics
        views.append((geometry.invert_pose(c2w) @ vehicle_to_world, k, *sizes[name]))
    if blocks is not None:
        fp, f.lidar_counts = frame_pixels_fused(blocks, views, FLOW_MIN_SPEED, NEAR, work)
        return fp
    return frame_pixels(points, labels, views, NEAR)


def _scene_name(path: Path) -> str:
    return path.name[:-len(".tfrecord")] if path.name.endswith(".tfrecord") else path.stem


def _check_cameras(path: Path, frames: list[FrameData], cameras: list[str]) -> None:
    if not any(f.cameras for f in frames):
        missing = sorted({m for f in frames for m in f.missing if not m.startswith("camera ")})
        raise WaymoDataError(f"{path}: no frame has camera images (also absent: {', '.join(missing) or 'none'})"
                             "; a Sequence needs images: use the full release, not a labels-only file")
    for t, f in enumerate(frames):
        absent = [c for c in cameras if c not in f.cameras]
        if absent:
            raise WaymoDataError(f"{path}: frame {t} lacks cameras {absent}; it has {sorted(f.cameras)}: "
                                 "choose among those with --cameras")


def _assemble(frames: list[FrameData], pixels: list[FramePixels | None], cameras: list[str],
              sizes: dict[str, tuple[int, int]], height: int, width: int, scene: str,
              checksum: str) -> Sequence:
    t_count, v_count = len(frames), len(cameras)
    world_from_global = geometry.invert_pose(frames[0].pose)
    images = np.zeros((t_count, v_count, height, width, 3), np.uint8)
    intr = np.zeros((t_count, v_count, 3, 3), np.float32)
    c2w64 = np.zeros((t_count, v_count, 4, 4))
    seg_any = any(c.semantic is not None for f in frames for c in f.cameras.values())
    seg_all = all(f.cameras[c].semantic is not None for f in frames for c in cameras)
    semantic = np.full((t_count, v_count, height, width), UNLABELLED, np.uint8) if seg_any else None
    cam_time = np.zeros((t_count, v_count))
    t0 = frames[0].timestamp
    for t, f in enumerate(frames):
        for v, name in enumerate(cameras):
            cam = f.cameras[name]
            h, w = sizes[name]
            images[t, v, :h, :w] = cam.image
            intr[t, v] = cam.intrinsics
            c2w64[t, v] = geometry.flu_cam_to_opencv(world_from_global @ cam.ego_to_global @ cam.cam_to_ego)
            cam_time[t, v] = cam.timestamp - t0
            if cam.semantic is not None:
                semantic[t, v, :h, :w] = cam.semantic
    time = np.array([f.timestamp - t0 for f in frames], np.float64)
    vehicle_to_world = np.stack([world_from_global @ f.pose for f in frames])
    boxes, track_map = _world_boxes(frames, vehicle_to_world)
    has_boxes = any(len(f.boxes.ids) for f in frames)

    depth = flow = ground = dynamic = None
    flow_source = None
    if any(px is not None for px in pixels):
        depth, flow, ground, dynamic, flow_source = _lidar_fields(pixels, cameras, sizes, height, width,
                                                                  vehicle_to_world, boxes, time)

    dynamic_box = _dynamic_box(frames, boxes, c2w64, intr, cameras, sizes, height, width) if has_boxes else None
    sky = (semantic == SLARM_CLASSES.index("sky")) if seg_all and semantic is not None else None
    missing = sorted({m for f in frames for m in f.missing})
    meta = {
        "dataset": "waymo", "scene": scene, "camera_names": list(cameras), "label_names": list(SLARM_CLASSES),
        "fps": FPS, "frame_indices": list(range(t_count)), "schema_version": SCHEMA_VERSION,
        "source_checksum": f"sha256:{checksum}", "reference_camera": "FRONT" if "FRONT" in cameras else None,
        "sequence_world_to_global": frames[0].pose.tolist(),
        "valid_height": {c: sizes[c][0] for c in cameras},
        "distortion": {c: frames[0].cameras[c].distortion for c in cameras},
        "undistorted": False, "camera_time": cam_time.tolist(),
        "depth_rule": "z-buffer: nearest lidar point per pixel, pinhole projection",
        "lidar_returns": sorted({k.split("/")[1] for f in frames for k in f.lidar_counts}),
        "flow_source": flow_source, "flow_min_speed": FLOW_MIN_SPEED, "dynamic_speed": DYNAMIC_SPEED,
        "track_ids": track_map,
        "semantic_frames": [[int(f.cameras[c].semantic is not None) for c in cameras] for f in frames],
        "missing": missing,
    }
    if meta["reference_camera"] is None:
        del meta["reference_camera"]
    seq = Sequence(images=images, intrinsics=intr, cam_to_world=c2w64.astype(np.float32), time=time,
                   meta=meta, depth=depth, flow=flow, sky=sky, dynamic=dynamic, ground=ground,
                   semantic=semantic, boxes=boxes if has_boxes else None, dynamic_box=dynamic_box)
    seq.validate()
    return seq


def _world_boxes(frames: list[FrameData], vehicle_to_world: np.ndarray) -> tuple[Boxes, dict[str, int]]:
    parts, track_map = [], {}
    for t, f in enumerate(frames):
        b = f.boxes
        n = len(b.ids)
        if n == 0:
            continue
        ids = np.array([track_id(s) for s in b.ids], np.int64)
        track_map.update(zip(b.ids, (int(i) for i in ids)))
        local = Boxes(frame=np.full(n, t, np.int32), track_id=ids,
                      label=BOX_TYPE_TO_SLARM[np.clip(b.types, 0, 4)],
                      centre=b.centre.astype(np.float32), size=np.maximum(b.size, 1e-3).astype(np.float32),
                      yaw=b.heading.astype(np.float32), velocity=b.velocity.astype(np.float32),
                      acceleration=b.acceleration.astype(np.float32), num_points=b.num_points.astype(np.int32))
        parts.append(geometry.transform_boxes(vehicle_to_world[t], local))
    if not parts:
        return Boxes.empty(), track_map
    return Boxes(**{k: np.concatenate([p.as_dict()[k] for p in parts]) for k in Boxes._DTYPES}), track_map


def _lidar_fields(pixels: list[FramePixels | None], cameras: list[str], sizes: dict[str, tuple[int, int]],
                  height: int, width: int, vehicle_to_world: np.ndarray, boxes: Boxes,
                  time: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None,
                                             str | None]:
    """depth [T,V,H,W], flow [T,V,H,W,3] | None, ground, dynamic | None (bool [T,V,H,W]), flow source."""
    t_count, v_count = len(pixels), len(cameras)
    depth = np.zeros((t_count, v_count, height, width), np.float32)
    ground = np.zeros((t_count, v_count, height, width), bool)
    flow_source = _flow_source(pixels, boxes)
    flow = dynamic = None
    if flow_source is not None:
        flow = np.zeros((t_count, v_count, height, width, 3), np.float32)
        dynamic = np.zeros((t_count, v_count, height, width), bool)
    vel, moving = np.zeros((0, 3), np.float32), np.zeros(0, bool)  # no flow: none written, stand-in planes
    flow_plane, dynamic_plane = np.zeros((1, 3), np.float32), np.zeros(1, bool)
    for t, px in enumerate(pixels):
        if px is None:
            continue
        if flow_source is not None:
            vel = _winner_velocities(pixels, t, flow_source, vehicle_to_world, boxes, time)
            square = vel * vel  # |v| as np.linalg.norm sums it, ((x^2 + y^2) + z^2), without its slow reduce
            moving = np.sqrt((square[:, 0] + square[:, 1]) + square[:, 2]) > DYNAMIC_SPEED
        for v, name in enumerate(cameras):
            # a camera's valid rows are a prefix of full-width rows: its pixel ids index the padded plane
            assert sizes[name][1] == width
            if flow is not None and dynamic is not None:
                flow_plane, dynamic_plane = flow[t, v].reshape(-1, 3), dynamic[t, v].reshape(-1)
            # depth[t, v].flat[pix] = px.depth[v], ground ... = px.ground[slot], flow and dynamic alike
            scatter_hits(px.pixel[v], px.slot[v], px.depth[v], px.ground, vel, moving, depth[t, v].reshape(-1),
                         ground[t, v].reshape(-1), flow_plane, dynamic_plane)
    return depth, flow, ground, dynamic, flow_source


def _flow_source(pixels: list[FramePixels | None], boxes: Boxes) -> str | None:
    """"labels" when every frame with lidar has velocity labels, "boxes" if boxes can be tracked, else None."""
    if all(px.velocity is not None for px in pixels if px is not None):
        return "labels"
    if any(px is not None and px.velocity is not None for px in pixels):
        raise WaymoDataError("only some frames carry flow labels: a partial scene-flow file")
    if len(pixels) < 2 or len(boxes) == 0:
        return None
    return "boxes"


def _winner_velocities(pixels: list[FramePixels | None], t: int, source: str, vehicle_to_world: np.ndarray,
                       boxes: Boxes, time: np.ndarray) -> np.ndarray:
    """World-frame velocity [M,3] float32 of frame t's winning points, from labels or tracked boxes."""
    px = pixels[t]
    assert px is not None
    if source == "labels":
        assert px.velocity is not None
        return geometry.rotate_vectors(vehicle_to_world[t][:3, :3], px.velocity)
    other = t + 1 if t + 1 < len(pixels) else t - 1
    pts_world = geometry.transform_points(vehicle_to_world[t], px.points.astype(np.float64))
    vel = geometry.box_track_flow(pts_world, boxes.select_frames(np.array([t])),
                                  boxes.select_frames(np.array([other])), float(time[other] - time[t]))
    vel[np.linalg.norm(vel, axis=1) < FLOW_MIN_SPEED] = 0.0
    return vel.astype(np.float32, copy=False)


def _dynamic_box(frames: list[FrameData], boxes: Boxes, c2w: np.ndarray, intr: np.ndarray,
                 cameras: list[str], sizes: dict[str, tuple[int, int]], height: int, width: int) -> np.ndarray:
    mask = np.zeros((len(frames), len(cameras), height, width), bool)
    speed = np.hypot(boxes.velocity[:, 0], boxes.velocity[:, 1])
    moving = (boxes.num_points >= 1) & (np.nan_to_num(speed) > DYNAMIC_SPEED)
    for t in range(len(frames)):
        sel = moving & (boxes.frame == t)
        if not sel.any():
            continue
        corners = geometry.box_corners(boxes.centre[sel], boxes.size[sel], boxes.yaw[sel])
        for v, name in enumerate(cameras):
            h, w = sizes[name]
            mask[t, v, :h, :w] = geometry.box_rectangle_mask(corners, c2w[t, v], intr[t, v], h, w)
    return mask


# ---------------------------------------------------------------------------------------------------------
# Scene-list cards
def scene_list_cards() -> dict[str, Path]:
    folder = cards_dir("datasets") / "waymo"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_scene_list(name_or_path: str | os.PathLike) -> list[str]:
    """Segment names of a scene-list card (datasets/waymo/<name>.yaml) or a text file (one name a line)."""
    import yaml

    path = Path(name_or_path)
    if not path.is_file():
        cards = scene_list_cards()
        path = cards[check_name("waymo scene list", str(name_or_path), cards)]
    if path.suffix in (".yaml", ".yml"):
        card = yaml.safe_load(path.read_text())
        entries = card.get("scenes") if isinstance(card, dict) else None
        if not isinstance(entries, list):
            raise SlarmBenchError(f"scene-list card {path} has no `scenes` list: fix the card")
        return [e["segment"] if isinstance(e, dict) else str(e) for e in entries]
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


class WaymoAdapter:
    """`slarm-bench prepare waymo`: raw/<split>/segment-*.tfrecord -> one Sequence per segment."""

    name = "waymo"

    def __init__(self, raw: str | os.PathLike, cameras: list[str] | tuple[str, ...] | None = None,
                 height: int = 320, width: int = 480, scene_list: str | os.PathLike | None = None,
                 lidar_returns: tuple[int, ...] = (1, 2), max_frames: int | None = None) -> None:
        self.raw = Path(raw)
        if not self.raw.is_dir():
            raise SlarmBenchError(f"Waymo raw folder {self.raw} does not exist: point --raw at the folder "
                                  "holding training/ and validation/ with segment-*.tfrecord files")
        self.cameras = [check_name("camera", c, CAMERA_NAMES) for c in (cameras or DEFAULT_CAMERAS)]
        if height <= 0 or width <= 0:
            raise SlarmBenchError(f"image size must be positive, got {height}x{width}")
        self.height, self.width = int(height), int(width)
        self.lidar_returns = tuple(int(r) for r in lidar_returns)
        if not self.lidar_returns or any(r not in (1, 2) for r in self.lidar_returns):
            raise SlarmBenchError(f"lidar returns must be among (1, 2), got {lidar_returns}")
        self.scene_filter = set(load_scene_list(scene_list)) if scene_list is not None else None
        self.max_frames = max_frames
        load_schema()

    def splits(self) -> list[str]:
        return list(SPLITS)

    def _files(self, split: str) -> dict[str, Path]:
        check_name("split", split, SPLITS)
        folder = self.raw / split
        if not folder.is_dir():
            return {}
        return {_scene_name(p): p for p in sorted(folder.glob("segment-*.tfrecord"))}

    def scenes(self, split: str) -> list[str]:
        names = list(self._files(split))
        if self.scene_filter is not None:
            names = [n for n in names if n in self.scene_filter]
        return names

    def build(self, split: str, scene: str) -> Sequence:
        files = self._files(split)
        path = files[check_name(f"{split} segment", scene, files)]
        return build_sequence(path, self.cameras, self.height, self.width, self.lidar_returns, scene=scene,
                              max_frames=self.max_frames)
