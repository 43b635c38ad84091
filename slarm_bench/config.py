"""Configuration in one place: default locations, environment variables and card folders."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "SLARM_BENCH_DATA"
RESULTS_ENV = "SLARM_BENCH_RESULTS"
CARDS_ENV = "SLARM_BENCH_CARDS"
DEFAULT_DATA_ROOT = Path("data/prepared")
DEFAULT_RESULTS_ROOT = Path("results")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Prepared-data root: explicit argument, else $SLARM_BENCH_DATA, else ./data/prepared."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(DATA_ENV, DEFAULT_DATA_ROOT))


def results_root(root: str | os.PathLike | None = None) -> Path:
    if root is not None:
        return Path(root)
    return Path(os.environ.get(RESULTS_ENV, DEFAULT_RESULTS_ROOT))


def cards_dir(kind: str) -> Path:
    """Folder of YAML cards: `datasets`, `baselines` or `leaderboards` at the project root.

    $SLARM_BENCH_CARDS points at another project root (a folder holding those three folders).
    """
    base = Path(os.environ.get(CARDS_ENV, PROJECT_ROOT))
    return base / kind
