"""The data contract: a prepared `Sequence` (one scene) and a `Clip` (a window a protocol hands to a model).

Both carry the same fields, for T frames, V cameras and H x W pixels:

=============  =========================  ======================================================================
field          dtype, shape               meaning
=============  =========================  ======================================================================
images         uint8 [T,V,H,W,3]          RGB
intrinsics     float32 [T,V,3,3]          pinhole, in pixels of this image size
cam_to_world   float32 [T,V,4,4]          OpenCV camera (x right, y down, z forward) to the world frame
time           float64 [T]                seconds since the first frame
depth          float32 [T,V,H,W] | None   lidar z-depth in metres, 0 = no return
flow           float32 [T,V,H,W,3] | None world-frame velocity (m/s) of the surface seen at the pixel; valid
                                          where depth > 0, or where depth_dense > 0 when meta["flow_dense"]
sky            bool [T,V,H,W] | None      masks: an absent mask is None, never zeros
dynamic        bool [T,V,H,W] | None      pixels of objects moving faster than 1 m/s
ground         bool [T,V,H,W] | None
semantic       uint8 [T,V,H,W] | None     index into meta["label_names"]; 255 = unlabelled
boxes          Boxes | None               3D boxes in the world frame, one row per (frame, track)
meta           dict                       see REQUIRED_META
--- optional fields beyond the design's table (exact ground truth that only some datasets have) ---
depth_dense    float32 [T,V,H,W] | None   dense z-depth of every pixel, 0 on sky (synthetic)
instance       int32 [T,V,H,W] | None     instance (track) id of the pixel, 0 = no instance
dynamic_box    bool [T,V,H,W] | None      the Waymo-protocol dynamic mask: filled 2D rectangles of moving boxes
=============  =========================  ======================================================================

A Sequence is stored in its own world frame; a Clip's world frame is the reference camera (meta
["reference_camera"], FRONT by default) at the clip's first frame with axes x forward, y left, z up. The
store re-anchors on load (`Clip.from_sequence_window`), using `geometry.reanchor`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slarm_bench.errors import ContractError

SCHEMA_VERSION = 1
UNLABELLED = 255
# SLARM's nine classes, in the order of REFERENCE.md section 2; every adapter maps into these.
SLARM_CLASSES: tuple[str, ...] = (
    "others", "vehicle", "bicycle", "motorcycle", "people", "buildings", "road", "sidewalk", "sky",
)
REQUIRED_META = (
    "dataset", "scene", "camera_names", "label_names", "fps", "frame_indices", "schema_version",
)
PER_PIXEL_FIELDS = ("depth", "flow", "sky", "dynamic", "ground", "semantic", "depth_dense", "instance",
                    "dynamic_box")
MASK_FIELDS = ("sky", "dynamic", "ground", "dynamic_box")
ROTATION_TOLERANCE = 1e-3

_PIXEL_DTYPES = {
    "depth": np.float32, "flow": np.float32, "sky": np.bool_, "dynamic": np.bool_, "ground": np.bool_,
    "semantic": np.uint8, "depth_dense": np.float32, "instance": np.int32, "dynamic_box": np.bool_,
}


@dataclass
class Boxes:
    """3D boxes in the world frame, one row per (frame, track). N rows.

    frame: int32 [N] frame index within the Sequence/Clip; track_id: int64 [N] stable across frames
    (equals the `instance` id of the pixels it covers where a dataset has both); label: uint8 [N] index into
    meta["label_names"]; centre: float32 [N,3] (m); size: float32 [N,3] length, width, height (m);
    yaw: float32 [N] heading about the world z axis (rad); velocity, acceleration: float32 [N,3] world frame
    (m/s, m/s^2; NaN where unknown); num_points: int32 [N] lidar points inside (-1 if unknown).
    """

    frame: np.ndarray
    track_id: np.ndarray
    label: np.ndarray
    centre: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    num_points: np.ndarray

    _DTYPES = {
        "frame": (np.int32, ()), "track_id": (np.int64, ()), "label": (np.uint8, ()),
        "centre": (np.float32, (3,)), "size": (np.float32, (3,)), "yaw": (np.float32, ()),
        "velocity": (np.float32, (3,)), "acceleration": (np.float32, (3,)), "num_points": (np.int32, ()),
    }

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    @classmethod
    def empty(cls) -> Boxes:
        return cls(**{k: np.zeros((0, *shape), dtype) for k, (dtype, shape) in cls._DTYPES.items()})

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self._DTYPES}

    def select_frames(self, frames: np.ndarray) -> Boxes:
        """Rows of the given frames, renumbered to their position in `frames`."""
        frames = np.asarray(frames)
        lookup = {int(f): i for i, f in enumerate(frames)}
        keep = np.array([int(f) in lookup for f in self.frame], dtype=bool)
        out = {k: v[keep] for k, v in self.as_dict().items()}
        out["frame"] = np.array([lookup[int(f)] for f in out["frame"]], dtype=np.int32)
        return Boxes(**out)

    def validate(self, num_frames: int, num_labels: int) -> None:
        n = len(self)
        for name, (dtype, shape) in self._DTYPES.items():
            arr = getattr(self, name)
            _expect(isinstance(arr, np.ndarray), f"boxes.{name} must be a numpy array")
            _expect(arr.dtype == dtype, f"boxes.{name} must be {np.dtype(dtype)}, got {arr.dtype}")
            _expect(arr.shape == (n, *shape), f"boxes.{name} must have shape {(n, *shape)}, got {arr.shape}")
        if n:
            _expect(bool(((self.frame >= 0) & (self.frame < num_frames)).all()),
                    f"boxes.frame must lie in [0, {num_frames})")
            _expect(bool((self.label < num_labels).all()), "boxes.label must index meta['label_names']")
            for name in ("centre", "size", "yaw"):
                _expect(bool(np.isfinite(getattr(self, name)).all()), f"boxes.{name} must be finite")
            _expect(bool((self.size > 0).all()), "boxes.size must be positive")


@dataclass
class _Frames:
    images: np.ndarray
    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    time: np.ndarray
    meta: dict[str, Any]
    depth: np.ndarray | None = None
    flow: np.ndarray | None = None
    sky: np.ndarray | None = None
    dynamic: np.ndarray | None = None
    ground: np.ndarray | None = None
    semantic: np.ndarray | None = None
    boxes: Boxes | None = None
    depth_dense: np.ndarray | None = None
    instance: np.ndarray | None = None
    dynamic_box: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    # -- shape helpers --------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_cameras(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def camera_names(self) -> list[str]:
        return list(self.meta["camera_names"])

    @property
    def label_names(self) -> list[str]:
        return list(self.meta["label_names"])

    def present_fields(self) -> list[str]:
        return [f for f in PER_PIXEL_FIELDS if getattr(self, f) is not None]

    def select(self, frames: np.ndarray | list[int], cameras: list[int] | None = None) -> _Frames:
        """A new object of the same type with the given frames (positions) and cameras; time restarts at 0
        only if the caller re-anchors (see Clip.from_sequence_window); here it is kept as is."""
        frames = np.asarray(frames, dtype=np.int64)
        cams = slice(None) if cameras is None else np.asarray(cameras, dtype=np.int64)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            return a[frames][:, cams]

        meta = dict(self.meta)
        meta["frame_indices"] = [int(self.meta["frame_indices"][i]) for i in frames]
        if cameras is not None:
            meta["camera_names"] = [self.meta["camera_names"][i] for i in cameras]
        kwargs = {f: take(getattr(self, f)) for f in ("images", "intrinsics", "cam_to_world",
                                                        *PER_PIXEL_FIELDS)}
        boxes = self.boxes.select_frames(frames) if self.boxes is not None else None
        return type(self)(time=self.time[frames].copy(), meta=meta, boxes=boxes,
                          extras=dict(self.extras), **kwargs)

    def replace(self, **changes: Any) -> _Frames:
        return dataclasses.replace(self, **changes)

    # -- validation -----------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ContractError with one line naming the first problem found."""
        what = type(self).__name__
        _expect(isinstance(self.meta, dict), f"{what}.meta must be a dict")
        missing = [k for k in REQUIRED_META if k not in self.meta]
        _expect(not missing, f"{what}.meta lacks {missing}")
        version = self.meta["schema_version"]
        _expect(version == SCHEMA_VERSION,
                f"{what} has schema version {version}, this slarm-bench reads {SCHEMA_VERSION}: "
                "re-run `slarm-bench prepare ... --force` to rebuild it")
        for key in ("camera_names", "label_names"):
            names = self.meta[key]
            _expect(isinstance(names, (list, tuple, np.ndarray)) and all(isinstance(n, str) for n in names),
                    f"{what}.meta[{key!r}] must be a list of strings, got {type(names).__name__}")
        _expect(isinstance(self.meta["frame_indices"], (list, tuple, np.ndarray)),
                f"{what}.meta['frame_indices'] must be a list of ints, "
                f"got {type(self.meta['frame_indices']).__name__}")
        fps = self.meta["fps"]
        _expect(isinstance(fps, (int, float, np.integer, np.floating)) and not isinstance(fps, bool),
                f"{what}.meta['fps'] must be a number, got {type(fps).__name__}")
        _expect(isinstance(self.images, np.ndarray) and self.images.dtype == np.uint8
                and self.images.ndim == 5 and self.images.shape[-1] == 3,
                f"{what}.images must be uint8 [T,V,H,W,3], got {_describe(self.images)}")
        t, v, h, w, _ = self.images.shape
        _expect(t > 0 and v > 0 and h > 0 and w > 0, f"{what}.images is empty: {self.images.shape}")
        _check_array(what, "intrinsics", self.intrinsics, np.float32, (t, v, 3, 3))
        _check_array(what, "cam_to_world", self.cam_to_world, np.float32, (t, v, 4, 4))
        _check_array(what, "time", self.time, np.float64, (t,))
        _expect(bool(np.isfinite(self.time).all()), f"{what}.time must be finite")
        _expect(abs(float(self.time[0])) < 1e-9, f"{what}.time must start at 0 (seconds since the first "
                f"frame), starts at {float(self.time[0])}")
        _expect(bool((np.diff(self.time) > 0).all()), f"{what}.time must be strictly increasing")
        self._validate_poses(what)
        self._validate_intrinsics(what, h, w)
        for name in PER_PIXEL_FIELDS:
            arr = getattr(self, name)
            if arr is None:
                continue
            shape = (t, v, h, w, 3) if name == "flow" else (t, v, h, w)
            _check_array(what, name, arr, _PIXEL_DTYPES[name], shape)
        for name in ("depth", "depth_dense", "flow"):
            arr = getattr(self, name)
            if arr is not None:
                _expect(bool(np.isfinite(arr).all()), f"{what}.{name} has non-finite values")
        for name in ("depth", "depth_dense"):
            arr = getattr(self, name)
            if arr is not None:
                _expect(bool((arr >= 0).all()), f"{what}.{name} has negative depths (0 means no return)")
        n_labels = len(self.meta["label_names"])
        if self.semantic is not None:
            bad = (self.semantic >= n_labels) & (self.semantic != UNLABELLED)
            _expect(not bool(bad.any()), f"{what}.semantic has values outside [0, {n_labels}) and 255")
        _expect(len(self.meta["camera_names"]) == v,
                f"{what}.meta['camera_names'] has {len(self.meta['camera_names'])} names for {v} cameras")
        _expect(len(self.meta["frame_indices"]) == t,
                f"{what}.meta['frame_indices'] has {len(self.meta['frame_indices'])} entries for {t} frames")
        _expect(float(self.meta["fps"]) > 0, f"{what}.meta['fps'] must be positive")
        if self.boxes is not None:
            self.boxes.validate(t, n_labels)

    def _validate_poses(self, what: str) -> None:
        c2w = self.cam_to_world.astype(np.float64)
        _expect(bool(np.isfinite(c2w).all()), f"{what}.cam_to_world has non-finite values")
        _expect(bool(np.allclose(c2w[..., 3, :], [0, 0, 0, 1], atol=1e-6)),
                f"{what}.cam_to_world last rows must be [0, 0, 0, 1]")
        rot = c2w[..., :3, :3]
        gram = rot @ np.swapaxes(rot, -1, -2)
        err = float(np.abs(gram - np.eye(3)).max())
        _expect(err < ROTATION_TOLERANCE, f"{what}.cam_to_world rotations are not orthonormal "
                f"(max |R R^T - I| = {err:.2e})")
        det = np.linalg.det(rot)
        _expect(bool((det > 0).all()), f"{what}.cam_to_world has a reflection (det < 0): "
                "cameras must be OpenCV x right, y down, z forward")

    def _validate_intrinsics(self, what: str, h: int, w: int) -> None:
        k = self.intrinsics.astype(np.float64)
        _expect(bool(np.isfinite(k).all()), f"{what}.intrinsics has non-finite values")
        _expect(bool((k[..., 0, 0] > 0).all() and (k[..., 1, 1] > 0).all()),
                f"{what}.intrinsics focal lengths must be positive")
        _expect(bool(np.allclose(k[..., 2, :], [0, 0, 1]) and np.allclose(k[..., 1, 0], 0)
                     and np.allclose(k[..., 0, 1], 0)),
                f"{what}.intrinsics must be pinhole [[fx,0,cx],[0,fy,cy],[0,0,1]]")
        cx, cy = k[..., 0, 2], k[..., 1, 2]
        _expect(bool(((cx > 0) & (cx < w)).all() and ((cy > 0) & (cy < h)).all()),
                f"{what}.intrinsics principal point lies outside the {h}x{w} image: intrinsics must be in "
                "pixels of the stored image size")


