"""Tests of the data contract (slarm_bench.clip): validation, select() and re-anchoring of a Clip."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from slarm_bench import geometry as g
from slarm_bench.clip import (
    MASK_FIELDS,
    REQUIRED_META,
    SCHEMA_VERSION,
    SLARM_CLASSES,
    UNLABELLED,
    Boxes,
    Clip,
    Sequence,
)
from slarm_bench.errors import ContractError, SlarmBenchError

T, V, H, W = 4, 3, 6, 8
CAMERAS = ["FRONT_LEFT", "FRONT", "FRONT_RIGHT"]
CAMERA_YAWS = [np.pi / 4, 0.0, -np.pi / 4]
# The sequence's own world is deliberately not the FLU frame of any camera: rotated and far from the origin.
WORLD_YAW = 0.7
WORLD_OFFSET = np.array([100.0, -50.0, 3.0])
EGO_SPEED = 8.0  # m/s along the ego heading


def ego_heading(t: int) -> float:
    return WORLD_YAW + 0.05 * t


def ego_position(t: int) -> np.ndarray:
    return WORLD_OFFSET + EGO_SPEED * 0.1 * t * np.array([np.cos(WORLD_YAW), np.sin(WORLD_YAW), 0.0])


def make_sequence(pitch: float = 0.0) -> Sequence:
    """A valid T=4, V=3, 6x8 Sequence with every field, cameras level (or pitched down by `pitch` rad)."""
    rng = np.random.default_rng(0)
    c2w = np.zeros((T, V, 4, 4))
    for t in range(T):
        for v, cam_yaw in enumerate(CAMERA_YAWS):
            yaw = ego_heading(t) + cam_yaw
            forward = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), -np.sin(pitch)])
            eye = ego_position(t) + [0.3 * v, 0.1 * v, 1.6]
            c2w[t, v] = g.look_at_opencv(eye, eye + forward)
    k = g.intrinsics_from_fov(W, H, 70.0)
    intrinsics = np.broadcast_to(k, (T, V, 3, 3)).astype(np.float32)
    semantic = rng.integers(0, len(SLARM_CLASSES), size=(T, V, H, W)).astype(np.uint8)
    semantic[:, :, 0, 0] = UNLABELLED
    depth = rng.uniform(1.0, 50.0, size=(T, V, H, W)).astype(np.float32)
    depth[:, :, 0, :2] = 0.0  # no lidar return
    frames = np.repeat(np.arange(T, dtype=np.int32), 2)
    boxes = Boxes(
        frame=frames, track_id=np.tile(np.array([3, 9], np.int64), T),
        label=np.tile(np.array([1, 4], np.uint8), T),
        centre=np.stack([ego_position(int(f)) + [12.0, 2.0 * (i % 2) - 1.0, 0.8]
                         for i, f in enumerate(frames)]).astype(np.float32),
        size=np.tile(np.array([[4.5, 1.9, 1.6], [0.8, 0.8, 1.8]], np.float32), (T, 1)),
        yaw=np.tile(np.array([WORLD_YAW + 0.3, WORLD_YAW - 2.0], np.float32), T),
        velocity=rng.normal(size=(2 * T, 3)).astype(np.float32),
        acceleration=np.full((2 * T, 3), np.nan, np.float32),
        num_points=np.full(2 * T, 12, np.int32),
    )
    return Sequence(
        images=rng.integers(0, 256, size=(T, V, H, W, 3)).astype(np.uint8),
        intrinsics=intrinsics,
        cam_to_world=c2w.astype(np.float32),
        time=np.arange(T, dtype=np.float64) * 0.1,
        meta={"dataset": "synthetic", "scene": "scene-0", "camera_names": list(CAMERAS),
              "label_names": list(SLARM_CLASSES), "fps": 10.0, "frame_indices": [5, 6, 7, 8],
              "schema_version": SCHEMA_VERSION},
        depth=depth,
        flow=rng.normal(size=(T, V, H, W, 3)).astype(np.float32),
        sky=rng.random((T, V, H, W)) < 0.2,
        dynamic=rng.random((T, V, H, W)) < 0.2,
        ground=rng.random((T, V, H, W)) < 0.2,
        semantic=semantic,
        boxes=boxes,
        depth_dense=rng.uniform(1.0, 50.0, size=(T, V, H, W)).astype(np.float32),
        instance=rng.integers(0, 10, size=(T, V, H, W)).astype(np.int32),
        dynamic_box=rng.random((T, V, H, W)) < 0.2,
    )


@pytest.fixture
def seq() -> Sequence:
    return make_sequence()


def test_fixture_is_valid(seq: Sequence) -> None:
    seq.validate()
    assert (seq.num_frames, seq.num_cameras, seq.image_size) == (T, V, (H, W))
    assert seq.camera_names == CAMERAS
    assert seq.label_names == list(SLARM_CLASSES)
    assert set(seq.present_fields()) == {"depth", "flow", "sky", "dynamic", "ground", "semantic",
                                         "depth_dense", "instance", "dynamic_box"}


def test_absent_optional_fields_are_valid(seq: Sequence) -> None:
    bare = seq.replace(**{f: None for f in seq.present_fields()}, boxes=None)
    bare.validate()
    assert bare.present_fields() == []
    seq.replace(boxes=Boxes.empty()).validate()


def test_contract_error_is_a_slarm_bench_error() -> None:
    assert issubclass(ContractError, SlarmBenchError)


# -- broken clips -----------------------------------------------------------------------------------------
def _set_meta(**changes: object) -> Callable[[Sequence], Sequence]:
    return lambda s: s.replace(meta={**s.meta, **changes})


def _drop_meta(key: str) -> Callable[[Sequence], Sequence]:
    return lambda s: s.replace(meta={k: v for k, v in s.meta.items() if k != key})


def _edit(name: str, fn: Callable[[np.ndarray], None]) -> Callable[[Sequence], Sequence]:
    """Copy field `name`, edit the copy in place with `fn`, put it back."""
    def apply(s: Sequence) -> Sequence:
        arr = getattr(s, name).copy()
        fn(arr)
        return s.replace(**{name: arr})
    return apply


def _cast(name: str, dtype: object) -> Callable[[Sequence], Sequence]:
    return lambda s: s.replace(**{name: getattr(s, name).astype(dtype)})


def _reshape(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Sequence], Sequence]:
    return lambda s: s.replace(**{name: fn(getattr(s, name))})


def _boxes(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Sequence], Sequence]:
    def apply(s: Sequence) -> Sequence:
        fields = s.boxes.as_dict()
        fields[name] = fn(fields[name].copy())
        return s.replace(boxes=Boxes(**fields))
    return apply


def _set(arr: np.ndarray, index: object, value: object) -> None:
    arr[index] = value


def _scale_rotation(a: np.ndarray) -> None:
    a[1, 2, :3, :3] *= 1.01


def _reflect(a: np.ndarray) -> None:
    a[2, 0, :3, 0] *= -1


def _swap_times(a: np.ndarray) -> None:
    a[[1, 2]] = a[[2, 1]]


BROKEN: dict[str, tuple[Callable[[Sequence], Sequence], str]] = {
    # dtypes
    "images float": (_cast("images", np.float32), "images must be uint8"),
    "images int16": (_cast("images", np.int16), "images must be uint8"),
    "intrinsics float64": (_cast("intrinsics", np.float64), "intrinsics must be float32"),
    "cam_to_world float64": (_cast("cam_to_world", np.float64), "cam_to_world must be float32"),
    "time float32": (_cast("time", np.float32), "time must be float64"),
    "time int": (lambda s: s.replace(time=np.arange(T)), "time must be float64"),
    "depth float64": (_cast("depth", np.float64), "depth must be float32"),
    "flow float16": (_cast("flow", np.float16), "flow must be float32"),
    "semantic int32": (_cast("semantic", np.int32), "semantic must be uint8"),
    "depth_dense float64": (_cast("depth_dense", np.float64), "depth_dense must be float32"),
    "instance int64": (_cast("instance", np.int64), "instance must be int32"),
    **{f"{m} uint8": (_cast(m, np.uint8), f"{m} must be bool") for m in MASK_FIELDS},
    "intrinsics list": (lambda s: s.replace(intrinsics=s.intrinsics.tolist()),
                        "intrinsics must be a numpy array"),
    # shapes
    "images 4d": (_reshape("images", lambda a: a[0]), "images must be uint8 [T,V,H,W,3]"),
    "images rgba": (_reshape("images", lambda a: np.concatenate([a, a[..., :1]], -1)),
                    "images must be uint8"),
    "images empty": (_reshape("images", lambda a: a[:0]), "images is empty"),
    "intrinsics 3x4": (_reshape("intrinsics", lambda a: np.concatenate([a, a[..., :1]], -1)),
                       "intrinsics must have shape"),
    "intrinsics one frame": (_reshape("intrinsics", lambda a: a[:1]), "intrinsics must have shape"),
    "cam_to_world 3x4": (_reshape("cam_to_world", lambda a: a[..., :3, :]), "cam_to_world must have shape"),
    "time too long": (lambda s: s.replace(time=np.arange(T + 1) * 0.1), "time must have shape"),
    "depth wrong width": (_reshape("depth", lambda a: a[..., :-1]), "depth must have shape"),
    "flow two components": (_reshape("flow", lambda a: a[..., :2]), "flow must have shape"),
    "sky extra axis": (_reshape("sky", lambda a: a[..., None]), "sky must have shape"),
    "semantic cameras swapped": (_reshape("semantic", lambda a: a[:, :2]), "semantic must have shape"),
    # poses
    "pose nan": (_edit("cam_to_world", lambda a: _set(a, (0, 1, 0, 3), np.nan)),
                 "cam_to_world has non-finite"),
    "pose inf": (_edit("cam_to_world", lambda a: _set(a, (3, 0, 1, 1), np.inf)),
                 "cam_to_world has non-finite"),
    "pose not orthonormal": (_edit("cam_to_world", _scale_rotation), "not orthonormal"),
    "pose reflection": (_edit("cam_to_world", _reflect), "reflection"),
    "pose last row": (_edit("cam_to_world", lambda a: _set(a, (1, 1, 3, 0), 0.5)),
                      "last rows must be [0, 0, 0, 1]"),
    "pose last row scale": (_edit("cam_to_world", lambda a: _set(a, (1, 1, 3, 3), 2.0)), "last rows"),
    # intrinsics
    "intrinsics skew": (_edit("intrinsics", lambda a: _set(a, (0, 0, 0, 1), 0.5)), "must be pinhole"),
    "intrinsics bottom row": (_edit("intrinsics", lambda a: _set(a, (0, 0, 2, 0), 0.1)), "must be pinhole"),
    "intrinsics k10": (_edit("intrinsics", lambda a: _set(a, (2, 2, 1, 0), 0.1)), "must be pinhole"),
    "intrinsics k22": (_edit("intrinsics", lambda a: _set(a, (2, 2, 2, 2), 2.0)), "must be pinhole"),
    "principal point right": (_edit("intrinsics", lambda a: _set(a, (1, 2, 0, 2), W + 0.5)),
                              "principal point"),
    "principal point left": (_edit("intrinsics", lambda a: _set(a, (1, 2, 0, 2), -1.0)), "principal point"),
    "principal point below": (_edit("intrinsics", lambda a: _set(a, (3, 0, 1, 2), 2.0 * H)),
                              "principal point"),
    "principal point full-res": (_edit("intrinsics", lambda a: _set(a, (..., slice(2), 2), [2 * W, 2 * H])),
                                 "principal point"),
    "negative fx": (_edit("intrinsics", lambda a: _set(a, (0, 1, 0, 0), -5.0)),
                    "focal lengths must be positive"),
    "zero fy": (_edit("intrinsics", lambda a: _set(a, (0, 1, 1, 1), 0.0)), "focal lengths must be positive"),
    "intrinsics nan": (_edit("intrinsics", lambda a: _set(a, (0, 0, 0, 0), np.nan)),
                       "intrinsics has non-finite"),
    # time
    "time not from 0": (_edit("time", lambda a: a.__iadd__(0.5)), "must start at 0"),
    "time decreasing": (_edit("time", _swap_times), "strictly increasing"),
    "time repeated": (_edit("time", lambda a: _set(a, 2, a[1])), "strictly increasing"),
    "time nan": (_edit("time", lambda a: _set(a, 3, np.nan)), "time must be finite"),
    # per-pixel values
    "negative depth": (_edit("depth", lambda a: _set(a, (1, 1, 2, 2), -0.5)), "depth has negative depths"),
    "negative dense depth": (_edit("depth_dense", lambda a: _set(a, (0, 0, 0, 0), -1.0)),
                             "depth_dense has negative depths"),
    "depth inf": (_edit("depth", lambda a: _set(a, (1, 1, 2, 2), np.inf)), "depth has non-finite"),
    "nan flow": (_edit("flow", lambda a: _set(a, (2, 0, 3, 3, 1), np.nan)), "flow has non-finite"),
    "semantic out of range": (_edit("semantic", lambda a: _set(a, (0, 0, 1, 1), len(SLARM_CLASSES))),
                              "semantic has values outside"),
    "semantic 254": (_edit("semantic", lambda a: _set(a, (0, 0, 1, 1), 254)), "semantic has values outside"),
    # meta
    "meta not a dict": (lambda s: s.replace(meta=list(s.meta.items())), "meta must be a dict"),
    "schema version old": (_set_meta(schema_version=SCHEMA_VERSION - 1), "prepare"),
    "schema version new": (_set_meta(schema_version=SCHEMA_VERSION + 1), "--force"),
    **{f"meta lacks {k}": (_drop_meta(k), f"lacks ['{k}']") for k in REQUIRED_META},
    "camera_names too short": (_set_meta(camera_names=CAMERAS[:2]), "camera_names"),
    "camera_names too long": (_set_meta(camera_names=[*CAMERAS, "SIDE_LEFT"]), "camera_names"),
    "frame_indices wrong length": (_set_meta(frame_indices=[0, 1]), "frame_indices"),
    "fps zero": (_set_meta(fps=0.0), "fps"),
    "fps text": (_set_meta(fps="ten"), "fps"),
    "fps none": (_set_meta(fps=None), "fps"),
    "camera_names none": (_set_meta(camera_names=None), "camera_names"),
    "camera_names string": (_set_meta(camera_names="FRONT"), "camera_names"),
    "label_names none": (_set_meta(label_names=None), "label_names"),
    "frame_indices none": (_set_meta(frame_indices=None), "frame_indices"),
    # boxes
    "boxes centre 2d": (_boxes("centre", lambda a: a[:, :2]), "boxes.centre must have shape"),
    "boxes yaw column": (_boxes("yaw", lambda a: a[:, None]), "boxes.yaw must have shape"),
    "boxes velocity flat": (_boxes("velocity", lambda a: a[:, 0]), "boxes.velocity must have shape"),
    "boxes track_id short": (_boxes("track_id", lambda a: a[:-1]), "boxes.track_id must have shape"),
    "boxes frame int64": (_boxes("frame", lambda a: a.astype(np.int64)), "boxes.frame must be int32"),
    "boxes centre float64": (_boxes("centre", lambda a: a.astype(np.float64)),
                             "boxes.centre must be float32"),
    "boxes label list": (_boxes("label", lambda a: a.tolist()), "boxes.label must be a numpy array"),
    "boxes frame out of range": (_boxes("frame", lambda a: a + 1), "boxes.frame must lie in [0, 4)"),
    "boxes frame negative": (_boxes("frame", lambda a: a - 1), "boxes.frame must lie"),
    "boxes label out of range": (_boxes("label", lambda a: np.full_like(a, len(SLARM_CLASSES))),
                                 "boxes.label"),
    "boxes centre nan": (_boxes("centre", lambda a: np.where(a > 0, np.nan, a)),
                         "boxes.centre must be finite"),
    "boxes size zero": (_boxes("size", lambda a: a * 0), "boxes.size must be positive"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_sequence_is_rejected(seq: Sequence, case: str) -> None:
    mutate, fragment = BROKEN[case]
    broken = mutate(seq)
    with pytest.raises(ContractError) as info:
        broken.validate()
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    seq.validate()  # the fixture itself was not modified


def test_schema_version_message_says_how_to_fix(seq: Sequence) -> None:
    with pytest.raises(ContractError, match=r"re-run `slarm-bench prepare .* --force`"):
        _set_meta(schema_version=0)(seq).validate()


def test_messages_name_the_class(seq: Sequence) -> None:
    clip = Clip.from_sequence_window(seq, [0, 1])
    with pytest.raises(ContractError, match=r"^Clip\.depth"):
        _edit("depth", lambda a: _set(a, (0, 0, 0, 0), -1.0))(clip).validate()
    with pytest.raises(ContractError, match=r"^Sequence\.depth"):
        _edit("depth", lambda a: _set(a, (0, 0, 0, 0), -1.0))(seq).validate()


def test_values_at_the_edges_are_valid(seq: Sequence) -> None:
    # 255 is unlabelled, not out of range; depth 0 is no return; NaN box velocity is 'unknown'.
    s = _edit("semantic", lambda a: _set(a, (1, 1), UNLABELLED))(seq)
    s = _edit("depth", lambda a: _set(a, 2, 0.0))(s)
    s = _boxes("velocity", lambda a: np.full_like(a, np.nan))(s)
    s.validate()
    # Rotations off by float32 rounding pass.
    c2w = seq.cam_to_world.copy()
    c2w[..., :3, :3] *= np.float32(1 + 1e-6)
    seq.replace(cam_to_world=c2w).validate()
    single = seq.select([2]).replace(time=np.zeros(1))
    single.validate()


# -- select -----------------------------------------------------------------------------------------------
def test_select_frames_and_cameras(seq: Sequence) -> None:
    frames, cams = [1, 3], [2, 0]
    part = seq.select(frames, cams)
    assert type(part) is Sequence
    assert (part.num_frames, part.num_cameras, part.image_size) == (2, 2, (H, W))
    for name in ("images", "intrinsics", "cam_to_world", *seq.present_fields()):
        np.testing.assert_array_equal(getattr(part, name), getattr(seq, name)[frames][:, cams], err_msg=name)
        assert getattr(part, name).dtype == getattr(seq, name).dtype
    assert part.meta["camera_names"] == ["FRONT_RIGHT", "FRONT_LEFT"]
    assert part.meta["frame_indices"] == [6, 8]
    np.testing.assert_array_equal(part.time, seq.time[frames])  # kept as is (see select's docstring)
    # Boxes: only the selected frames, renumbered to positions in the selection.
    assert len(part.boxes) == 4
    np.testing.assert_array_equal(part.boxes.frame, [0, 0, 1, 1])
    for name in ("track_id", "centre", "size", "yaw", "velocity"):
        np.testing.assert_array_equal(getattr(part.boxes, name),
                                      getattr(seq.boxes, name)[np.isin(seq.boxes.frame, frames)])
    assert part.boxes.frame.dtype == np.int32
    # Re-zeroing time makes it a valid Sequence; the source is untouched.
    part.replace(time=part.time - part.time[0]).validate()
    seq.validate()
    assert seq.meta["camera_names"] == CAMERAS and seq.meta["frame_indices"] == [5, 6, 7, 8]


def test_select_all_cameras_and_absent_fields(seq: Sequence) -> None:
    bare = seq.replace(depth=None, flow=None, boxes=None)
    part = bare.select(np.array([0, 2]))
    assert part.depth is None and part.flow is None and part.boxes is None
    assert part.meta["camera_names"] == CAMERAS
    np.testing.assert_array_equal(part.sky, seq.sky[[0, 2]])
    # select returns copies: editing them leaves the source alone.
    part.images[...] = 0
    part.sky[...] = True
    assert seq.images[0].any() and not seq.sky[0].all()


# -- Clip.from_sequence_window: re-anchoring --------------------------------------------------------------
FRAMES = [1, 2, 3]


def _project(points: np.ndarray, c2w: np.ndarray, k: np.ndarray) -> np.ndarray:
    uv, z = g.project_points(np.atleast_2d(points), c2w.astype(np.float64), k.astype(np.float64))
    assert (z > 0).all()
    return uv


def _anchor(clip: Clip) -> np.ndarray:
    return np.asarray(clip.meta["anchor_from_sequence_world"], np.float64)


@pytest.fixture(params=[0.0, 0.15], ids=["level", "pitched"])
def seq_and_clip(request: pytest.FixtureRequest) -> tuple[Sequence, Clip]:
    s = make_sequence(pitch=request.param)
    return s, Clip.from_sequence_window(s, FRAMES)


def test_clip_is_valid_and_anchored(seq_and_clip: tuple[Sequence, Clip]) -> None:
    s, clip = seq_and_clip
    assert type(clip) is Clip
    clip.validate()
    front = CAMERAS.index("FRONT")
    assert clip.cam_to_world.dtype == np.float32
    np.testing.assert_allclose(clip.cam_to_world[0, front], g.flu_cam_to_opencv(np.eye(4)), atol=1e-5)
    # The reference camera looks down the clip's +x with +z up: a point ahead and above projects above centre.
    uv = _project(np.array([[10.0, 0.0, 1.0]]), clip.cam_to_world[0, front], clip.intrinsics[0, front])
    assert uv[0, 0] == pytest.approx(W / 2, abs=1e-4) and uv[0, 1] < H / 2
    uv = _project(np.array([[10.0, 1.0, 0.0]]), clip.cam_to_world[0, front], clip.intrinsics[0, front])
    assert uv[0, 0] < W / 2  # +y is left
    assert clip.time.dtype == np.float64
    np.testing.assert_allclose(clip.time, s.time[FRAMES] - s.time[FRAMES[0]])
    assert clip.time[0] == 0.0
    assert clip.meta["reference_camera"] == "FRONT"
    assert clip.meta["frame_indices"] == [6, 7, 8]
    assert clip.meta["camera_names"] == CAMERAS


def test_clip_keeps_relative_poses(seq_and_clip: tuple[Sequence, Clip]) -> None:
    s, clip = seq_and_clip
    src = s.cam_to_world[FRAMES].astype(np.float64).reshape(-1, 4, 4)
    dst = clip.cam_to_world.astype(np.float64).reshape(-1, 4, 4)
    for i in range(len(src)):
        for j in range(len(src)):
            np.testing.assert_allclose(g.invert_pose(dst[i]) @ dst[j], g.invert_pose(src[i]) @ src[j],
                                       atol=2e-4)
    # And the anchor transform relates the two worlds.
    np.testing.assert_allclose(g.transform_poses(_anchor(clip), s.cam_to_world[FRAMES]), clip.cam_to_world,
                               atol=1e-5)


def test_clip_world_points_project_to_same_pixels(seq_and_clip: tuple[Sequence, Clip]) -> None:
    s, clip = seq_and_clip
    anchor = _anchor(clip)
    for ci, t in enumerate(FRAMES):
        for v in range(V):
            c2w = s.cam_to_world[t, v].astype(np.float64)
            pts = g.unproject_depth(s.depth[t, v], s.intrinsics[t, v], c2w)
            pts = pts[s.depth[t, v] > 0]
            before = _project(pts, s.cam_to_world[t, v], s.intrinsics[t, v])
            after = _project(g.transform_points(anchor, pts), clip.cam_to_world[ci, v],
                             clip.intrinsics[ci, v])
            np.testing.assert_allclose(after, before, atol=2e-3)
            # Depth is camera-relative and so unchanged; so are the intrinsics and every pixel field.
            np.testing.assert_array_equal(clip.depth[ci, v], s.depth[t, v])
    for name in ("images", "intrinsics", "sky", "dynamic", "ground", "semantic", "depth_dense", "instance",
                 "dynamic_box"):
        np.testing.assert_array_equal(getattr(clip, name), getattr(s, name)[FRAMES], err_msg=name)


def test_clip_flow_rotated_consistently(seq_and_clip: tuple[Sequence, Clip]) -> None:
    s, clip = seq_and_clip
    anchor = _anchor(clip)
    assert clip.flow.dtype == np.float32
    np.testing.assert_allclose(clip.flow, s.flow[FRAMES] @ anchor[:3, :3].T, atol=1e-5)
    # Speed is frame-independent; and a moving point's image track is the same in both worlds.
    np.testing.assert_allclose(np.linalg.norm(clip.flow, axis=-1), np.linalg.norm(s.flow[FRAMES], axis=-1),
                               rtol=1e-5)
    t, ci, v, dt = FRAMES[1], 1, 2, 0.1
    pts = g.unproject_depth(s.depth[t, v], s.intrinsics[t, v], s.cam_to_world[t, v].astype(np.float64))
    moved = pts + dt * s.flow[t, v]
    moved_clip = g.transform_points(anchor, pts) + dt * clip.flow[ci, v]
    keep = (s.depth[t, v] > 0)
    before = _project(moved[keep], s.cam_to_world[t, v], s.intrinsics[t, v])
    after = _project(moved_clip[keep], clip.cam_to_world[ci, v], clip.intrinsics[ci, v])
    np.testing.assert_allclose(after, before, atol=2e-3)


def test_clip_boxes_transformed_consistently(seq_and_clip: tuple[Sequence, Clip]) -> None:
    s, clip = seq_and_clip
    anchor = _anchor(clip)
    src = s.boxes.select_frames(np.array(FRAMES))
    out = clip.boxes
    assert len(out) == len(src) == 6
    np.testing.assert_array_equal(out.frame, src.frame)
    np.testing.assert_array_equal(out.track_id, src.track_id)
    for row in range(len(out)):
        ci = int(out.frame[row])
        t = FRAMES[ci]
        front = CAMERAS.index("FRONT")
        before = _project(src.centre[row], s.cam_to_world[t, front], s.intrinsics[t, front])
        after = _project(out.centre[row], clip.cam_to_world[ci, front], clip.intrinsics[ci, front])
        np.testing.assert_allclose(after, before, atol=2e-3)
        # The velocity moves the centre along the same image track.
        before = _project(src.centre[row] + 0.1 * src.velocity[row], s.cam_to_world[t, front],
                          s.intrinsics[t, front])
        after = _project(out.centre[row] + 0.1 * out.velocity[row], clip.cam_to_world[ci, front],
                         clip.intrinsics[ci, front])
        np.testing.assert_allclose(after, before, atol=2e-3)
    np.testing.assert_allclose(out.velocity, src.velocity @ anchor[:3, :3].T, atol=1e-5)
    assert np.isnan(out.acceleration).all()
    np.testing.assert_array_equal(out.size, src.size)
    clip.boxes.validate(clip.num_frames, len(clip.label_names))


def test_clip_box_yaw_remeasured() -> None:
    s = make_sequence(pitch=0.0)
    clip = Clip.from_sequence_window(s, FRAMES)
    # The anchor is FRONT at sequence frame 1, heading ego_heading(1) in the sequence world.
    expected = s.boxes.yaw[s.boxes.frame >= 1] - ego_heading(FRAMES[0])
    wrapped = np.angle(np.exp(1j * (clip.boxes.yaw - expected)))
    np.testing.assert_allclose(wrapped, 0.0, atol=1e-5)
    assert (np.abs(clip.boxes.yaw) <= np.pi + 1e-6).all()
    # Level cameras: the corners of a re-anchored box are the re-anchored corners.
    src = s.boxes.select_frames(np.array(FRAMES))
    corners = g.transform_points(_anchor(clip), g.box_corners(src.centre, src.size, src.yaw))
    np.testing.assert_allclose(g.box_corners(clip.boxes.centre, clip.boxes.size, clip.boxes.yaw), corners,
                               atol=1e-3)


def test_clip_other_reference_camera_and_source_untouched(seq: Sequence) -> None:
    c2w_before = seq.cam_to_world.copy()
    boxes_before = seq.boxes.centre.copy()
    flow_before = seq.flow.copy()
    clip = Clip.from_sequence_window(seq, [0, 1, 2], reference_camera="FRONT_LEFT")
    np.testing.assert_allclose(clip.cam_to_world[0, 0], g.flu_cam_to_opencv(np.eye(4)), atol=1e-5)
    assert clip.meta["reference_camera"] == "FRONT_LEFT"
    clip.validate()
    np.testing.assert_array_equal(seq.cam_to_world, c2w_before)
    np.testing.assert_array_equal(seq.boxes.centre, boxes_before)
    np.testing.assert_array_equal(seq.flow, flow_before)
    assert "reference_camera" not in seq.meta


def test_clip_reference_from_meta_and_default(seq: Sequence) -> None:
    s = seq.replace(meta={**seq.meta, "reference_camera": "FRONT_RIGHT"})
    clip = Clip.from_sequence_window(s, [0, 1])
    np.testing.assert_allclose(clip.cam_to_world[0, 2], g.flu_cam_to_opencv(np.eye(4)), atol=1e-5)
    # Without a FRONT camera the middle one is the reference.
    s = seq.replace(meta={**seq.meta, "camera_names": ["A", "B", "C"]})
    clip = Clip.from_sequence_window(s, [0, 1])
    assert clip.meta["reference_camera"] == "B"
    np.testing.assert_allclose(clip.cam_to_world[0, 1], g.flu_cam_to_opencv(np.eye(4)), atol=1e-5)


def test_clip_unknown_reference_camera(seq: Sequence) -> None:
    with pytest.raises(ContractError, match="reference camera 'BACK'"):
        Clip.from_sequence_window(seq, [0, 1], reference_camera="BACK")


def test_clip_of_a_clip_is_the_same_clip(seq: Sequence) -> None:
    """Re-anchoring is idempotent: anchoring an anchored clip again changes nothing."""
    clip = Clip.from_sequence_window(seq, [1, 2, 3])
    again = Clip.from_sequence_window(clip, [0, 1, 2])
    np.testing.assert_allclose(again.cam_to_world, clip.cam_to_world, atol=1e-5)
    np.testing.assert_allclose(again.flow, clip.flow, atol=1e-5)
    np.testing.assert_allclose(again.boxes.centre, clip.boxes.centre, atol=1e-4)
    np.testing.assert_allclose(np.asarray(again.meta["anchor_from_sequence_world"]), np.eye(4), atol=1e-5)
