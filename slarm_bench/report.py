"""Leaderboards from result folders: load summaries into one DataFrame, compare with a stored leaderboard.

`report` only reads result folders (see results.py for the layout):

    results/<protocol>/<preset>/<checkpoint sha256[:12] or "none">/summary.json, frames.jsonl, windows.jsonl

and writes, per protocol, `leaderboards/<protocol>/` (leaderboard.md, .csv, .tex, index.html, per_scene.csv
and PNG plots; see report_tables.py and report_plots.py). Numbers that papers report come from the baselines
cards (`baselines/*.yaml`, key `paper_reported`) and are always kept apart from measured rows.

A row is *ranked* (eligible for "best" in bold) only when its run is complete (no missing scenes, every
window finished) and it was scored under the newest version and scene list of its protocol found.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from slarm_bench import config
from slarm_bench.errors import SlarmBenchError
from slarm_bench.results import FRAMES_FILE, RESULT_SCHEMA_VERSION, WINDOWS_FILE, _read_jsonl, find_summaries


class ReportError(SlarmBenchError):
    """Result files, cards or a reference leaderboard that cannot be reported on as asked."""


# ---------------------------------------------------------------------------------------------------------
# Metric descriptions
@dataclass(frozen=True)
class MetricInfo:
    key: str
    higher_is_better: bool
    unit: str
    average: str = "image"   # "image" or "pixel" (pixel-weighted mean, e.g. scene flow)


# Prefix -> (higher is better, unit, display decimals, display name). Used for the display of every key and
# for the direction of keys that only paper rows carry (summaries carry their own direction and unit).
_KNOWN: tuple[tuple[str, bool, str, int, str], ...] = (
    ("psnr", True, "dB", 2, "PSNR"),
    ("ssim", True, "", 3, "SSIM"),
    ("lpips", False, "", 3, "LPIPS"),
    ("depth_rmse", False, "m", 2, "D-RMSE"),
    ("flow_epe3d", False, "m/s", 3, "EPE3D"),
    ("flow_epe", False, "m/s", 3, "EPE"),
    ("flow_acc5", True, "%", 2, "Acc5"),
    ("flow_acc10", True, "%", 2, "Acc10"),
    ("flow_angle", False, "rad", 3, "Angle"),
    ("miou", True, "", 4, "mIoU"),
    ("accuracy", True, "", 4, "Pixel acc."),
)
_SUFFIXES = {"_nonsky": "non-sky", "_dynamic": "dyn."}
# Display order of the metric columns (the protocol's headline PSNR is moved to the front).
CANONICAL_ORDER = (
    "psnr", "psnr_nonsky", "psnr_dynamic", "ssim", "ssim_nonsky", "ssim_dynamic", "lpips_alex", "lpips_vgg",
    "depth_rmse", "depth_rmse_nonsky", "depth_rmse_dynamic", "flow_epe3d", "flow_acc5", "flow_acc10",
    "flow_angle", "miou", "accuracy",
)


def _known(key: str) -> tuple[str, bool, str, int, str] | None:
    """(prefix, higher is better, unit, decimals, name) of the first table entry that `key` belongs to."""
    for entry in _KNOWN:
        prefix = entry[0]
        if key == prefix or key.startswith(prefix + "_"):
            return entry
    return None


def metric_label(key: str) -> str:
    """Short column name of a metric key: 'psnr_nonsky' -> 'PSNR non-sky', 'lpips_alex' -> 'LPIPS alex'."""
    known = _known(key)
    if known is None:
        return key
    prefix, name = known[0], known[4]
    rest = key[len(prefix):]
    if rest in _SUFFIXES:
        return f"{name} {_SUFFIXES[rest]}"
    return f"{name} {rest.lstrip('_')}".strip()


def metric_decimals(key: str) -> int:
    known = _known(key)
    return known[3] if known else 3


def metric_info(df: pd.DataFrame, key: str) -> MetricInfo:
    """Direction and unit of `key`: from the summaries behind `df`, else the built-in table."""
    spec = df.attrs.get("metrics", {}).get(key)
    if spec is not None:
        return MetricInfo(key, bool(spec["higher_is_better"]), spec.get("unit", ""),
                          spec.get("average", "image"))
    known = _known(key)
    if known is None:
        raise ReportError(f"metric {key!r} has no known direction (it is in no summary.json): add it to "
                          "slarm_bench/report.py _KNOWN or remove it from the card")
    return MetricInfo(key, known[1], known[2])


def metric_keys(df: pd.DataFrame) -> list[str]:
    """Metric keys with a `<key>_mean` column, in display order."""
    keys = [c[: -len("_mean")] for c in df.columns if c.endswith("_mean")]
    return order_keys(keys)


_BLOCKS = (("psnr", "ssim", "lpips"), ("depth",), ("flow",), ("miou", "accuracy"))


def _order(key: str) -> tuple:
    """Sort key: metric family block, then variant suffix (e.g. `_accel` after the plain keys), then the
    canonical order of the base key."""
    rank = {k: i for i, k in enumerate(CANONICAL_ORDER)}
    base = max((c for c in CANONICAL_ORDER if key == c or key.startswith(c + "_")), key=len, default=None)
    suffix = key[len(base):] if base else ""
    block = next((i for i, names in enumerate(_BLOCKS) if any(key.startswith(n) for n in names)),
                 len(_BLOCKS))
    return block, suffix, rank.get(base, len(rank)), key


def order_keys(keys: Iterable[str], headline: str | None = None) -> list[str]:
    keys = list(dict.fromkeys(keys))
    out = sorted(keys, key=_order)
    if headline in out:
        out.remove(headline)
        out.insert(0, headline)
    return out


# ---------------------------------------------------------------------------------------------------------
# Loading measured results
_TIMING_COLUMNS = ("reconstruct_ms", "render_ms", "stream_step_ms", "latency_ms")


def headline_key(protocol_info: dict[str, Any]) -> str:
    """The protocol's headline PSNR key: non-sky PSNR where the protocol's "full image" is non-sky."""
    full = (protocol_info.get("knobs") or {}).get("full_image", "whole")
    return "psnr_nonsky" if full == "nonsky" else "psnr"


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is corrupt ({exc}): re-run `slarm-bench run` for it or move it away") \
            from exc
    schema = summary.get("result_schema")
    if schema != RESULT_SCHEMA_VERSION:
        raise ReportError(f"{path} has result schema {schema}, this slarm-bench reads "
                          f"{RESULT_SCHEMA_VERSION}: re-run that model or use the slarm-bench that wrote it")
    return summary


def _median_ms(timing: dict[str, Any], kind: str) -> float:
    stats = timing.get(kind)
    return float(stats["median_ms"]) if stats and stats.get("median_ms") is not None else math.nan


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _summary_row(path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    proto, model = summary.get("protocol", {}), summary.get("model", {})
    prov, timing = summary.get("provenance") or {}, summary.get("timing") or {}
    missing = list(summary.get("missing_scenes") or [])
    total, finished = int(summary.get("windows_total") or 0), int(summary.get("windows_finished") or 0)
    complete = bool(summary.get("complete")) and not missing and finished >= total
    reconstruct, render, step = (_median_ms(timing, k) for k in ("reconstruct", "render", "stream_step"))
    # Latency of one update plus one rendered view: a batch model's reconstruct, else a streaming step.
    update = reconstruct if not math.isnan(reconstruct) else step
    row: dict[str, Any] = {
        "protocol": proto.get("name", path.parents[2].name), "protocol_version": proto.get("version"),
        "scene_list_hash": proto.get("scene_list_hash"), "dataset": proto.get("dataset"),
        "split": proto.get("split"), "num_scenes": proto.get("num_scenes"), "mode": proto.get("mode"),
        "headline": headline_key(proto),
        "preset": model.get("preset", path.parents[1].name), "checkpoint": path.parent.name,
        "complete": complete, "windows_finished": finished, "windows_total": total,
        "missing_scenes": len(missing),
        "reconstruct_ms": reconstruct, "render_ms": render, "stream_step_ms": step,
        "latency_ms": update + render, "peak_memory_bytes": _num(timing.get("peak_memory_bytes")),
        "run_wall_s": _num(timing.get("run_wall_s")),
        "git_commit": prov.get("git_commit"), "git_dirty": prov.get("git_dirty"), "gpu": prov.get("gpu"),
        "device": prov.get("device"), "backend": model.get("backend", prov.get("backend")),
        "torch": prov.get("torch"), "slarm_bench": prov.get("slarm_bench"),
        "checkpoint_sha256": prov.get("checkpoint_sha256"), "path": str(path.parent),
        "streaming_curve": summary.get("streaming_curve"),
        # Which devices scored (and timed) the windows; more than one: resumed elsewhere, and the latency
        # is that of the run that timed windows last.
        "timed_on": "; ".join(f"{dev} x{n}" for dev, n in (timing.get("windows_by_device") or {}).items()),
        "mixed_devices": len(timing.get("windows_by_device") or {}) > 1,
    }
    for key, agg in (summary.get("metrics") or {}).items():
        row[f"{key}_mean"] = _num(agg.get("mean"))
        row[f"{key}_std"] = _num(agg.get("std"))
        row[f"{key}_count"] = int(agg.get("count") or 0)
    return row


def _status(row: pd.Series, latest: tuple[Any, Any]) -> tuple[bool, str]:
    parts = []
    if (row["protocol_version"], row["scene_list_hash"]) != latest:
        parts.append(f"protocol v{row['protocol_version']} (leaderboard is v{latest[0]})"
                     if row["protocol_version"] != latest[0] else "other scene list")
    if not row["complete"]:
        text = f"incomplete: {row['windows_finished']}/{row['windows_total']} windows"
        if row["missing_scenes"]:
            n = int(row["missing_scenes"])
            text += f", {n} scene{'s' if n != 1 else ''} missing"
        parts.append(text)
    return not parts, "; ".join(parts) or "complete"


def load_results(results_root: str | os.PathLike | None = None, protocol: str | None = None) -> pd.DataFrame:
    """One row per (protocol, preset, checkpoint) result folder under `results_root`.

    Columns: protocol, protocol_version, scene_list_hash, dataset, split, mode, headline (metric key),
    preset, checkpoint, complete, ranked, status, windows_finished, windows_total, missing_scenes (count),
    `<key>_mean`, `<key>_std`, `<key>_count` per metric (NaN where undefined), reconstruct_ms, render_ms,
    stream_step_ms (medians), latency_ms (reconstruct or streaming step + one render), peak_memory_bytes,
    provenance (git_commit, git_dirty, gpu, device, backend, torch, ...), path, streaming_curve.
    `df.attrs["metrics"]` maps each key to its direction, unit and averaging (see `metric_info`).
    """
    rows, specs = [], {}
    for path in find_summaries(results_root, protocol):
        summary = _read_summary(path)
        rows.append(_summary_row(path, summary))
        for key, agg in (summary.get("metrics") or {}).items():
            specs.setdefault(key, {"higher_is_better": bool(agg.get("higher_is_better")),
                                   "unit": agg.get("unit", ""), "average": agg.get("average", "image")})
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["protocol", "preset", "checkpoint", "complete", "ranked", "status"])
    else:
        ranked, status = [], []
        for _, row in df.iterrows():
            same = df[df["protocol"] == row["protocol"]]
            newest = same.loc[pd.to_numeric(same["protocol_version"], errors="coerce").fillna(-1).idxmax()]
            r, s = _status(row, (newest["protocol_version"], newest["scene_list_hash"]))
            ranked.append(r)
            status.append(s)
        df.insert(df.columns.get_loc("complete") + 1, "ranked", ranked)
        df.insert(df.columns.get_loc("ranked") + 1, "status", status)
        metric_cols = [f"{k}_{s}" for k in order_keys(specs) for s in ("mean", "std", "count")]
        for col in metric_cols:
            if col not in df:
                df[col] = math.nan
        other = [c for c in df.columns if c not in metric_cols]
        at = other.index("missing_scenes") + 1
        df = df[other[:at] + metric_cols + other[at:]]
        df = df.sort_values(["protocol", "preset", "checkpoint"], kind="stable").reset_index(drop=True)
    df.attrs["metrics"] = specs
    return df


# ---------------------------------------------------------------------------------------------------------
# Per-scene breakdown
def _weighted_mean(values: pd.Series, weights: pd.Series) -> float:
    ok = values.notna() & weights.notna() & (weights > 0)
    total = float(weights[ok].sum())
    return float((values[ok] * weights[ok]).sum() / total) if total > 0 else math.nan


def _weight_column(key: str, agg: dict[str, Any], frames: pd.DataFrame) -> str:
    """Per-image pixel-count field of a pixel-weighted key.

    The summary's `weight_key` when it names one; otherwise the `*pixels*` field of frames.jsonl whose
    weighted mean over all finished rows reproduces the summary's mean (checked, never guessed).
    """
    named = agg.get("weight_key")
    if named:
        if named not in frames:
            raise ReportError(f"frames.jsonl lacks {named!r}, the pixel counts of {key!r}: re-run the model")
        return str(named)
    target = agg.get("mean")
    values = pd.to_numeric(frames[key], errors="coerce")
    candidates = sorted((c for c in frames.columns if "pixels" in c),
                        key=lambda c: (-len(os.path.commonprefix([c, key])), c))
    for col in candidates if target is not None else []:
        got = _weighted_mean(values, pd.to_numeric(frames[col], errors="coerce"))
        if math.isclose(got, float(target), rel_tol=1e-6, abs_tol=1e-9):
            return col
    raise ReportError(f"cannot tell which pixel counts weight the metric {key!r} in frames.jsonl (the "
                      "summary names no weight_key and no *pixels* field reproduces its mean): re-run the "
                      "model")


def _read_frames(path: Path) -> pd.DataFrame:
    """frames.jsonl as a DataFrame: pyarrow's reader (about 10x faster than json.loads per line), else
    the line-by-line reader of results.py, which skips a torn final line and names a corrupt one."""
    if not path.exists():
        return pd.DataFrame()
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        return pj.read_json(path).to_pandas()
    except pa.ArrowInvalid:
        return pd.DataFrame(_read_jsonl(path))


def _finished_rows(folder: Path) -> pd.DataFrame:
    """Rows of windows listed in windows.jsonl (the rule of results.ResultFolder.rows, without binding)."""
    done = {(str(r["scene"]), int(r["window"])) for r in _read_jsonl(folder / WINDOWS_FILE)}
    frames = _read_frames(folder / FRAMES_FILE)
    if frames.empty:
        return frames
    keep = [(str(s), int(w)) in done for s, w in zip(frames["scene"], frames["window"])]
    return frames[keep].reset_index(drop=True)


def per_scene(results_root: str | os.PathLike | None, protocol: str) -> pd.DataFrame:
    """Mean of every metric per scene per model, from frames.jsonl of finished windows.

    Columns: protocol, preset, checkpoint, scene, windows, images (target rows), then one column per metric
    key (the per-scene mean, pixel-weighted for pixel-averaged keys as in the summary; NaN if undefined).
    """
    out = []
    for path in find_summaries(results_root, protocol):
        summary = _read_summary(path)
        metrics = summary.get("metrics") or {}
        frames = _finished_rows(path.parent)
        if frames.empty:
            continue
        keys = [k for k in order_keys(metrics) if k in frames.columns]
        weight = {k: _weight_column(k, metrics[k], frames) for k in keys
                  if metrics[k].get("average") == "pixel" and metrics[k].get("count")}
        by = frames.groupby("scene", sort=True)
        table = pd.DataFrame({
            "windows": by["window"].nunique(),
            "images": (frames["kind"] == "target").groupby(frames["scene"]).sum() if "kind" in frames
            else by.size(),
        })
        for key in keys:
            values = pd.to_numeric(frames[key], errors="coerce")
            if key in weight:
                w = pd.to_numeric(frames[weight[key]], errors="coerce")
                ok = values.notna() & w.notna() & (w > 0)
                num = (values * w).where(ok, 0.0).groupby(frames["scene"]).sum()
                den = w.where(ok, 0.0).groupby(frames["scene"]).sum()
                table[key] = (num / den).where(den > 0)
            elif metrics[key].get("average") == "pixel":
                table[key] = math.nan  # no image has a defined value (count 0)
            else:
                table[key] = values.groupby(frames["scene"]).mean()  # NaN (undefined) images left out
        table = table.reset_index()
        table.insert(0, "protocol", protocol)
        table.insert(1, "preset", summary.get("model", {}).get("preset", path.parents[1].name))
        table.insert(2, "checkpoint", path.parent.name)
        out.append(table)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


# ---------------------------------------------------------------------------------------------------------
# Paper-reported rows (baselines cards)
def paper_rows(baselines_dir: str | os.PathLike | None, protocol: str) -> pd.DataFrame:
    """Rows of `paper_reported` entries for `protocol` from every card in `baselines_dir`.

    Columns: protocol, card, model (the entry's label, else the card's name), source, `<key>_mean` per metric.
    """
    import yaml

    base = Path(baselines_dir) if baselines_dir is not None else config.cards_dir("baselines")
    rows = []
    for card in sorted(base.glob("*.yaml")) if base.is_dir() else []:
        try:
            raw = yaml.safe_load(card.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ReportError(f"baseline card {card} is not valid YAML ({exc}): fix the card") from exc
        for i, entry in enumerate(raw.get("paper_reported") or []):
            usable = isinstance(entry, dict) and isinstance(entry.get("metrics"), dict) \
                and entry.get("source")
            if not usable:
                raise ReportError(f"baseline card {card}: paper_reported[{i}] needs `protocol`, `source` and "
                                  "a `metrics` mapping {key: value}: fix the card")
            if entry.get("protocol") != protocol:
                continue
            row = {"protocol": protocol, "card": card.name,
                   "model": str(entry.get("label") or raw.get("name")),
                   "source": " ".join(str(entry["source"]).split())}
            try:
                row.update({f"{k}_mean": float(v) for k, v in entry["metrics"].items()})
            except (TypeError, ValueError) as exc:
                raise ReportError(f"baseline card {card}: paper_reported[{i}] has a non-numeric metric "
                                  f"({exc}): fix the card") from exc
            rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["protocol", "card", "model", "source"])


# ---------------------------------------------------------------------------------------------------------
# Regression check against a stored leaderboard
FAILING = ("REGRESSION", "missing model", "missing metric", "incomplete")


def _tolerances(path: Path) -> dict[str, float]:
    import yaml

    if not path.is_file():
        raise ReportError(f"no tolerances file {path}: write one as YAML {{metric_key: absolute tolerance, "
                          "default: value}} beside leaderboard.csv")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return {str(k): float(v) for k, v in raw.items()}
    except (yaml.YAMLError, AttributeError, TypeError, ValueError) as exc:
        raise ReportError(f"{path} must map metric keys (and `default`) to numbers ({exc}): fix it") from exc


def read_leaderboard(csv: Path) -> pd.DataFrame:
    """A leaderboard.csv written by `report`, with identifier columns kept as text."""
    if not csv.is_file():
        raise ReportError(f"no leaderboard {csv}: run `slarm-bench report` and commit its folder")
    text_cols = {"protocol": str, "preset": str, "checkpoint": str, "model": str, "git_commit": str}
    return pd.read_csv(csv, dtype=text_cols, keep_default_na=True)


def compare(current: pd.DataFrame, reference_dir: str | os.PathLike,
            models: list[str] | None = None) -> tuple[pd.DataFrame, bool]:
    """Compare measured rows of `current` (from load_results) with `reference_dir`/leaderboard.csv.

    A failure is: a metric worse than the reference by more than its tolerance (tolerances.yaml, absolute,
    in the metric's bad direction), a metric with a reference value but none now, a model of the reference
    missing now, or a complete reference row whose current run is incomplete. Improvements beyond the
    tolerance are reported as "improved"; models only in `current` as "new". Returns (diff, ok) where diff
    has columns preset, checkpoint, metric, direction, reference, current, delta, tolerance, status.
    `models` restricts the comparison to those presets of the reference (the ones that were re-run).
    """
    ref_dir = Path(reference_dir)
    ref = read_leaderboard(ref_dir / "leaderboard.csv")
    tol = _tolerances(ref_dir / "tolerances.yaml")
    if "paper" in ref:
        ref = ref[~ref["paper"].astype(bool)]
    if models is not None:
        ref = ref[ref["preset"].isin(models)]
    protocols = set(ref["protocol"].dropna()) if "protocol" in ref else set()
    cur = current
    if protocols and "protocol" in cur:
        cur = cur[cur["protocol"].isin(protocols)]
    keys = metric_keys(ref)
    rows: list[dict[str, Any]] = []

    def add(preset: str, ckpt: str, metric: str, status: str, **values: Any) -> None:
        rows.append({"preset": preset, "checkpoint": ckpt, "metric": metric, "direction": "",
                     "reference": math.nan, "current": math.nan, "delta": math.nan, "tolerance": math.nan,
                     "status": status, **values})

    seen = set()
    for _, r in ref.iterrows():
        ident = (r["preset"], r["checkpoint"])
        seen.add(ident)
        match = cur[(cur["preset"] == ident[0]) & (cur["checkpoint"] == ident[1])]
        if match.empty:
            add(*ident, "-", "missing model")
            continue
        c = match.iloc[0]
        if bool(r.get("complete", False)) and not bool(c.get("complete", False)):
            add(*ident, "-", "incomplete")
        for key in keys:
            refv = float(r[f"{key}_mean"])
            if math.isnan(refv):
                continue
            curv = float(c.get(f"{key}_mean", math.nan))
            info = metric_info(current, key)
            arrow = "↑" if info.higher_is_better else "↓"
            if key not in tol and "default" not in tol:
                raise ReportError(f"{ref_dir / 'tolerances.yaml'} has no tolerance for {key!r} and no "
                                  "`default`: add one")
            t = tol.get(key, tol.get("default"))
            if math.isnan(curv):
                add(*ident, key, "missing metric", direction=arrow, reference=refv, tolerance=t)
                continue
            worse = (refv - curv) if info.higher_is_better else (curv - refv)
            status = "REGRESSION" if worse > t else "improved" if worse < -t else "ok"
            add(*ident, key, status, direction=arrow, reference=refv, current=curv, delta=curv - refv,
                tolerance=t)
    for _, c in cur.iterrows():
        if (c["preset"], c["checkpoint"]) not in seen:
            add(c["preset"], c["checkpoint"], "-", "new")
    diff = pd.DataFrame(rows, columns=["preset", "checkpoint", "metric", "direction", "reference", "current",
                                       "delta", "tolerance", "status"])
    return diff, not diff["status"].isin(FAILING).any()


def format_diff(diff: pd.DataFrame) -> str:
    """A fixed-width text table of `compare`'s diff, failures first, with a one-line verdict."""
    if diff.empty:
        return "nothing to compare (the reference has no measured rows)"
    order = diff.assign(_fail=~diff["status"].isin(FAILING)).sort_values(["_fail"], kind="stable")
    header = ["model", "checkpoint", "metric", "ref", "now", "delta", "tol", "status"]
    lines = [header]
    for _, d in order.iterrows():
        dec = metric_decimals(d["metric"]) + 1

        def num(x: float, signed: bool = False, dec: int = dec) -> str:
            return "-" if pd.isna(x) else (f"{x:+.{dec}f}" if signed else f"{x:.{dec}f}")

        lines.append([d["preset"], d["checkpoint"], f"{d['metric']} {d['direction']}".strip(),
                      num(d["reference"]), num(d["current"]), num(d["delta"], True), num(d["tolerance"]),
                      d["status"]])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    text = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    failures = int(diff["status"].isin(FAILING).sum())
    text.append(f"{failures} failing of {len(diff)} checks" if failures else f"all {len(diff)} checks pass")
    return "\n".join(text)


def render_tables(df: pd.DataFrame, out_dir: str | os.PathLike, protocol: str,
                  baselines: pd.DataFrame | str | os.PathLike | None = None,
                  scenes: pd.DataFrame | None = None, plots: bool = True) -> list[Path]:
    """Write the leaderboard files of `protocol` to `out_dir` (see report_tables.render_tables)."""
    from slarm_bench import report_tables

    return report_tables.render_tables(df, out_dir, protocol, baselines=baselines, scenes=scenes, plots=plots)


# ---------------------------------------------------------------------------------------------------------
# The entry point the CLI calls
@dataclass
class ReportSummary:
    out_root: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        lines = []
        for proto, files in self.files.items():
            lines.append(f"{proto}: {self.models.get(proto, 0)} measured rows -> {self.out_root / proto}")
            lines += [f"  {p.name}" for p in files]
        return "\n".join(lines)


def report(results_root: str | os.PathLike | None = None, protocol: str | None = None,
           out_root: str | os.PathLike | None = None,
           baselines_dir: str | os.PathLike | None = None) -> ReportSummary:
    """Write leaderboards/<protocol>/ for every protocol with results (or only `protocol`)."""
    df = load_results(results_root, protocol)
    if df.empty:
        where = config.results_root(results_root) / (protocol or "")
        raise ReportError(f"no summary.json under {where}: run `slarm-bench run --model ... --protocol "
                          f"{protocol or '...'}` first (or pass --results)")
    out = Path(out_root) if out_root is not None else config.cards_dir("leaderboards")
    summary = ReportSummary(out)
    for proto in sorted(df["protocol"].unique()):
        sub = df[df["protocol"] == proto].reset_index(drop=True)
        sub.attrs = df.attrs
        summary.files[proto] = render_tables(sub, out / proto, proto,
                                             baselines=paper_rows(baselines_dir, proto),
                                             scenes=per_scene(results_root, proto))
        summary.models[proto] = len(sub)
    return summary