class Sequence(_Frames):
    """One prepared scene, in its own world frame (as stored)."""


class Clip(_Frames):
    """A window of a Sequence, re-anchored: world = reference camera at frame 0, x forward, y left, z up."""

    @classmethod
    def from_sequence_window(cls, seq: _Frames, frames: np.ndarray | list[int],
                             reference_camera: str | None = None) -> Clip:
        """Cut `frames` (positions in `seq`) out of a Sequence and re-anchor them (see module docstring)."""
        from slarm_bench import geometry

        part = seq.select(frames)
        ref_name = reference_camera or seq.meta.get("reference_camera") or _default_reference(seq)
        if ref_name not in part.meta["camera_names"]:
            raise ContractError(f"reference camera {ref_name!r} is not among the clip's cameras "
                                f"{part.meta['camera_names']}")
        ref = part.meta["camera_names"].index(ref_name)
        world_from_anchor = geometry.opencv_cam_to_flu(part.cam_to_world[0, ref].astype(np.float64))
        anchor_from_world = np.linalg.inv(world_from_anchor)
        clip = cls(**{f.name: getattr(part, f.name) for f in dataclasses.fields(part)})
        clip.cam_to_world = geometry.transform_poses(anchor_from_world, part.cam_to_world)
        clip.time = (part.time - part.time[0]).astype(np.float64)
        if part.flow is not None:
            clip.flow = geometry.rotate_vectors(anchor_from_world[:3, :3], part.flow)
        if part.boxes is not None:
            clip.boxes = geometry.transform_boxes(anchor_from_world, part.boxes)
        clip.meta = dict(part.meta, reference_camera=ref_name,
                         anchor_from_sequence_world=anchor_from_world.tolist())
        return clip


def _default_reference(seq: _Frames) -> str:
    names = seq.meta["camera_names"]
    return "FRONT" if "FRONT" in names else names[len(names) // 2]


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ContractError(message)


def _describe(arr: Any) -> str:
    if isinstance(arr, np.ndarray):
        return f"{arr.dtype} {list(arr.shape)}"
    return type(arr).__name__


def _check_array(what: str, name: str, arr: Any, dtype: Any, shape: tuple[int, ...]) -> None:
    _expect(isinstance(arr, np.ndarray), f"{what}.{name} must be a numpy array, got {type(arr).__name__}")
    _expect(arr.dtype == dtype, f"{what}.{name} must be {np.dtype(dtype)}, got {arr.dtype}")
    _expect(arr.shape == shape, f"{what}.{name} must have shape {list(shape)}, got {list(arr.shape)}")
