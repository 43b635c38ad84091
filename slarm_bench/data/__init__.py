"""Dataset adapters: raw data -> prepared `Sequence`s.

Each adapter module exposes a factory returning an object with this interface (see `Adapter`); the
registry below maps dataset names to "module:factory" strings so that listing datasets imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Protocol

from slarm_bench.errors import check_name

ADAPTERS: dict[str, str] = {
    "synthetic": "slarm_bench.data.synthetic:SyntheticAdapter",
    "waymo": "slarm_bench.data.waymo:WaymoAdapter",
    "nuscenes": "slarm_bench.data.nuscenes:NuScenesAdapter",
}
DATASET_SUMMARIES: dict[str, str] = {
    "synthetic": "procedural dynamic driving scenes with exact ground truth (embedded, no download)",
    "waymo": "Waymo Open Dataset v1 TFRecords (scene-flow or v1.4 release), read without TensorFlow",
    "nuscenes": "nuScenes through nuscenes-devkit, box-track scene flow",
}


class Adapter(Protocol):
    """What `slarm-bench prepare DATASET` drives."""

    name: str

    def splits(self) -> list[str]:
        """Split names this adapter knows."""

    def scenes(self, split: str) -> list[str]:
        """Scene names of a split, in a fixed order."""

    def build(self, split: str, scene: str) -> Any:
        """Build one `Sequence` (clip.Sequence) for a scene; raise SlarmBenchError on bad input."""


def get_adapter(name: str, **options: Any) -> Adapter:
    """Instantiate the adapter registered as `name` (options are adapter-specific, e.g. raw paths)."""
    check_name("dataset", name, ADAPTERS)
    module_name, factory = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module_name), factory)(**options)


def iter_datasets() -> Iterator[tuple[str, str]]:
    for name in sorted(ADAPTERS):
        yield name, DATASET_SUMMARIES.get(name, "")
