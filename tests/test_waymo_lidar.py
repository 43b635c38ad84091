"""Range-image conventions: beam order, azimuth, per-pixel poses, velocity-label rules, ground fit."""

import numpy as np
import pytest

from slarm_bench import geometry
from slarm_bench.data.waymo_lidar import (
    LidarGeometry,
    WaymoLidarError,
    beam_inclinations,
    decode_matrix_float,
    encode_matrix_float,
    euler_to_matrix,
    ground_points,
    label_velocities,
    range_image_to_points,
)


def test_matrix_round_trip_and_corruption():
    a = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(decode_matrix_float(encode_matrix_float(a)), a)
    with pytest.raises(WaymoLidarError, match="zlib"):
        decode_matrix_float(b"not zlib")


def test_matrix_matches_official_schema():
    pb2 = pytest.importorskip("waymo_open_dataset.dataset_pb2")
    import zlib

    m = pb2.MatrixFloat()
    m.data.extend([1.0, -2.0, 3.5, 4.0, 5.0, 6.0])
    m.shape.dims.extend([2, 3])
    out = decode_matrix_float(zlib.compress(m.SerializeToString()))
    np.testing.assert_array_equal(out, [[1, -2, 3.5], [4, 5, 6]])
    parsed = pb2.MatrixFloat()
    parsed.ParseFromString(zlib.decompress(encode_matrix_float(out)))
    assert list(parsed.shape.dims) == [2, 3] and list(parsed.data) == [1, -2, 3.5, 4, 5, 6]


def test_beam_order_uniform_and_nonuniform():
    np.testing.assert_allclose(beam_inclinations(3, [-0.2, 0.0, 0.1], -0.2, 0.1), [0.1, 0.0, -0.2])
    np.testing.assert_allclose(beam_inclinations(4, [], -0.4, 0.4), [0.3, 0.1, -0.1, -0.3])
    with pytest.raises(WaymoLidarError):
        beam_inclinations(5, [0.0, 0.1], 0.0, 0.1)


def test_azimuth_is_independent_of_mounting_yaw():
    w = 8
    base = LidarGeometry.from_calibration(np.eye(4), 2, w, [], -0.1, 0.1)
    yawed = LidarGeometry.from_calibration(geometry.make_pose(geometry.rotation_z(0.7), [0, 0, 0]), 2, w, [],
                                           -0.1, 0.1)
    np.testing.assert_allclose(base.directions_vehicle, yawed.directions_vehicle, atol=1e-12)
    az = np.arctan2(base.directions_vehicle[0, :, 1], base.directions_vehicle[0, :, 0])
    expected = ((w - np.arange(w) - 0.5) / w * 2 - 1) * np.pi   # column 0 looks back-left, decreasing
    np.testing.assert_allclose(np.unwrap(az), np.unwrap(expected), atol=1e-12)
    np.testing.assert_allclose(base.directions_vehicle[0, :, 2], np.sin(0.05), atol=1e-12)  # top row


def test_points_with_extrinsic_and_pixel_pose():
    ext = geometry.make_pose(np.eye(3), [1.0, 0.0, 2.0])
    geom = LidarGeometry.from_calibration(ext, 2, 4, [-0.1, 0.2], 0, 0)
    rng = np.array([[5.0, -1.0, 5.0, 0.0], [3.0, 3.0, 3.0, 3.0]], np.float32)
    pts, flat = range_image_to_points(rng, geom)
    np.testing.assert_array_equal(flat, [0, 2, 4, 5, 6, 7])
    expected = geom.directions_vehicle.reshape(-1, 3)[flat] * rng.reshape(-1)[flat, None] + [1, 0, 2]
    np.testing.assert_allclose(pts, expected, atol=1e-5)
    # per-pixel pose equal to the frame pose: nothing moves; shifted 1 m (world x) at pixel time: +1 m
    frame_pose = geometry.make_pose(geometry.rotation_z(0.3), [10.0, 5.0, 0.0])
    pp = np.zeros((2, 4, 6), np.float32)
    pp[..., 2] = 0.3
    pp[..., 3:] = [10.0, 5.0, 0.0]
    same, _ = range_image_to_points(rng, geom, pp, frame_pose)
    np.testing.assert_allclose(same, pts, atol=1e-4)
    pp[..., 3] += 1.0
    moved, _ = range_image_to_points(rng, geom, pp, frame_pose)
    shift = geometry.rotation_z(-0.3) @ np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(moved - pts, np.tile(shift, (len(pts), 1)), atol=1e-4)


def test_euler_order():
    r = euler_to_matrix(np.array(0.1), np.array(0.2), np.array(0.3))
    rx = np.array([[1, 0, 0], [0, np.cos(0.1), -np.sin(0.1)], [0, np.sin(0.1), np.cos(0.1)]])
    ry = np.array([[np.cos(0.2), 0, np.sin(0.2)], [0, 1, 0], [-np.sin(0.2), 0, np.cos(0.2)]])
    np.testing.assert_allclose(r, geometry.rotation_z(0.3) @ ry @ rx, atol=1e-12)


def test_label_velocity_rules():
    flow = np.array([[[3.0, 4.0, 0.0, 1], [0.3, 0.0, 0.0, 1], [9.0, 0.0, 0.0, -1], [0.0, 0.6, 0.0, 2]]],
                    np.float32)
    v = label_velocities(flow, np.arange(4))
    np.testing.assert_allclose(v, [[3, 4, 0], [0, 0, 0], [0, 0, 0], [0, 0.6, 0]], atol=1e-6)


