"""Leaderboard plots (PNG): headline quality against latency; streaming latency and memory against length.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so a report never changes the backend
of an interactive session and needs no display. PNGs carry no software-version metadata, so regenerating
a leaderboard with the same numbers gives the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from slarm_bench.report import metric_info, metric_label

QUALITY_PNG = "quality_vs_latency.png"
STREAMING_PNG = "streaming.png"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _finite(x: Any) -> bool:
    return x is not None and not pd.isna(x) and math.isfinite(float(x))


def quality_vs_latency(df: pd.DataFrame, headline: str, path: Path) -> Path | None:
    """Scatter of the headline metric against latency_ms (log x); None when no row has both."""
    col = f"{headline}_mean"
    if col not in df or "latency_ms" not in df:
        return None
    rows = df[[_finite(a) and _finite(b) for a, b in zip(df[col], df["latency_ms"])]]
    if rows.empty:
        return None
    info = metric_info(df, headline)
    fig = _figure(6.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for _, r in rows.iterrows():
        ranked = bool(r.get("ranked", True))
        ax.scatter([r["latency_ms"]], [r[col]], s=50, marker="o",
                   facecolors="C0" if ranked else "none", edgecolors="C0")
        label = str(r["preset"]) + ("" if str(r["checkpoint"]) == "none" else f" ({r['checkpoint'][:7]})")
        ax.annotate(label + ("" if ranked else " [incomplete]"), (r["latency_ms"], r[col]),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("latency: reconstruct (or step) + render, median ms (log)")
    arrow = "↑" if info.higher_is_better else "↓"
    ax.set_ylabel(f"{metric_label(headline)} {arrow}" + (f" ({info.unit})" if info.unit else ""))
    ax.set_title(f"{df['protocol'].iloc[0]}: quality against latency", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def _curve(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [p for p in value if isinstance(p, dict) and _finite(p.get("length"))]
    return []


def streaming_curves(df: pd.DataFrame, path: Path) -> Path | None:
    """Step latency and peak memory against sequence length, from summaries' `streaming_curve`
    ([{length, step_ms, peak_memory_bytes}]); None when no row has one."""
    if "streaming_curve" not in df:
        return None
    curves = [(r, _curve(r["streaming_curve"])) for _, r in df.iterrows()]
    curves = [(r, c) for r, c in curves if c]
    if not curves:
        return None
    fig = _figure(9.0, 3.8)
    ax_t, ax_m = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for r, curve in curves:
        curve = sorted(curve, key=lambda p: float(p["length"]))
        label = str(r["preset"]) + ("" if str(r["checkpoint"]) == "none" else f" ({r['checkpoint'][:7]})")
        t = [(p["length"], p["step_ms"]) for p in curve if _finite(p.get("step_ms"))]
        m = [(p["length"], p["peak_memory_bytes"] / 2**30) for p in curve
             if _finite(p.get("peak_memory_bytes"))]
        if t:
            ax_t.plot(*zip(*t), marker="o", label=label)
        if m:
            ax_m.plot(*zip(*m), marker="o", label=label)
    ax_t.set_xlabel("sequence length (timesteps)")
    ax_t.set_ylabel("step latency ↓ (ms)")
    ax_m.set_xlabel("sequence length (timesteps)")
    ax_m.set_ylabel("peak memory ↓ (GiB)")
    for ax in (ax_t, ax_m):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"{df['protocol'].iloc[0]}: streaming", fontsize=10)
    return _save(fig, path)


def write_plots(df: pd.DataFrame, out_dir: Path, headline: str) -> list[Path]:
    """Every plot the data allows, written to `out_dir`; plots without data are skipped (and a stale PNG
    of an earlier report removed: a committed leaderboard never shows a plot its numbers do not support)."""
    out_dir = Path(out_dir)
    made = []
    for name, draw in ((QUALITY_PNG, lambda p: quality_vs_latency(df, headline, p)),
                       (STREAMING_PNG, lambda p: streaming_curves(df, p))):
        path = draw(out_dir / name)
        if path is None:
            (out_dir / name).unlink(missing_ok=True)
        else:
            made.append(path)
    return made
