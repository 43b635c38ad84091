"""Time the STORM forward (Gaussian prediction) at one window of 4 timesteps x 3 cameras x 160x240.

Prints one JSON object: per precision (fp32, bf16 autocast) the median / min / p90 milliseconds of the timed
forwards after warm-up, peak GPU memory, and the set-up (device, GPU, torch, preset, compile).
On CUDA the times come from CUDA events around each forward; on the CPU from perf_counter.

    python benchmarks/bench_storm.py --device cuda [--preset storm-b8] [--compile] [--iters 20] [--render]

With --render each timed call also turns the prediction into Gaussians and renders one target timestep
into the 3 cameras (RGB, expected depth, alpha and 3 flow channels with the sky colour composited and the
per-camera affine applied), as `slarm-bench run` does for every target; the renderer runs in fp32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from slarm_bench.models.storm import gaussians_from_output, render_views
from slarm_bench.models.storm_net import STORM_PRESETS, StormNet, storm_config


def make_inputs(cfg, batch: int, t: int, device: torch.device):
    h, w = cfg.image_size
    v = cfg.num_cameras
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(batch, t, v, 3, h, w, generator=g) * 2 - 1).to(device)
    c2w = torch.eye(4).repeat(batch, t, v, 1, 1)
    c2w[..., 0, 3] = torch.arange(t, dtype=torch.float32)[None, :, None] * 1.5
    k = torch.tensor([[130.0, 0, w / 2], [0, 130.0, h / 2], [0, 0, 1]]).repeat(batch, t, v, 1, 1)
    time_ = (torch.arange(t, dtype=torch.float32) / t).repeat(batch, 1)
    return images, c2w.to(device), k.to(device), time_.to(device)


def time_forward(fn, inputs, device: torch.device, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn(*inputs)
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(*inputs)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            fn(*inputs)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="storm-b8", choices=sorted(STORM_PRESETS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model first")
    ap.add_argument("--render", action="store_true", help="time prediction + one rendered target timestep")
    ap.add_argument("--backend", default="auto", help="renderer for --render (auto: gsplat on CUDA)")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda":
        # fp32 means fp32 here: no TF32 shortcut in the fp32 figures.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    cfg = storm_config(args.preset)
    model = StormNet(cfg).to(device).eval()
    fn = torch.compile(model) if args.compile else model
    if args.render:
        from slarm_bench.render import resolve_backend

        backend = resolve_backend(args.backend)
    inputs = make_inputs(cfg, args.batch, args.timesteps, device)
    result: dict = {
        "benchmark": "storm_forward", "preset": args.preset, "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__, "compile": args.compile, "render": args.render,
        "input": [args.batch, args.timesteps, cfg.num_cameras, 3, *cfg.image_size],
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "warmup": args.warmup, "iters": args.iters, "results": {},
    }
    for precision in args.precisions.split(","):
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

        def run(*xs, dtype=dtype):
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                 enabled=dtype is not None):
                out = fn(*xs)
            if not args.render:
                return out
            with torch.no_grad():
                images, c2w, k, time_ = xs
                gaussians = gaussians_from_output(out, time_, cfg.static)
                # the target: the cameras of the second context timestep, half a frame later
                return render_views(model, gaussians, out.sky_token, out.affine, c2w[:, 1], k[:, 1],
                                    time_[:, 1] + 0.05, tuple(cfg.image_size), backend, check=False)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = sorted(time_forward(run, inputs, device, args.warmup, args.iters))
        entry = {"median_ms": round(statistics.median(times), 3), "min_ms": round(times[0], 3),
                 "p90_ms": round(times[int(0.9 * (len(times) - 1))], 3)}
        if device.type == "cuda":
            entry["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        result["results"][precision] = entry
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
