"""The synthetic dynamic-driving dataset: procedural scenes with exact ground truth (the embedded benchmark).

`generate_sequence(seed)` is a pure function of its arguments: it draws a scene (`synthetic_scene`), ray
casts three front cameras and a 64-beam roof lidar at 10 Hz (`synthetic_raycast`), shades the images
(`synthetic_shade`) and returns a `clip.Sequence` whose every field is exact: dense z-depth, world-frame
rigid-body velocity of the surface at each pixel (v + w x r, from the analytic trajectories), semantics,
instances, masks, and 3D boxes with exact velocity and acceleration. Card: datasets/synthetic.yaml.

Images are anti-aliased (`antialias=S`, default 3): after the one-ray-per-pixel pass that makes every
field, the pixels whose colour is likely aliased (a different surface or a strong colour step among the 8
neighbours) get the box-filtered mean of S x S rays (`synthetic_antialias`); antialias=1 gives the images
of slarm-synthetic-1.0. All other fields stay point samples at the pixel centre.

Determinism: a numpy Generator seeded from the seed, float64 arithmetic written as explicit element-wise
operations (no BLAS, no threads), cast to float32 at the end. Same seed, same numpy build -> same bytes.
The per-pixel loops (ray cast, pixel sort, surface frames, exposure, lidar z-buffer) are numba kernels
(`synthetic_kernels`) that repeat the numpy reference's operations in the same order without fastmath or
threads, so they give the same bytes as the numpy code they replaced (tested); textures stay numpy, except
for the anti-aliasing sub-samples (numba copies in `synthetic_shade_kernels`, tested against them).
Speed: about 21 frames (90 images of 160x240, all ground truth) per CPU-second on one core with the default
antialias=3, about 33 with antialias=1 (benchmarks/bench_synthetic.py).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from slarm_bench import clip, geometry
from slarm_bench.data import synthetic_antialias as aa
from slarm_bench.data import synthetic_kernels as kernels
from slarm_bench.data import synthetic_raycast as rc
from slarm_bench.data import synthetic_shade as shade
from slarm_bench.data.synthetic_scene import (
    CAMERA_HFOV_DEG,
    CAMERA_MOUNTS,
    CAMERA_NAMES,
    CAMERA_YAW_DEG,
    LIDAR_MOUNT,
    MIN_MOVING_SPEED,
    Scene,
    make_scene,
)
from slarm_bench.data.synthetic_version import GENERATOR_VERSION
from slarm_bench.errors import SlarmBenchError, UnknownNameError, check_name

ANTIALIAS = 3  # default S: S x S rays in the pixels that alias (1 = one ray per pixel, slarm-synthetic-1.0)
ANTIALIAS_PIXELS = ("adaptive", "all")
FPS = 10.0
LIDAR_ELEVATIONS_DEG = np.linspace(2.0, -24.0, 64)
LIDAR_AZIMUTH_STEP_DEG = 0.3
LIDAR_AZIMUTH_HALF_SPAN_DEG = 76.0  # the front sector the three cameras see (+-70 deg) plus a margin
LIDAR_MAX_RANGE = 75.0
SPLIT_SIZES = {"train": 2000, "val": 100, "test": 100, "mini": 4}
# Seeds are split base + index: disjoint by construction for every split size below 1,000,000.
SPLIT_SEED_BASE = {"train": 0, "val": 1_000_000, "test": 2_000_000, "mini": 3_000_000}
_SCENE_RE = re.compile(r"^(train|val|test|mini)-(\d{5})$")


class SyntheticError(SlarmBenchError):
    """Bad arguments to the synthetic generator."""


def split_seed(split: str, index: int) -> int:
    """The seed of scene `index` of `split` (deterministic, disjoint across splits)."""
    check_name("split", split, SPLIT_SIZES)
    if not 0 <= index < SPLIT_SIZES[split]:
        raise SyntheticError(f"synthetic split {split!r} has scenes 0..{SPLIT_SIZES[split] - 1}, not {index}")
    return SPLIT_SEED_BASE[split] + index


class SyntheticAdapter:
    """`slarm-bench prepare synthetic`: scenes "<split>-<index:05d>", generated on the fly."""

    name = "synthetic"

    def __init__(
        self, height: int = 160, width: int = 240, num_frames: int = 40, antialias: int = ANTIALIAS, **_: object
    ):
        self.height, self.width, self.num_frames = int(height), int(width), int(num_frames)
        _check_size(self.height, self.width, self.num_frames)
        self.antialias = _check_antialias(antialias, "adaptive")

    def splits(self) -> list[str]:
        return list(SPLIT_SIZES)

    def scenes(self, split: str) -> list[str]:
        check_name("split", split, SPLIT_SIZES)
        return [f"{split}-{i:05d}" for i in range(SPLIT_SIZES[split])]

    def build(self, split: str, scene: str) -> clip.Sequence:
        check_name("split", split, SPLIT_SIZES)
        match = _SCENE_RE.match(scene)
        if match is None or match.group(1) != split or int(match.group(2)) >= SPLIT_SIZES[split]:
            err = UnknownNameError("scene", scene, [])
            err.args = (
                f"unknown synthetic scene {scene!r} in split {split!r}: scenes are "
                f"{split}-00000 .. {split}-{SPLIT_SIZES[split] - 1:05d}",
            )
            raise err
        seed = split_seed(split, int(match.group(2)))
        return generate_sequence(
            seed, self.height, self.width, self.num_frames, scene=scene, antialias=self.antialias
        )


def camera_intrinsics(height: int, width: int) -> np.ndarray:
    """[3,3] float64 pinhole of every camera: CAMERA_HFOV_DEG horizontal field of view, square pixels."""
    return geometry.intrinsics_from_fov(width, height, CAMERA_HFOV_DEG)


def camera_poses(scene: Scene, times: np.ndarray) -> np.ndarray:
    """[T,V,4,4] float64 OpenCV camera-to-world of the rig at `times` (the ego keeps heading 0)."""
    ego = scene.ego.position(times)
    out = np.zeros((len(times), len(CAMERA_NAMES), 4, 4))
    for v, (yaw, mount) in enumerate(zip(CAMERA_YAW_DEG, CAMERA_MOUNTS)):
        flu = geometry.make_pose(geometry.rotation_z(np.deg2rad(yaw)), np.zeros(3))
        pose = np.broadcast_to(geometry.flu_cam_to_opencv(flu), out[:, v].shape).copy()
        pose[:, :3, 3] = ego + np.asarray(mount)
        out[:, v] = pose
    return out


def world_primitives(scene: Scene, t: float) -> tuple[rc.Primitives, dict[str, np.ndarray]]:
    """Every primitive of the world at time t (scenery first, then agents) and the agents' kinematics."""
    agents, kin = scene.agent_primitives(t)
    return rc.Primitives.concat([scene.scenery, agents]), kin


