"""Waymo adapter throughput: frames per second per CPU core on a realistically sized synthetic Frame.

The Frame: TOP lidar 64x2650 (non-uniform beams, per-pixel poses) + 4 short-range lidars 200x600, both
returns with scene-flow images; 3 front cameras as 1920x1280 JPEGs with textured content. It is prepared
at the default 320x480 (3 cameras: images, depth, flow, ground, dynamic masks). Single-threaded.
With --workers N it also times `api.prepare` (build + store write) of N such segments with 1 and N worker
processes: wall time, and CPU time of this process and its workers.
Run: OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/bench_waymo.py [--frames N] [--workers N]
(workers inherit the CPU affinity: to see them scale, run --workers without taskset).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from slarm_bench import geometry
from slarm_bench.data.tfrecord import write_records
from slarm_bench.data.waymo import build_sequence
from slarm_bench.data.waymo_frame import decode_lidar, parse_frame
from slarm_bench.data.waymo_lidar import LidarGeometry
from slarm_bench.data.waymo_synth import make_frame

INTR = [2050.0, 2050.0, 960.0, 640.0, 0.03, -0.32, 0.0, 0.0, 0.0]


def _scene_ranges(geom: LidarGeometry, rng: np.random.Generator) -> np.ndarray:
    """Ranges of a street: ground plane 2 m below the sensor, walls 12 m to each side, returns <= 75 m."""
    d = geom.directions_vehicle
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(d[..., 2] < -1e-3, -2.0 / d[..., 2], np.inf)
        t_wall = np.where(np.abs(d[..., 1]) > 1e-3, 12.0 / np.abs(d[..., 1]), np.inf)
    r = np.minimum(t_ground, t_wall) * (1 + 0.01 * rng.standard_normal(d.shape[:2]))
    return np.where(r < 75, r, -1.0).astype(np.float32)


def make_bench_frame(i: int, rng: np.random.Generator) -> bytes:
    yy, xx = np.mgrid[0:1280, 0:1920]
    base = np.stack([(xx * 0.13 + i) % 256, (yy * 0.2) % 256, (xx + yy) * 0.07 % 256], -1)
    image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    cams = {}
    for name, yaw in (("FRONT_LEFT", 0.8), ("FRONT", 0.0), ("FRONT_RIGHT", -0.8)):
        cams[name] = dict(width=1920, height=1280, intrinsic=INTR, image=image,
                          extrinsic=geometry.make_pose(geometry.rotation_z(yaw), [1.5, 0.0, 2.1]))
    lasers = {}
    top_incl = np.sort(np.deg2rad(np.linspace(-17.6, 2.4, 64)) + rng.normal(0, 1e-3, 64))
    specs = [("TOP", 64, 2650, [1.4, 0, 2.2], 0.0), ("FRONT", 200, 600, [4.1, 0, 0.7], 0.0),
             ("SIDE_LEFT", 200, 600, [3.2, 1.0, 0.9], 1.57), ("SIDE_RIGHT", 200, 600, [3.2, -1.0, 0.9], -1.57),
             ("REAR", 200, 600, [-1.1, 0, 0.9], 3.14)]
    pose = geometry.make_pose(geometry.rotation_z(0.01 * i), [1.0 * i, 0, 0])
    for name, h, w, t, yaw in specs:
        ext = geometry.make_pose(geometry.rotation_z(yaw), t)
        incl = top_incl if name == "TOP" else None
        geom = LidarGeometry.from_calibration(ext, h, w, incl if incl is not None else [], -1.57, 0.52)
        r = _scene_ranges(geom, rng)
        flow = np.zeros((h, w, 4), np.float32)
        flow[..., 3] = rng.integers(-1, 2, (h, w))
        flow[..., 0] = np.where(flow[..., 3] == 1, 8.0, 0.0)
        las = dict(extrinsic=ext, range=r, range2=np.where(rng.random((h, w)) < 0.1, r + 1, -1), flow=flow)
        if incl is not None:
            las["inclinations"] = incl
            pp = np.zeros((h, w, 6), np.float32)
            pp[..., 2] = 0.01 * i
            pp[..., 3] = 1.0 * i + np.linspace(0, 0.1, w)[None]
            las["pixel_pose"] = pp
        else:
            las["inclination_range"] = (-1.57, 0.52)
        lasers[name] = las
    return make_frame(timestamp_micros=1_000_000 + 100_000 * i, pose=pose, cameras=cams, lasers=lasers)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the prepare workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _bench_prepare(records: list[bytes], segments: int, tmp: Path) -> None:
    from slarm_bench import api

    raw = tmp / "raw"
    (raw / "validation").mkdir(parents=True)
    for k in range(segments):
        write_records(raw / "validation" / f"segment-{k:04d}_with_camera_labels.tfrecord", records)
    frames = segments * len(records)
    for workers in sorted({1, segments}):
        root = tmp / f"store-{workers}"
        c0, w0 = _cpu_seconds(), time.perf_counter()
        api.prepare("waymo", split="validation", raw=raw, root=root, workers=workers, progress=False)
        wall, cpu = time.perf_counter() - w0, _cpu_seconds() - c0
        print(f"prepare {segments} segments x {len(records)} frames, workers={workers}: wall {wall:.2f} s "
              f"({frames / wall:.2f} frames/s), CPU {cpu / frames * 1e3:.1f} ms/frame")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0, help="also time api.prepare of this many segments")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "segment-bench_with_camera_labels.tfrecord"
        records = [make_bench_frame(i, rng) for i in range(args.frames)]
        write_records(path, records)
        mb = os.path.getsize(path) / args.frames / 1e6
        build_sequence(path, max_frames=1)  # warm caches (imports, JPEG library)
        t0 = time.process_time()
        w0 = time.perf_counter()
        seq = build_sequence(path)
        cpu = time.process_time() - t0
        wall = time.perf_counter() - w0
        print(f"raw frame: {mb:.2f} MB; {args.frames} frames prepared at {seq.image_size[0]}x{seq.image_size[1]}, "
              f"{seq.num_cameras} cameras, fields {seq.present_fields()}")
        counts = decode_lidar(parse_frame(records[0]), (1, 2), {}, 0.5)[2]
        print(f"lidar points per frame: {sum(counts.values())} (both returns, 5 lidars)")
        print(f"CPU time {cpu / args.frames * 1e3:.1f} ms/frame -> {args.frames / cpu:.2f} frames/s per core "
              f"(wall {args.frames / wall:.2f} frames/s; target >= 10)")
        print(f"depth coverage {(seq.depth > 0).mean() * 100:.1f} % of pixels")
        try:
            from slarm_bench.store import Store
        except ImportError as exc:
            print(f"store not available ({exc}): prepared size not measured")
            return
        root = Path(tmp) / "store"
        Store(root).write(seq, "validation")
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        print(f"prepared store: {size / args.frames / 1e6:.3f} MB per frame (target < 1.5 MB)")
        if args.workers > 0:
            _bench_prepare(records, args.workers, Path(tmp))


if __name__ == "__main__":
    main()
