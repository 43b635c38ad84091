"""Training loop for the STORM (storm-t, static-t, storm-b8) and SLARM (slarm-t, slarm-t-o1, slarm-t-o2,
slarm-b8) presets, single process or DDP under torchrun. One loop; a per-family adapter (`FAMILIES`, in
`train_family.py`) builds the network and the train-step module (forward + render + losses).

Data: `train_data.WindowDataset` (20-frame windows, context {0,5,10,15}, random supervision timesteps) via a
DataLoader with a deterministic per-step batch sampler (sharded by rank); SLARM also reads the semantic
labels of the targets (`SemanticWindowDataset`). Losses: `losses.storm_losses` / `losses_slarm.slarm_losses`
(language features distilled from the text embedding of each pixel's class, `text.default_encoder()`).
Optimiser: AdamW, weight decay on matrices only (not on biases, norms, tokens or the position embedding);
schedule: linear warm-up from 0 to `lr` over `warmup` steps, then cosine decay to 0 at `steps`.
bf16 autocast for the network on CUDA, fp32 rendering, gradient clipping by global norm.

Output folder:
  train_log.csv                  one row per logged step, appended as training goes
  train_curve.png                loss and PSNR curves (at each checkpoint and at the end)
  checkpoints/step_XXXXXXXX.{safetensors,json,optim.pt}   model, config, optimizer + scheduler state
  <model>.safetensors/.json      final fp16 export;  <model>.train.json  command, steps, final figures, sha256
Re-running with the same out_dir resumes from the latest checkpoint (resume=True); the data stream is a
pure function of (seed, step), so a resumed run sees the batches an uninterrupted one would have.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import functools
import hashlib
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slarm_bench.losses import DEPTH_WEIGHT, VELOCITY_WEIGHT
from slarm_bench.models.checkpoint import load_into, load_safetensors, safetensors_path, save_safetensors
from slarm_bench.models.slarm_net import SlarmConfig
from slarm_bench.models.storm import file_sha256
from slarm_bench.models.storm_net import StormConfig
from slarm_bench.render import resolve_backend
from slarm_bench.train_data import StepBatchSampler, seed_worker
from slarm_bench.train_family import (
    FAMILIES,
    SemanticWindowDataset,
    TrainError,
    check_train_only,
    freeze_except,
    model_family,
)
from slarm_bench.train_options import MOTION_HEAD_INITS

LOSS_TERMS = ("loss", "rgb", "lpips", "depth", "sky", "velocity", "motion", "feature", "flow", "context_flow",
              "label", "psnr")
LOG_FIELDS = ("step", *LOSS_TERMS, "lr", "grad_norm", "steps_per_s", "samples_per_s", "data_wait",
              "elapsed_s")
_NO_DECAY = ("pos_embed", "sky_token", "affine_token", "motion_tokens", "camera_token", "register_tokens",
             "affine_tokens")


# ------------------------------------------------------------------------------------------------------
def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps (step 0 -> 1/warmup), then cosine from 1 to 0 at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def param_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or name in _NO_DECAY else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def param_digest(net: nn.Module) -> str:
    """sha256 of every parameter's bytes in state-dict order (to compare ranks and runs)."""
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def _latest_checkpoint(ckpt_dir: Path) -> tuple[int, Path] | None:
    found = []
    for p in ckpt_dir.glob("step_*.optim.pt"):
        stem = p.name[: -len(".optim.pt")]
        if (ckpt_dir / f"{stem}.safetensors").is_file() and (ckpt_dir / f"{stem}.json").is_file():
            found.append((int(stem.split("_")[1]), ckpt_dir / stem))
    return max(found) if found else None


