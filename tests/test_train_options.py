"""The training options shared by `slarm-bench train` and `python -m slarm_bench.train` are defined once,
and their defaults are `train.train`'s, so neither command line can drift from the API."""

from __future__ import annotations

import argparse
import inspect

import pytest

from slarm_bench import losses, losses_slarm, train_options
from slarm_bench.cli import build_parser
from slarm_bench.train import train


def _train_parser(sub: str | None) -> argparse.ArgumentParser:
    if sub is None:
        p = argparse.ArgumentParser()
        train_options.add_shared_arguments(p)
        return p
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[sub]


@pytest.mark.parametrize("sub", [None, "train"])
def test_shared_defaults_are_the_api_defaults(sub):
    args = _train_parser(sub).parse_args(["--out-dir", "x", *(["--model", "storm-t"] if sub else [])])
    values = train_options.shared_values(args)
    params = inspect.signature(train).parameters
    for name, value in values.items():
        if name == "out_dir":
            continue
        assert value == params[name].default, name


def test_reference_weights_live_in_one_place():
    assert losses.LossWeights().depth == train_options.DEPTH_WEIGHT
    assert losses.LossWeights().velocity == train_options.VELOCITY_WEIGHT
    cfg = losses_slarm.SlarmLossConfig()
    assert (cfg.depth, cfg.sky, cfg.motion) == (train_options.DEPTH_WEIGHT, train_options.SKY_WEIGHT,
                                                train_options.VELOCITY_WEIGHT)


def test_both_command_lines_pass_the_same_options(monkeypatch, tmp_path):
    """Every shared option given on either command line reaches `train` with the same value (the CLI goes
    through `api_models.train`, which imports `train.train` when called)."""
    from slarm_bench import train as train_module
    from slarm_bench.cli import main as cli_main

    seen: list[dict] = []
    monkeypatch.setattr(train_module, "train", lambda model, **kw: seen.append({"model": model, **kw}) or
                        {"step": 0, "final_loss": 0.0, "final_psnr": 0.0, "export": "e", "sha256": "0" * 64})
    flags = ["--out-dir", str(tmp_path), "--steps", "7", "--lr", "0.001", "--depth-weight", "3",
             "--motion-weight", "1e-4", "--feature-targets", "0", "--train-only", "features"]
    cli_main(["train", "--model", "slarm-t", *flags])
    train_module.main(["slarm-t", *flags])
    cli_kw, module_kw = seen
    for name in (*train_options.SHARED, "feature_targets"):
        assert cli_kw[name] == module_kw[name], name
    assert cli_kw["depth_weight"] == 3.0 and cli_kw["motion_weight"] == 1e-4 and cli_kw["steps"] == 7
    assert cli_kw["feature_targets"] is None  # 0 = every target
