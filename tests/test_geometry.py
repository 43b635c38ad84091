"""Tests of slarm_bench.geometry: conventions, round trips, rays, projection, z-buffer and boxes."""

from __future__ import annotations

import numpy as np
import pytest

from slarm_bench import geometry as g
from slarm_bench.clip import Boxes


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return g.quaternion_to_matrix(q)


def random_pose(rng: np.random.Generator) -> np.ndarray:
    return g.make_pose(random_rotation(rng), rng.normal(size=3) * 5)


def axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


# -- frames and poses -------------------------------------------------------------------------------------
def test_opencv_to_flu_maps_camera_axes() -> None:
    forward, right, down = np.eye(3)[2], np.eye(3)[0], np.eye(3)[1]
    np.testing.assert_array_equal(g.OPENCV_TO_FLU @ forward, [1, 0, 0])
    np.testing.assert_array_equal(g.OPENCV_TO_FLU @ right, [0, -1, 0])
    np.testing.assert_array_equal(g.OPENCV_TO_FLU @ down, [0, 0, -1])
    assert np.isclose(np.linalg.det(g.OPENCV_TO_FLU), 1.0)


def test_flu_opencv_round_trip() -> None:
    rng = np.random.default_rng(0)
    poses = np.stack([random_pose(rng) for _ in range(5)])
    np.testing.assert_allclose(g.opencv_cam_to_flu(g.flu_cam_to_opencv(poses)), poses, atol=1e-12)
    np.testing.assert_allclose(g.flu_cam_to_opencv(g.opencv_cam_to_flu(poses)), poses, atol=1e-12)


def test_flu_cam_to_opencv_same_centre_and_forward() -> None:
    rng = np.random.default_rng(1)
    flu = random_pose(rng)
    cv = g.flu_cam_to_opencv(flu)
    np.testing.assert_allclose(cv[:3, 3], flu[:3, 3])
    # OpenCV z (forward) is FLU x; OpenCV x (right) is FLU -y; OpenCV y (down) is FLU -z.
    np.testing.assert_allclose(cv[:3, 2], flu[:3, 0], atol=1e-12)
    np.testing.assert_allclose(cv[:3, 0], -flu[:3, 1], atol=1e-12)
    np.testing.assert_allclose(cv[:3, 1], -flu[:3, 2], atol=1e-12)


def test_look_at_down_world_x_is_flu_identity() -> None:
    c2w = g.look_at_opencv([0, 0, 0], [10, 0, 0])
    np.testing.assert_allclose(c2w, g.flu_cam_to_opencv(np.eye(4)), atol=1e-12)
    c2w = g.look_at_opencv([1, 2, 3], [11, 2, 3])
    np.testing.assert_allclose(c2w[:3, :3], g.flu_cam_to_opencv(np.eye(4))[:3, :3], atol=1e-12)
    np.testing.assert_allclose(c2w[:3, 3], [1, 2, 3])


def test_look_at_points_camera_at_target() -> None:
    eye, target = np.array([3.0, -2.0, 1.5]), np.array([-4.0, 5.0, 0.5])
    c2w = g.look_at_opencv(eye, target)
    k = g.intrinsics_from_fov(64, 48, 60)
    uv, z = g.project_points(target[None], c2w, k)
    np.testing.assert_allclose(uv[0], [32, 24], atol=1e-9)
    assert z[0] == pytest.approx(np.linalg.norm(target - eye))
    # World up projects upwards in the image (smaller v).
    uv_up, _ = g.project_points((target + [0, 0, 1])[None], c2w, k)
    assert uv_up[0, 1] < 24
    assert np.linalg.det(c2w[:3, :3]) == pytest.approx(1.0)


def test_invert_pose() -> None:
    rng = np.random.default_rng(2)
    poses = np.stack([random_pose(rng) for _ in range(4)]).reshape(2, 2, 4, 4)
    inv = g.invert_pose(poses)
    np.testing.assert_allclose(inv @ poses, np.broadcast_to(np.eye(4), poses.shape), atol=1e-12)
    np.testing.assert_allclose(inv, np.linalg.inv(poses), atol=1e-12)
    assert g.invert_pose(poses.astype(np.float32)).dtype == np.float32


