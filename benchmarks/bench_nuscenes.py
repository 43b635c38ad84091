"""nuScenes adapter speed: camera frames (3 cameras each, with lidar depth, flow, masks) per second per core.

Builds a synthetic nuScenes-schema dataroot at realistic sizes (1600x900 JPEGs, 34,688-point LIDAR_TOP
sweeps, 2 Hz keyframes with 5 sweeps between them) in a temporary folder and prepares its scene at
160x288 with the sweep rate. Target: >= 20 frames per second per core. Needs nuscenes-devkit.

    .venv/bin/python benchmarks/bench_nuscenes.py [--samples 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from PIL import Image

    from slarm_bench.data import nuscenes_synth as synth
    from slarm_bench.data.nuscenes import NuScenesAdapter

    spec = synth.SynthSpec(
        samples=args.samples, sweeps=5, width=1600, height=900, focal=1260.0, points=34_685, jpeg_quality=90
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synth.make_dataroot(tmp, spec)
        # replace the flat images by smooth textured ones of a real nuScenes JPEG's size (~130-200 KB at
        # quality 90), so that decoding costs what a real photo costs
        rng = np.random.default_rng(0)
        tex = rng.integers(0, 255, (36, 64, 3), dtype=np.uint8)
        photo = Image.fromarray(tex).resize((1600, 900), Image.BICUBIC)
        for folder in ("samples", "sweeps"):
            for path in (__import__("pathlib").Path(tmp) / folder).glob("CAM_*/*.jpg"):
                photo.save(path, quality=90)
        made = time.perf_counter() - t0
        jpeg_kb = (
            next((__import__("pathlib").Path(tmp) / "samples" / "CAM_FRONT").glob("*.jpg")).stat().st_size
            / 1e3
        )
        adapter = NuScenesAdapter(tmp, version="v1.0-mini", rate="sweeps", height=160, width=288)
        best = float("inf")
        for _ in range(args.repeats):
            t1 = time.perf_counter()
            seq = adapter.build("mini_train", spec.scene)
            best = min(best, time.perf_counter() - t1)
        frames = seq.num_frames
        cpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(
            f"dataroot: {frames} frames x 3 cameras (1600x900 JPEG, {jpeg_kb:.0f} KB), "
            f"{spec.points + 3} lidar points a sweep; "
            f"made in {made:.1f} s"
        )
        print(
            f"prepare (160x288, sweeps): {best:.2f} s best of {args.repeats} -> {frames / best:.1f} camera "
            f"frames/s on one process ({cpu} cores visible, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})"
        )
        print(f"per frame: {1000 * best / frames:.1f} ms; target >= 20 frames/s per core")


if __name__ == "__main__":
    main()
