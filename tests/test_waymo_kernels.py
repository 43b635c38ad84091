"""The Waymo adapter's compiled lidar path against its numpy reference: the same bytes, frame and sequence."""

import numpy as np
import pytest

pytest.importorskip("waymo_open_dataset.dataset_pb2")

from slarm_bench import geometry  # noqa: E402
from slarm_bench.data import waymo  # noqa: E402
from slarm_bench.data import waymo_kernels as kernels  # noqa: E402
from slarm_bench.data.tfrecord import write_records  # noqa: E402
from slarm_bench.data.waymo_frame import decode_frame, decode_lidar, lidar_blocks, parse_frame  # noqa: E402
from slarm_bench.data.waymo_lidar import LidarGeometry, label_velocities  # noqa: E402
from slarm_bench.data.waymo_project import frame_pixels, frame_pixels_fused, project_points  # noqa: E402
from slarm_bench.data.waymo_synth import make_frame  # noqa: E402

INTR = [60.0, 60.0, 48.0, 32.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # 96x64 cameras -> 48x32 prepared (1/2 DCT)
YAWS = {"FRONT": 0.0, "FRONT_LEFT": 0.8, "FRONT_RIGHT": -0.8, "SIDE_LEFT": 1.6}
POSE = geometry.make_pose(geometry.rotation_z(0.3), [2500.0, -1300.0, 40.0])  # km-scale global pose


def _street(geom: LidarGeometry, rng: np.random.Generator) -> np.ndarray:
    """Ranges of a ground plane 2 m down and walls 8 m to each side, up to 40 m, with noise and holes."""
    d = geom.directions_vehicle
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(d[..., 2] < -1e-3, -2.0 / d[..., 2], np.inf)
        t_wall = np.where(np.abs(d[..., 1]) > 1e-3, 8.0 / np.abs(d[..., 1]), np.inf)
    r = np.minimum(t_ground, t_wall) * (1 + 0.01 * rng.standard_normal(d.shape[:2]))
    r = np.where(r < 40, r, -1.0)
    r[rng.random(r.shape) < 0.05] = np.nan  # NaN is "no return" too (not > 0)
    return r.astype(np.float32)


def _lasers(rng: np.random.Generator, pose_per_pixel: bool, flow: bool) -> dict:
    incl = np.sort(np.deg2rad(np.linspace(-20, 3, 24)) + rng.normal(0, 1e-3, 24))
    specs = [("TOP", 24, 300, [1.4, 0, 2.2], 0.0), ("FRONT", 30, 90, [4.1, 0, 0.7], 0.0),
             ("SIDE_LEFT", 30, 90, [3.2, 1.0, 0.9], 1.57), ("REAR", 30, 90, [-1.1, 0, 0.9], 3.14)]
    out = {}
    for name, h, w, t, yaw in specs:
        ext = geometry.make_pose(geometry.rotation_z(yaw), t)
        top = name == "TOP"
        geom = LidarGeometry.from_calibration(ext, h, w, incl if top else [], -0.5, 0.3)
        r = _street(geom, rng)
        r2 = np.where(rng.random((h, w)) < 0.2, r + 0.5, -1.0).astype(np.float32)
        r2[::3, ::4] = r[::3, ::4]  # second return equal to the first: equal depths, the lower index wins
        if name == "REAR":  # returns only behind the car, where no camera looks
            r, r2 = (np.where(geom.directions_vehicle[..., 0] < -0.5, x, -1.0).astype(np.float32) for x in (r, r2))
        las = {"extrinsic": ext, "range": r, "range2": r2}
        if top:
            las["inclinations"] = incl
            pp = np.zeros((h, w, 6), np.float32)
            pp[..., 0] = 0.002
            pp[..., 2] = 0.3 + np.linspace(0, 0.02, w)[None]
            pp[..., 3:] = POSE[:3, 3] + np.linspace(0, 0.8, w)[None, :, None]
            if pose_per_pixel:
                pp[..., 5] += np.linspace(0, 0.3, h)[:, None]
            las["pixel_pose"] = pp
        else:
            las["inclination_range"] = (-0.5, 0.3)
        if flow:
            f = rng.normal(0, 2, (h, w, 4)).astype(np.float32)
            f[..., 3] = rng.integers(-1, 3, (h, w))
            las["flow"] = f
        out[name] = las
    return out


def _cameras(shift: int = 0) -> dict:
    yy, xx = np.mgrid[0:64, 0:96]
    image = np.stack([(xx * 2 + shift) % 256, yy * 3 % 256, (xx + yy) % 256], -1).astype(np.uint8)
    cams = {}
    for name, yaw in YAWS.items():
        h = 44 if name == "SIDE_LEFT" else 64  # a shorter side camera: padded below in the Sequence
        cams[name] = dict(width=96, height=h, intrinsic=INTR, image=image[:h],
                          extrinsic=geometry.make_pose(geometry.rotation_z(yaw), [1.5, 0.0, 2.0]))
    return cams


def _frame_bytes(seed: int, pose_per_pixel: bool = False, flow: bool = True, t: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pose = POSE @ geometry.make_pose(geometry.rotation_z(0.01 * t), [1.0 * t, 0.0, 0.0])
    return make_frame(timestamp_micros=1_000_000 + 100_000 * t, pose=pose, cameras=_cameras(t),
                      lasers=_lasers(rng, pose_per_pixel, flow))


def _views() -> list:
    """(cam_from_vehicle, K, h, w) of the 4 cameras, as waymo._frame_pixels builds them."""
    views = []
    for name, yaw in YAWS.items():
        c2v = geometry.flu_cam_to_opencv(geometry.make_pose(geometry.rotation_z(yaw), [1.5, 0.0, 2.0]))
        k = np.array([[30.0, 0, 24.0], [0, 30.0, 16.0], [0, 0, 1]], np.float32)
        views.append((geometry.invert_pose(c2v), k, 22 if name == "SIDE_LEFT" else 32, 48))
    return views


@pytest.mark.parametrize("pose_per_pixel", [False, True])
@pytest.mark.parametrize("flow", [True, False])
def test_fused_frame_pixels_equal_numpy_reference(pose_per_pixel, flow):
    frame = parse_frame(_frame_bytes(1, pose_per_pixel, flow))
    views = _views()
    points, labels, counts = decode_lidar(frame, (1, 2), {}, 0.5)
    ref = frame_pixels(points, labels, views)
    fast, fast_counts = frame_pixels_fused(lidar_blocks(frame, (1, 2), {}), views, 0.5)
    assert fast_counts == counts and sum(counts.values()) == points.shape[0] > 10_000
    for v in range(len(views)):
        np.testing.assert_array_equal(fast.pixel[v], ref.pixel[v])
        np.testing.assert_array_equal(fast.depth[v], ref.depth[v])
        np.testing.assert_array_equal(fast.slot[v], ref.slot[v])
        assert fast.pixel[v].size > 50
    np.testing.assert_array_equal(fast.points, ref.points)
    np.testing.assert_array_equal(fast.ground, ref.ground)
    assert 0 < fast.ground.sum() < fast.ground.size
    if flow:
        np.testing.assert_array_equal(fast.velocity, ref.velocity)
        assert np.abs(fast.velocity).sum() > 0
    else:
        assert fast.velocity is None and ref.velocity is None


def test_fused_path_reuses_work_buffers_and_skips_unseen_flow_images():
    frame = parse_frame(_frame_bytes(2))
    views = _views()
    work: dict = {}
    first, counts = frame_pixels_fused(lidar_blocks(frame, (1, 2), {}), views, 0.5, work=work)
    points = decode_lidar(frame, (1, 2), {}, 0.5)[0]
    buffers = {k: v.ctypes.data for k, v in work.items()}
    blocks = lidar_blocks(parse_frame(_frame_bytes(2)), (1, 2), {})
    called = []
    for b in blocks:
        b.flow = (lambda f, name: lambda: called.append(name) or f())(b.flow, b.name)
    again, _ = frame_pixels_fused(blocks, views, 0.5, work=work)
    assert {k: v.ctypes.data for k, v in work.items()} == buffers  # no reallocation
    np.testing.assert_array_equal(again.points, first.points)  # stale buffer content never leaks
    np.testing.assert_array_equal(again.velocity, first.velocity)
    # flow images are inflated only for range images with a winning point: not the REAR lidar's
    edges = np.cumsum([0, *counts.values()])
    _, index = zip(*(project_points(points, *view) for view in views))
    winners = np.unique(np.concatenate([i[i >= 0] for i in index]))
    expected = [name for name, lo, hi in zip(counts, edges[:-1], edges[1:]) if ((winners >= lo) & (winners < hi)).any()]
    assert called == expected and "REAR/1" not in called and "TOP/2" in called and counts["REAR/1"] > 100


def test_sequence_from_fused_path_equals_numpy_path(tmp_path, monkeypatch):
    path = tmp_path / "segment-k_with_camera_labels.tfrecord"
    write_records(path, [_frame_bytes(3, t=t) for t in range(3)])
    fast = waymo.build_sequence(path, cameras=list(YAWS), height=32, width=48)

    def reference_decode(*args, **kwargs):
        return decode_frame(*args, **{**kwargs, "lidar_points": True})

    monkeypatch.setattr(waymo, "decode_frame", reference_decode)
    ref = waymo.build_sequence(path, cameras=list(YAWS), height=32, width=48)
    assert fast.meta == ref.meta
    for name in ("depth", "flow", "ground", "dynamic", "images"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
    assert (fast.depth > 0).mean() > 0.2 and fast.dynamic.any() and fast.ground.any()
    assert not fast.depth[:, 3, 22:].any()  # the side camera's padding


def test_label_and_scatter_kernels_equal_numpy():
    rng = np.random.default_rng(4)
    flow = rng.normal(0, 1, (5, 7, 4)).astype(np.float32)
    flow[..., 3] = rng.integers(-1, 3, (5, 7))
    flow[0, 0, :3] = (0.3, 0.4, 0.0)  # speed 0.5: kept (the rule is < min_speed)
    pixels = rng.integers(0, 35, 50)
    out = np.empty((50, 3), np.float32)
    kernels.label_velocities_at(flow.reshape(35, 4), pixels, np.float32(0.5), out)
    np.testing.assert_array_equal(out, label_velocities(flow, pixels, 0.5))
    assert (out == 0).all(axis=1).any() and not (out == 0).all()

    pixel, slot = np.array([3, 7, 8, 20]), np.array([2, 0, 2, 1])
    depth = np.array([1.5, 2.5, 3.5, 4.5], np.float32)
    ground, moving = np.array([True, False, True]), np.array([False, True, True])
    vel = rng.normal(size=(3, 3)).astype(np.float32)
    planes = np.zeros(24, np.float32), np.zeros(24, bool), np.zeros((24, 3), np.float32), np.zeros(24, bool)
    kernels.scatter_hits(pixel, slot, depth, ground, vel, moving, *planes)
    ref = np.zeros(24, np.float32), np.zeros(24, bool), np.zeros((24, 3), np.float32), np.zeros(24, bool)
    ref[0][pixel], ref[1][pixel], ref[2][pixel], ref[3][pixel] = depth, ground[slot], vel[slot], moving[slot]
    for a, b in zip(planes, ref):
        np.testing.assert_array_equal(a, b)
