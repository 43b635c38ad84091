"""Speed and size of the synthetic generator: frames per second on one CPU core, bytes per prepared frame.

Run on one core:  OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 taskset -c 0 python benchmarks/bench_synthetic.py
(--antialias 1: one ray per pixel, the images of slarm-synthetic-1.0; default: the generator's default)
Prints generation speed per CPU-second (time.process_time; the figure to use on a shared machine) and per
wall-clock second (frames of 3 cameras with all ground truth and the lidar pattern, per second) and
the compressed size of one frame (3 cameras, every field) with zstd, the images also as PNG.
"""

from __future__ import annotations

import argparse
import io
import os
import time

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import zlib  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from slarm_bench.data.synthetic import ANTIALIAS, generate_sequence  # noqa: E402

FIELDS = (
    "images",
    "depth",
    "depth_dense",
    "flow",
    "semantic",
    "instance",
    "sky",
    "ground",
    "dynamic",
    "dynamic_box",
)


def frame_bytes(seq, frame: int, level: int) -> dict[str, int]:
    """Compressed bytes of one frame's fields (all cameras): zstd of the raw array, masks bit-packed."""
    try:
        import zstandard

        compress = zstandard.ZstdCompressor(level=level).compress
    except ImportError:  # the figure is then labelled zlib by the caller

        def compress(data: bytes) -> bytes:
            return zlib.compress(data, 6)

    sizes = {}
    for name in FIELDS:
        arr = getattr(seq, name)[frame]
        raw = np.packbits(arr).tobytes() if arr.dtype == bool else np.ascontiguousarray(arr).tobytes()
        sizes[name] = len(compress(raw))
    png = 0
    for img in seq.images[frame]:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", optimize=False)
        png += buf.tell()
    sizes["images_png"] = png
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--height", type=int, default=160)
    parser.add_argument("--width", type=int, default=240)
    parser.add_argument("--zstd-level", type=int, default=3)
    parser.add_argument("--antialias", type=int, default=ANTIALIAS, help="S x S rays in aliased pixels; 1 = off")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    # Warm-up: imports, numba compilation (or cache load), first allocations.
    generate_sequence(0, 32, 48, 2, antialias=args.antialias)
    total_frames, total_time, total_cpu = 0, 0.0, 0.0
    sizes: dict[str, list[int]] = {}
    for seed in range(args.seeds):
        start, start_cpu = time.perf_counter(), time.process_time()
        seq = generate_sequence(1000 + seed, args.height, args.width, args.frames, antialias=args.antialias)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - start_cpu
        total_frames += args.frames
        total_time += elapsed
        total_cpu += cpu
        print(
            f"seed {1000 + seed}: {args.frames} frames in {elapsed:.2f} s wall, {cpu:.2f} s CPU "
            f"({args.frames / elapsed:.1f} frames/s wall, {args.frames / cpu:.1f} frames/s CPU), "
            f"{len(seq.meta['camera_names'])} cameras, "
            f"{int((seq.boxes.frame == 0).sum())} agents, static={seq.meta['static_scene']}"
        )
        for frame in (0, args.frames // 2, args.frames - 1):
            for key, val in frame_bytes(seq, frame, args.zstd_level).items():
                sizes.setdefault(key, []).append(val)
    fps, fps_cpu = total_frames / total_time, total_frames / total_cpu
    # CPU time is the figure to trust on a shared machine: wall time includes waiting for the core.
    print(
        f"generation: {fps_cpu:.1f} frames/s = {3 * fps_cpu:.0f} images/s per CPU-second; wall clock "
        f"{fps:.1f} frames/s = {3 * fps:.0f} images/s ({args.height}x{args.width}, antialias={args.antialias}, "
        f"all ground truth and lidar, pinned cores: {sorted(os.sched_getaffinity(0))}, load average "
        f"{os.getloadavg()[0]:.1f})"
    )
    mean = {k: float(np.mean(v)) for k, v in sizes.items()}
    raw_total = sum(mean[k] for k in FIELDS)
    png_total = raw_total - mean["images"] + mean["images_png"]
    try:
        import zstandard  # noqa: F401

        codec = f"zstd-{args.zstd_level}"
    except ImportError:
        codec = "zlib-6 (zstandard not installed)"
    print(
        f"compressed frame (3 cameras, every field, {codec}): {raw_total / 1024:.0f} KiB; "
        f"with PNG images: {png_total / 1024:.0f} KiB"
    )
    print("  per field (KiB): " + ", ".join(f"{k} {v / 1024:.1f}" for k, v in mean.items()))


if __name__ == "__main__":
    main()
