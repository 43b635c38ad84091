"""Python API for model checkpoints and training (`slarm-bench convert-checkpoint`, `slarm-bench train`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, preset: str = "storm-b8",
                       trust_pickle: bool = False) -> dict[str, Any]:
    """Official STORM .pth (a pickle) -> `<dst>.safetensors` + `<dst>.json` with the preset's config.

    Refuses to unpickle unless `trust_pickle` (unpickling can run code from the file); the state dict is
    checked strictly against the preset (every missing, unexpected or mis-shaped key is named). Returns
    {"safetensors", "json", "sha256", "preset", "tensors"}.
    """
    from slarm_bench.models.checkpoint import load_into, load_official_checkpoint, save_safetensors
    from slarm_bench.models.storm import file_sha256
    from slarm_bench.models.storm_net import StormNet, storm_config

    cfg = storm_config(preset)
    state_dict = load_official_checkpoint(src, trust_pickle)
    net = load_into(StormNet(cfg), state_dict, f"checkpoint {src}", f"StormNet {preset}")
    tensors, config = save_safetensors(net, cfg, Path(dst))
    return {"safetensors": str(tensors), "json": str(config), "sha256": file_sha256(tensors),
            "preset": preset, "tensors": len(state_dict)}


def train(model: str = "storm-t", **options: Any) -> dict[str, Any]:
    """Train a reference model; options are those of `slarm_bench.train.train` (out_dir, steps,
    batch_size, lr, warmup, ..., max_minutes). Returns its result dict."""
    from slarm_bench.train import train as _train

    return _train(model, **options)
