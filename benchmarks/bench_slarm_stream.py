"""Per-step latency and peak memory of SLARM streaming (slarm-w: window, slarm-f: full attention) against
sequence length, 3 cameras at the preset's image size (160x240).

Each (variant, length) runs a fresh session of `length` steps on random frames; the step's Scene keeps only
its own Gaussians (render_timesteps=1) so the figures are the network's. Prints one JSON line per run:
{preset, variant, length, step_ms_median, step_ms_last, peak_memory_bytes, device, dtype} and writes a PNG
plot of both against length. On CUDA the memory is torch.cuda.max_memory_allocated (reset per run); on the
CPU it is the process's peak resident set (monotonic, so only its growth is meaningful).

`--compile [MODE]` (default mode reduce-overhead: CUDA graphs on a GPU) compiles slarm-w's full-window steps;
one untimed warm-up session per model first absorbs compilation and graph capture (printed as its own line).
slarm-f steps stay eager. `--image-size H W` shrinks the images: on a CPU that makes a step host-bound, a
stand-in for the launch overhead that dominates small steps on a GPU; `--profile` also prints the operators
dispatched per step.

    python benchmarks/bench_slarm_stream.py --device cuda --preset slarm-b8 --dtype bf16
    python benchmarks/bench_slarm_stream.py --device cuda --preset slarm-b8 --dtype bf16 --variants slarm-w \
        --render --compile
    python benchmarks/bench_slarm_stream.py --device cpu --preset slarm-t --lengths 4 8 16   # CPU: short
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from slarm_bench.clip import SLARM_CLASSES, Clip
from slarm_bench.harness import peak_memory_bytes
from slarm_bench.models.slarm import COMPILE_MODES, SlarmModel
from slarm_bench.models.slarm_net import slarm_config

VARIANTS = {"slarm-w": "window", "slarm-f": "full"}
DEFAULT_LENGTHS = (8, 16, 32, 64, 128, 256)


def random_frame(i: int, fps: float, size: tuple[int, int], rng: np.random.Generator) -> Clip:
    h, w = size
    c2w = np.tile(np.eye(4, dtype=np.float32), (1, 3, 1, 1))
    c2w[:, :, 0, 3] = i * 1.0                      # 10 m/s forward
    c2w[:, :, 1, 3] = np.array([0.3, 0.0, -0.3])
    k = np.tile(np.array([[130, 0, w / 2], [0, 130, h / 2], [0, 0, 1]], np.float32), (1, 3, 1, 1))
    meta = dict(dataset="bench", scene="random", camera_names=["FRONT_LEFT", "FRONT", "FRONT_RIGHT"],
                label_names=list(SLARM_CLASSES), fps=fps, frame_indices=[i], schema_version=1)
    return Clip(images=rng.integers(0, 255, (1, 3, h, w, 3), dtype=np.uint8), intrinsics=k, cam_to_world=c2w,
                time=np.array([i / fps]), meta=meta)


def run(model: SlarmModel, length: int, device: str, fps: float = 10.0, render: bool = False) -> dict:
    """Stream `length` random frames; with `render`, each timed step also renders its own timestep into
    the 3 cameras (what a live viewer shows), so the figure is step + render."""
    rng = np.random.default_rng(0)
    # Frames are made one at a time, untimed: holding all of them would grow the process's memory with the
    # length (about 0.35 MB a frame), which on the CPU is what the peak-memory figure measures.
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    state = model.start()
    times = []
    for i in range(length):
        frame = random_frame(i, fps, model.cfg.image_size, rng)
        t0 = time.perf_counter()
        state, scene = model.step(state, frame)
        if render:
            model.render(scene, frame.cam_to_world[0], frame.intrinsics[0], float(frame.time[0]),
                         model.cfg.image_size)
        model.synchronize()
        times.append(1e3 * (time.perf_counter() - t0))
    # the first steps include warm-up (kernel selection, allocator growth): median over the later half
    # when there are enough steps
    tail = times[len(times) // 2:] if length >= 4 else times
    return {"length": length, "step_ms_median": round(statistics.median(tail), 2),
            "step_ms_last": round(times[-1], 2), "peak_memory_bytes": peak_memory_bytes(device)}


def make_model(args: argparse.Namespace, attention: str, dtype: torch.dtype | None) -> SlarmModel:
    cfg = slarm_config(args.preset, image_size=tuple(args.image_size)) if args.image_size else None
    return SlarmModel(cfg=cfg, preset=args.preset, attention=attention, window=args.window, device=args.device,
                      backend=args.backend if args.render else "torch", render_timesteps=1, dtype=dtype,
                      compile=args.compile)


def warm_up(model: SlarmModel, args: argparse.Namespace) -> dict:
    """A session of window + 3 steps whose step times are not reported: compilation and CUDA graph capture
    happen here (the model keeps its compiled step and its cache for the later sessions)."""
    t0 = time.perf_counter()
    run(model, args.window + 3, args.device, render=args.render)
    return {"warm_up_s": round(time.perf_counter() - t0, 1), "compile": args.compile}


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for variant in VARIANTS:
        sel = [r for r in rows if r["variant"] == variant]
        if not sel:
            continue
        x = [r["length"] for r in sel]
        axes[0].plot(x, [r["step_ms_median"] for r in sel], "o-", label=variant)
        axes[1].plot(x, [r["peak_memory_bytes"] / 2**30 for r in sel], "o-", label=variant)
    for ax, label in zip(axes, ("per-step latency (ms, median)", "peak memory (GiB)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length (timesteps, 3 cameras)")
        ax.set_ylabel(label)
        ax.legend()
        ax.grid(alpha=0.3)
    r0 = rows[0]
    fig.suptitle(f"{r0['preset']} streaming on {r0['device_name']} ({r0['dtype']})")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="slarm-t", help="slarm-t, slarm-b8, ...")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16 autocast (CUDA)")
    ap.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS))
    ap.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--plot", type=Path, default=Path("bench_slarm_stream.png"))
    ap.add_argument("--render", action="store_true",
                    help="time step + rendering the current timestep (3 cameras, RGB/depth/flow/features)")
    ap.add_argument("--backend", default="auto", help="renderer for --render (auto: gsplat on CUDA)")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="after the runs, profile STEPS window steps and print the top operators")
    ap.add_argument("--compile", nargs="?", const="reduce-overhead", default=None, choices=COMPILE_MODES,
                    help="torch.compile slarm-w's full-window steps (bare flag: reduce-overhead, CUDA graphs)")
    ap.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                    help="image size instead of the preset's (small: a host-bound step on a CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dtype == "bf16" and args.device != "cuda":
        ap.error("--dtype bf16 is for CUDA; the CPU runs fp32")
    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    rows = []
    for variant, attention in VARIANTS.items():
        if variant not in args.variants:
            continue
        torch.manual_seed(0)
        model = make_model(args, attention, dtype)
        model.name = variant
        compiled = args.compile if attention == "window" else None
        if compiled:
            print(json.dumps({"variant": variant, **warm_up(model, args)}), flush=True)
        for length in args.lengths:
            row = {"preset": args.preset, "variant": variant,
                   **run(model, length, args.device, render=args.render), "render": args.render,
                   "device": args.device, "device_name": device_name, "dtype": args.dtype,
                   "compile": compiled, "image_size": list(model.cfg.image_size), "torch": torch.__version__}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if rows:
        plot(rows, args.plot)
        print(json.dumps({"plot": str(args.plot)}))
    if args.profile:
        profile_steps(args, dtype)


def profile_steps(args: argparse.Namespace, dtype: torch.dtype | None) -> None:
    """Print where a window step's time goes (operators by device and host time)."""
    from torch.profiler import ProfilerActivity, profile

    model = make_model(args, "window", dtype)
    model.name = "slarm-w"
    rng = np.random.default_rng(0)
    frames = [random_frame(i, 10.0, model.cfg.image_size, rng) for i in range(8 + args.profile)]
    state = model.start()
    for frame in frames[:8]:                                   # fill the window, warm up
        state, _ = model.step(state, frame)
    model.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with profile(activities=activities) as prof:
        for frame in frames[8:]:
            state, scene = model.step(state, frame)
            if args.render:
                model.render(scene, frame.cam_to_world[0], frame.intrinsics[0], float(frame.time[0]),
                             model.cfg.image_size)
        model.synchronize()
    sort = "cuda_time_total" if args.device == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=60))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))
    # operators dispatched from Python (not those called inside another operator): a proxy for launches
    top = [e for e in prof.events() if e.name.startswith("aten::")
           and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
    print(json.dumps({"profile_steps": args.profile, "aten_ops_per_step": round(len(top) / args.profile, 1),
                      "compile": args.compile, "render": args.render}))


if __name__ == "__main__":
    main()
