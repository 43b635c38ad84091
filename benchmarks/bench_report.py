"""Time `slarm-bench report` on Waymo-sized fake results (prints figures; not a test).

Builds, in a temporary folder, result folders shaped like the waymo-slarm protocol's: 202 scenes x 12
windows x 12 targets x 3 cameras = 87,264 image rows per model, with the image, depth, flow and semantic
keys, then times load_results, per_scene and the full report (tables, HTML, plots).

    .venv/bin/python benchmarks/bench_report.py [--models 3] [--scenes 202]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from slarm_bench import report

KEYS = {"psnr": (True, "dB", "image"), "psnr_nonsky": (True, "dB", "image"),
        "psnr_dynamic": (True, "dB", "image"), "ssim_nonsky": (True, "", "image"),
        "depth_rmse": (False, "m", "image"), "flow_epe3d": (False, "m/s", "pixel"),
        "flow_acc5": (True, "%", "pixel"), "miou": (True, "", "image")}


def make(root: Path, preset: str, scenes: int, rng: random.Random) -> int:
    folder = root / "waymo-slarm" / preset / "none"
    folder.mkdir(parents=True)
    sums = {k: [0.0, 0.0] for k in KEYS}
    n = 0
    with open(folder / "frames.jsonl", "w") as f, open(folder / "windows.jsonl", "w") as w:
        for s in range(scenes):
            for win in range(12):
                for t in range(12):
                    for cam in ("FRONT_LEFT", "FRONT", "FRONT_RIGHT"):
                        row = {k: rng.uniform(0.1, 30) for k in KEYS}
                        row.update(scene=f"seg{s:04d}", window=16 * win, frame=16 * win + t, position=t,
                                   camera=cam, kind="target", flow_pixels=rng.randint(1, 500))
                        for k, (_, _, avg) in KEYS.items():
                            weight = row["flow_pixels"] if avg == "pixel" else 1
                            sums[k][0] += row[k] * weight
                            sums[k][1] += weight
                        f.write(json.dumps(row) + "\n")
                        n += 1
                w.write(json.dumps({"scene": f"seg{s:04d}", "window": 16 * win}) + "\n")
    stats = {"median_ms": 200.0, "mean_ms": 200.0, "total_s": 1.0, "count": 1}
    summary = {"result_schema": 1,
               "protocol": {"name": "waymo-slarm", "version": 1, "dataset": "waymo", "split": "validation",
                            "scene_list_hash": "0" * 64, "num_scenes": scenes, "mode": "batch",
                            "knobs": {"full_image": "nonsky"}},
               "model": {"preset": preset}, "complete": True, "windows_total": 12 * scenes,
               "windows_finished": 12 * scenes, "missing_scenes": [],
               "metrics": {k: {"mean": a / b, "std": 1.0, "count": n, "higher_is_better": hib, "unit": u,
                               "average": avg, "notes": ""} for (k, (hib, u, avg)), (a, b)
                           in zip(KEYS.items(), sums.values())},
               "not_produced": {}, "timing": {"reconstruct": stats, "render": stats, "stream_step": None,
                                              "load": None, "score": None, "peak_memory_bytes": 2**33},
               "provenance": {}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--scenes", type=int, default=202)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "results"
        rows = sum(make(root, f"model{i}", args.scenes, rng) for i in range(args.models))
        for label, fn in (("load_results", lambda: report.load_results(root)),
                          ("per_scene", lambda: report.per_scene(root, "waymo-slarm")),
                          ("report (all files)", lambda: report.report(root, out_root=Path(tmp) / "lb"))):
            t0 = time.perf_counter()
            fn()
            print(f"{label:<20} {time.perf_counter() - t0:7.2f} s  ({args.models} models, {rows} image rows)")


if __name__ == "__main__":
    main()