def _write_curve(rows: list[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    steps = [r["step"] for r in rows]
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(steps, [r["loss"] for r in rows], lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(steps, [r["psnr"] for r in rows], lw=1, color="C1")
    ax.set_xlabel("step")
    ax.set_ylabel("train PSNR (dB)")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", metadata={"Software": None})
    os.replace(tmp, path)


def _read_log(path: Path, upto: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [{k: (float(v) if v not in ("", None) else float("nan")) for k, v in r.items()}
                for r in csv.DictReader(f)]
    for r in rows:
        r["step"] = int(r["step"])
    return [r for r in rows if r["step"] <= upto]


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in LOG_FIELDS})
    os.replace(tmp, path)


def _fp16_copy(net: nn.Module) -> nn.Module:
    """Parameters in fp16 (half the file), buffers (pixel grids, max scale) kept in fp32."""
    half = copy.deepcopy(net).cpu()
    for p in half.parameters():
        p.data = p.data.half()
    return half


def _build_lpips(device: torch.device, log) -> Any:
    from slarm_bench.metrics.image import LPIPSMetric, lpips_available

    ok, why = lpips_available("vgg")
    if not ok:
        log(f"WARNING: LPIPS-VGG loss off for this run: {why}")
        return None
    model = LPIPSMetric("vgg").model.to(device)
    model.requires_grad_(False)
    return model


# ------------------------------------------------------------------------------------------------------
def train(model: str = "storm-t", dataset: str = "synthetic", out_dir: str | os.PathLike = "runs/storm-t",
          steps: int = 1000, batch_size: int = 8, lr: float = 4e-4, warmup: int = 500,
          weight_decay: float = 0.05, betas: tuple[float, float] = (0.9, 0.95), grad_clip: float = 3.0,
          ckpt_every: int = 500, resume: bool = True, seed: int = 0, device: str = "auto",
          bf16: bool | None = None, num_workers: int = 4, log_every: int = 10, lpips_weight: float = 0.05,
          lpips_start: int = 5000, data_root: str | os.PathLike | None = None,
          generate_on_the_fly: bool = False, max_minutes: float | None = None, num_targets: int = 4,
          feature_targets: int | None = 1,
          backend: str = "auto", config: StormConfig | SlarmConfig | dict | None = None, split: str = "train",
          max_scenes: int | None = None, compile: bool = False, quiet: bool = False,
          stop_after: int | None = None, init_from: str | os.PathLike | None = None,
          train_only: str = "all", feature_balance: float = 0.0, motion_head_init: str = "reference",
          motion_weight: float = VELOCITY_WEIGHT, flow_weight: float = 0.0,
          label_weight: float = 0.0, context_flow_weight: float = 0.0,
          depth_weight: float = DEPTH_WEIGHT) -> dict[str, Any]:
    """Train a STORM or SLARM preset (or `config`, a StormConfig / SlarmConfig overriding its architecture).

    Runs DDP when launched by torchrun (WORLD_SIZE > 1): env:// rendezvous, NCCL on CUDA, gloo on the CPU;
    `batch_size` is per rank. max_minutes / stop_after (a step index) end this call early, checkpointed
    and exported, without changing the schedule (which always runs over `steps`).
    Fine-tuning: init_from (a safetensors export of the same configuration) starts from those weights
    instead of a fresh initialisation (a resumed run continues from its own checkpoint instead);
    train_only="features" (SLARM) trains only the language-feature head and decoder, so every other
    output of the exported model is that of init_from. feature_balance: see `SlarmLossConfig`.
    motion_weight: weight of the motion regulariser mean(m^2) (STORM's velocity, SLARM's every motion
    coefficient); the reference 0.005 by default. Recorded in the export's train.json.
    depth_weight: weight of the depth term L1(depth / max gt depth) on lidar pixels (reference 1.0). Depth
    is what sees motion along a camera ray, which the image barely shows (benchmarks/bench_motion_signal.py).
    flow_weight (SLARM only; 0 = the reference): supervise the rendered scene flow of the targets with the
    dataset's flow labels (L1, m/s), a probe of the motion head, not SLARM's self-supervised recipe.
    context_flow_weight (SLARM only; 0 = the reference): L1 of each context Gaussian's velocity against its
    pixel's flow label (`SlarmLossConfig.context_flow`), another probe of the motion head.
    motion_head_init (STORM presets with motion tokens): "reference" or "xavier", see
    `models.storm.init_for_training`; recorded in train.json.
    label_weight (SLARM only; 0 = the reference): add the cross-entropy of the query's class logits against
    the labels (`SlarmLossConfig.label`), the paper's fine-tune on labelled frames.
    Returns {"step", "final_loss", "final_psnr", "export", "sha256",
    "param_digest", "out_dir"} on every rank (export/sha256 None off rank 0).
    """
    rank, local_rank, world = _dist_info()
    distributed = world > 1
    if steps < 1 or batch_size < 1:
        raise TrainError(f"steps ({steps}) and batch_size ({batch_size}) must be at least 1")
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    for name, value in (("motion_weight", motion_weight), ("depth_weight", depth_weight),
                        ("flow_weight", flow_weight),
                        ("label_weight", label_weight), ("context_flow_weight", context_flow_weight)):
        if not (math.isfinite(value) and value >= 0):
            raise TrainError(f"{name} must be a finite number >= 0, got {value}")
        if name not in ("motion_weight", "depth_weight") and value and model_family(model) != "slarm":
            raise TrainError(f"{name} applies to the SLARM presets only, not {model}")
    if distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", init_method="env://")
    use_bf16 = (dev.type == "cuda") if bf16 is None else bool(bf16)
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    is_main = rank == 0
    # Options checked before anything is written: a bad call leaves no folder behind.
    init_file = _safetensors_file(init_from) if init_from is not None else None
    check_train_only(model_family(model), train_only)
    fam = FAMILIES[model_family(model)]
    if config is not None and not isinstance(config, (dict, fam.config_type)):
        raise TrainError(f"config for {model} must be a {fam.config_type.__name__} or a dict, not "
                         f"{type(config).__name__}")
    cfg = fam.config_type.from_dict(config) if isinstance(config, dict) else (config or fam.preset(model))
    if motion_head_init not in MOTION_HEAD_INITS:
        raise TrainError(f"motion_head_init must be one of {', '.join(MOTION_HEAD_INITS)}, not "
                         f"{motion_head_init!r}")
    if motion_head_init != "reference" and (model_family(model) != "storm" or cfg.static):
        raise TrainError(f"motion_head_init={motion_head_init!r} needs a STORM preset with motion tokens; "
                         f"{model} has none (leave it at 'reference')")
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        if is_main and not quiet:
            print(f"[train {model}] {msg}", flush=True)

    torch.manual_seed(seed)
    np.random.seed(seed)
    net = fam.build(cfg, **({"motion_head_init": motion_head_init} if motion_head_init != "reference" else {}))
    render_backend = resolve_backend(backend)

    start_step = 0
    latest = _latest_checkpoint(ckpt_dir) if resume else None
    optim_state = None
    if latest is not None:
        start_step, stem = latest[0] + 1, latest[1]
        state_dict, saved_cfg = load_safetensors(stem)
        if fam.config_type.from_dict(saved_cfg) != cfg:
            raise TrainError(f"{out} holds checkpoints of another configuration ({stem.name}); use a new "
                             f"out_dir or resume=False")
        load_into(net, state_dict, f"checkpoint {stem}")
        optim_state = torch.load(str(stem) + ".optim.pt", map_location="cpu", weights_only=True)
        log(f"resuming from {stem.name} (next step {start_step})")
    elif is_main and not resume and (out / "train_log.csv").exists():
        (out / "train_log.csv").unlink()
    init = {}
    if init_from is not None:
        init = {"init_from": str(init_from), "init_sha256": file_sha256(init_file)}
        if latest is None:
            state_dict, init_cfg = load_safetensors(init_from)
            if fam.config_type.from_dict(init_cfg) != cfg:
                raise TrainError(f"init_from {init_from} holds another configuration than {model}'s; pass "
                                 f"the matching config or another checkpoint")
            load_into(net, state_dict, f"init checkpoint {init_from}")
            log(f"starting from the weights of {init_from} (sha256 {init['init_sha256'][:12]})")
    n_trainable = freeze_except(net, model_family(model), train_only)
    net.to(dev)

    extra = {"feature_targets": feature_targets, "feature_balance": feature_balance, "flow_weight": flow_weight,
             "label_weight": label_weight, "context_flow_weight": context_flow_weight
             } if fam.dataset is SemanticWindowDataset else {}
    if feature_balance and fam.dataset is not SemanticWindowDataset:
        raise TrainError(f"feature_balance applies to the SLARM presets only, not {model}")
    step_module = fam.step(net, render_backend, lpips_weight, use_bf16, motion_weight=motion_weight,
                           depth_weight=depth_weight,
                           **extra).to(dev)
    runner: nn.Module = step_module
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(step_module, device_ids=[dev.index] if dev.type == "cuda" else None)
    if compile:
        if not hasattr(net, "transformer"):
            raise TrainError(f"compile=True is supported for the STORM presets only, not {model}")
        net.transformer = torch.compile(net.transformer)
    optimizer = torch.optim.AdamW(param_groups(net, weight_decay), lr=lr, betas=tuple(betas),
                                  fused=dev.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_factor, warmup=warmup,
                                                                               total=steps))
    if optim_state is not None:
        optimizer.load_state_dict(optim_state["optimizer"])
        scheduler.load_state_dict(optim_state["scheduler"])

    data = fam.dataset(dataset, split, data_root, cfg.image_size, num_targets, generate_on_the_fly,
                       max_scenes, with_flow=flow_weight > 0,
                       with_context_flow=context_flow_weight > 0)
    sampler = StepBatchSampler(len(data), batch_size, seed, rank, world, start_step)
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=sampler, num_workers=num_workers, pin_memory=dev.type == "cuda",
        worker_init_fn=functools.partial(seed_worker, seed, rank) if num_workers else None,
        persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers else None)
    lpips_on = lpips_weight > 0 and lpips_start < steps
    if lpips_on:
        step_module.set_lpips(_build_lpips(dev, log))
        lpips_on = step_module.lpips_fn is not None

    log_path, curve_path = out / "train_log.csv", out / "train_curve.png"
    rows = _read_log(log_path, start_step - 1) if is_main else []
    if is_main:  # drop rows past the checkpoint we resume from (a killed run may have logged further)
        _write_log(log_path, rows)
    n_params = sum(p.numel() for p in net.parameters())
    log(f"{n_params / 1e6:.2f} M parameters ({n_trainable / 1e6:.2f} M trained), {len(data)} windows, "
        f"world {world} x batch {batch_size}, device {dev}, bf16 {use_bf16}, renderer {render_backend}, "
        f"steps {start_step}..{steps - 1}, "
        f"warm-up {warmup} then cosine, LPIPS {'from step ' + str(lpips_start) if lpips_on else 'off'}")

    def save_checkpoint(step: int) -> None:
        if not is_main:
            return
        stem = ckpt_dir / f"step_{step:08d}"
        save_safetensors(net, cfg, stem)
        tmp = ckpt_dir / f"step_{step:08d}.optim.pt.tmp"
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step},
                   tmp)
        os.replace(tmp, str(stem) + ".optim.pt")
        _write_log(log_path, rows)
        _write_curve(rows, curve_path)

    t_start = time.perf_counter()
    t_window, n_window, wait_window = time.perf_counter(), 0, 0.0
    deadline = None if max_minutes is None else t_start + 60.0 * max_minutes
    step = start_step - 1
    last: dict[str, float] = {}
    it = iter(loader)
    runner.train()
    for step in range(start_step, steps):
        t_fetch = time.perf_counter()
        batch = next(it)
        batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
        wait_window += time.perf_counter() - t_fetch
        use_lpips = lpips_on and step >= lpips_start
        terms = runner(batch, use_lpips)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad],
                                                   grad_clip)
        optimizer.step()
        scheduler.step()
        n_window += 1
        stop = (deadline is not None and time.perf_counter() > deadline) or step == stop_after
        if distributed and deadline is not None:  # every rank stops at the same step
            import torch.distributed as dist

            flag = torch.tensor([float(stop)], device=dev)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if step % log_every == 0 or step == steps - 1 or stop:
            vals = {k: float(v.detach()) for k, v in terms.items()}
            if distributed:
                import torch.distributed as dist

                keys = sorted(vals)
                t = torch.tensor([vals[k] for k in keys], device=dev, dtype=torch.float64)
                dist.all_reduce(t)
                vals = {k: float(x) / world for k, x in zip(keys, t.tolist())}
            now = time.perf_counter()
            rate = n_window / max(now - t_window, 1e-9)
            row = {"step": step, **{k: vals.get(k, float("nan")) for k in LOSS_TERMS},
                   "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm), "steps_per_s": rate,
                   "samples_per_s": rate * batch_size * world, "data_wait": wait_window / max(n_window, 1),
                   "elapsed_s": now - t_start}
            if not all(math.isfinite(row[k]) for k in ("loss", "psnr")):
                raise TrainError(f"non-finite loss at step {step} ({row}); lower the learning rate or check "
                                 f"the data")
            last = row
            if is_main:
                rows.append(row)
                with open(log_path, "a", newline="") as f:
                    csv.DictWriter(f, fieldnames=LOG_FIELDS).writerow({k: row.get(k, "") for k in LOG_FIELDS})
            log(f"step {step} loss {row['loss']:.4f} psnr {row['psnr']:.2f} lr {row['lr']:.2e} "
                f"{rate:.2f} steps/s {row['samples_per_s']:.1f} samples/s data-wait "
                f"{1e3 * row['data_wait']:.0f} ms/step")
            t_window, n_window, wait_window = now, 0, 0.0
        if (ckpt_every and (step + 1) % ckpt_every == 0) or step == steps - 1 or stop:
            save_checkpoint(step)
        if stop:
            log(f"stopping at step {step} ({'step limit' if step == stop_after else 'time budget'} reached)")
            break
    result = {"step": step, "final_loss": last.get("loss"), "final_psnr": last.get("psnr"), "export": None,
              "sha256": None, "param_digest": param_digest(net), "out_dir": str(out)}
    if is_main and step >= start_step:
        result.update(_export(net, cfg, model, out, rows, step, seed, world * batch_size,
                              time.perf_counter() - t_start, log,
                              {**step_module.summary(), **init, "train_only": train_only,
                               **({"motion_head_init": motion_head_init} if model_family(model) == "storm"
                                  else {})}))
    elif is_main and step < start_step:
        log(f"nothing to do: the checkpoints in {ckpt_dir} already reach step {start_step - 1}")
    if distributed:
        import torch.distributed as dist

        dist.barrier()
    return result