def test_ground_fit_is_deterministic_and_finds_tilted_plane():
    rng = np.random.default_rng(1)
    xy = rng.uniform(-30, 30, size=(4000, 2))
    ground = np.column_stack([xy, 0.02 * xy[:, 0] - 1.8 + rng.normal(0, 0.03, 4000)])
    walls = np.column_stack([rng.uniform(-30, 30, (1500, 2)), rng.uniform(-1.0, 4.0, 1500)])
    pts = np.concatenate([ground, walls]).astype(np.float32)
    g = ground_points(pts)
    assert g[:4000].mean() > 0.98
    assert g[4000:].mean() < 0.1
    np.testing.assert_array_equal(g, ground_points(pts))
    assert not ground_points(pts[:2]).any()


def _explicit_pose_points(rng, geom, pp, frame_pose):
    """The rolling-shutter rule written out in float64: vehicle(t_pixel) -> world -> vehicle(frame)."""
    _, flat = range_image_to_points(rng, geom)
    p = geom.directions_vehicle.reshape(-1, 3)[flat] * rng.reshape(-1)[flat, None] + geom.extrinsic[:3, 3]
    q = pp.reshape(-1, 6)[flat].astype(np.float64)
    world = np.einsum("nij,nj->ni", euler_to_matrix(q[:, 0], q[:, 1], q[:, 2]), p) + q[:, 3:]
    return geometry.transform_points(geometry.invert_pose(frame_pose), world)


def test_pixel_pose_per_column_and_per_pixel_paths_agree_with_float64():
    ext = geometry.make_pose(geometry.rotation_z(0.4), [1.4, 0.0, 2.2])
    geom = LidarGeometry.from_calibration(ext, 6, 40, [], -0.3, 0.05)
    r = np.random.default_rng(5).uniform(2, 90, (6, 40)).astype(np.float32)
    r[2, 5] = -1.0
    frame_pose = geometry.make_pose(geometry.rotation_z(1.1), [4000.0, -2500.0, 30.0])  # km-scale global
    cols = np.zeros((6, 40, 6), np.float32)
    cols[..., 0] = np.linspace(-0.01, 0.01, 40)[None]
    cols[..., 2] = 1.1 + np.linspace(0, 0.05, 40)[None]
    cols[..., 3:] = np.array([4000.0, -2500.0, 30.0]) + np.linspace(0, 1.0, 40)[None, :, None]
    per_col, _ = range_image_to_points(r, geom, cols, frame_pose)          # constant down columns
    np.testing.assert_allclose(per_col, _explicit_pose_points(r, geom, cols, frame_pose), atol=2e-4)
    varied = cols.copy()
    varied[3, :, 5] += 0.25                                                  # one row measured elsewhere
    per_pixel, flat = range_image_to_points(r, geom, varied, frame_pose)
    np.testing.assert_allclose(per_pixel, _explicit_pose_points(r, geom, varied, frame_pose), atol=2e-4)
    moved = np.flatnonzero(flat // 40 == 3)
    assert np.abs(per_pixel[moved] - per_col[moved]).max() > 0.2


def test_ground_fit_on_a_sample_matches_the_full_fit():
    rng = np.random.default_rng(6)
    n = 120_000
    xy = rng.uniform(-35, 35, size=(n, 2))
    pts = np.column_stack([xy, -0.01 * xy[:, 1] - 2.0 + rng.normal(0, 0.04, n)])
    pts[::3, 2] += rng.uniform(0.5, 3.0, pts[::3].shape[0])                 # a third above the ground
    pts = pts.astype(np.float32)
    from slarm_bench.data.waymo_lidar import classify_ground, ground_plane

    sample = ground_plane(pts, max_points=10_000)
    full = ground_plane(pts, max_points=n)
    np.testing.assert_allclose(sample, full, atol=5e-3)
    np.testing.assert_allclose(sample, [0.0, -0.01, -2.0], atol=5e-3)
    agree = classify_ground(pts, sample) == classify_ground(pts, full)
    assert agree.mean() > 0.995


def test_inflate_size_hints_fall_back_on_change_and_corruption():
    from slarm_bench.data.waymo_lidar import inflate

    sizes: dict[str, int] = {}
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(decode_matrix_float(encode_matrix_float(a), "x", sizes), a)
    assert sizes["x"] > a.nbytes  # remembered for the next frame (libdeflate path when installed)
    np.testing.assert_array_equal(decode_matrix_float(encode_matrix_float(a), "x", sizes), a)
    bigger = np.ones((3, 3, 4), np.float32)  # size changed: the hint is too small, zlib decodes it
    np.testing.assert_array_equal(decode_matrix_float(encode_matrix_float(bigger), "x", sizes), bigger)
    hint = sizes["x"]
    assert hint > bigger.nbytes
    # a hint is an upper bound: a smaller stream under the same key (another image of one lidar) decodes
    np.testing.assert_array_equal(decode_matrix_float(encode_matrix_float(a), "a flow", sizes, "x"), a)
    assert sizes == {"x": hint}
    blob = bytearray(encode_matrix_float(a))
    blob[-2] ^= 0xFF  # Adler-32 trailer
    with pytest.raises(WaymoLidarError, match="corrupt"):
        inflate(bytes(blob), "x", {"x": sizes["x"]})


def test_label_flow_decodes_lazy_images_only_when_taken():
    from slarm_bench.data.waymo_lidar import LabelFlow

    calls = []
    flow = np.zeros((1, 4, 4), np.float32)
    flow[0, :, 0] = 5.0

    def lazy():
        calls.append(1)
        return flow

    labels = LabelFlow([lazy, lazy], [np.arange(4), np.arange(4)], 0.5)
    v = labels.take(np.array([1, 2]))  # block 0 only
    assert len(calls) == 1 and np.allclose(v[:, 0], 5.0)
