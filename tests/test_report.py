"""Leaderboards from fake result folders: DataFrame, tables in every format, plots, regression check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from slarm_bench import report
from slarm_bench.report_tables import build_layout, tex_escape

PROTO = "toy-proto"
METRICS = {  # key -> (higher_is_better, unit, average)
    "psnr": (True, "dB", "image"),
    "psnr_nonsky": (True, "dB", "image"),
    "depth_rmse": (False, "m", "image"),
    "flow_epe3d": (False, "m/s", "pixel"),
    "flow_epe3d_accel": (False, "m/s", "pixel"),
}


def _rows(scene: str, window: int, values: dict[str, list[float]]) -> list[dict]:
    out = []
    for i in range(len(values["psnr_nonsky"])):
        row = {"scene": scene, "window": window, "frame": window + i, "position": i, "camera": "FRONT",
               "kind": "target", "flow_pixels": values.get("flow_pixels", [1] * 10)[i]}
        row.update({k: v[i] for k, v in values.items()})
        out.append(row)
    return out


def make_result(root: Path, preset: str, rows_by_window: dict[tuple[str, int], list[dict]],
                means: dict[str, tuple[float | None, float | None]], *, complete: bool = True,
                missing: tuple[str, ...] = (), windows_total: int | None = None,
                unfinished_rows: list | None = None,
                version: int = 1, timing_ms: tuple[float, float] = (100.0, 10.0), curve: list | None = None,
                checkpoint: str = "none") -> Path:
    folder = root / PROTO / preset / checkpoint
    folder.mkdir(parents=True)
    frames = [r for rows in rows_by_window.values() for r in rows] + list(unfinished_rows or [])
    (folder / "frames.jsonl").write_text("".join(json.dumps(r) + "\n" for r in frames))
    (folder / "windows.jsonl").write_text("".join(
        json.dumps({"scene": s, "window": w, "num_rows": len(rows)}) + "\n"
        for (s, w), rows in rows_by_window.items()))
    (folder / "binding.json").write_text(json.dumps({"protocol": PROTO, "protocol_version": version}))
    stats = lambda ms: {"median_ms": ms, "mean_ms": ms, "total_s": ms / 1e3, "count": 3}  # noqa: E731
    summary = {
        "result_schema": 1,
        "protocol": {"name": PROTO, "version": version, "dataset": "synthetic", "split": "test",
                     "scene_list_hash": "ab" * 32, "num_scenes": 2, "mode": "batch",
                     "knobs": {"full_image": "nonsky"}},
        "model": {"preset": preset, "backend": "torch"},
        "complete": complete, "windows_total": windows_total or len(rows_by_window),
        "windows_finished": len(rows_by_window), "missing_scenes": list(missing),
        "metrics": {k: {"mean": m, "std": s, "count": 0 if m is None else 4,
                        "higher_is_better": METRICS[k][0], "unit": METRICS[k][1], "average": METRICS[k][2],
                        "notes": ""}
                    for k, (m, s) in means.items()},
        "not_produced": {},
        "timing": {"reconstruct": stats(timing_ms[0]), "render": stats(timing_ms[1]), "stream_step": None,
                   "load": None, "score": None, "peak_memory_bytes": 2**30, "run_wall_s": 1.0,
                   "windows_timed": 2},
        "provenance": {"git_commit": "c0ffee" * 6, "git_dirty": False, "gpu": None, "device": "cpu"},
    }
    if curve is not None:
        summary["streaming_curve"] = curve
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    # "good": complete, lower latency, better PSNR; depth worse than "fast".
    make_result(root, "good", {
        ("s1", 0): _rows("s1", 0, {"psnr": [20, 22], "psnr_nonsky": [21, 23], "depth_rmse": [3, 5],
                                   "flow_epe3d": [0.1, 0.3], "flow_pixels": [1, 3]}),
        ("s2", 0): _rows("s2", 0, {"psnr": [24, 26], "psnr_nonsky": [25, 27], "depth_rmse": [4, 4],
                                   "flow_epe3d": [None, 0.2], "flow_pixels": [0, 2]}),
    }, {"psnr": (23.0, 2.2), "psnr_nonsky": (24.0, 2.2), "depth_rmse": (4.0, 0.7),
        "flow_epe3d": (1.4 / 6, 0.1)},
        timing_ms=(50.0, 5.0), curve=[{"length": 4, "step_ms": 10.0, "peak_memory_bytes": 2**30},
                                      {"length": 8, "step_ms": 12.0, "peak_memory_bytes": 2**30}])
    # "fast": complete, best depth.
    make_result(root, "fast", {
        ("s1", 0): _rows("s1", 0, {"psnr": [18, 18], "psnr_nonsky": [19, 19], "depth_rmse": [2, 2],
                                   "flow_epe3d": [0.5, 0.5]}),
        ("s2", 0): _rows("s2", 0, {"psnr": [18, 18], "psnr_nonsky": [19, 19], "depth_rmse": [2, 2],
                                   "flow_epe3d": [0.5, 0.5]}),
    }, {"psnr": (18.0, 0.0), "psnr_nonsky": (19.0, 0.0), "depth_rmse": (2.0, 0.0), "flow_epe3d": (0.5, 0.0)},
        timing_ms=(20.0, 2.0))
    # "partial": best PSNR and depth but a scene is missing and a window was killed midway.
    make_result(root, "partial", {
        ("s1", 0): _rows("s1", 0, {"psnr": [30, 30], "psnr_nonsky": [31, 31], "depth_rmse": [1, 1],
                                   "flow_epe3d": [0.01, 0.01]}),
    }, {"psnr": (30.0, 0.0), "psnr_nonsky": (31.0, 0.0), "depth_rmse": (1.0, 0.0), "flow_epe3d": (0.01, 0.0)},
        complete=False, missing=("s2",), windows_total=2,
        unfinished_rows=_rows("s1", 16, {"psnr": [99], "psnr_nonsky": [99], "depth_rmse": [0],
                                         "flow_epe3d": [0]}))
    return root


@pytest.fixture()
def baselines(tmp_path: Path) -> Path:
    d = tmp_path / "baselines"
    d.mkdir()
    (d / "paperbot.yaml").write_text(yaml.safe_dump({"name": "paperbot", "paper_reported": [
        {"protocol": PROTO, "label": "PaperBot*", "source": "Some paper, Table 9",
         "metrics": {"psnr_nonsky": 40.0, "depth_rmse": 0.5, "miou": 0.7}},
        {"protocol": "other-proto", "source": "elsewhere", "metrics": {"psnr": 1.0}}]}))
    return d


def test_load_results_frame(results: Path) -> None:
    df = report.load_results(results)
    assert list(df["preset"]) == ["fast", "good", "partial"]
    good = df.set_index("preset").loc["good"]
    assert good["psnr_nonsky_mean"] == 24.0 and good["psnr_nonsky_std"] == 2.2
    assert good["psnr_nonsky_count"] == 4 and good["headline"] == "psnr_nonsky"
    assert good["latency_ms"] == 55.0 and good["reconstruct_ms"] == 50.0
    assert good["peak_memory_bytes"] == 2**30 and good["backend"] == "torch"
    assert good["git_commit"].startswith("c0ffee") and bool(good["complete"]) and bool(good["ranked"])
    partial = df.set_index("preset").loc["partial"]
    assert not partial["complete"] and not partial["ranked"]
    assert "1/2 windows" in partial["status"] and "1 scene missing" in partial["status"]
    assert df.attrs["metrics"]["depth_rmse"]["higher_is_better"] is False
    assert report.load_results(results, protocol="nope").empty


def test_per_scene_uses_finished_windows_and_pixel_weights(results: Path) -> None:
    scenes = report.per_scene(results, PROTO)
    good = scenes[scenes["preset"] == "good"].set_index("scene")
    assert good.loc["s1", "psnr_nonsky"] == 22.0 and good.loc["s2", "psnr_nonsky"] == 26.0
    # flow EPE is pixel-weighted: (0.1*1 + 0.3*3) / 4; the undefined image of s2 is left out.
    assert good.loc["s1", "flow_epe3d"] == pytest.approx(0.25)
    assert good.loc["s2", "flow_epe3d"] == pytest.approx(0.2)
    # a torn final line (a run killed mid-write) is skipped like results.py does
    frames = results / PROTO / "partial" / "none" / "frames.jsonl"
    frames.write_text(frames.read_text() + '{"scene": "s1", "win')
    scenes = report.per_scene(results, PROTO)
    partial = scenes[scenes["preset"] == "partial"]
    assert list(partial["scene"]) == ["s1"]
    assert partial["psnr"].iloc[0] == 30.0  # the unfinished window's 99 is ignored
    assert partial["windows"].iloc[0] == 1


def test_per_scene_weights_of_variant_keys(tmp_path: Path) -> None:
    # An `_accel` variant is weighted by its own counts (flow_pixels_accel), not by flow_pixels: the
    # field is found as the one that reproduces the summary's mean.
    values = {"psnr": [20, 20], "psnr_nonsky": [20, 20], "flow_epe3d": [1.0, 3.0], "flow_pixels": [1, 1],
              "flow_epe3d_accel": [1.0, 3.0], "flow_pixels_accel": [3, 1]}
    make_result(tmp_path, "m", {("s1", 0): _rows("s1", 0, values)},
                {"psnr": (20.0, 0.0), "psnr_nonsky": (20.0, 0.0), "flow_epe3d": (2.0, 1.0),
                 "flow_epe3d_accel": (1.5, 1.0)})
    row = report.per_scene(tmp_path, PROTO).iloc[0]
    assert row["flow_epe3d"] == pytest.approx(2.0) and row["flow_epe3d_accel"] == pytest.approx(1.5)
    summary_path = tmp_path / PROTO / "m" / "none" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["metrics"]["flow_epe3d_accel"]["mean"] = 9.0  # matches no field: refuse rather than guess
    summary_path.write_text(json.dumps(summary))
    with pytest.raises(report.ReportError, match="flow_epe3d_accel"):
        report.per_scene(tmp_path, PROTO)
    summary["metrics"]["flow_epe3d_accel"]["weight_key"] = "flow_pixels_accel"  # named: used as given
    summary_path.write_text(json.dumps(summary))
    assert report.per_scene(tmp_path, PROTO).iloc[0]["flow_epe3d_accel"] == pytest.approx(1.5)


def test_layout_best_honours_direction_and_skips_incomplete(results: Path, baselines: Path) -> None:
    df = report.load_results(results)
    lay = build_layout(df, PROTO, report.paper_rows(baselines, PROTO))
    assert lay.keys[0] == "psnr_nonsky"  # headline first
    names = [m["model"] for m in lay.measured]
    assert names == ["good", "fast", "partial"]  # ranked by headline, incomplete last
    assert lay.best["psnr_nonsky"] == {0}  # good, not partial (31) nor paper (40)
    assert lay.best["depth_rmse"] == {1}  # lower is better: fast (2.0), not partial (1.0)
    assert lay.best["flow_epe3d"] == {0}


def test_render_tables_all_formats(results: Path, baselines: Path, tmp_path: Path) -> None:
    summary = report.report(results, out_root=tmp_path / "lb", baselines_dir=baselines)
    out = tmp_path / "lb" / PROTO
    names = {p.name for p in summary.files[PROTO]}
    assert {"leaderboard.md", "leaderboard.csv", "leaderboard.tex", "index.html", "per_scene.csv",
            "quality_vs_latency.png", "streaming.png"} <= names
    assert "leaderboard.tex" in summary.describe()
    for name in names:
        assert (out / name).stat().st_size > 0

    tex = (out / "leaderboard.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"$\uparrow$" in tex and r"$\downarrow$" in tex
    good = next(line for line in tex.splitlines() if line.startswith("good"))
    fast = next(line for line in tex.splitlines() if line.startswith("fast"))
    partial = next(line for line in tex.splitlines() if line.startswith("partial"))
    assert r"\textbf{24.00} $\pm$ 2.20" in good and r"\textbf{4.00}" not in good
    assert r"\textbf{2.00}" in fast  # depth: lower is better
    assert r"\textbf" not in partial and "incomplete" in partial
    # paper rows come after a separator, marked, never bold
    lines = tex.splitlines()
    sep = next(i for i, line in enumerate(lines) if "Reported in papers" in line)
    paper = next(i for i, line in enumerate(lines) if line.startswith("PaperBot"))
    assert paper > sep > lines.index(partial) and "(paper)" in lines[paper] and r"\textbf" not in lines[paper]
    assert "Some paper, Table 9" in tex and "elsewhere" not in tex

    md = (out / "leaderboard.md").read_text()
    assert "PSNR non-sky ↑ (dB)" in md and "D-RMSE ↓ (m)" in md
    assert "**24.00** ± 2.20" in md and "*incomplete: 1/2 windows, 1 scene missing*" in md
    assert md.index("---\n\n**Reported in papers**") < md.index("PaperBot* (paper)")

    html = (out / "index.html").read_text()
    assert "<script" not in html and "http" not in html and "<style>" in html
    assert 'class="incomplete"' in html and "data:image/png;base64," in html
    assert "PaperBot* (paper)" in html and "<strong>24.00</strong>" in html

    csv = pd.read_csv(out / "leaderboard.csv", dtype={"checkpoint": str})
    assert list(csv["model"]) == ["good", "fast", "partial", "PaperBot*"]
    assert list(csv["paper"]) == [False, False, False, True]
    assert "path" not in csv.columns and csv.loc[3, "miou_mean"] == 0.7
    scenes = pd.read_csv(out / "per_scene.csv")
    assert len(scenes) == 5 and {"scene", "preset", "psnr_nonsky"} <= set(scenes.columns)


def test_plots_skip_streaming_without_curves(results: Path, tmp_path: Path) -> None:
    df = report.load_results(results)
    no_curve = df.assign(streaming_curve=[None] * len(df))
    files = report.render_tables(no_curve, tmp_path / "o", PROTO)
    names = [p.name for p in files]
    assert "quality_vs_latency.png" in names and "streaming.png" not in names
    assert (tmp_path / "o" / "quality_vs_latency.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "o" / "per_scene.csv").exists()  # no scenes frame given


def test_paper_only_key_direction_and_bad_card(tmp_path: Path) -> None:
    assert report.metric_info(pd.DataFrame(), "miou").higher_is_better
    assert not report.metric_info(pd.DataFrame(), "flow_epe3d").higher_is_better
    assert report.metric_label("depth_rmse_dynamic") == "D-RMSE dyn."
    assert report.metric_label("flow_acc10") == "Acc10" and report.metric_label("lpips_alex") == "LPIPS alex"
    (tmp_path / "bad.yaml").write_text("name: x\npaper_reported: [{protocol: p, metrics: {psnr: 1}}]\n")
    with pytest.raises(report.ReportError, match="source"):
        report.paper_rows(tmp_path, "p")
    assert tex_escape("a_b & 5%") == r"a\_b \& 5\%"


def _reference(results: Path, tmp_path: Path, tolerances: dict) -> Path:
    report.report(results, out_root=tmp_path / "ref", baselines_dir=tmp_path / "no-cards")
    ref = tmp_path / "ref" / PROTO
    (ref / "tolerances.yaml").write_text(yaml.safe_dump(tolerances))
    return ref


def test_compare_passes_within_tolerance_and_reports_improvement(results: Path, tmp_path: Path) -> None:
    ref = _reference(results, tmp_path, {"default": 0.1, "depth_rmse": 0.5})
    cur = report.load_results(results)
    cur.loc[cur["preset"] == "good", "psnr_nonsky_mean"] -= 0.05   # worse, within 0.1
    cur.loc[cur["preset"] == "good", "depth_rmse_mean"] -= 1.0     # better (lower) by more than 0.5
    diff, ok = report.compare(cur, ref)
    assert ok
    st = diff.set_index(["preset", "metric"])["status"]
    assert st[("good", "psnr_nonsky")] == "ok" and st[("good", "depth_rmse")] == "improved"
    assert "all" in report.format_diff(diff)


def test_compare_flags_regression_in_bad_direction(results: Path, tmp_path: Path) -> None:
    ref = _reference(results, tmp_path, {"default": 0.1, "depth_rmse": 0.5})
    cur = report.load_results(results)
    cur.loc[cur["preset"] == "fast", "depth_rmse_mean"] += 0.6     # lower is better: worse by 0.6 > 0.5
    cur.loc[cur["preset"] == "good", "psnr_nonsky_mean"] += 3.0    # better: never a failure
    diff, ok = report.compare(cur, ref)
    assert not ok
    st = diff.set_index(["preset", "metric"])["status"]
    assert st[("fast", "depth_rmse")] == "REGRESSION" and st[("good", "psnr_nonsky")] == "improved"
    text = report.format_diff(diff)
    assert text.splitlines()[2].split()[0] == "fast" and "REGRESSION" in text and "1 failing" in text


def test_compare_ignores_paper_rows_of_the_reference(results: Path, baselines: Path, tmp_path: Path) -> None:
    report.report(results, out_root=tmp_path / "ref", baselines_dir=baselines)
    ref = tmp_path / "ref" / PROTO
    (ref / "tolerances.yaml").write_text(yaml.safe_dump({"default": 0.0}))
    diff, ok = report.compare(report.load_results(results), ref)
    assert ok and set(diff["status"]) == {"ok"} and "PaperBot*" not in set(diff["preset"])
    # the incomplete reference row stays comparable; a complete one turning incomplete fails
    cur = report.load_results(results)
    cur.loc[cur["preset"] == "good", "complete"] = False
    diff, ok = report.compare(cur, ref)
    assert not ok and ("good", "-", "incomplete") in set(zip(diff["preset"], diff["metric"], diff["status"]))


def test_compare_missing_model_and_metric_fail(results: Path, tmp_path: Path) -> None:
    ref = _reference(results, tmp_path, {"default": 0.1})
    cur = report.load_results(results)
    diff, ok = report.compare(cur[cur["preset"] != "fast"], ref)
    assert not ok and "missing model" in set(diff[diff["preset"] == "fast"]["status"])
    cur2 = cur.copy()
    cur2.loc[cur2["preset"] == "good", "flow_epe3d_mean"] = math.nan
    diff2, ok2 = report.compare(cur2, ref)
    status2 = diff2.set_index(["preset", "metric"])["status"]
    assert not ok2 and status2[("good", "flow_epe3d")] == "missing metric"
    (ref / "tolerances.yaml").unlink()
    with pytest.raises(report.ReportError, match="tolerances"):
        report.compare(cur, ref)


def test_report_without_results_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(report.ReportError, match="slarm-bench run"):
        report.report(tmp_path / "empty", out_root=tmp_path / "lb")


def test_other_protocol_version_is_not_ranked(results: Path) -> None:
    make_result(results, "old", {("s1", 0): _rows("s1", 0, {"psnr": [50], "psnr_nonsky": [50],
                                                            "depth_rmse": [0.1], "flow_epe3d": [0.0]})},
                {"psnr": (50.0, 0.0), "psnr_nonsky": (50.0, 0.0), "depth_rmse": (0.1, 0.0),
                 "flow_epe3d": (0.0, 0.0)}, version=0)
    df = report.load_results(results).set_index("preset")
    assert bool(df.loc["old", "complete"]) and not df.loc["old", "ranked"]
    assert "protocol v0 (leaderboard is v1)" in df.loc["old", "status"]


def test_shipped_baseline_cards_parse() -> None:
    cards = Path(__file__).resolve().parents[1] / "baselines"
    rows = report.paper_rows(cards, "waymo-slarm").set_index("model")
    storm = rows.loc["STORM* (reproduced by SLARM's authors)"]
    assert storm["psnr_nonsky_mean"] == 25.86 and storm["depth_rmse_dynamic_mean"] == 7.50
    assert rows.loc["SLARM-W", "flow_acc5_mean"] == 81.07
    assert rows.loc["SLARM-F", "psnr_dynamic_mean"] == 23.51
    assert all(rows["source"].str.contains("2603.22893"))
