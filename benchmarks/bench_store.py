"""Store benchmark: bytes per frame, per-field sizes, write time, and 20-frame window loads per second.

    .venv/bin/python benchmarks/bench_store.py [--frames 40] [--windows 60] [--workers 2] [--fields a,b]

Loads are timed three ways: one process decoding in its calling thread, one process with `--workers`
decoding threads (Store(threads=...)), and `--workers` processes of one thread each. Each prints wall-clock
windows/s and CPU time per window (user + system, all threads): on a machine shared with other work the
wall figures drop, while CPU ms per window says what a free core would do.

Uses slarm_bench.data.synthetic.generate_sequence when it exists (realistic synthetic bytes), else a
ray-cast stand-in scene (road, sidewalks, building walls, sky, moving and parked cars, lidar-like sparse
depth, dense flow, every mask). Also prints the image size per camera for real camera JPEGs from
../shared/data resized to 160x240, when that folder is present, since synthetic images compress far better
than real ones.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slarm_bench import clip, geometry  # noqa: E402
from slarm_bench.store import Store  # noqa: E402

CAMERAS = ("FRONT_LEFT", "FRONT", "FRONT_RIGHT")
CAMERA_YAW_DEG = (45.0, 0.0, -45.0)


def standin_sequence(seed: int, height: int = 160, width: int = 240, num_frames: int = 40) -> clip.Sequence:
    """A ray-cast street scene with every field (used only when the synthetic generator is absent)."""
    rng = np.random.default_rng(seed)
    labels = clip.SLARM_CLASSES
    cls = {n: i for i, n in enumerate(labels)}
    fps, speed = 10.0, 8.0
    n_cars = 8
    car_x = rng.uniform(5, 80, n_cars)
    car_y = rng.choice([-4.5, -1.5, 1.5, 4.5], n_cars)
    car_v = np.where(rng.random(n_cars) < 0.6, rng.uniform(3, 12, n_cars), 0.0)
    car_v *= np.where(car_y > 0, -1.0, 1.0)
    car_size = np.array([4.5, 1.9, 1.6])
    car_colour = rng.integers(30, 220, (n_cars, 3))
    k = geometry.intrinsics_from_fov(width, height, 70.0)
    t_count, v_count = num_frames, len(CAMERAS)
    shape = (t_count, v_count, height, width)
    out = {n: np.zeros(shape, np.float32) for n in ("depth", "depth_dense")}
    out.update({n: np.zeros(shape, bool) for n in ("sky", "dynamic", "ground", "dynamic_box")})
    images = np.zeros((*shape, 3), np.uint8)
    flow = np.zeros((*shape, 3), np.float32)
    semantic = np.full(shape, 0, np.uint8)
    instance = np.zeros(shape, np.int32)
    c2w = np.zeros((t_count, v_count, 4, 4), np.float32)
    rows = []
    for t in range(t_count):
        ego_x = speed * t / fps
        cx = car_x + car_v * t / fps
        centres = np.stack([cx, car_y, np.full(n_cars, 0.8)], -1)
        for i in range(n_cars):
            rows.append((t, i + 1, cls["vehicle"], centres[i], car_size, 0.0, (car_v[i], 0, 0)))
        corners = geometry.box_corners(centres, np.tile(car_size, (n_cars, 1)), np.zeros(n_cars))
        for v, yaw in enumerate(CAMERA_YAW_DEG):
            flu = geometry.make_pose(geometry.rotation_z(np.deg2rad(yaw)), np.array([ego_x, 0.0, 1.6]))
            pose = geometry.flu_cam_to_opencv(flu)
            c2w[t, v] = pose
            o, d = geometry.camera_rays(k, pose, height, width)
            best = np.full((height, width), np.inf)
            kind = np.zeros((height, width), np.int32)  # 0 sky, 1 ground, 2 wall, 3+i car i
            with np.errstate(divide="ignore", invalid="ignore"):
                tg = np.where(d[..., 2] < 0, -o[..., 2] / d[..., 2], np.inf)
                best, kind = np.where(tg < best, tg, best), np.where(tg < best, 1, kind)
                for wall_y in (-12.0, 12.0):
                    tw = (wall_y - o[..., 1]) / d[..., 1]
                    z = o[..., 2] + tw * d[..., 2]
                    ok = (tw > 0) & (z < 10.0) & (tw < best)
                    best, kind = np.where(ok, tw, best), np.where(ok, 2, kind)
                for i in range(n_cars):
                    lo, hi = centres[i] - car_size / 2, centres[i] + car_size / 2
                    t0 = (lo - o) / d
                    t1 = (hi - o) / d
                    tn = np.minimum(t0, t1).max(-1)
                    tf = np.maximum(t0, t1).min(-1)
                    ok = (tn < tf) & (tn > 0) & (tn < best)
                    best, kind = np.where(ok, tn, best), np.where(ok, 3 + i, kind)
            best = np.where(np.isfinite(best) & (best < 300), best, 0.0)
            kind[best == 0] = 0
            p = o + best[..., None] * d
            ground = kind == 1
            road = ground & (np.abs(p[..., 1]) < 6)
            car_id = np.where(kind >= 3, kind - 2, 0)
            sem = np.full((height, width), cls["sky"], np.uint8)
            sem[road], sem[ground & ~road], sem[kind == 2] = cls["road"], cls["sidewalk"], cls["buildings"]
            sem[car_id > 0] = cls["vehicle"]
            vel = np.zeros((height, width, 3))
            moving = car_id > 0
            vel[moving, 0] = car_v[car_id[moving] - 1]
            dyn = np.abs(vel[..., 0]) > 1.0
            shade = np.clip(1.0 - best / 150.0, 0.3, 1.0)[..., None]
            colour = np.zeros((height, width, 3))
            colour[sem == cls["sky"]] = (135, 180, 235)
            colour[road] = (90, 90, 95)
            colour[ground & ~road] = (170, 165, 150)
            colour[kind == 2] = (150, 110, 90)
            colour[car_id > 0] = car_colour[car_id[car_id > 0] - 1]
            stripes = (np.floor(p[..., 0] / 2) % 2 == 0) & road & (np.abs(p[..., 1]) < 0.15)
            colour[stripes] = (230, 230, 230)
            img = colour * np.where(sem[..., None] == cls["sky"], 1.0, shade)
            img = img + rng.normal(0, 2.0, img.shape)
            images[t, v] = np.clip(img, 0, 255).astype(np.uint8)
            out["depth_dense"][t, v] = best
            lidar = (rng.random((height, width)) < 0.06) & (best > 0) & (best < 75)
            out["depth"][t, v] = np.where(lidar, best, 0.0)
            flow[t, v] = vel
            out["sky"][t, v], out["ground"][t, v], out["dynamic"][t, v] = kind == 0, ground, dyn
            mov = np.abs(car_v) > 1.0
            out["dynamic_box"][t, v] = geometry.box_rectangle_mask(corners[mov], pose, k, height, width)
            semantic[t, v], instance[t, v] = sem, car_id
    boxes = clip.Boxes(
        frame=np.array([r[0] for r in rows], np.int32), track_id=np.array([r[1] for r in rows], np.int64),
        label=np.array([r[2] for r in rows], np.uint8), centre=np.array([r[3] for r in rows], np.float32),
        size=np.array([r[4] for r in rows], np.float32), yaw=np.array([r[5] for r in rows], np.float32),
        velocity=np.array([r[6] for r in rows], np.float32),
        acceleration=np.zeros((len(rows), 3), np.float32), num_points=np.full(len(rows), -1, np.int32))
    meta = {"dataset": "standin", "scene": f"standin-{seed:04d}", "camera_names": list(CAMERAS),
            "label_names": list(labels), "fps": fps, "frame_indices": list(range(t_count)),
            "schema_version": clip.SCHEMA_VERSION, "flow_dense": True, "reference_camera": "FRONT"}
    return clip.Sequence(
        images=images, intrinsics=np.broadcast_to(k, (t_count, v_count, 3, 3)).astype(np.float32).copy(),
        cam_to_world=c2w, time=np.arange(t_count, dtype=np.float64) / fps, meta=meta, flow=flow,
        semantic=semantic, instance=instance, boxes=boxes, **out)


def make_sequence(seed: int, num_frames: int) -> tuple[clip.Sequence, str]:
    try:
        from slarm_bench.data.synthetic import generate_sequence
    except ImportError:
        return standin_sequence(seed, num_frames=num_frames), "stand-in ray-cast scene"
    return generate_sequence(seed=seed, height=160, width=240, num_frames=num_frames), "synthetic generator"


def _load_windows(args: tuple[str, str, str, str, list[list[int]], int, list[str] | None]
                  ) -> tuple[int, float, float]:
    """(windows, wall seconds, CPU seconds of this process) for loading `windows`, re-anchored."""
    root, dataset, split, scene, windows, threads, fields = args
    store = Store(root, threads=threads)
    store.read_window(dataset, split, scene, windows[0], fields=fields)  # warm: page cache, manifest, pools
    t0, c0 = time.perf_counter(), time.process_time()
    for frames in windows:
        clip_ = store.read_window(dataset, split, scene, frames, fields=fields)
        del clip_  # as a loader does: the window's memory goes back to the store's pool
    return len(windows), time.perf_counter() - t0, time.process_time() - c0


def real_image_figures() -> tuple[float, str, float] | None:
    """(mean KB per camera, transform, CPU ms to decode 60 such images) for real camera JPEGs resized to
    160x240 and stored as the writer would (its image-transform choice, zstd level), or None without data."""
    from PIL import Image

    from slarm_bench.store_codec import (
        DEFAULT_LEVEL,
        choose_transform,
        codec_name,
        decode_chunk,
        encode_chunk,
    )

    data = ROOT.parent / "shared" / "data" / "nuscenes" / "mmdet3d_demo_scene0061_first_sample" / "samples"
    files = sorted(data.glob("CAM_*/*.jpg"))
    if not files:
        return None
    images = [np.asarray(Image.open(f).convert("RGB").resize((240, 160))) for f in files]
    transform = choose_transform("images", images[0], DEFAULT_LEVEL)
    chunks = [encode_chunk("images", im, DEFAULT_LEVEL, transform) for im in images]
    out = np.empty((60, 160, 240, 3), np.uint8)
    best = float("inf")
    for _ in range(3):
        c0 = time.process_time()
        for i in range(60):
            decode_chunk(codec_name("images", transform), chunks[i % len(chunks)], out[i])
        best = min(best, time.process_time() - c0)
    return float(np.mean([len(c) for c in chunks])) / 1e3, transform, 1e3 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--windows", type=int, default=60, help="windows per worker")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads, and worker processes")
    parser.add_argument("--fields", default=None,
                        help="comma-separated per-pixel fields to load (default: every stored field; '' for "
                             "images only)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    seq, source = make_sequence(0, args.frames)
    seq.validate()
    print(f"source: {source}; {seq.num_frames} frames x {seq.num_cameras} cameras x "
          f"{seq.image_size[0]}x{seq.image_size[1]}; fields {seq.present_fields()} "
          f"(made in {time.perf_counter() - t0:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        t0 = time.perf_counter()
        store.write(seq, split="bench")
        write_s = time.perf_counter() - t0
        dataset, scene = seq.meta["dataset"], seq.meta["scene"]
        info = store.info(dataset, "bench", scene)
        frame_bytes = [f["bytes"] for name, f in info["files"].items() if name.startswith("frames/")]
        print(f"write: {write_s:.2f} s ({1e3 * write_s / seq.num_frames:.0f} ms per frame)")
        print(f"bytes per frame: mean {np.mean(frame_bytes) / 1e3:.1f} KB, "
              f"max {max(frame_bytes) / 1e3:.1f} KB "
              f"(budget 400 KB); sequence total {info['bytes_total'] / 1e6:.2f} MB")
        sizes = info.get("field_bytes", {})
        if sizes:
            print("per field, KB per frame: " + ", ".join(
                f"{k} {v / seq.num_frames / 1e3:.1f}" for k, v in sizes.items()))
        real = real_image_figures()
        if real:
            print(f"real camera images (nuScenes JPEGs resized to 160x240, {real[1]}): {real[0]:.1f} KB per "
                  f"camera, so about {3 * real[0]:.0f} KB for 3 cameras; decoding a window's 60 of them "
                  f"takes {real[2]:.1f} ms CPU (synthetic images: see the per-field line below)")

        length = 20
        starts = np.random.default_rng(0).integers(0, seq.num_frames - length + 1, args.windows)
        windows = [list(range(s, s + length)) for s in starts]
        fields = [f for f in args.fields.split(",") if f] if args.fields is not None else None
        check = store.read_window(dataset, "bench", scene, windows[0], fields=fields)
        ref = clip.Clip.from_sequence_window(seq, windows[0])
        same = all(np.array_equal(getattr(check, f), getattr(ref, f))
                   for f in ("images", "cam_to_world", *(fields or clip.PER_PIXEL_FIELDS)))
        print(f"loaded window equals Clip.from_sequence_window of the sequence: {same}")
        del check
        what = f"fields {fields}" if fields is not None else "every field"
        print(f"load average before timing: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
              "(other work on the machine slows the wall-clock figures)")
        for threads in sorted({1, args.workers}):
            n, secs, cpu = _load_windows((tmp, dataset, "bench", scene, windows, threads, fields))
            print(f"1 process, {threads} decoding thread(s): {n / secs:.1f} windows/s wall "
                  f"({1e3 * secs / n:.1f} ms per 20-frame 3-camera window, {what}, re-anchored); "
                  f"CPU {1e3 * cpu / n:.1f} ms per window, i.e. {n / cpu:.1f} windows/s per free core")
        store.threads = 1
        t0, c0 = time.perf_counter(), time.process_time()
        for frames in windows[:20]:
            store.read_window(dataset, "bench", scene, frames, fields=fields, anchor=False)
        print(f"1 process, 1 thread, no re-anchoring: {20 / (time.perf_counter() - t0):.1f} windows/s wall, "
              f"CPU {1e3 * (time.process_time() - c0) / 20:.1f} ms per window")
        if args.workers > 1:
            ctx = mp.get_context("fork")
            jobs = [(tmp, dataset, "bench", scene, windows, 1, fields)] * args.workers
            t0 = time.perf_counter()
            with ctx.Pool(args.workers) as pool:
                results = pool.map(_load_windows, jobs)
            wall = time.perf_counter() - t0
            total = sum(r[0] for r in results)
            busy = max(r[1] for r in results)
            cpu_per_window = sum(r[2] for r in results) / total
            print(f"{args.workers} processes x 1 thread: {total / busy:.1f} windows/s wall while loading "
                  f"({total / wall:.1f} including pool start-up); CPU {1e3 * cpu_per_window:.1f} ms per "
                  f"window, i.e. {args.workers / cpu_per_window:.1f} windows/s if {args.workers} cores were "
                  "free")


if __name__ == "__main__":
    main()
