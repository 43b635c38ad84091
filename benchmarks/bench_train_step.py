"""Time one training step (forward, renders, losses, backward, optimiser) of a trainable preset on real
prepared windows, and show where the time and memory go.

Prints one JSON line {model, device, batch, num_targets, step_ms_median, steps_per_s, peak_memory_gib}
and, with --profile, the top operators by device (or CPU) time. The data must be prepared (the synthetic
train split, or any split given with --split).

    python benchmarks/bench_train_step.py slarm-t --device cuda --batch 4 --steps 20 --profile 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from slarm_bench import train as tr
from slarm_bench.render import resolve_backend
from slarm_bench.train_data import StepBatchSampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--num-targets", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10, help="timed steps after 3 warm-up steps")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS")
    ap.add_argument("--max-scenes", type=int, default=20)
    args = ap.parse_args()

    dev = torch.device(args.device)
    fam = tr.FAMILIES[tr.model_family(args.model)]
    cfg = fam.preset(args.model)
    net = fam.build(cfg).to(dev)
    bf16 = dev.type == "cuda"
    step_module = fam.step(net, resolve_backend("auto" if dev.type == "cuda" else "torch"), 0.0, bf16).to(dev)
    optimizer = torch.optim.AdamW(tr.param_groups(net, 0.05), lr=1e-4, fused=dev.type == "cuda")
    data = fam.dataset("synthetic", args.split, args.data_root, cfg.image_size, args.num_targets, False,
                       args.max_scenes)
    sampler = StepBatchSampler(len(data), args.batch, 0)
    loader = iter(torch.utils.data.DataLoader(data, batch_sampler=sampler, num_workers=2,
                                              pin_memory=dev.type == "cuda"))

    def one_step() -> None:
        batch = {k: v.to(dev, non_blocking=True) for k, v in next(loader).items()}
        terms = step_module(batch, False)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(3):
        one_step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        one_step()
        sync()
        times.append(1e3 * (time.perf_counter() - t0))
    med = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    print(json.dumps({"model": args.model, "device": str(dev), "batch": args.batch,
                      "num_targets": args.num_targets, "step_ms_median": round(med, 1),
                      "steps_per_s": round(1e3 / med, 2), "peak_memory_gib": peak and round(peak, 2)}), flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        with profile(activities=acts) as prof:
            for _ in range(args.profile):
                one_step()
            sync()
        sort = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=35, max_name_column_width=70))


if __name__ == "__main__":
    main()
