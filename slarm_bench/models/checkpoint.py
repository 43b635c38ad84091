"""Checkpoints: our own format (safetensors + a JSON config) and the official STORM pickle files.

Our format is `<path>.safetensors` (tensors only, safe to open from anyone) beside `<path>.json`
({"format", "version", "model", "config"}). The official STORM checkpoint is a `torch.save` dict (keys
model, optimizer, loss_scaler, latest_step, vis_slice_id, args, total_elapsed_time) whose `args` is a pickled
argparse namespace: opening it runs Python's unpickler, which can execute arbitrary code from the file, so
it is opened only when the caller says the file is trusted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slarm_bench.errors import SlarmBenchError

FORMAT = "slarm-bench-checkpoint"
FORMAT_VERSION = 1
# Prefixes that DDP and torch.compile add to saved names; stripping them renames, never changes, tensors.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_MAX_LISTED = 8


class CheckpointError(SlarmBenchError):
    """A checkpoint that cannot be read, is not trusted, or does not fit the model."""


def _strip_wrappers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _torch_load(path: Path, weights_only: bool) -> Any:
    return torch.load(path, map_location="cpu", weights_only=weights_only)


def _is_pickle_refusal(err: Exception) -> bool:
    # torch raises UnpicklingError("Weights only load failed ...") when the file needs full unpickling.
    return isinstance(err, pickle.UnpicklingError) and "weights only load failed" in str(err).lower()


def load_official_checkpoint(path: str | os.PathLike, trust_pickle: bool) -> dict[str, torch.Tensor]:
    """State dict (CPU tensors) of an official STORM checkpoint (or any torch.save'd state dict).

    The file is first opened with `torch.load(weights_only=True)`, which cannot run code; only if that
    refuses (the official file pickles an argparse namespace) and `trust_pickle` is True is it opened with
    `weights_only=False`. Raises CheckpointError for a missing, truncated or untrusted file, or one without
    a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    try:
        obj = _torch_load(path, weights_only=True)
    except Exception as err:  # torch.load surfaces zip, pickle and I/O errors under many types
        if not _is_pickle_refusal(err):
            raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0][:200]}); the file is truncated or not a "
                                  f"torch checkpoint: download it again") from err
        if not trust_pickle:
            raise CheckpointError(
                f"checkpoint {path} is a Python pickle (the official STORM file stores its training args "
                f"as a pickled argparse namespace), and unpickling can run arbitrary code from the file; "
                f"pass trust_pickle=True (CLI: --trust-pickle) only for a file from a source you trust, "
                f"or convert it once with save_safetensors") from err
        try:
            obj = _torch_load(path, weights_only=False)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
                AttributeError, ModuleNotFoundError) as err2:
            raise CheckpointError(f"checkpoint {path} cannot be unpickled ({type(err2).__name__}: "
                                  f"{str(err2).splitlines()[0][:200]}); the file is damaged or needs "
                                  f"classes that are not installed") from err2
    return _extract_state_dict(obj, path)