def test_transform_points_and_rotate_vectors() -> None:
    rng = np.random.default_rng(3)
    pose = random_pose(rng)
    pts = rng.normal(size=(7, 3))
    expected = (pose @ np.concatenate([pts, np.ones((7, 1))], 1).T).T[:, :3]
    np.testing.assert_allclose(g.transform_points(pose, pts), expected, atol=1e-12)
    assert g.transform_points(pose, pts.astype(np.float32)).dtype == np.float32
    vec = rng.normal(size=(2, 5, 3)).astype(np.float32)
    out = g.rotate_vectors(pose[:3, :3], vec)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, vec @ pose[:3, :3].T, atol=1e-5)


def test_transform_poses_keeps_dtype() -> None:
    rng = np.random.default_rng(4)
    a, b = random_pose(rng), random_pose(rng).astype(np.float32)
    out = g.transform_poses(a, b)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, a @ b, atol=1e-5)


def test_rotation_z() -> None:
    r = g.rotation_z(np.pi / 2)
    np.testing.assert_allclose(r @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    assert g.rotation_z(np.zeros(3)).shape == (3, 3, 3)


# -- quaternions --------------------------------------------------------------------------------------------
def test_quaternion_matrix_round_trip_random() -> None:
    rng = np.random.default_rng(5)
    q = rng.normal(size=(50, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.where(q[:, :1] < 0, -1, 1)
    rot = g.quaternion_to_matrix(q)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    back = g.matrix_to_quaternion(rot)
    np.testing.assert_allclose(back, q, atol=1e-10)
    assert (back[:, 0] >= 0).all()


def test_quaternion_to_matrix_known() -> None:
    half = np.pi / 4  # 90 degrees about z
    np.testing.assert_allclose(g.quaternion_to_matrix([np.cos(half), 0, 0, np.sin(half)]),
                               g.rotation_z(np.pi / 2), atol=1e-12)
    np.testing.assert_allclose(g.quaternion_to_matrix([2.0, 0, 0, 0]), np.eye(3))  # normalised


@pytest.mark.parametrize("axis", [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -2, 3], [-1, -1, -1]])
@pytest.mark.parametrize("angle", [np.pi, np.pi - 1e-7, np.pi - 1e-3, 179.0 * np.pi / 180])
def test_matrix_quaternion_near_180_degrees(axis: list[float], angle: float) -> None:
    rot = axis_angle(axis, angle)
    q = g.matrix_to_quaternion(rot)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(g.quaternion_to_matrix(q), rot, atol=1e-9)


def test_matrix_to_quaternion_batch_shape() -> None:
    rots = np.broadcast_to(np.eye(3), (2, 3, 3, 3))
    q = g.matrix_to_quaternion(rots)
    assert q.shape == (2, 3, 4)
    np.testing.assert_allclose(q[..., 0], 1.0)


def test_interpolate_pose_endpoints_and_midpoint() -> None:
    a = g.make_pose(g.rotation_z(0.2), [0.0, 0.0, 0.0])
    b = g.make_pose(g.rotation_z(1.4), [2.0, 4.0, -6.0])
    np.testing.assert_allclose(g.interpolate_pose(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(g.interpolate_pose(a, b, 1.0), b, atol=1e-12)
    mid = g.interpolate_pose(a, b, 0.5)
    np.testing.assert_allclose(mid, g.make_pose(g.rotation_z(0.8), [1.0, 2.0, -3.0]), atol=1e-12)
    # A general rotation: the midpoint is half the relative rotation angle.
    rng = np.random.default_rng(6)
    ra, rb = random_rotation(rng), random_rotation(rng)
    mid = g.interpolate_pose(g.make_pose(ra, np.zeros(3)), g.make_pose(rb, np.zeros(3)), 0.5)[:3, :3]
    angle = lambda r: np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))  # noqa: E731
    assert angle(ra.T @ mid) == pytest.approx(angle(ra.T @ rb) / 2, abs=1e-9)
    assert angle(mid.T @ rb) == pytest.approx(angle(ra.T @ rb) / 2, abs=1e-9)
    # Constant angular speed (slerp, not a normalised linear blend): a quarter of the way is a quarter angle.
    quarter = g.interpolate_pose(g.make_pose(ra, np.zeros(3)), g.make_pose(rb, np.zeros(3)), 0.25)[:3, :3]
    assert angle(ra.T @ quarter) == pytest.approx(angle(ra.T @ rb) / 4, abs=1e-9)


def test_interpolate_pose_tiny_rotation() -> None:
    a = g.make_pose(np.eye(3), [0, 0, 0])
    b = g.make_pose(g.rotation_z(1e-4), [1, 0, 0])
    mid = g.interpolate_pose(a, b, 0.5)
    np.testing.assert_allclose(mid, g.make_pose(g.rotation_z(5e-5), [0.5, 0, 0]), atol=1e-9)


# -- intrinsics, rays, projection ------------------------------------------------------------------------
def test_intrinsics_from_fov() -> None:
    k = g.intrinsics_from_fov(8, 6, 90.0)
    np.testing.assert_allclose(k, [[4, 0, 4], [0, 4, 3], [0, 0, 1]], atol=1e-12)


def test_pixel_centres() -> None:
    uv = g.pixel_centres(2, 3)
    assert uv.shape == (2, 3, 2)
    np.testing.assert_allclose(uv[0, 0], [0.5, 0.5])
    np.testing.assert_allclose(uv[1, 2], [2.5, 1.5])


def test_camera_rays_centre_pixel_is_optical_axis() -> None:
    k = g.intrinsics_from_fov(5, 3, 60.0)  # principal point (2.5, 1.5) = centre of pixel (1, 2)
    origins, dirs = g.camera_rays(k, np.eye(4), 3, 5)
    assert origins.shape == dirs.shape == (3, 5, 3)
    np.testing.assert_allclose(dirs[1, 2], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(dirs[..., 2], 1.0)
    # Pixel to the right: +x in camera frame by 1/fx.
    np.testing.assert_allclose(dirs[1, 3], [1 / k[0, 0], 0, 1], atol=1e-12)
    # In the world, the centre ray of a camera looking down world +x is world +x.
    c2w = g.look_at_opencv([1, 2, 3], [5, 2, 3])
    origins, dirs = g.camera_rays(k, c2w, 3, 5)
    np.testing.assert_allclose(dirs[1, 2], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(origins, np.broadcast_to([1, 2, 3], origins.shape))


def test_camera_rays_batched_and_uv() -> None:
    rng = np.random.default_rng(7)
    c2w = np.stack([random_pose(rng) for _ in range(6)]).reshape(2, 3, 4, 4)
    k = np.broadcast_to(g.intrinsics_from_fov(8, 6, 70.0), (2, 3, 3, 3))
    o, d = g.camera_rays(k, c2w, 6, 8)
    assert o.shape == d.shape == (2, 3, 6, 8, 3)
    o1, d1 = g.camera_rays(k[1, 2], c2w[1, 2], 6, 8)
    np.testing.assert_allclose(d[1, 2], d1)
    np.testing.assert_allclose(o[1, 2], o1)
    uv = np.array([[0.5, 0.5], [7.5, 5.5], [3.0, 2.0]])
    ou, du = g.camera_rays(k, c2w, 6, 8, uv=uv)
    assert du.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(du[1, 2, 0], d1[0, 0])
    np.testing.assert_allclose(du[1, 2, 1], d1[5, 7])


def test_unproject_then_project_returns_pixels_and_depths() -> None:
    rng = np.random.default_rng(8)
    h, w = 6, 8
    k = g.intrinsics_matrix(7.0, 6.5, 4.2, 2.9)
    c2w = random_pose(rng)
    depth = rng.uniform(0.5, 30.0, size=(h, w)).astype(np.float32)
    pts = g.unproject_depth(depth, k, c2w)
    uv, z = g.project_points(pts.reshape(-1, 3), c2w, k)
    np.testing.assert_allclose(uv, g.pixel_centres(h, w).reshape(-1, 2), atol=1e-9)
    np.testing.assert_allclose(z, depth.reshape(-1), rtol=1e-9)


def test_project_points_behind_camera_has_negative_depth() -> None:
    k = g.intrinsics_from_fov(8, 6, 90.0)
    _, z = g.project_points(np.array([[0.0, 0.0, -2.0], [0.0, 0.0, 3.0]]), np.eye(4), k)
    np.testing.assert_allclose(z, [-2, 3])


def test_plucker_moment_orthogonal_and_origin_invariant() -> None:
    rng = np.random.default_rng(9)
    o = rng.normal(size=(20, 3)) * 4
    d = rng.normal(size=(20, 3)) * 3
    p = g.plucker(o, d)
    assert p.shape == (20, 6)
    m, d_hat = p[:, :3], p[:, 3:]
    np.testing.assert_allclose(np.linalg.norm(d_hat, axis=1), 1.0)
    np.testing.assert_allclose(np.sum(m * d_hat, axis=1), 0.0, atol=1e-12)
    shifted = g.plucker(o + rng.normal(size=(20, 1)) * 7 * d, d)
    np.testing.assert_allclose(shifted, p, atol=1e-10)
    # Scaling the direction changes nothing either.
    np.testing.assert_allclose(g.plucker(o, 5 * d), p, atol=1e-12)


def test_torch_rays_and_plucker_match_numpy() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    h, w = 4, 6
    c2w = np.stack([random_pose(rng) for _ in range(6)]).reshape(2, 3, 4, 4)
    k = np.stack([g.intrinsics_matrix(*rng.uniform([4, 4, 2, 1], [9, 9, 4, 3])) for _ in range(6)])
    k = k.reshape(2, 3, 3, 3)
    o_np, d_np = g.camera_rays(k, c2w, h, w)
    uv = torch.from_numpy(g.pixel_centres(h, w).reshape(-1, 2))
    o_t, d_t = g.camera_rays_torch(torch.from_numpy(k), torch.from_numpy(c2w), uv)
    assert tuple(d_t.shape) == (2, 3, h * w, 3)
    np.testing.assert_allclose(d_t.numpy(), d_np.reshape(2, 3, -1, 3), atol=1e-12)
    np.testing.assert_allclose(o_t.numpy(), o_np.reshape(2, 3, -1, 3), atol=1e-12)
    p_t = g.plucker_torch(o_t, d_t)
    np.testing.assert_allclose(p_t.numpy(), g.plucker(o_np, d_np).reshape(2, 3, -1, 6), atol=1e-12)
    # float32 and differentiable
    c2w_t = torch.from_numpy(c2w).float().requires_grad_(True)
    o32, d32 = g.camera_rays_torch(torch.from_numpy(k).float(), c2w_t, uv.float())
    g.plucker_torch(o32, d32).sum().backward()
    assert c2w_t.grad is not None and torch.isfinite(c2w_t.grad).all()


def test_scale_intrinsics_matches_resizing() -> None:
    rng = np.random.default_rng(11)
    k = g.intrinsics_matrix(100.0, 90.0, 160.0, 120.0).astype(np.float32)
    c2w = random_pose(rng)
    pts = g.transform_points(c2w, rng.uniform([-3, -3, 2], [3, 3, 20], size=(10, 3)))
    uv, z = g.project_points(pts, c2w, k)
    k2 = g.scale_intrinsics(k, 0.5, 0.25)
    assert k2.dtype == np.float32
    uv2, z2 = g.project_points(pts, c2w, k2)
    np.testing.assert_allclose(uv2, uv * [0.5, 0.25], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(z2, z)
    # Pixel-corner origin: the centre of a 2x downsampled image's pixel 0 covers original pixels 0 and 1.
    k_half = g.scale_intrinsics(g.intrinsics_from_fov(8, 6, 90), 0.5, 0.5)
    np.testing.assert_allclose(k_half, g.intrinsics_from_fov(4, 3, 90))


# -- z-buffer ---------------------------------------------------------------------------------------------
def test_z_buffer_nearest_wins_and_drops() -> None:
    uv = np.array([
        [1.5, 0.5],   # 0: pixel (0,1), far
        [1.2, 0.9],   # 1: pixel (0,1), near -> wins
        [1.7, 0.1],   # 2: pixel (0,1), middle
        [0.0, 1.0],   # 3: pixel (1,0), on the pixel corner
        [3.99, 2.5],  # 4: pixel (2,3)
        [4.0, 0.5],   # 5: u == width -> outside
        [-0.01, 0.5],  # 6: outside left
        [0.5, 3.0],   # 7: v == height -> outside
        [2.5, 1.5],   # 8: behind the camera
        [2.5, 0.5],   # 9: in front of near plane? no: z below near
        [np.nan, 0.5],  # 10: not projectable
    ])
    z = np.array([9.0, 2.0, 5.0, 4.0, 7.0, 1.0, 1.0, 1.0, -3.0, 1e-4, 1.0])
    depth, index = g.z_buffer(uv, z, 3, 4)
    assert depth.dtype == np.float32 and index.dtype == np.int64
    expected_index = np.full((3, 4), -1)
    expected_index[0, 1], expected_index[1, 0], expected_index[2, 3] = 1, 3, 4
    np.testing.assert_array_equal(index, expected_index)
    expected_depth = np.zeros((3, 4), np.float32)
    expected_depth[0, 1], expected_depth[1, 0], expected_depth[2, 3] = 2.0, 4.0, 7.0
    np.testing.assert_array_equal(depth, expected_depth)
    np.testing.assert_array_equal(depth[index >= 0], z[index[index >= 0]].astype(np.float32))


def test_z_buffer_empty_and_many_points() -> None:
    depth, index = g.z_buffer(np.zeros((0, 2)), np.zeros(0), 2, 2)
    assert not depth.any() and (index == -1).all()
    rng = np.random.default_rng(12)
    n = 2000
    uv = rng.uniform(0, [5, 4], size=(n, 2))
    z = rng.uniform(1, 10, size=n)
    depth, index = g.z_buffer(uv, z, 4, 5)
    cell = np.floor(uv[:, 1]).astype(int) * 5 + np.floor(uv[:, 0]).astype(int)
    for pix in range(20):
        members = np.nonzero(cell == pix)[0]
        assert index.reshape(-1)[pix] == members[np.argmin(z[members])]
        assert depth.reshape(-1)[pix] == np.float32(z[members].min())


def test_z_buffer_of_unprojected_depth_reproduces_it() -> None:
    rng = np.random.default_rng(13)
    h, w = 5, 7
    k = g.intrinsics_from_fov(w, h, 80.0)
    c2w = random_pose(rng)
    depth = rng.uniform(1, 20, size=(h, w)).astype(np.float32)
    uv, z = g.project_points(g.unproject_depth(depth, k, c2w).reshape(-1, 3), c2w, k)
    out, index = g.z_buffer(uv, z, h, w)
    np.testing.assert_allclose(out, depth, rtol=1e-6)
    np.testing.assert_array_equal(index, np.arange(h * w).reshape(h, w))


# -- boxes ------------------------------------------------------------------------------------------------
def test_box_corners_and_points_in_box() -> None:
    centre = np.array([[10.0, 5.0, 1.0]])
    size = np.array([[4.0, 2.0, 1.5]])
    yaw = np.array([np.pi / 2])
    corners = g.box_corners(centre, size, yaw)
    assert corners.shape == (1, 8, 3)
    np.testing.assert_allclose(corners[0].mean(axis=0), centre[0], atol=1e-12)
    # Rotated 90 degrees: length runs along world y, width along world x.
    np.testing.assert_allclose(corners[0].max(axis=0) - corners[0].min(axis=0), [2.0, 4.0, 1.5], atol=1e-12)
    inside = g.points_in_box(corners[0] * 0.999 + centre[0] * 0.001, centre[0], size[0], yaw[0])
    assert inside.all()
    pts = np.array([[10.0, 5.0, 1.0], [10.0, 6.9, 1.0], [11.1, 5.0, 1.0], [10.0, 5.0, 1.8], [12.9, 5.0, 1.0]])
    np.testing.assert_array_equal(g.points_in_box(pts, centre[0], size[0], yaw[0]),
                                  [True, True, False, False, False])
    np.testing.assert_array_equal(g.points_in_box(pts, centre[0], size[0], yaw[0], margin=0.2),
                                  [True, True, True, True, False])
    # A yaw that is not a multiple of 90 degrees: the box's own axes decide, and they agree with box_corners.
    yaw = np.array([0.5])
    heading = np.array([np.cos(0.5), np.sin(0.5), 0.0])
    left = np.array([-np.sin(0.5), np.cos(0.5), 0.0])
    pts = centre[0] + np.array([1.9 * heading, -1.9 * heading, 0.9 * left, 1.9 * left,
                                1.1 * heading + 0.9 * left])
    np.testing.assert_array_equal(g.points_in_box(pts, centre[0], size[0], yaw[0]),
                                  [True, True, True, False, True])
    corners = g.box_corners(centre, size, yaw)[0]
    assert g.points_in_box(corners * 0.999 + centre[0] * 0.001, centre[0], size[0], yaw[0]).all()
    np.testing.assert_allclose(corners[-1], centre[0] + 2.0 * heading + 1.0 * left + [0, 0, 0.75], atol=1e-12)


def make_boxes(n: int = 3, seed: int = 14) -> Boxes:
    rng = np.random.default_rng(seed)
    return Boxes(
        frame=np.arange(n, dtype=np.int32), track_id=np.arange(n, dtype=np.int64) + 7,
        label=np.ones(n, np.uint8), centre=rng.normal(size=(n, 3)).astype(np.float32) * 10,
        size=rng.uniform(1, 4, size=(n, 3)).astype(np.float32),
        yaw=rng.uniform(-np.pi, np.pi, size=n).astype(np.float32),
        velocity=rng.normal(size=(n, 3)).astype(np.float32),
        acceleration=np.full((n, 3), np.nan, np.float32), num_points=np.full(n, -1, np.int32),
    )


def test_transform_boxes_matches_transformed_corners() -> None:
    boxes = make_boxes()
    transform = g.make_pose(g.rotation_z(2.5), [3.0, -1.0, 0.5])
    out = g.transform_boxes(transform, boxes)
    for name, arr in out.as_dict().items():
        assert arr.dtype == getattr(boxes, name).dtype, name
    np.testing.assert_array_equal(out.track_id, boxes.track_id)
    np.testing.assert_array_equal(out.size, boxes.size)
    corners_then_move = g.transform_points(transform, g.box_corners(boxes.centre, boxes.size, boxes.yaw))
    np.testing.assert_allclose(g.box_corners(out.centre, out.size, out.yaw), corners_then_move, atol=1e-4)
    np.testing.assert_allclose(out.velocity, boxes.velocity @ transform[:3, :3].T, atol=1e-5)
    assert np.isnan(out.acceleration).all()
    assert (np.abs(out.yaw) <= np.pi + 1e-6).all()


def test_transform_boxes_yaw_known() -> None:
    boxes = make_boxes(1)
    boxes.yaw[:] = 0.3
    out = g.transform_boxes(g.make_pose(g.rotation_z(-0.5), np.zeros(3)), boxes)
    assert float(out.yaw[0]) == pytest.approx(-0.2, abs=1e-6)
    empty = g.transform_boxes(np.eye(4), Boxes.empty())
    assert len(empty) == 0


def test_box_rectangle_mask() -> None:
    h, w = 30, 40
    k = g.intrinsics_from_fov(w, h, 90.0)
    c2w = g.look_at_opencv([0, 0, 0], [1, 0, 0])  # looks down world +x, z up
    # A 2 m cube 10 m ahead: its near face spans +-1 m at 9 m, far face at 11 m.
    corners = g.box_corners(np.array([[10.0, 0.0, 0.0]]), np.array([[2.0, 2.0, 2.0]]), np.zeros(1))
    mask = g.box_rectangle_mask(corners, c2w, k, h, w)
    uv, _ = g.project_points(corners[0], c2w, k)
    u0, v0 = np.floor(uv.min(0)).astype(int)
    u1, v1 = np.ceil(uv.max(0)).astype(int)
    expected = np.zeros((h, w), bool)
    expected[v0:v1, u0:u1] = True
    np.testing.assert_array_equal(mask, expected)
    assert 0 < mask.sum() < h * w
    # Entirely behind the camera: nothing.
    behind = g.box_corners(np.array([[-10.0, 0.0, 0.0]]), np.array([[2.0, 2.0, 2.0]]), np.zeros(1))
    assert not g.box_rectangle_mask(behind, c2w, k, h, w).any()
    # Straddling the camera plane (some corners behind): nothing, by the all-corners rule.
    straddle = g.box_corners(np.array([[0.5, 0.0, 0.0]]), np.array([[4.0, 2.0, 2.0]]), np.zeros(1))
    assert not g.box_rectangle_mask(straddle, c2w, k, h, w).any()
    # Several boxes: union; a box off to the side is clipped to the image.
    both = np.concatenate([corners, straddle])
    np.testing.assert_array_equal(g.box_rectangle_mask(both, c2w, k, h, w), expected)
    side = g.box_corners(np.array([[5.0, -6.0, 0.0]]), np.array([[2.0, 2.0, 2.0]]), np.zeros(1))
    side_mask = g.box_rectangle_mask(side, c2w, k, h, w)
    assert side_mask[:, -1].any() and not side_mask[:, 0].any()
    assert not g.box_rectangle_mask(np.zeros((0, 8, 3)), c2w, k, h, w).any()