def _safetensors_file(path: str | os.PathLike) -> Path:
    """The `.safetensors` file of an export given as its stem, its .safetensors or its .json."""
    tensors = safetensors_path(path)
    if not tensors.is_file():
        raise TrainError(f"init_from: {tensors} does not exist; pass a safetensors export with its .json "
                         f"beside it (e.g. checkpoints/slarm-t.safetensors)")
    return tensors


def _export(net: nn.Module, cfg: StormConfig | SlarmConfig, model: str, out: Path, rows: list[dict[str, Any]],
            step: int, seed: int, global_batch: int, seconds: float, log,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    tensors, _ = save_safetensors(_fp16_copy(net), dataclasses.replace(cfg), out / model)
    sha = file_sha256(tensors)
    tail = rows[-10:]
    summary = {
        "command": " ".join(shlex.quote(a) for a in sys.argv), "model": model, "steps": step + 1,
        "global_batch": global_batch, "seed": seed, "seconds_this_run": seconds,
        "final_loss": float(np.mean([r["loss"] for r in tail])) if tail else None,
        "final_psnr": float(np.mean([r["psnr"] for r in tail])) if tail else None,
        "final_over": f"mean of the last {len(tail)} logged steps",
        "export": tensors.name, "export_bytes": tensors.stat().st_size, "export_dtype": "float16 parameters",
        "sha256": sha, "config": cfg.to_dict(), "torch": torch.__version__, **(extra or {}),
    }
    tmp = out / f"{model}.train.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / f"{model}.train.json")
    _write_curve(rows, out / "train_curve.png")
    log(f"exported {tensors} ({tensors.stat().st_size / 1e6:.1f} MB, sha256 {sha[:12]})")
    return {"export": str(tensors), "sha256": sha}


def main(argv: list[str] | None = None) -> None:
    """`python -m slarm_bench.train ...` (what torchrun launches); `slarm-bench train` takes the shared
    options (`train_options`) and names the data root and loader workers --root and --workers."""
    import argparse

    from slarm_bench import train_options

    p = argparse.ArgumentParser(prog="python -m slarm_bench.train")
    p.add_argument("model", nargs="?", default="storm-t")
    train_options.add_shared_arguments(p)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--grad-clip", type=float, default=3.0)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--no-bf16", action="store_true")
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--lpips-weight", type=float, default=0.05)
    p.add_argument("--lpips-start", type=int, default=5000)
    p.add_argument("--data-root", default=None)
    p.add_argument("--generate-on-the-fly", action="store_true")
    p.add_argument("--backend", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--max-scenes", type=int, default=None)
    p.add_argument("--num-targets", type=int, default=4)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override one field of the preset's configuration (VALUE is JSON), e.g. speed_shift=4.6")
    a = p.parse_args(argv)
    config = None
    if a.set:
        fam = FAMILIES[model_family(a.model)]
        overrides = {}
        for item in a.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"--set {item!r}: write FIELD=VALUE, e.g. speed_shift=4.6")
            overrides[key] = json.loads(value)
        config = {**fam.preset(a.model).to_dict(), **overrides}
    train(a.model, **train_options.shared_values(a), weight_decay=a.weight_decay, grad_clip=a.grad_clip,
          resume=not a.no_resume, bf16=False if a.no_bf16 else None, num_workers=a.num_workers,
          log_every=a.log_every, lpips_weight=a.lpips_weight, lpips_start=a.lpips_start, data_root=a.data_root,
          generate_on_the_fly=a.generate_on_the_fly, backend=a.backend, compile=a.compile,
          max_scenes=a.max_scenes, num_targets=a.num_targets, config=config)


if __name__ == "__main__":
    main()