def _extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    elif isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = sorted(obj)[:_MAX_LISTED] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"checkpoint {path} holds no state dict (found {keys}); expected a dict of "
                              f"tensors or a dict with a 'model' entry")
    return _strip_wrappers(obj)


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return ", ".join(names[:_MAX_LISTED]) + more


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint",
                     model_name: str | None = None) -> None:
    """Raise one CheckpointError naming every missing key, unexpected key and shape mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k} {list(state_dict[k].shape)} vs model {list(v.shape)}" for k, v in expected.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_listed(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_listed(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches: {_listed(shapes)}")
    name = model_name or type(model).__name__
    raise CheckpointError(f"{source} does not fit {name} ({'; '.join(parts)}); it was saved from another "
                          f"architecture or configuration: pick the matching preset")


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint",
              model_name: str | None = None) -> nn.Module:
    """Strictly check, then load `state_dict` into `model` (dtypes converted to the model's); returns it."""
    check_state_dict(model, state_dict, source, model_name)
    model.load_state_dict(dict(state_dict), strict=True)
    return model


def _stem(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def safetensors_path(path: str | os.PathLike) -> Path:
    """The `.safetensors` file of an export named by its stem, its .safetensors or its .json."""
    stem = _stem(path)
    return stem.with_name(stem.name + ".safetensors")


def _config_dict(cfg: Any) -> dict:
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise CheckpointError(f"cannot save a config of type {type(cfg).__name__}; give a dataclass or a dict")


def save_safetensors(model: nn.Module, cfg: Any, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write `<path>.safetensors` (the state dict) and `<path>.json` (the config) atomically.

    Returns both paths. `path` may carry either suffix or none.
    """
    from safetensors.torch import save_file

    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors_path = stem.with_name(stem.name + ".safetensors")
    config_path = stem.with_name(stem.name + ".json")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "model": type(model).__name__,
            "config": _config_dict(cfg)}
    tmp_t = tensors_path.with_name(tensors_path.name + ".tmp")
    tmp_c = config_path.with_name(config_path.name + ".tmp")
    save_file(tensors, str(tmp_t), metadata={"format": FORMAT})
    tmp_c.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_t, tensors_path)
    os.replace(tmp_c, config_path)
    return tensors_path, config_path


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read `<path>.safetensors` and `<path>.json` -> (state dict on the CPU, config dict).

    The config dict is the one given to `save_safetensors` (build the model from it, e.g.
    `StormConfig.from_dict`); the model class name is in `read_checkpoint_meta(path)["model"]`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    stem = _stem(path)
    tensors_path = stem.with_name(stem.name + ".safetensors")
    meta = read_checkpoint_meta(stem)
    if not tensors_path.is_file():
        raise CheckpointError(f"checkpoint {tensors_path} does not exist; it is written with its .json by "
                              f"save_safetensors")
    try:
        state_dict = load_file(str(tensors_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {tensors_path} cannot be read ({err}); the file is truncated or "
                              f"not safetensors: save or download it again") from err
    return state_dict, meta["config"]


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The JSON beside a safetensors checkpoint: {"format", "version", "model", "config"}."""
    stem = _stem(path)
    config_path = stem.with_name(stem.name + ".json")
    if not config_path.is_file():
        raise CheckpointError(f"checkpoint config {config_path} does not exist; a checkpoint is a "
                              f".safetensors file with its .json beside it")
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint config {config_path} is not valid JSON ({err}); "
                              f"save it again") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{config_path} is not a {FORMAT} config (needs 'format' and 'config'); "
                              f"write checkpoints with save_safetensors")
    if meta.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{config_path} has format version {meta['version']}, newer than this "
                              f"slarm-bench ({FORMAT_VERSION}); upgrade slarm-bench")
    return meta


def load_storm(path: str | os.PathLike, trust_pickle: bool = False, preset: str = "storm-b8") -> nn.Module:
    """A StormNet from our safetensors checkpoint (config from its JSON) or from an official pickle file
    (config = `preset`), checked strictly. Returns the model in eval mode on the CPU."""
    from slarm_bench.models.storm_net import StormConfig, StormNet, storm_config

    p = Path(path)
    if p.suffix == ".safetensors" or _stem(p).with_name(_stem(p).name + ".json").is_file():
        state_dict, config = load_safetensors(p)
        cfg = StormConfig.from_dict(config)
        name = "StormNet (config from its JSON)"
    else:
        state_dict, cfg, name = load_official_checkpoint(p, trust_pickle), storm_config(preset), preset
    return load_into(StormNet(cfg), state_dict, f"checkpoint {p}", name).eval()


def shipped_checkpoint(card: str) -> Path | None:
    """The checkpoint a model card ships (`checkpoint: {path, sha256}` in baselines/<card>.yaml), or None.

    The path is relative to the project root. When the card records a sha256, the file must match it:
    a mismatch is an error, never silently other weights.
    """
    import hashlib

    import yaml

    from slarm_bench.config import cards_dir

    card_path = cards_dir("baselines") / f"{card}.yaml"
    if not card_path.is_file():
        return None
    entry = (yaml.safe_load(card_path.read_text()) or {}).get("checkpoint")
    expected = entry.get("sha256") if isinstance(entry, dict) else None
    if isinstance(entry, dict):
        entry = entry.get("path")
    if not entry:
        return None
    ckpt = Path(entry) if Path(entry).is_absolute() else card_path.parent.parent / entry
    weights = ckpt if ckpt.suffix == ".safetensors" else ckpt.with_suffix(".safetensors")
    if not weights.is_file():
        return None
    if expected:
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != expected:
            raise CheckpointError(f"{weights} has sha256 {digest[:12]}, but {card_path} records "
                                  f"{str(expected)[:12]}: restore the file (git checkout) or update the card")
    return weights
