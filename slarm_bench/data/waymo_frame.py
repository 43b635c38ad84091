"""One Waymo v1 `Frame` record -> numpy: camera images, calibrations, poses, lidar points, boxes.

The schema comes from the `waymo-open-dataset-tf-2-12-0` wheel (installed with --no-deps); only its
generated `*_pb2` modules are imported, never TensorFlow. Everything here is in Waymo's own frames
(vehicle = x forward, y left, z up; global = Waymo's world); `waymo.py` moves it into a Sequence.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from slarm_bench.clip import SLARM_CLASSES, UNLABELLED
from slarm_bench.data.waymo_lidar import LabelFlow, LidarGeometry, decode_matrix_float, range_image_to_points
from slarm_bench.errors import SlarmBenchError

try:  # optional accelerator: libjpeg-turbo's DCT-scaled decode without Pillow's overhead, same pixels
    import simplejpeg as _simplejpeg  # type: ignore[import-not-found]
except ImportError:  # Pillow decodes with the same DCT scaling (libjpeg-turbo too), about 25 % slower
    _simplejpeg = None

CAMERA_NAMES = ("FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT")  # CameraName.Name 1..5
LASER_NAMES = ("TOP", "FRONT", "SIDE_LEFT", "SIDE_RIGHT", "REAR")                 # LaserName.Name 1..5
DEFAULT_CAMERAS = ("FRONT_LEFT", "FRONT", "FRONT_RIGHT")
TOP_LASER = 1
INSTALL_HINT = ("pip install --no-deps waymo-open-dataset-tf-2-12-0 && pip install protobuf "
                "(or `make waymo`)")

# Waymo camera-segmentation classes (camera_segmentation.proto CameraSegmentation.Type) -> SLARM class
# names, REFERENCE.md section 2. TYPE_UNDEFINED (0) is "not labelled", so it maps to 255, not "others".
_WAYMO_SEG_TO_SLARM = {
    1: "others", 2: "vehicle", 3: "vehicle", 4: "vehicle", 5: "vehicle", 6: "bicycle", 7: "motorcycle",
    8: "others", 9: "people", 10: "bicycle", 11: "motorcycle", 12: "others", 13: "others", 14: "others",
    15: "others", 16: "others", 17: "others", 18: "others", 19: "buildings", 20: "road", 21: "road",
    22: "road", 23: "sidewalk", 24: "others", 25: "sky", 26: "road", 27: "others", 28: "others",
}
WAYMO_SEG_SKY = 25
SEG_LUT = np.full(256, UNLABELLED, np.uint8)
for _k, _v in _WAYMO_SEG_TO_SLARM.items():
    SEG_LUT[_k] = SLARM_CLASSES.index(_v)
# Label.Type of 3D boxes -> SLARM class: unknown, vehicle, pedestrian, sign, cyclist.
BOX_TYPE_TO_SLARM = np.array([SLARM_CLASSES.index(n) for n in
                              ("others", "vehicle", "people", "others", "bicycle")], np.uint8)


class WaymoSchemaMissing(SlarmBenchError):
    """The Waymo protocol-buffer schema is not installed."""


class WaymoDataError(SlarmBenchError):
    """A Waymo file whose content cannot make the requested Sequence."""


def load_schema() -> types.ModuleType:
    """The `dataset_pb2` module of the Waymo schema, imported without TensorFlow.

    The wheel ships `waymo_open_dataset` as a namespace package (no __init__). Should a version carry an
    __init__ (which may import TensorFlow), a bare package module pointing at the same folder is
    registered first so that only the generated *_pb2 files are executed.
    """
    if "waymo_open_dataset" not in sys.modules:
        spec = importlib.util.find_spec("waymo_open_dataset")
        if spec is None:
            raise WaymoSchemaMissing(f"the Waymo schema is not installed: {INSTALL_HINT}")
        if spec.origin not in (None, "namespace") and str(spec.origin).endswith("__init__.py"):
            package = types.ModuleType("waymo_open_dataset")
            package.__path__ = list(spec.submodule_search_locations or [])
            package.__spec__ = spec
            sys.modules["waymo_open_dataset"] = package
    try:
        return importlib.import_module("waymo_open_dataset.dataset_pb2")
    except ImportError as exc:
        raise WaymoSchemaMissing(f"the Waymo schema cannot be imported ({exc}): {INSTALL_HINT}") from exc


def parse_frame(data: bytes, where: str = "record") -> Any:
    pb2 = load_schema()
    frame = pb2.Frame()
    try:
        frame.ParseFromString(data)
    except Exception as exc:  # protobuf raises its own DecodeError type, not importable without the runtime
        raise WaymoDataError(f"{where}: not a Waymo Frame ({type(exc).__name__}: {exc})") from exc
    return frame


@dataclass
class CameraData:
    """One camera of one frame, resized: image uint8 [h,w,3]; intrinsics [3,3] of that size."""

    image: np.ndarray
    intrinsics: np.ndarray
    distortion: list[float]
    cam_to_ego: np.ndarray          # [4,4] Waymo camera (x fwd, y left, z up) to vehicle
    ego_to_global: np.ndarray       # [4,4] vehicle to global at the image's pose time
    timestamp: float                # seconds (Unix), the image pose's time
    semantic: np.ndarray | None     # uint8 [h,w] SLARM class index, 255 unlabelled; None if no label
    source_size: tuple[int, int]    # (H, W) of the JPEG


@dataclass
class BoxData:
    """3D boxes of one frame in its vehicle frame (N rows)."""

    ids: list[str]
    types: np.ndarray               # int [N] Label.Type
    centre: np.ndarray              # [N,3]
    size: np.ndarray                # [N,3] length, width, height
    heading: np.ndarray             # [N]
    velocity: np.ndarray            # [N,3] (NaN unknown)
    acceleration: np.ndarray        # [N,3] (NaN unknown)
    num_points: np.ndarray          # int [N], -1 unknown


@dataclass
class FrameData:
    timestamp: float                # seconds (Unix)
    pose: np.ndarray                # [4,4] vehicle to global
    cameras: dict[str, CameraData]
    points: np.ndarray | None       # [N,3] float32 (column-major), vehicle frame of `pose`
    velocity: LabelFlow | None      # velocity labels of the points (.take(index) -> [M,3] vehicle frame)
    boxes: BoxData
    lidar_counts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    blocks: list[RangeBlock] | None = None  # range images not yet made points (decode_frame lidar_points=False)


def target_sizes(calibrations: dict[str, Any], cameras: list[str], height: int,
                 width: int) -> dict[str, tuple[int, int]]:
    """Valid (h, w) of each camera: width `width`; the tallest camera gets `height`, shorter ones (the side
    cameras, 1920x886) keep their aspect with the same vertical scale and are padded below by the caller."""
    tallest = max(int(calibrations[c].height) for c in cameras)
    return {c: (int(round(int(calibrations[c].height) * height / tallest)), width) for c in cameras}


def decode_jpeg(data: bytes, height: int, width: int) -> tuple[np.ndarray, float, float]:
    """JPEG -> uint8 [height,width,3] and the scale (sx, sy) from source to output pixels.

    libjpeg decodes at 1/2, 1/4 or 1/8 scale (DCT scaling: the smallest scale keeping both sides at
    least the target), which is both the fastest path and an area-like filter; a bilinear resize
    finishes when that size is not the target (1920x1280 -> 480x320 is exactly 1/4: no resize).
    `simplejpeg` is used when installed: it drives the same libjpeg-turbo scaled decode as Pillow's
    draft mode and gives the same pixels (tested); JPEGs it cannot convert to RGB (e.g. CMYK) go to Pillow.
    """
    arr = _decode_scaled_simplejpeg(data, height, width) if _simplejpeg is not None else None
    if arr is None:
        im = Image.open(io.BytesIO(data))
        src_w, src_h = im.size
        im.draft("RGB", (width, height))
        draft_w, draft_h = im.size
        im = im.convert("RGB")
    else:
        src_h, src_w = _jpeg_size(data)
        draft_h, draft_w = arr.shape[:2]
        im = None
    factor = max(1, int(round(src_w / draft_w)))
    if (draft_w, draft_h) != (width, height):
        im = im if im is not None else Image.fromarray(arr)
        im = im.resize((width, height), Image.Resampling.BILINEAR)
    if im is not None:
        arr = np.asarray(im, dtype=np.uint8)
    return arr, width / (draft_w * factor), height / (draft_h * factor)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    assert _simplejpeg is not None
    h, w = _simplejpeg.decode_jpeg_header(data)[:2]
    return int(h), int(w)


def _decode_scaled_simplejpeg(data: bytes, height: int, width: int) -> np.ndarray | None:
    """DCT-scaled RGB decode with simplejpeg at Pillow's draft scale (the largest of 1/8, 1/4, 1/2, 1 that
    keeps both sides >= the target; libjpeg-turbo would also offer n/8 scales), or None for a JPEG it
    cannot decode to RGB (Pillow then)."""
    assert _simplejpeg is not None
    try:
        src_h, src_w = _jpeg_size(data)
        ratio = min(src_w // max(width, 1), src_h // max(height, 1))
        scale = next(s for s in (8, 4, 2, 1) if s <= max(ratio, 1))
        # fastdct/fastupsample stay off: the default paths are Pillow's, hence the same pixels
        return _simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=-(-src_h // scale),
                                       min_width=-(-src_w // scale))
    except ValueError:
        return None


def decode_panoptic_semantic(png: bytes, divisor: int, height: int, width: int, sx: float,
                             sy: float) -> np.ndarray:
    """Panoptic label PNG -> SLARM class per output pixel [height,width] (nearest source pixel)."""
    pan = np.asarray(Image.open(io.BytesIO(png)))
    rows = np.minimum(((np.arange(height) + 0.5) / sy).astype(np.int64), pan.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) / sx).astype(np.int64), pan.shape[1] - 1)
    semantic = pan[rows][:, cols].astype(np.int64) // max(int(divisor), 1)
    return SEG_LUT[np.clip(semantic, 0, 255)]


def _transform(values: Any) -> np.ndarray:
    return np.asarray(values, np.float64).reshape(4, 4)


def decode_boxes(frame: Any) -> BoxData:
    labels = list(frame.laser_labels)
    n = len(labels)
    out = BoxData(ids=[lb.id for lb in labels], types=np.array([lb.type for lb in labels], np.int64),
                  centre=np.zeros((n, 3)), size=np.zeros((n, 3)), heading=np.zeros(n),
                  velocity=np.full((n, 3), np.nan), acceleration=np.full((n, 3), np.nan),
                  num_points=np.full(n, -1, np.int64))
    for i, lb in enumerate(labels):
        b = lb.box
        out.centre[i] = (b.center_x, b.center_y, b.center_z)
        out.size[i] = (b.length, b.width, b.height)
        out.heading[i] = b.heading
        if lb.HasField("metadata"):
            m = lb.metadata
            out.velocity[i] = (m.speed_x, m.speed_y, m.speed_z)
            out.acceleration[i] = (m.accel_x, m.accel_y, m.accel_z)
        if lb.HasField("num_lidar_points_in_box"):
            out.num_points[i] = lb.num_lidar_points_in_box
    return out


@dataclass
class RangeBlock:
    """One decoded range image (one lidar, one return) whose points are not made yet.

    range_m float32 [H,W] (a view of the inflated image's range channel; <= 0 no return); pixel_pose
    [H,W,6] (TOP lidar: vehicle-to-world per pixel, shared by both returns) with frame_pose [4,4], or None;
    flow: the compressed flow range image, decoded when called, or None without labels.
    """

    name: str                       # "TOP/1": lidar and return
    range_m: np.ndarray
    geom: LidarGeometry
    pixel_pose: np.ndarray | None
    frame_pose: np.ndarray | None
    flow: _FlowImage | None


def lidar_blocks(frame: Any, returns: tuple[int, ...], cache: dict[Any, Any]) -> list[RangeBlock]:
    """The frame's range images in point order (lidars by name, then `returns`), inflated, not yet points.

    `cache` keeps each lidar's geometry and the inflated sizes across the frames of a segment."""
    calibs = {lc.name: lc for lc in frame.context.laser_calibrations}
    frame_pose = _transform(frame.pose.transform)
    blocks: list[RangeBlock] = []
    inflated = cache.setdefault("inflated sizes", {})  # see waymo_lidar.inflate
    for laser in sorted(frame.lasers, key=lambda las: las.name):
        name = LASER_NAMES[laser.name - 1] if 1 <= laser.name <= 5 else str(laser.name)
        pixel_pose = None
        for ret in returns:
            ri = laser.ri_return1 if ret == 1 else laser.ri_return2
            if not ri.range_image_compressed:
                continue
            if laser.name not in calibs:
                raise WaymoDataError(f"lidar {name} has range images but no calibration in the frame context")
            where = f"lidar {name} return {ret}"
            # both returns and the flow images of a lidar have one shape, hence one inflated size
            image = decode_matrix_float(ri.range_image_compressed, where, inflated, f"lidar {name}")
            h, w = image.shape[:2]
            key = (laser.name, h, w)
            if key not in cache:
                c = calibs[laser.name]
                cache[key] = LidarGeometry.from_calibration(
                    _transform(c.extrinsic.transform), h, w, list(c.beam_inclinations),
                    c.beam_inclination_min, c.beam_inclination_max)
            if laser.name == TOP_LASER and pixel_pose is None and laser.ri_return1.range_image_pose_compressed:
                pixel_pose = decode_matrix_float(laser.ri_return1.range_image_pose_compressed,
                                                 f"lidar {name} pixel poses", inflated)
            # decoded on first use: only range images with points that win a pixel need their labels
            flow = (_FlowImage(ri.range_image_flow_compressed, f"{where} flow", h, w, inflated, f"lidar {name}")
                    if ri.range_image_flow_compressed else None)
            blocks.append(RangeBlock(f"{name}/{ret}", image[..., 0], cache[key], pixel_pose,
                                     frame_pose if pixel_pose is not None else None, flow))
    if any(b.flow is None for b in blocks) and any(b.flow is not None for b in blocks):
        raise WaymoDataError("some range images carry flow labels and others do not: a partial scene-flow "
                             "file; use the complete scene-flow release")
    return blocks


def decode_lidar(frame: Any, returns: tuple[int, ...], cache: dict[Any, Any],
                 min_speed: float) -> tuple[np.ndarray | None, LabelFlow | None, dict[str, int]]:
    """All lidars' points (vehicle frame of frame.pose) and their velocity labels (None without labels).

    The numpy reference of the adapter's lidar path (`waymo_project.frame_pixels_fused` makes the points
    and z-buffers in one compiled pass instead)."""
    blocks = lidar_blocks(frame, returns, cache)
    pts_all, flats, counts = [], [], {}
    for b in blocks:
        pts, flat = range_image_to_points(b.range_m, b.geom, b.pixel_pose, b.frame_pose)
        pts_all.append(pts)
        flats.append(flat)
        counts[b.name] = int(pts.shape[0])
    if not pts_all:
        return None, None, counts
    # [3,N] concatenation, returned transposed: column-major [N,3] keeps each coordinate contiguous
    points = np.concatenate([p.T for p in pts_all], axis=1).T
    if blocks[0].flow is None:
        return points, None, counts
    return points, LabelFlow([b.flow for b in blocks], flats, min_speed), counts


class _FlowImage:
    """A compressed flow range image, decoded and checked ([H,W,4+]) when called."""

    def __init__(self, compressed: bytes, where: str, height: int, width: int, sizes: dict[str, int],
                 size_key: str | None = None) -> None:
        self.compressed, self.where, self.shape, self.sizes = compressed, where, (height, width), sizes
        self.size_key = size_key

    def __call__(self) -> np.ndarray:
        flow = decode_matrix_float(self.compressed, self.where, self.sizes, self.size_key)
        if flow.ndim != 3 or flow.shape[-1] < 4 or flow.shape[:2] != self.shape:
            raise WaymoDataError(f"{self.where}: flow range image has shape {list(flow.shape)}, expected "
                                 f"[{self.shape[0]},{self.shape[1]},4+]: a corrupt scene-flow file")
        return flow


def decode_frame(frame: Any, cameras: list[str], sizes: dict[str, tuple[int, int]],
                 returns: tuple[int, ...] = (1, 2), lidar_cache: dict[Any, LidarGeometry] | None = None,
                 min_speed: float = 0.5, with_lidar: bool = True, lidar_points: bool = True) -> FrameData:
    """Decode the requested cameras (resized to `sizes`), lidar points and boxes of one Frame.

    With lidar_points=False the lidar stays as inflated range images (`FrameData.blocks`, points, velocity
    and lidar_counts unset) for `waymo_project.frame_pixels_fused`, which makes the points as it projects."""
    calibs = {CAMERA_NAMES[c.name - 1]: c for c in frame.context.camera_calibrations if 1 <= c.name <= 5}
    frame_pose = _transform(frame.pose.transform)
    out_cams: dict[str, CameraData] = {}
    for img in frame.images:
        name = CAMERA_NAMES[img.name - 1] if 1 <= img.name <= 5 else str(img.name)
        if name not in cameras or not img.image:
            continue
        if name not in calibs:
            raise WaymoDataError(f"camera {name} has an image but no calibration in the frame context")
        cal = calibs[name]
        h, w = sizes[name]
        rgb, sx, sy = decode_jpeg(img.image, h, w)
        fu, fv, cu, cv = list(cal.intrinsic)[:4]
        k = np.array([[fu * sx, 0.0, cu * sx], [0.0, fv * sy, cv * sy], [0.0, 0.0, 1.0]])
        pose = _transform(img.pose.transform) if len(img.pose.transform) == 16 else frame_pose
        seg = None
        label = img.camera_segmentation_label
        if img.HasField("camera_segmentation_label") and label.panoptic_label:
            seg = decode_panoptic_semantic(label.panoptic_label, label.panoptic_label_divisor, h, w, sx, sy)
        out_cams[name] = CameraData(
            image=rgb, intrinsics=k, distortion=[float(x) for x in list(cal.intrinsic)[4:9]],
            cam_to_ego=_transform(cal.extrinsic.transform), ego_to_global=pose,
            timestamp=float(img.pose_timestamp) if img.pose_timestamp else frame.timestamp_micros * 1e-6,
            semantic=seg, source_size=(int(cal.height), int(cal.width)))
    points = velocity = blocks = None
    counts: dict[str, int] = {}
    cache = lidar_cache if lidar_cache is not None else {}
    if with_lidar and lidar_points:
        points, velocity, counts = decode_lidar(frame, returns, cache, min_speed)
    elif with_lidar:
        blocks = lidar_blocks(frame, returns, cache)
    missing = [f"camera {c}" for c in cameras if c not in out_cams]
    if points is None and not blocks:
        missing.append("lidar")
    if velocity is None and not (blocks and blocks[0].flow is not None):
        missing.append("flow labels")
    if not any(c.semantic is not None for c in out_cams.values()):
        missing.append("camera segmentation")
    if len(frame.laser_labels) == 0:
        missing.append("3D boxes")
    return FrameData(timestamp=frame.timestamp_micros * 1e-6, pose=frame_pose, cameras=out_cams,
                     points=points, velocity=velocity, boxes=decode_boxes(frame), lidar_counts=counts,
                     missing=missing, blocks=blocks or None)
