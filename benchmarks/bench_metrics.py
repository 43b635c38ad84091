"""Metrics throughput: images scored per second at 160x240 by PSNR + SSIM + depth + flow + mIoU.

    .venv/bin/python benchmarks/bench_metrics.py [--images 360] [--batch 36] [--device cpu|cuda]
                                                 [--threads N] [--lpips]

Scores random batches (a batch of 36 = one SLARM window: 12 targets x 3 cameras) with the masked variants
a protocol uses (full, non-sky, dynamic), prints the total rate and the time per metric. --lpips adds
LPIPS-Alex with a randomly initialised backbone (same cost as the real one; no weights needed).
On a CPU shared with other work, --threads 1 is much faster than torch's default: the per-image tensors
are small, and waiting threads cost more than they give.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slarm_bench.metrics import LPIPSMetric, Sample, build_metrics  # noqa: E402


def make_batch(b: int, h: int, w: int, device: str, seed: int = 0) -> Sample:
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(b, h, w, generator=g) * 80
    depth[depth < 40] = 0  # sparse lidar
    sky = torch.zeros(b, h, w, dtype=torch.bool)
    sky[:, : h // 4] = True
    dyn = torch.zeros(b, h, w, dtype=torch.bool)
    dyn[:, h // 2 : h // 2 + 30, 40:120] = True
    s = dict(
        rgb=torch.rand(b, h, w, 3, generator=g),
        gt_rgb=(torch.rand(b, h, w, 3, generator=g) * 255).to(torch.uint8),
        depth=depth + torch.randn(b, h, w, generator=g), gt_depth=depth,
        flow=torch.randn(b, h, w, 3, generator=g) * 2, gt_flow=torch.randn(b, h, w, 3, generator=g) * 2,
        semantic=torch.randint(0, 9, (b, h, w), generator=g),
        gt_semantic=torch.randint(0, 9, (b, h, w), generator=g).to(torch.uint8),
        sky=sky, dynamic=dyn, ground=torch.rand(b, h, w, generator=g) < 0.2,
    )
    return Sample(**{k: v.to(device) for k, v in s.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=360)
    ap.add_argument("--batch", type=int, default=36)
    ap.add_argument("--height", type=int, default=160)
    ap.add_argument("--width", type=int, default=240)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--lpips", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    suite = build_metrics({
        "image_masks": ["full", "nonsky", "dynamic"], "lpips": None, "depth_valid": [0.01, 200],
        "depth_masks": ["full", "nonsky", "dynamic"], "flow": True, "semantic": True, "num_classes": 9,
    })
    if args.lpips:
        suite.metrics.append(LPIPSMetric("alex", random_init_seed=0))
    batch = make_batch(args.batch, args.height, args.width, args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    suite.update(batch)  # warm-up
    suite.reset()
    per_metric = {m.name: 0.0 for m in suite}
    n_batches = max(1, args.images // args.batch)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_batches):
        for m in suite:
            t = time.perf_counter()
            m.update(batch)
            sync()
            per_metric[m.name] += time.perf_counter() - t
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = n_batches * args.batch
    if args.device.startswith("cuda"):
        dev = torch.cuda.get_device_name()
    else:
        load = os.getloadavg()[0]
        dev = f"CPU ({os.cpu_count()} cores, load average {load:.1f}), {torch.get_num_threads()} threads"
    print(f"metrics at {args.height}x{args.width}, batch {args.batch}, {dev}, torch {torch.__version__}")
    print(f"  {n} images in {total:.2f} s wall: {n / total:.1f} images/s")
    # CPU time is less sensitive than wall time to other processes sharing the cores
    print(f"  process CPU time {cpu:.2f} s: {n / cpu:.1f} images per CPU-second")
    for name, sec in per_metric.items():
        print(f"  {name:>12}: {1000 * sec / n:.2f} ms/image")


if __name__ == "__main__":
    main()