def lidar_directions(step_deg: float = LIDAR_AZIMUTH_STEP_DEG) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit beam directions [64,C,3] (world = ego axes), elevations [64] and azimuths [C] in radians."""
    el = np.deg2rad(LIDAR_ELEVATIONS_DEG)
    n_az = int(round(2 * LIDAR_AZIMUTH_HALF_SPAN_DEG / step_deg)) + 1
    az = np.deg2rad(-LIDAR_AZIMUTH_HALF_SPAN_DEG + step_deg * np.arange(n_az))
    ce = np.cos(el)[:, None]
    dirs = np.stack(
        [
            ce * np.cos(az)[None],
            ce * np.sin(az)[None],
            np.broadcast_to(np.sin(el)[:, None], (el.size, az.size)),
        ],
        axis=-1,
    )
    return dirs, el, az


def _camera_directions(cam_to_world: np.ndarray, k: np.ndarray, height: int, width: int) -> np.ndarray:
    """[H,W,3] world directions of pixel centres with camera z = 1 (element-wise, no BLAS)."""
    uv = geometry.pixel_centres(height, width)
    x = (uv[..., 0] - k[0, 2]) / k[0, 0]
    y = (uv[..., 1] - k[1, 2]) / k[1, 1]
    r = cam_to_world[:3, :3]
    return np.stack([r[i, 0] * x + r[i, 1] * y + r[i, 2] for i in range(3)], axis=-1)


def generate_sequence(
    seed: int,
    height: int = 160,
    width: int = 240,
    num_frames: int = 40,
    *,
    scene: str | None = None,
    lidar_azimuth_step_deg: float = LIDAR_AZIMUTH_STEP_DEG,
    antialias: int = ANTIALIAS,
    antialias_pixels: str = "adaptive",
    fps: float = FPS,
) -> clip.Sequence:
    """One synthetic sequence (pure function of its arguments; see the module docstring).

    fps: the frame rate. The scene depends on the seed and the duration (num_frames - 1) / fps only, so
    (num_frames - 1) * K + 1 frames at K x FPS are the same scene sampled K times as densely (training data
    with sub-frame supervision times; the benchmark's splits are prepared at FPS).

    antialias: S, the images' S x S rays per supersampled pixel (1 = one ray per pixel, as
    slarm-synthetic-1.0); antialias_pixels: "adaptive" (the pixels that alias, see synthetic_antialias) or
    "all" (every pixel: the full supersampling reference, about S^2 times slower).

    Returns a clip.Sequence with images uint8 [T,3,H,W,3], depth (lidar z-buffer) / depth_dense float32
    [T,3,H,W], flow float32 [T,3,H,W,3] (m/s, world), semantic uint8, instance int32, sky / ground /
    dynamic / dynamic_box bool [T,3,H,W], boxes for every agent and frame; world = ego pose at t = 0.
    """
    _check_size(height, width, num_frames)
    samples = _check_antialias(antialias, antialias_pixels)
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise SyntheticError(f"fps must be a positive number (the default is {FPS:g}), got {fps!r}")
    fps = float(fps)
    sampler = aa.Supersampler(samples, select=antialias_pixels) if samples > 1 else None
    times = np.arange(num_frames) / fps
    world = make_scene(seed, duration=float(times[-1]), num_cameras=len(CAMERA_NAMES))
    k = camera_intrinsics(height, width)
    c2w = camera_poses(world, times)
    cams = [_CameraRays.make(world, c2w[0, v], k, height, width) for v in range(len(CAMERA_NAMES))]
    buffers = kernels.pixel_buffers(height * width)
    lidar_ground: dict[float, np.ndarray] = {}
    l_dirs, l_el, l_az = lidar_directions(lidar_azimuth_step_deg)
    ego = world.ego.position(times)
    static_corners = world.scenery.corners()
    n_cam = len(CAMERA_NAMES)
    shape = (num_frames, n_cam, height, width)
    out = {
        "images": np.zeros((*shape, 3), np.uint8),
        "depth": np.zeros(shape, np.float32),
        "depth_dense": np.zeros(shape, np.float32),
        "flow": np.zeros((*shape, 3), np.float32),
        "semantic": np.zeros(shape, np.uint8),
        "instance": np.zeros(shape, np.int32),
        "sky": np.zeros(shape, bool),
        "ground": np.zeros(shape, bool),
        "dynamic": np.zeros(shape, bool),
        "dynamic_box": np.zeros(shape, bool),
    }
    box_rows = []
    states = world.agent_states(times)
    for f, t in enumerate(times):
        agents, kin = world.agent_primitives(float(t), states, f)
        prims = rc.Primitives.concat([world.scenery, agents])
        tables = shade.surface_tables(prims)  # shared by the cameras of the frame
        corners = np.concatenate([static_corners, agents.corners()])
        # Lidar: one instantaneous sweep of the front sector from the roof.
        origin = ego[f] + np.asarray(LIDAR_MOUNT)
        rects = rc.lidar_rects(prims, corners, origin, l_el, l_az)
        t_hit, idx = rc.cast(origin, l_dirs, prims, rects, t_max=_ground_hits(origin, l_dirs, lidar_ground))
        ok = np.isfinite(t_hit) & (t_hit <= LIDAR_MAX_RANGE)
        points = origin + t_hit[ok][:, None] * l_dirs[ok]
        owner = np.where(idx[ok] >= 0, prims.owner[np.maximum(idx[ok], 0)], -1)
        num_points = np.bincount(owner[owner >= 0], minlength=len(world.agents))
        moving = kin["speed"] > MIN_MOVING_SPEED
        for a, agent in enumerate(world.agents):
            centre = kin["position"][a] + np.array([0.0, 0.0, agent.size[2] / 2])
            box_rows.append(
                (
                    f,
                    agent.track_id,
                    agent.label,
                    centre,
                    agent.size,
                    kin["yaw"][a],
                    kin["velocity"][a],
                    kin["acceleration"][a],
                    num_points[a],
                )
            )
        # The Waymo-protocol dynamic boxes: moving and hit by at least one lidar return.
        sel = np.nonzero(moving & (num_points >= 1))[0]
        sizes = np.array([world.agents[a].size for a in sel], np.float64).reshape(-1, 3)
        centres = kin["position"][sel] + np.stack(
            [np.zeros(sel.size), np.zeros(sel.size), sizes[:, 2] / 2], 1
        )
        box_corners = geometry.box_corners(centres, sizes, kin["yaw"][sel])
        for v in range(n_cam):
            _render_camera(world, prims, tables, corners, kin, moving, c2w[f, v], k, cams[v], buffers, v, out, f,
                           sampler)
            world_to_cam = geometry.invert_pose(c2w[f, v])
            kernels.lidar_z_buffer(points, world_to_cam, k, out["depth"][f, v], 1e-3)
            _box_rectangles(box_corners, c2w[f, v], k, out["dynamic_box"][f, v])
    meta = {
        "dataset": "synthetic",
        "scene": scene or f"seed-{int(seed)}",
        "camera_names": list(CAMERA_NAMES),
        "label_names": list(clip.SLARM_CLASSES),
        "fps": fps,
        "frame_indices": list(range(num_frames)),
        "schema_version": clip.SCHEMA_VERSION,
        "flow_dense": True,
        "seed": int(seed),
        "generator": GENERATOR_VERSION,
        "antialias": samples,
        "antialias_pixels": antialias_pixels,
        "reference_camera": "FRONT",
        "depth_source": "synthetic lidar z-buffer",
        "static_scene": bool(world.static),
    }
    return clip.Sequence(
        images=out["images"],
        intrinsics=np.broadcast_to(k.astype(np.float32), (num_frames, n_cam, 3, 3)).copy(),
        cam_to_world=c2w.astype(np.float32),
        time=times.astype(np.float64),
        meta=meta,
        depth=out["depth"],
        flow=out["flow"],
        sky=out["sky"],
        dynamic=out["dynamic"],
        ground=out["ground"],
        semantic=out["semantic"],
        boxes=_boxes(box_rows),
        depth_dense=out["depth_dense"],
        instance=out["instance"],
        dynamic_box=out["dynamic_box"],
    )


@dataclasses.dataclass
class _CameraRays:
    """What stays fixed for one camera over a sequence: the rig only translates (the ego keeps heading 0),
    so its ray directions [H,W,3] (camera z = 1), their norms [H,W] and the sky radiance behind each pixel
    [H*W,3] (a function of direction only) are computed once."""

    dirs: np.ndarray
    norm: np.ndarray
    sky: np.ndarray
    ground: dict[float, np.ndarray] = dataclasses.field(default_factory=dict)  # for `_ground_hits`

    @classmethod
    def make(
        cls, world: Scene, cam_to_world: np.ndarray, k: np.ndarray, height: int, width: int
    ) -> _CameraRays:
        dirs = _camera_directions(cam_to_world, k, height, width)
        sky = shade.sky_colour(world, dirs.reshape(-1, 3).astype(np.float32))
        return cls(dirs, np.sqrt((dirs * dirs).sum(-1)), sky)


def _ground_hits(origin: np.ndarray, dirs: np.ndarray, memo: dict[float, np.ndarray]) -> np.ndarray:
    """rc.ground_hits of fixed directions, memoised by origin height (all it depends on): the rig never
    changes height, so each sequence computes it once per camera and once for the lidar."""
    height = float(origin[2])
    if height not in memo:
        memo[height] = rc.ground_hits(origin, dirs)
    return memo[height]


def _render_camera(
    world: Scene, prims: rc.Primitives, tables: tuple, corners: np.ndarray, kin: dict[str, np.ndarray],
    moving: np.ndarray, cam_to_world: np.ndarray, k: np.ndarray, cam: _CameraRays, buffers: tuple[np.ndarray, ...],
    v: int, out: dict[str, np.ndarray], f: int, sampler: aa.Supersampler | None = None,
) -> None:
    """Cast and shade one camera image, writing every per-pixel field of frame f, camera v into `out`, then
    let `sampler` (if any) supersample the image's aliased pixels.

    `buffers` (kernels.pixel_buffers) are scratch space shared by all cameras; tables =
    shade.surface_tables(prims)."""
    dirs, dir_norm, sky_rgb = cam.dirs, cam.norm, cam.sky
    height, width = dirs.shape[:2]
    origin = cam_to_world[:3, 3]
    rects = rc.camera_rects(corners, geometry.invert_pose(cam_to_world), k, height, width)
    t_hit, idx = rc.cast(origin, dirs, prims, rects, t_max=_ground_hits(origin, dirs, cam.ground))
    t_hit, idx = t_hit.reshape(-1), idx.reshape(-1)
    sky = ~np.isfinite(t_hit)
    # Sort pixels by surface type (sky, ground, then material x kind) once, so that every texture works on
    # a contiguous slice instead of gathering through boolean masks. Textures only feed 8-bit colours:
    # float32 halves their cost (float64 stays for depth and flow). `dist` is the pixel footprint on the
    # surface (m): distance x angular pixel size, divided by cos(incidence) in shade.shade_sorted.
    flat_dirs, flat_norm = dirs.reshape(-1, 3), dir_norm.reshape(-1)
    counts = kernels.sort_pixels(t_hit, idx, flat_dirs, flat_norm, origin, prims.material, prims.kind, k[0, 0], buffers)
    order, _, id_s, pts = buffers[:4]
    rgb, semantic = shade.shade_sorted(world, prims, tables, counts, buffers, lambda a, b: sky_rgb[order[a:b]])
    a = counts[0] + counts[1]
    owner = prims.owner[id_s[a:]]
    agent_px = np.nonzero(owner >= 0)[0] + a
    if agent_px.size:
        own = owner[agent_px - a]
        rel = pts[agent_px] - kin["position"][own]
        w = kin["yaw_rate"][own]
        vel = kin["velocity"][own]
        vel[:, 0] -= w * rel[:, 1]  # v + w x r with w = (0, 0, yaw rate)
        vel[:, 1] += w * rel[:, 0]
    kernels.expose(order, rgb, world.camera_gain[v], out["images"][f, v].reshape(-1, 3))
    kernels.scatter_rows(order, semantic[:, None], out["semantic"][f, v].reshape(-1, 1))
    if agent_px.size:  # the other pixels keep the zeros the outputs start with
        px = order[agent_px]
        out["flow"][f, v].reshape(-1, 3)[px] = vel
        out["instance"][f, v].reshape(-1)[px] = own + 1
        out["dynamic"][f, v].reshape(-1)[px] = moving[own]
    out["sky"][f, v] = sky.reshape(height, width)
    out["ground"][f, v] = (~sky & (idx < 0)).reshape(height, width)
    out["depth_dense"][f, v] = np.where(sky, 0.0, t_hit).reshape(height, width)
    if sampler is not None:
        gain = world.camera_gain[v]
        sampler.camera(world, prims, tables, cam_to_world, k, rects, t_hit, idx, gain, out["images"][f, v])


def _box_rectangles(corners: np.ndarray, cam_to_world: np.ndarray, k: np.ndarray, mask: np.ndarray) -> None:
    """geometry.box_rectangle_mask of boxes with corners [N,8,3] into mask [H,W] (zeros on entry), with one
    projection of all corners instead of one per box (same values: the projection is per point)."""
    if not len(corners):
        return
    height, width = mask.shape
    uv, z = geometry.project_points(corners.reshape(-1, 3), cam_to_world, k)
    uv = uv.reshape(-1, 8, 2)[(z.reshape(-1, 8) > 0).all(axis=1)]  # boxes wholly in front of the camera
    lo = np.floor(uv.min(axis=1)).astype(int)
    hi = np.ceil(uv.max(axis=1)).astype(int)
    for b in range(len(uv)):
        u0, v0 = max(lo[b, 0], 0), max(lo[b, 1], 0)
        u1, v1 = min(hi[b, 0], width), min(hi[b, 1], height)
        if u0 < u1 and v0 < v1:
            mask[v0:v1, u0:u1] = True


def _boxes(rows: list[tuple]) -> clip.Boxes:
    if not rows:
        return clip.Boxes.empty()
    cols = list(zip(*rows))
    return clip.Boxes(
        frame=np.array(cols[0], np.int32),
        track_id=np.array(cols[1], np.int64),
        label=np.array(cols[2], np.uint8),
        centre=np.array(cols[3], np.float64).astype(np.float32),
        size=np.array(cols[4], np.float64).astype(np.float32),
        yaw=np.array(cols[5], np.float64).astype(np.float32),
        velocity=np.array(cols[6], np.float64).astype(np.float32),
        acceleration=np.array(cols[7], np.float64).astype(np.float32),
        num_points=np.array(cols[8], np.int32),
    )


def _check_antialias(antialias: object, pixels: str) -> int:
    check_name("antialias_pixels", pixels, ANTIALIAS_PIXELS)
    top = aa.MAX_SAMPLES
    if isinstance(antialias, bool) or not isinstance(antialias, (int, np.integer)) or not 1 <= antialias <= top:
        raise SyntheticError(f"antialias must be an int from 1 (one ray per pixel) to {top} (S x S rays in the pixels "
                             f"that alias; the default is {ANTIALIAS}), got {antialias!r}")
    return int(antialias)


def _check_size(height: int, width: int, num_frames: int) -> None:
    if height < 8 or width < 8:
        raise SyntheticError(
            f"synthetic image size {height}x{width} is too small: use at least 8x8 (the default is 160x240)"
        )
    if num_frames < 2:
        raise SyntheticError(f"synthetic sequences need at least 2 frames, got {num_frames}")
