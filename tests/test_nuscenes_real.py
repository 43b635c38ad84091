"""Real data: scene-0061's keyframe against nuscenes-devkit's own projection, and box flow against the
official Argoverse 2 per-point scene-flow labels."""

from pathlib import Path

import numpy as np
import pytest

from slarm_bench import geometry

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCENE0061 = DATA / "nuscenes" / "scene0061_dataroot"
AV2_LOG = DATA / "av2" / "sensor" / "val" / "7fab2350-7eaf-3b7e-a39d-6937a4c1bede"


@pytest.mark.skipif(not SCENE0061.is_dir(), reason="shared scene-0061 dataroot absent")
def test_scene0061_depth_and_boxes_match_the_devkit():
    pytest.importorskip("nuscenes")
    from nuscenes.nuscenes import NuScenesExplorer
    from nuscenes.utils.geometry_utils import BoxVisibility

    from slarm_bench.data.nuscenes import NuScenesAdapter

    adapter = NuScenesAdapter(SCENE0061, version="v1.0-mini", rate="keyframes", height=900, width=1600)
    seq = adapter.build("mini_train", "scene-0061")
    nusc = adapter.nusc
    explorer = NuScenesExplorer(nusc)
    sample = nusc.sample[0]
    for v, cam in enumerate(seq.meta["camera_names"]):
        pts, depths, _ = explorer.map_pointcloud_to_image(sample["data"]["LIDAR_TOP"], sample["data"][cam])
        ref, _ = geometry.z_buffer(pts[:2].T, depths, 900, 1600)
        ours = seq.depth[0, v]
        both = (ref > 0) & (ours > 0)
        assert (ref > 0).sum() > 1000
        # the devkit drops points nearer than 1 m and within 1 px of the border; otherwise same pixels, but
        # for points whose float32 and float64 projections fall on either side of a pixel edge
        assert both.sum() / (ref > 0).sum() > 0.995
        extra = (ours > 0) & (ref == 0)
        assert extra.sum() / (ours > 0).sum() < 0.01
        close = np.abs(ours[both] - ref[both]) < 1e-3
        assert close.mean() > 0.99, (cam, np.abs(ours[both] - ref[both]).max())
        # boxes: the devkit's boxes in this camera's frame vs ours moved through cam_to_world
        _, dev_boxes, k = nusc.get_sample_data(sample["data"][cam], box_vis_level=BoxVisibility.ANY)
        np.testing.assert_allclose(seq.intrinsics[0, v], k, atol=1e-3)
        world_to_cam = geometry.invert_pose(seq.cam_to_world[0, v].astype(np.float64))
        from slarm_bench.data.nuscenes import track_id

        by_track = {int(t): i for i, t in enumerate(seq.boxes.track_id)}
        assert dev_boxes
        for box in dev_boxes:
            inst = nusc.get("sample_annotation", box.token)["instance_token"]
            i = by_track[track_id(inst)]
            centre_cam = geometry.transform_points(world_to_cam, seq.boxes.centre[i].astype(np.float64))
            # float32 world coordinates and camera poses: millimetres
            np.testing.assert_allclose(centre_cam, box.center, atol=5e-3)
            np.testing.assert_allclose(seq.boxes.size[i], box.wlh[[1, 0, 2]], atol=1e-5)
    assert len(seq.boxes) == 69 and seq.flow is None  # one keyframe: no track to difference


def _pose(frame, cols=("qw", "qx", "qy", "qz"), trans=("tx_m", "ty_m", "tz_m")):
    return geometry.make_pose(
        geometry.quaternion_to_matrix(frame[list(cols)].to_numpy(np.float64)),
        frame[list(trans)].to_numpy(np.float64),
    )


@pytest.mark.skipif(not AV2_LOG.is_dir(), reason="shared Argoverse 2 log absent")
def test_box_flow_matches_argoverse2_labels():
    """AV2 labels are displacements p1 (in the ego frame of sweep 1) - p0 (ego frame of sweep 0), with boxes
    grown by 0.1 m on each side in length and width: convert them to world displacements and compare."""
    pd = pytest.importorskip("pandas")
    stamps = sorted(int(p.stem) for p in (AV2_LOG / "sensors" / "lidar").glob("*.feather"))
    t0, t1 = stamps[0], stamps[1]
    lidar = pd.read_feather(AV2_LOG / "sensors" / "lidar" / f"{t0}.feather")
    pts = lidar[["x", "y", "z"]].to_numpy(np.float64)
    labels = pd.read_feather(AV2_LOG / "flow_labels.feather")[["flow_tx_m", "flow_ty_m", "flow_tz_m"]]
    poses = pd.read_feather(AV2_LOG / "city_SE3_egovehicle.feather").set_index("timestamp_ns")
    city_ego0, city_ego1 = _pose(poses.loc[t0]), _pose(poses.loc[t1])
    ego_motion = np.load(AV2_LOG / "ego_motion.npz")["ego_motion"][0]
    np.testing.assert_allclose(geometry.invert_pose(city_ego1) @ city_ego0, ego_motion, atol=2e-3)
    ann = pd.read_feather(AV2_LOG / "annotations.feather")
    a0 = ann[ann.timestamp_ns == t0]
    a1 = ann[ann.timestamp_ns == t1].set_index("track_uuid")
    pose0, pose1, size = [], [], []
    for _, row in a0.iterrows():
        if row.track_uuid in a1.index:
            pose0.append(city_ego0 @ _pose(row))
            pose1.append(city_ego1 @ _pose(a1.loc[row.track_uuid]))
            size.append([row.length_m, row.width_m, row.height_m])
    assert len(pose0) > 50
    dt = (t1 - t0) * 1e-9
    world = geometry.transform_points(city_ego0, pts)
    vel = geometry.rigid_box_flow(
        world, np.array(pose0), np.array(pose1), np.array(size), dt, margin=np.array([0.1, 0.1, 0.0])
    )
    expected = geometry.transform_points(city_ego1, pts + labels.to_numpy(np.float64)) - world
    err = np.linalg.norm(vel * dt - expected, axis=1)
    assert err.mean() < 0.01
    moving = np.linalg.norm(vel, axis=1) * dt > 0.05
    assert moving.sum() > 1000 and np.median(err[moving]) < 0.01  # the moving points match too


def test_rigid_box_flow_with_a_pitched_box():
    pitch = geometry.make_pose(
        np.array([[np.cos(0.3), 0, np.sin(0.3)], [0, 1, 0], [-np.sin(0.3), 0, np.cos(0.3)]]), [0.0, 0.0, 0.0]
    )
    moved = geometry.make_pose(pitch[:3, :3], [1.0, 0.0, 0.0])
    # a point 1.1 m up the pitched box's local z is inside it (height 2.4) but outside an unpitched box
    # of the same size centred at the origin only if the tilt were ignored along x
    p = geometry.transform_points(pitch, np.array([[0.0, 0.0, 1.1]]))
    v = geometry.rigid_box_flow(p, pitch[None], moved[None], np.array([[1.0, 1.0, 2.4]]), dt=0.5)
    np.testing.assert_allclose(v[0], [2.0, 0.0, 0.0], atol=1e-6)
    v = geometry.rigid_box_flow(p, np.eye(4)[None], moved[None], np.array([[0.5, 1.0, 2.4]]), dt=0.5)
    np.testing.assert_array_equal(v[0], 0.0)
