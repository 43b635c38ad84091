"""Waymo lidar-to-pixel path: the sort-free z-buffer against geometry.z_buffer, winners-only fields."""

import numpy as np

from slarm_bench import geometry
from slarm_bench.data.waymo_lidar import LabelFlow, label_velocities
from slarm_bench.data.waymo_project import frame_pixels, project_points

K = np.array([[40.0, 0.0, 24.0], [0.0, 40.0, 16.0], [0.0, 0.0, 1.0]])
H, W = 32, 48


def _cloud(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(-20, 20, n), rng.uniform(-20, 20, n), rng.uniform(-3, 30, n)])
    pts[: n // 4] = pts[n // 4: n // 2]                      # exact duplicates: equal depth at one pixel
    pts[n // 2: n // 2 + 50, 2] = rng.uniform(-0.5, 0.005, 50)  # behind or closer than `near`
    return pts.astype(np.float32)


def _reference(pts: np.ndarray, cam_from_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = geometry.transform_points(cam_from_world, pts.astype(np.float64))
    uv = (cam @ K.T)[:, :2] / cam[:, 2:3]
    return geometry.z_buffer(uv, cam[:, 2].astype(np.float32), H, W, near=0.01)


def test_project_points_matches_lexsort_z_buffer():
    pts = _cloud(20000)
    pose = geometry.make_pose(geometry.rotation_z(0.2), [0.5, -1.0, 0.3])
    depth, index = project_points(pts, pose, K, H, W)
    ref_depth, ref_index = _reference(pts, pose)
    # float32 vs float64 projection: a point may change pixel only within ~1e-4 px of a border
    same = index == ref_index
    assert same.mean() > 0.999
    np.testing.assert_allclose(depth[same], ref_depth[same], rtol=1e-5)
    hit = index >= 0
    assert hit.sum() > 500
    # the winner is the lowest index among equal depths (the first copy of a duplicated point)
    assert not np.isin(index[hit], np.arange(20000 // 4, 20000 // 2)).any()


def test_project_points_column_major_input_and_empty():
    pts = _cloud(3000, seed=2)
    pose = np.eye(4)
    a = project_points(pts, pose, K, H, W)
    b = project_points(np.asfortranarray(pts), pose, K, H, W)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    behind = np.array([[0.0, 0.0, -5.0], [1.0, 1.0, 0.0]], np.float32)
    depth, index = project_points(behind, pose, K, H, W)
    assert not depth.any() and (index == -1).all()


def test_frame_pixels_winners_carry_ground_and_labels():
    rng = np.random.default_rng(3)
    ground = np.column_stack([rng.uniform(2, 30, 3000), rng.uniform(-10, 10, 3000), np.full(3000, -1.5)])
    wall = np.column_stack([np.full(1000, 25.0), rng.uniform(-10, 10, 1000), rng.uniform(0.5, 4, 1000)])
    pts = np.concatenate([ground, wall]).astype(np.float32)
    flow = np.zeros((1, 4000, 4), np.float32)
    flow[0, :, 0] = rng.uniform(0, 3, 4000)
    flow[0, ::7, 3] = -1
    labels = LabelFlow([flow[:, :2500], flow[:, 2500:]], [np.arange(2500), np.arange(1500)], 0.5)
    front = geometry.invert_pose(geometry.flu_cam_to_opencv(np.eye(4)))  # camera at the origin, looking +x
    px = frame_pixels(pts, labels, [(front, K, H, W)])
    index = project_points(pts, front, K, H, W)[1]
    winners = np.unique(index[index >= 0])
    assert px.points.shape[0] == winners.size > 100
    np.testing.assert_array_equal(px.points, pts[winners])
    np.testing.assert_array_equal(px.ground, px.points[:, 2] < -1.0)
    np.testing.assert_array_equal(px.velocity, label_velocities(flow, winners, 0.5))
    # every hit pixel's depth is its winner's camera z (= vehicle x here)
    for pix, depth, slot in zip(px.pixel, px.depth, px.slot):
        np.testing.assert_allclose(depth, px.points[slot, 0], rtol=1e-6)
        assert pix.max() < H * W


def test_label_flow_take_matches_label_velocities():
    rng = np.random.default_rng(4)
    a = rng.normal(0, 2, (3, 5, 4)).astype(np.float32)
    b = rng.normal(0, 2, (2, 6, 4)).astype(np.float32)
    a[..., 3] = rng.integers(-1, 3, (3, 5))
    b[..., 3] = rng.integers(-1, 3, (2, 6))
    pa, pb = np.array([0, 3, 7, 14]), np.array([1, 2, 11])
    flow = LabelFlow([a, b], [pa, pb], 0.5)
    assert len(flow) == 7
    full = np.concatenate([label_velocities(a, pa), label_velocities(b, pb)])
    order = np.array([6, 0, 3, 3, 5])
    np.testing.assert_array_equal(flow.take(order), full[order])
    assert flow.take(np.zeros(0, np.int64)).shape == (0, 3)
