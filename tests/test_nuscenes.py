"""nuScenes adapter on a synthetic schema dataroot with known geometry, on real Lyft tables, and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nuscenes")

from slarm_bench import geometry  # noqa: E402
from slarm_bench.clip import SLARM_CLASSES, UNLABELLED  # noqa: E402
from slarm_bench.data import get_adapter  # noqa: E402
from slarm_bench.data import nuscenes_synth as synth  # noqa: E402
from slarm_bench.data.nuscenes import NuScenesAdapter, slarm_label  # noqa: E402
from slarm_bench.data.nuscenes_db import NuScenesDataError  # noqa: E402
from slarm_bench.errors import SlarmBenchError, UnknownNameError  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPEC = synth.SynthSpec()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synth.make_dataroot(tmp_path_factory.mktemp("nusc"), SPEC)


@pytest.fixture(scope="module")
def keyframes(root):
    return NuScenesAdapter(root, version="v1.0-mini", rate="keyframes", height=36, width=64).build(
        "mini_train", "scene-0061"
    )


@pytest.fixture(scope="module")
def sweeps(root):
    return NuScenesAdapter(root, version="v1.0-mini", rate="sweeps", height=36, width=64).build(
        "mini_train", "scene-0061"
    )


def _world_from_global():
    ego0 = synth.ego_pose(SPEC, synth.T0_US + SPEC.camera_offset_us)
    return geometry.invert_pose(ego0)  # the synthetic ego pose is already level (yaw only)


def test_registry_splits_and_scenes(root):
    adapter = get_adapter("nuscenes", raw=root, version="v1.0-mini")
    assert adapter.splits() == ["mini_train", "mini_val", "all"]
    assert adapter.scenes("mini_train") == ["scene-0061"]
    assert adapter.scenes("mini_val") == []
    assert adapter.scenes("all") == ["scene-0061"]
    with pytest.raises(UnknownNameError, match="did you mean|Did you mean"):
        adapter.scenes("mini_trian")


def test_keyframe_poses_time_and_intrinsics(keyframes):
    seq = keyframes
    assert seq.meta["camera_names"] == ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    np.testing.assert_allclose(seq.time, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(seq.meta["camera_time"][1], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(seq.meta["lidar_time"], [-0.02, 0.48, 0.98], atol=1e-9)
    for t in range(3):
        t_cam = synth.T0_US + t * synth.KEYFRAME_US + SPEC.camera_offset_us
        for v, cam in enumerate(seq.meta["camera_names"]):
            expect = _world_from_global() @ synth.ego_pose(SPEC, t_cam) @ synth.camera_to_ego(cam)
            np.testing.assert_allclose(seq.cam_to_world[t, v], expect, atol=1e-5)
    # frame 0's CAM_FRONT looks along the world x axis (OpenCV z = world x, OpenCV x = world -y)
    np.testing.assert_allclose(seq.cam_to_world[0, 1, :3, 2], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(seq.cam_to_world[0, 1, :3, 0], [0, -1, 0], atol=1e-6)
    np.testing.assert_allclose(seq.intrinsics[0, 0], synth.intrinsics(SPEC), atol=1e-6)
    assert seq.sky is None and seq.meta["fps"] == 2.0
    assert (seq.images[0, 1, 5, 5] > 150).tolist() == [False, True, False]  # CAM_FRONT's green image


def test_scaled_intrinsics(root):
    seq = NuScenesAdapter(root, version="v1.0-mini", rate="keyframes", height=18, width=32).build(
        "mini_train", "scene-0061"
    )
    np.testing.assert_allclose(seq.intrinsics[0, 1], [[20, 0, 16], [0, 20, 9], [0, 0, 1]], atol=1e-6)
    assert seq.images.shape == (3, 3, 18, 32, 3)


def test_depth_moves_points_to_the_camera_time(keyframes):
    # a point 10 m ahead of CAM_FRONT at lidar time; the camera fires 20 ms later at 5 m/s -> 9.9 m
    for t in range(3):
        assert keyframes.depth[t, 1, 18, 32] == pytest.approx(9.9, abs=1e-4)
    assert (keyframes.depth >= 0).all() and (keyframes.depth > 0).sum() > 100


def _pixel_of(seq, t, v, point_world):
    uv, z = geometry.project_points(
        point_world[None], seq.cam_to_world[t, v].astype(np.float64), seq.intrinsics[t, v]
    )
    return int(uv[0, 1]), int(uv[0, 0]), float(z[0])


def test_box_flow_and_labels_at_the_car_and_the_barrier(keyframes):
    seq, wfg = keyframes, _world_from_global()
    expect = geometry.rotate_vectors(wfg[:3, :3], np.array(SPEC.car_velocity))
    for t in range(3):
        t_lidar = synth.T0_US + t * synth.KEYFRAME_US
        car = geometry.transform_points(wfg, synth.car_centre(SPEC, t_lidar))
        # the car centre seen by CAM_FRONT, moved to the camera time by the ego motion only
        row, col, z = _pixel_of(seq, t, 1, car)
        assert seq.depth[t, 1, row, col] > 0
        np.testing.assert_allclose(seq.flow[t, 1, row, col], expect, atol=1e-4)
        assert seq.semantic[t, 1, row, col] == SLARM_CLASSES.index("vehicle")
        assert seq.dynamic[t, 1, row, col] and seq.dynamic_box[t, 1, row, col]
        barrier = geometry.transform_points(wfg, synth.barrier_centre(SPEC))
        row, col, _ = _pixel_of(seq, t, 1, barrier)
        if 0 <= row < 36 and 0 <= col < 64 and seq.depth[t, 1, row, col] > 0:
            np.testing.assert_array_equal(seq.flow[t, 1, row, col], 0.0)
    assert np.isin(seq.semantic, [UNLABELLED, *range(len(SLARM_CLASSES))]).all()
    moving = seq.flow[np.linalg.norm(seq.flow, axis=-1) > 0]
    np.testing.assert_allclose(moving, np.broadcast_to(expect, moving.shape), atol=1e-4)  # only the car moves


def test_boxes_in_world_frame(keyframes, sweeps):
    wfg = _world_from_global()
    for seq in (keyframes, sweeps):
        b = seq.boxes
        car = b.label == SLARM_CLASSES.index("vehicle")
        for t in range(seq.num_frames):
            t_lidar = synth.T0_US + round(seq.meta["lidar_time"][t] * 1e6) + SPEC.camera_offset_us
            row = np.flatnonzero(car & (b.frame == t))
            assert row.size == 1
            np.testing.assert_allclose(
                b.centre[row[0]], geometry.transform_points(wfg, synth.car_centre(SPEC, t_lidar)), atol=1e-3
            )
            np.testing.assert_allclose(b.size[row[0]], [4.0, 2.0, 1.6])
            assert b.yaw[row[0]] == pytest.approx(0.0, abs=1e-6)
        np.testing.assert_allclose(
            b.velocity[car][:, :2],
            np.broadcast_to(
                geometry.rotate_vectors(wfg[:3, :3], np.array(SPEC.car_velocity))[:2], (car.sum(), 2)
            ),
            atol=1e-4,
        )


def test_sweeps_rate(sweeps):
    seq = sweeps
    np.testing.assert_allclose(seq.time, [0, 0.25, 0.5, 0.75, 1.0])
    assert seq.meta["fps"] == 12.0 and seq.meta["rate"] == "sweeps"
    assert (np.diff(seq.time) > 0).all()
    # lidarseg exists for keyframe sweeps only
    assert seq.meta["semantic_frames"] == [1, 0, 1, 0, 1]
    assert (seq.semantic[1] == UNLABELLED).all() and (seq.semantic[2] != UNLABELLED).any()
    for t in range(5):
        assert seq.depth[t, 1, 18, 32] == pytest.approx(9.9, abs=1e-4)
    assert (np.linalg.norm(seq.flow[1], axis=-1) > 0).any()  # interpolated boxes give flow between samples


def test_slarm_label_mapping():
    idx = SLARM_CLASSES.index
    assert slarm_label("vehicle.bus.bendy") == idx("vehicle") == slarm_label("vehicle.emergency.police")
    assert slarm_label("vehicle.trailer") == idx("vehicle")
    assert slarm_label("vehicle.bicycle") == idx("bicycle") and slarm_label("vehicle.motorcycle") == idx(
        "motorcycle"
    )
    assert slarm_label("human.pedestrian.police_officer") == idx("people")
    assert slarm_label("flat.driveable_surface") == idx("road") and slarm_label("flat.sidewalk") == idx(
        "sidewalk"
    )
    assert slarm_label("static.manmade") == idx("buildings")
    assert slarm_label("static.vegetation") == idx("others") == slarm_label("movable_object.barrier")
    assert slarm_label("noise") == UNLABELLED


# --- bad input ---------------------------------------------------------------------------------------------
def _copy(root, tmp_path):
    import shutil

    dst = tmp_path / "root"
    shutil.copytree(root, dst)
    return dst


def test_missing_table_and_unknown_version(root, tmp_path):
    with pytest.raises(UnknownNameError, match="v1.0-mini"):
        NuScenesAdapter(root, version="v1.0-mni")
    dst = _copy(root, tmp_path)
    (dst / "v1.0-mini" / "instance.json").unlink()
    with pytest.raises(NuScenesDataError, match=r"lacks tables \['instance'\]"):
        NuScenesAdapter(dst, version="v1.0-mini")
    with pytest.raises(NuScenesDataError, match="does not exist"):
        NuScenesAdapter(tmp_path / "nowhere", version="v1.0-mini")


def test_devkit_errors_are_one_line(root, tmp_path):
    dst = _copy(root, tmp_path)
    (dst / "v1.0-mini" / "sample.json").write_text("{not json")
    with pytest.raises(NuScenesDataError, match="nuscenes-devkit cannot load") as info:
        NuScenesAdapter(dst, version="v1.0-mini")
    assert "\n" not in str(info.value)
    dst2 = tmp_path / "root2"
    import shutil

    shutil.copytree(root, dst2)
    rows = json.loads((dst2 / "v1.0-mini" / "sample_annotation.json").read_text())
    rows[0]["instance_token"] = "no-such-instance"
    (dst2 / "v1.0-mini" / "sample_annotation.json").write_text(json.dumps(rows))
    with pytest.raises(NuScenesDataError) as info:
        NuScenesAdapter(dst2, version="v1.0-mini")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("what", ["image", "lidar"])
def test_missing_sensor_files(root, tmp_path, what):
    dst = _copy(root, tmp_path)
    folder = "CAM_FRONT_RIGHT" if what == "image" else "LIDAR_TOP"
    next((dst / "samples" / folder).iterdir()).unlink()
    adapter = NuScenesAdapter(dst, version="v1.0-mini", rate="keyframes", height=36, width=64)
    with pytest.raises(NuScenesDataError, match=f"{what} file .* is missing"):
        adapter.build("mini_train", "scene-0061")


def test_scene_without_annotations_and_bad_options(root, tmp_path):
    dst = _copy(root, tmp_path)
    for table in ("sample_annotation", "instance"):
        (dst / "v1.0-mini" / f"{table}.json").write_text("[]")
    adapter = NuScenesAdapter(dst, version="v1.0-mini", height=36, width=64)
    with pytest.raises(NuScenesDataError, match="no box annotations"):
        adapter.build("mini_train", "scene-0061")
    with pytest.raises(UnknownNameError, match="CAM_FRONT"):
        NuScenesAdapter(root, version="v1.0-mini", cameras=["CAM_FRNT"])
    with pytest.raises(UnknownNameError, match="sweeps"):
        NuScenesAdapter(root, version="v1.0-mini", rate="sweep")
    with pytest.raises(SlarmBenchError):
        NuScenesAdapter(root, version="v1.0-mini").build("mini_train", "scene-9999")


# --- real Lyft tables in the nuScenes schema ----------------------------------------------------------------
LYFT = DATA / "lyft_nuscenes_schema" / "v1.01-train"


@pytest.mark.skipif(not LYFT.is_dir(), reason="shared Lyft tables absent")
def test_lyft_tables_through_the_same_path():
    adapter = NuScenesAdapter(LYFT, version="v1.01-train", cameras=["CAM_FRONT"])
    assert adapter.splits() == ["all"]
    scenes = adapter.scenes("all")
    assert scenes == ["host-a101-lidar0-1240710366399037786-1240710391298976894"]
    # the fragment keeps one sample of the scene, whose `next` names a pruned one: a one-line failure
    with pytest.raises(NuScenesDataError, match="sample chain names sample 0ebe3320") as info:
        adapter.build("all", scenes[0])
    assert "\n" not in str(info.value)
