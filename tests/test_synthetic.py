"""The synthetic dataset: contract, determinism, splits, and physical checks of its exact ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from slarm_bench import clip, geometry
from slarm_bench.data import synthetic_kernels as kernels
from slarm_bench.data import synthetic_raycast as rc
from slarm_bench.data import synthetic_shade as shade
from slarm_bench.data.synthetic import (
    FPS,
    SPLIT_SIZES,
    SyntheticAdapter,
    SyntheticError,
    generate_sequence,
    split_seed,
    world_primitives,
)
from slarm_bench.data.synthetic_motion import HeadingProfile, SpeedProfile, Trajectory
from slarm_bench.data.synthetic_raycast import BOX, CYLINDER, SPHERE
from slarm_bench.data.synthetic_scene import make_scene
from slarm_bench.errors import UnknownNameError

H, W, T = 48, 72, 12


@pytest.fixture(scope="module")
def seq() -> clip.Sequence:
    # Seed 3 has moving vehicles, pedestrians and a cyclist in view (checked by test_has_dynamic_content).
    return generate_sequence(3, H, W, T)


def test_validate_and_meta(seq):
    seq.validate()
    m = seq.meta
    assert m["camera_names"] == ["FRONT_LEFT", "FRONT", "FRONT_RIGHT"]
    assert m["label_names"] == list(clip.SLARM_CLASSES)
    assert m["fps"] == 10.0 and m["flow_dense"] is True and m["reference_camera"] == "FRONT"
    assert m["frame_indices"] == list(range(T)) and m["schema_version"] == clip.SCHEMA_VERSION
    np.testing.assert_allclose(seq.time, np.arange(T) / 10.0)
    assert seq.images.shape == (T, 3, H, W, 3)
    # Sequence world = ego start pose: the FRONT camera starts above the origin looking along +x.
    front = geometry.opencv_cam_to_flu(seq.cam_to_world[0, 1].astype(np.float64))
    np.testing.assert_allclose(front[:3, :3], np.eye(3), atol=1e-6)
    assert abs(front[1, 3]) < 1e-6 and front[2, 3] > 1.5


def test_has_dynamic_content(seq):
    assert seq.dynamic.sum() > 50 and (seq.depth > 0).mean() > 0.05
    assert seq.sky.any() and seq.ground.any()
    # Masks agree with the per-pixel labels.
    assert not (seq.dynamic & (seq.instance == 0)).any()
    assert (seq.sky == (seq.semantic == clip.SLARM_CLASSES.index("sky"))).all()
    assert ((seq.depth_dense == 0) == seq.sky).all()


def test_deterministic_and_seed_dependent(seq):
    again = generate_sequence(3, H, W, T)
    for name in (
        "images",
        "depth",
        "depth_dense",
        "flow",
        "semantic",
        "instance",
        "dynamic",
        "dynamic_box",
        "cam_to_world",
    ):
        assert getattr(seq, name).tobytes() == getattr(again, name).tobytes(), name
    for name, arr in seq.boxes.as_dict().items():
        assert arr.tobytes() == getattr(again.boxes, name).tobytes(), name
    other = generate_sequence(4, H, W, 2)
    assert other.images.tobytes() != seq.images[:2].tobytes()


def test_a_higher_frame_rate_samples_the_same_scene_more_densely(seq):
    """(T - 1) * 2 + 1 frames at 2 x FPS are the same scene: every other frame equals the FPS sequence's
    (images, depth, flow, labels, masks, poses), the frames between are new, and a bad rate is refused."""
    dense = generate_sequence(3, H, W, (T - 1) * 2 + 1, fps=2 * FPS)
    assert dense.meta["fps"] == 2 * FPS and seq.meta["fps"] == FPS
    for name in ("images", "depth", "depth_dense", "flow", "semantic", "instance", "dynamic", "cam_to_world"):
        assert getattr(dense, name)[::2].tobytes() == getattr(seq, name).tobytes(), name
    assert np.allclose(dense.time[1::2] - dense.time[::2][:-1], 0.5 / FPS)
    # The frames between are new: something moves between two FPS frames.
    assert dense.images[1].tobytes() != dense.images[0].tobytes() != dense.images[2].tobytes()
    for bad in (0.0, -10.0, float("nan")):
        with pytest.raises(SyntheticError, match="fps must be a positive number"):
            generate_sequence(3, H, W, 2, fps=bad)


def test_splits_sizes_disjoint_and_errors():
    ad = SyntheticAdapter(height=H, width=W, num_frames=2)
    assert ad.splits() == ["train", "val", "test", "mini"]
    assert len(ad.scenes("train")) >= 2000 and len(ad.scenes("val")) >= 50
    assert len(ad.scenes("test")) >= 50 and len(ad.scenes("mini")) == 4
    seeds = {s: {split_seed(s, i) for i in range(n)} for s, n in SPLIT_SIZES.items()}
    names = list(seeds)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not seeds[a] & seeds[b], (a, b)
    with pytest.raises(UnknownNameError, match="Did you mean 'val'"):
        ad.scenes("vall")
    with pytest.raises(UnknownNameError, match="val-00000"):
        ad.build("val", "val-99999")
    built = ad.build("mini", "mini-00001")
    built.validate()
    assert built.meta["scene"] == "mini-00001" and built.meta["seed"] == split_seed("mini", 1)


def test_flow_advects_pixels_onto_the_same_instance(seq):
    k = seq.intrinsics[0, 0].astype(np.float64)
    hits = total = 0
    for f in range(T - 1):
        for v in range(3):
            dyn = seq.dynamic[f, v]
            if not dyn.any():
                continue
            pts = geometry.unproject_depth(
                seq.depth_dense[f, v], k, seq.cam_to_world[f, v].astype(np.float64)
            )
            moved = pts[dyn] + seq.flow[f, v][dyn].astype(np.float64) / FPS
            uv, z = geometry.project_points(moved, seq.cam_to_world[f + 1, v].astype(np.float64), k)
            col, row = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
            inside = (z > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
            ids = seq.instance[f, v][dyn][inside]
            hits += int((seq.instance[f + 1, v][row[inside], col[inside]] == ids).sum())
            total += int(inside.sum())
    assert total > 50
    assert hits / total > 0.85, hits / total


def test_flow_is_exactly_zero_on_static_surfaces(seq):
    static = seq.instance == 0
    assert static.any() and not seq.flow[static].any()
    speed = np.linalg.norm(seq.flow, axis=-1)
    assert (speed[seq.dynamic] > 1.0 - 1e-3).mean() > 0.95  # rotation can slow points near the pivot


def _inside(prims, points: np.ndarray, margin: float) -> np.ndarray:
    """Which points [N,3] lie inside any primitive grown by `margin` (independent of the ray caster)."""
    out = np.zeros(len(points), bool)
    for i in range(len(prims)):
        c, h = prims.centre[i], prims.half[i]
        if prims.kind[i] == BOX:
            out |= geometry.points_in_box(points, c, 2 * h, prims.yaw[i], margin)
        elif prims.kind[i] == CYLINDER:
            radial = np.hypot(points[:, 0] - c[0], points[:, 1] - c[1])
            out |= (radial <= h[0] + margin) & (np.abs(points[:, 2] - c[2]) <= h[2] + margin)
        else:
            out |= np.linalg.norm(points - c, axis=1) <= h[0] + margin
    return out | (points[:, 2] <= margin)  # the ground plane z = 0


def test_depth_dense_agrees_with_independent_point_tests(seq):
    scene = make_scene(3, duration=(T - 1) / FPS)
    rng = np.random.default_rng(0)
    f, v = 5, 1
    prims, _ = world_primitives(scene, f / FPS)
    rows, cols = rng.integers(0, H, 60), rng.integers(0, W, 60)
    k = seq.intrinsics[f, v].astype(np.float64)
    c2w = seq.cam_to_world[f, v].astype(np.float64)
    uv = np.stack([cols + 0.5, rows + 0.5], -1).astype(np.float64)
    origins, dirs = geometry.camera_rays(k, c2w, H, W, uv=uv)
    depth = seq.depth_dense[f, v][rows, cols].astype(np.float64)
    hit = depth > 0
    # The surface point lies on a surface: inside with a small margin, outside with a negative one.
    surf = origins[hit] + depth[hit, None] * dirs[hit]
    assert _inside(prims, surf, 2e-3).all()
    assert not _inside(prims, surf, -2e-3).any()
    # Nothing is hit before it (points along the ray up to 99.5% of the depth are outside everything) ...
    for frac in np.linspace(0.02, 0.995, 40):
        assert not _inside(prims, origins[hit] + (frac * depth[hit])[:, None] * dirs[hit], -1e-4).any()
    # ... and sky rays meet nothing out to 2 km.
    for dist in np.geomspace(0.5, 2000, 60):
        assert not _inside(prims, origins[~hit] + dist * dirs[~hit], 0.0).any()


def test_lidar_depth_matches_dense_depth(seq):
    lidar = seq.depth > 0
    assert lidar.sum() > 500
    rel = np.abs(seq.depth[lidar] - seq.depth_dense[lidar]) / seq.depth_dense[lidar].clip(1e-3)
    # Lidar points fall anywhere in their pixel and see from the roof: edges and parallax differ.
    assert np.median(rel) < 0.01 and (rel < 0.05).mean() > 0.9
    assert (seq.depth[lidar] < 76).all()


def test_boxes_exact_kinematics_and_acceleration(seq):
    b = seq.boxes
    n_agents = int((b.frame == 0).sum())
    assert len(b) == n_agents * T and n_agents > 5
    assert (np.linalg.norm(b.acceleration, axis=1) > 1.0).any()
    # The dynamic-box mask only comes from moving boxes with lidar points.
    moving = (np.linalg.norm(b.velocity[:, :2], axis=1) > 1.0) & (b.num_points > 0)
    assert moving.any() and seq.dynamic_box.any()
    # Velocity and acceleration are exact derivatives of the analytic trajectory.
    traj = Trajectory(
        (1.0, 2.0),
        0.0,
        SpeedProfile(v0=8.0, dv=-5.0, t_step=0.5, d_step=2.0, a=1.5, w=1.3, phi=0.4),
        HeadingProfile(psi0=0.2, turn=1.2, t_turn=0.3, d_turn=3.0, sway=0.1, t_sway=1.0, d_sway=2.0),
    )
    t, h = np.array([0.7, 1.9, 2.6]), 1e-4
    st = traj.state(t)
    fd_v = (traj.position(t + h) - traj.position(t - h)) / (2 * h)
    fd_a = (traj.state(t + h)["velocity"] - traj.state(t - h)["velocity"]) / (2 * h)
    np.testing.assert_allclose(st["velocity"], fd_v, atol=1e-6)
    np.testing.assert_allclose(st["acceleration"], fd_a, atol=1e-5)


def test_mini_split_agents_accelerate_and_some_scenes_are_static():
    accel = [
        np.linalg.norm(a.trajectory.state(np.arange(40) / FPS)["acceleration"], axis=-1).max()
        for i in range(4)
        for a in make_scene(split_seed("mini", i), 3.9).agents
    ]
    assert max(accel) > 1.0
    static = [make_scene(s, 0.5).static for s in range(60)]  # short scenes: the flag, not the motion
    assert 0 < sum(static) < 20


def test_compiled_cast_equals_numpy_reference():
    # Every primitive kind, seen from inside and outside, with rays that are exactly axis-parallel (0 * inf
    # in the slab test) and a ground t_max: the compiled cast must give the reference's bytes.
    scene = make_scene(3, duration=1.0)
    prims, _ = world_primitives(scene, 0.5)
    k = np.array([[60.0, 0.0, 36.0], [0.0, 60.0, 24.0], [0.0, 0.0, 1.0]])
    for origin, yaw in (((1.5, 0.0, 1.9), 0.0), ((10.0, -3.0, 1.2), 0.7), ((30.0, 2.0, 0.9), -2.0)):
        flu = geometry.make_pose(geometry.rotation_z(yaw), np.asarray(origin))
        c2w = geometry.flu_cam_to_opencv(flu)
        _, dirs = geometry.camera_rays(k, c2w, H, W)
        dirs = dirs.reshape(H, W, 3).copy()
        dirs[0, :, 2] = 0.0  # horizontal rays
        dirs[1, :, :2] = 0.0  # vertical rays
        rects = rc.camera_rects(prims.corners(), geometry.invert_pose(c2w), k, H, W)
        rects[::7] = [0, H, 0, W]  # some primitives tested against every ray
        t_max = rc.ground_hits(np.asarray(origin), dirs)
        got = rc.cast(np.asarray(origin), dirs, prims, rects, t_max=t_max)
        want = rc.cast_reference(np.asarray(origin), dirs, prims, rects, t_max=t_max)
        assert (want[1] >= 0).sum() > 100
        assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()


def test_lidar_z_buffer_equals_geometry_reference():
    rng = np.random.default_rng(5)
    points = rng.uniform([-5, -30, -2], [60, 30, 8], (5000, 3))
    points[100:200] = points[:100]  # exact ties: the lower index wins in both
    k = np.array([[80.0, 0.0, 36.0], [0.0, 80.0, 24.0], [0.0, 0.0, 1.0]])
    c2w = geometry.flu_cam_to_opencv(geometry.make_pose(geometry.rotation_z(0.3), np.array([1.0, 0.5, 1.9])))
    depth = np.zeros((H, W), np.float32)
    kernels.lidar_z_buffer(points, geometry.invert_pose(c2w), k, depth, 1e-3)
    uv, z = geometry.project_points(points, c2w, k)
    want = geometry.z_buffer(uv, z, H, W)[0]
    assert (want > 0).sum() > 200
    np.testing.assert_array_equal(depth > 0, want > 0)
    # Equal bytes on the numpy build this was written against; any build: within float32 round-off.
    np.testing.assert_allclose(depth, want, rtol=1e-6)


def test_compiled_pixel_kernels_equal_numpy_references():
    rng = np.random.default_rng(7)
    scene = make_scene(3, duration=1.0)
    prims, _ = world_primitives(scene, 0.5)
    n = 3000
    # sort_pixels: a stable sort by surface key, and the gathered per-pixel values.
    t_hit = rng.uniform(1.0, 60.0, n)
    t_hit[rng.random(n) < 0.2] = np.inf
    idx = rng.integers(-1, len(prims), n).astype(np.int32)
    dirs = rng.normal(size=(n, 3))
    norm = np.sqrt((dirs * dirs).sum(-1))
    origin = np.array([1.5, 0.2, 1.9])
    buffers = kernels.pixel_buffers(n)
    counts = kernels.sort_pixels(t_hit, idx, dirs, norm, origin, prims.material, prims.kind, 120.0, buffers)
    prim = np.maximum(idx, 0)
    key = np.where(
        ~np.isfinite(t_hit),
        0,
        np.where(idx < 0, 1, 2 + 3 * prims.material[prim].astype(int) + prims.kind[prim]),
    )
    order = np.argsort(key, kind="stable")
    np.testing.assert_array_equal(buffers[0], order)
    np.testing.assert_array_equal(counts, np.bincount(key))
    t_s = np.where(np.isfinite(t_hit), t_hit, 0.0)[order]
    assert buffers[3].tobytes() == (origin + t_s[:, None] * dirs[order]).tobytes()
    assert buffers[7].tobytes() == (t_s * norm[order] / 120.0).astype(np.float32).tobytes()
    # surface_frame: each kind against synthetic_shade.surface_frame and the footprint formula.
    f32 = np.float32
    for kind in (BOX, CYLINDER, SPHERE):
        ids = rng.choice(np.nonzero(prims.kind == kind)[0], 500).astype(np.int32)
        dirn = rng.normal(size=(500, 3))
        pts = prims.centre[ids] + dirn / np.abs(dirn).max(1, keepdims=True) * prims.half[ids]  # on the bounds
        pts[:5] = prims.centre[ids[:5]]  # degenerate: the centre itself
        pts32, d32 = pts.astype(f32), rng.normal(size=(500, 3)).astype(f32)
        dn32 = np.sqrt((d32 * d32).sum(-1))
        dist = rng.uniform(0.001, 0.2, 500).astype(f32)
        table = (np.cos(prims.yaw).astype(f32), np.sin(prims.yaw).astype(f32))
        table += (prims.centre.astype(f32), prims.half.astype(f32))
        local, face, normal, fp = kernels.surface_frame(kind, ids, pts32, d32, dn32, dist, *table)
        want = shade.surface_frame(kind, prims, ids, pts32)
        nrm = want[2]
        cos_p = np.abs(nrm[:, 0] * d32[:, 0] + nrm[:, 1] * d32[:, 1] + nrm[:, 2] * d32[:, 2]) / dn32
        for got_arr, want_arr in zip((local, face, normal, fp), (*want, dist / np.maximum(cos_p, 0.05))):
            assert got_arr.tobytes() == want_arr.astype(got_arr.dtype).tobytes(), kind
    # expose: exposure, clipping and round-half-even to uint8, scattered back to pixel order.
    rgb = rng.uniform(-0.1, 1.1, (n, 3)).astype(f32)
    rgb[:10] = (np.arange(10)[:, None] + 0.5) / 255.0  # ties
    gain = np.array([1.0, 0.97, 1.04])
    image = np.zeros((n, 3), np.uint8)
    kernels.expose(order, rgb, gain, image)
    want_img = np.zeros((n, 3), np.uint8)
    want_img[order] = np.round(np.clip(rgb * gain, 0.0, 1.0) * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(image, want_img)
