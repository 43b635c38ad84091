"""Lazy registry of models: name -> "module:factory", plus out-of-tree plug-ins.

Listing models imports nothing heavy. A plug-in package declares an entry point in the group
`slarm_bench.models` whose value is "module:factory"; the factory takes keyword options (checkpoint,
device, backend, ...) and returns a `models.base.Model`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from slarm_bench.errors import SlarmBenchError, check_name

ENTRY_POINT_GROUP = "slarm_bench.models"

#: Built-in presets: name -> ("module:factory", one-line summary).
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "nearest": ("slarm_bench.models.simple:make_nearest",
                "context image of the same camera closest in time (no depth, no flow)"),
    "oracle": ("slarm_bench.models.oracle:make_oracle",
               "one Gaussian per context pixel from ground truth, moved by its true velocity (ceiling)"),
    "oracle-static": ("slarm_bench.models.oracle:make_static_oracle",
                      "the oracle without motion: shows what motion is worth"),
    "oracle-accel": ("slarm_bench.models.oracle:make_accel_oracle",
                     "the oracle plus each agent's true acceleration (order 2): what higher order can gain"),
    "slarm-b8": ("slarm_bench.models.slarm:make_slarm_b8",
                 "SLARM-B/8: 768 wide, 12 frame + 12 global blocks, motion order 3, language features"),
    "slarm-t": ("slarm_bench.models.slarm:make_slarm_t",
                "SLARM tiny (320 wide, 4 + 4 blocks), trainable in minutes; batch, block-causal"),
    "slarm-t-o1": ("slarm_bench.models.slarm:make_slarm_t_o1",
                   "slarm-t with motion order 1 (constant velocity): ablation"),
    "slarm-t-o2": ("slarm_bench.models.slarm:make_slarm_t_o2",
                   "slarm-t with motion order 2 (velocity + acceleration): ablation"),
    "slarm-w": ("slarm_bench.models.slarm:make_slarm_w",
                "SLARM streaming, global attention over a window of 3 timesteps (slarm-t weights)"),
    "slarm-f": ("slarm_bench.models.slarm:make_slarm_f",
                "SLARM streaming, full attention over all past timesteps (slarm-t weights)"),
    "slarm": ("slarm_bench.models.slarm:make_slarm",
              "the best shipped SLARM checkpoint (slarm-t for now; random weights if none is shipped)"),
    "storm-b8": ("slarm_bench.models.storm:make_storm_b8",
                 "STORM-B/8 (ViT-B, patch 8, 160x240); needs a checkpoint (official .pth or converted)"),
    "storm-t": ("slarm_bench.models.storm:make_storm_t",
                "STORM tiny (384 wide, 8 layers, patch 8) trained by `slarm-bench train storm-t`"),
    "static-t": ("slarm_bench.models.storm:make_static_t",
                 "storm-t without motion tokens: a static Gaussian scene, zero flow"),
}


def _plugin_models() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_models() -> dict[str, str]:
    """name -> "module:factory" for built-ins and plug-ins (a plug-in may not shadow a built-in)."""
    models = {name: target for name, (target, _) in BUILTIN_MODELS.items()}
    for name, target in _plugin_models().items():
        models.setdefault(name, target)
    return models


def iter_models() -> Iterator[tuple[str, str]]:
    plugins = _plugin_models()
    for name in sorted(available_models()):
        if name in BUILTIN_MODELS:
            yield name, BUILTIN_MODELS[name][1]
        else:
            yield name, f"plug-in ({plugins[name]})"


def resolve_factory(name: str) -> Any:
    models = available_models()
    check_name("model", name, models)
    target = models[name]
    module_name, _, attr = target.partition(":")
    if not attr:
        raise SlarmBenchError(f"model {name!r} is registered as {target!r}: expected 'module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SlarmBenchError(f"model {name!r}: cannot import {module_name} ({exc}); install the package "
                              "that provides it") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise SlarmBenchError(f"model {name!r}: {module_name} has no {attr!r}") from exc


def load_model(name: str, **options: Any) -> Any:
    """Instantiate a registered model preset with keyword options."""
    model = resolve_factory(name)(**options)
    model.name = name
    return model
