"""The training options that `slarm-bench train` and `python -m slarm_bench.train` (what torchrun launches)
share, defined once, and the reference loss weights they default to.

Torch-free on purpose: the `slarm-bench` parser imports this module, and `slarm-bench --help` must not
import torch.
"""

from __future__ import annotations

import argparse
from typing import Any

# Reference loss weights (REFERENCE.md sections 4 and 5); losses.py and losses_slarm.py read them from here.
DEPTH_WEIGHT = 1.0
SKY_WEIGHT = 0.1
VELOCITY_WEIGHT = 0.005

# How STORM's motion key and query heads start (`models.storm.init_for_training`); "reference" is the
# trunc-normal 0.02 of every other linear layer.
MOTION_HEAD_INITS = ("reference", "xavier")

# name -> (default, help). Each becomes --name-with-dashes; every default is the reference recipe.
LOSS_WEIGHT_OPTIONS: dict[str, tuple[float, str]] = {
    "motion_weight": (VELOCITY_WEIGHT, "weight of the motion regulariser mean(m^2)"),
    "depth_weight": (DEPTH_WEIGHT, "weight of the depth term L1(depth / max gt depth) on lidar pixels; depth "
                                   "is what sees motion along a camera ray"),
    "flow_weight": (0.0, "SLARM: supervise the rendered flow with the dataset's flow labels, L1 weight (a "
                         "probe; the reference has no flow supervision)"),
    "context_flow_weight": (0.0, "SLARM: L1 of each context Gaussian's velocity against its pixel's flow "
                                 "label, weight (a probe; the reference has no flow supervision)"),
    "label_weight": (0.0, "SLARM: cross-entropy of the query's class logits against the labels, weight (the "
                          "paper's labelled fine-tune; the reference distils only)"),
}

# Options whose values go to `train.train` under the same name.
SHARED = ("dataset", "out_dir", "steps", "batch_size", "lr", "warmup", "ckpt_every", "max_minutes", "seed",
          "device", "init_from", "train_only", "feature_balance", "motion_head_init", *LOSS_WEIGHT_OPTIONS)


def add_shared_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options both training command lines take (the model and the data-root / loader-worker
    options are added by each, under their own names)."""
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--out-dir", required=True, help="checkpoints, logs and the exported weights go here")
    p.add_argument("--steps", type=int, default=1000, help="schedule length (the cosine decay ends there)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per step (per process under DDP)")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup", type=int, default=500, help="linear warm-up steps before the cosine decay")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--max-minutes", type=float, default=None, help="stop and export after this long")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--feature-targets", type=int, default=1,
                   help="SLARM: target timesteps per sample that also distil language features (0 = all)")
    p.add_argument("--init-from", default=None,
                   help="fine-tune: start from this safetensors export of the same configuration")
    p.add_argument("--train-only", default="all",
                   help="all, or features (SLARM: only the language-feature head and decoder, the rest frozen)")
    p.add_argument("--feature-balance", type=float, default=0.0,
                   help="SLARM: class-balance power p of the feature (and label) loss, 0 (the reference) to 1")
    p.add_argument("--motion-head-init", default="reference", choices=MOTION_HEAD_INITS,
                   help="STORM: how the motion key/query heads start; xavier breaks the uniform softmax over "
                        "the motion tokens that trunc-normal 0.02 (the reference) starts with (a probe)")
    for name, (default, text) in LOSS_WEIGHT_OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), type=float, default=default,
                       help=f"{text} (reference {default:g})")


def shared_values(args: argparse.Namespace) -> dict[str, Any]:
    """The shared options as keyword arguments of `train.train`."""
    return {**{name: getattr(args, name) for name in SHARED}, "feature_targets": args.feature_targets or None}
