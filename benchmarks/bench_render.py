"""Renderer speed, memory and backend parity. Prints one JSON object per line (and appends them to --out).

    python benchmarks/bench_render.py --device cpu              # (a) torch backend on the CPU
    python benchmarks/bench_render.py --device cuda --out r.jsonl   # (a) on GPU, (b) parity, (c) gsplat

(a) torch backend: 50k Gaussians to one 160x240 image: forward and forward+backward wall time (median;
    also the forward's process CPU time, which a machine shared with other jobs inflates less), peak
    memory (process RSS high-water mark on CPU, max allocated on CUDA).
(b) CUDA only: gsplat vs torch backend on random plausible scenes of 10k-200k Gaussians at several sizes:
    mean/max abs differences of rgb, alpha, features, flow; relative depth difference where both alphas
    > 0.5; cosine of the gradients of every Gaussian parameter.
(c) CUDA only: gsplat, 460,800 Gaussians to 3 cameras at 160x240 with RGB + depth + 3 flow channels:
    forward and forward+backward per timestep, CUDA events, median of 20 after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slarm_bench.render import render  # noqa: E402
from slarm_bench.render.scenes import random_scene  # noqa: E402


def emit(record: dict, out: Path | None) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(line + "\n")


def machine(device: str) -> dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor()
            or platform.machine(), "load_avg": os.getloadavg()[0]}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        try:
            import gsplat
            info["gsplat"] = gsplat.__version__
        except ImportError:
            info["gsplat"] = None
    return info


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_torch_backend(device: str, out: Path | None, repeats: int) -> None:
    g, c2w, k = random_scene(50_000, cameras=1, device=device)
    size = (160, 240)
    with torch.no_grad():
        render(g, c2w, k, size, backend="torch")  # warm-up
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fwd, cpu = [], []
    for _ in range(repeats):
        sync(device)
        t, c = time.perf_counter(), time.process_time()
        with torch.no_grad():
            render(g, c2w, k, size, backend="torch")
        sync(device)
        fwd.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    params = [g.means, g.quats, g.scales, g.opacities, g.colors]
    for p in params:
        p.requires_grad_(True)
    bwd = []
    for _ in range(max(2, repeats // 2)):
        sync(device)
        t = time.perf_counter()
        r = render(g, c2w, k, size, backend="torch")
        (r.rgb.sum() + r.depth.mean() + r.alpha.sum()).backward()
        sync(device)
        bwd.append(time.perf_counter() - t)
    record = {"bench": "torch_backend", "device": device, "gaussians": 50_000, "size": size,
              "forward_s": statistics.median(fwd),
              "forward_cpu_s": statistics.median(cpu), "forward_backward_s": statistics.median(bwd),
              "target_forward_s": 1.0, **machine(device)}
    if device == "cuda":
        record["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        record["rss_before_mb"] = rss0
    emit(record, out)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


def bench_parity(out: Path | None, cases: list[tuple[int, tuple[int, int]]]) -> None:
    names = ("means", "quats", "scales", "opacities", "colors", "features", "motion")
    for num, size in cases:
        outs, grads = {}, {}
        for backend in ("torch", "gsplat"):
            g, c2w, k = random_scene(num, cameras=3, size=size, features=8, motion_order=2, seed=num,
                                     device="cuda")
            params = [getattr(g, n) for n in names]
            for p in params:
                p.requires_grad_(True)
            r = render(g, c2w, k, size, time=0.3, backend=backend)
            gen = torch.Generator(device="cuda").manual_seed(1)
            loss = sum((x * torch.rand(x.shape, generator=gen, device="cuda")).sum()
                       for x in (r.rgb, r.alpha, r.features, r.flow)) + (r.depth * 0.01).sum()
            loss.backward()
            outs[backend] = r
            grads[backend] = [p.grad.detach().clone() for p in params]
        a, b = outs["torch"], outs["gsplat"]
        rec = {"bench": "parity", "gaussians": num, "size": size, "cameras": 3}
        for name in ("rgb", "alpha", "features", "flow"):
            d = (getattr(a, name) - getattr(b, name)).abs()
            rec[f"{name}_mean_abs"] = d.mean().item()
            rec[f"{name}_max_abs"] = d.max().item()
        solid = (a.alpha > 0.5) & (b.alpha > 0.5)
        rel = ((a.depth - b.depth).abs() / b.depth.clamp_min(1.0))[solid]
        rec["depth_mean_rel"] = rel.mean().item() if rel.numel() else None
        rec["depth_max_rel"] = rel.max().item() if rel.numel() else None
        for n, ga, gb in zip(names, grads["torch"], grads["gsplat"]):
            rec[f"grad_cos_{n}"] = _cosine(ga, gb)
        rec["pass"] = all(rec[f"{n}_mean_abs"] < 1e-3 and rec[f"{n}_max_abs"] < 2e-2
                          for n in ("rgb", "alpha", "features", "flow")) \
            and all(rec[f"grad_cos_{n}"] > 0.99 for n in names)
        emit(rec, out)


def time_cuda(fn, warmup: int = 5, repeats: int = 20) -> float:
    """Median CUDA-event time (ms) of fn() over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bench_gsplat_speed(out: Path | None) -> None:
    size = (160, 240)
    g, c2w, k = random_scene(460_800, cameras=3, size=size, motion_order=1, device="cuda")
    kw = dict(time=0.3, backend="gsplat", flow=True, check=False)

    def forward() -> None:
        with torch.no_grad():
            render(g, c2w, k, size, **kw)

    params = [g.means, g.quats, g.scales, g.opacities, g.colors, g.motion]
    for p in params:
        p.requires_grad_(True)

    def forward_backward() -> None:
        r = render(g, c2w, k, size, **kw)
        (r.rgb.sum() + r.depth.mean() + r.alpha.sum() + r.flow.sum()).backward()
        for p in params:
            p.grad = None

    torch.cuda.reset_peak_memory_stats()
    fwd = time_cuda(forward)
    fb = time_cuda(forward_backward)
    emit({"bench": "gsplat_speed", "gaussians": 460_800, "cameras": 3, "size": size,
          "channels": "RGB+ED+flow3", "forward_ms": fwd, "forward_backward_ms": fb,
          "target_forward_ms": 2.0, "target_forward_backward_ms": 6.0,
          "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20, **machine("cuda")}, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="append the JSON lines to this file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-torch", action="store_true", help="skip (a), the torch backend timing")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA GPU is visible")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_torch:
        bench_torch_backend(args.device, args.out, args.repeats)
    if args.device == "cuda":
        try:
            import gsplat  # noqa: F401
        except ImportError:
            emit({"bench": "gsplat", "error": "gsplat does not import; install gsplat 1.5.x"}, args.out)
            return
        bench_parity(args.out, [(10_000, (160, 240)), (50_000, (160, 240)), (200_000, (160, 240)),
                                (50_000, (320, 480)), (200_000, (90, 160))])
        bench_gsplat_speed(args.out)


if __name__ == "__main__":
    main()
