"""Score the oracle with some of its constants overridden: the sweep behind oracle.py's choices.

    python benchmarks/bench_oracle_sweep.py NAME [KEY=VALUE ...] [--model oracle-accel] [--protocol synthetic-mini]
        [--device cuda]

KEY is a constant of slarm_bench/models/oracle.py (FOOTPRINT, MOVING_FOOTPRINT, EPS2D, EDGE_CORRECTION,
DEPTH_MARGIN, BACK_COVERAGE, PREFILTER_ITERATIONS, MOVING_SPEED, MOVING_NEAREST_ONLY, OPACITY) or of
oracle_geometry.py (MAX_STRETCH, THICKNESS, HOLE_DEPTH_POWER); --model picks the oracle variant (oracle,
oracle-static, oracle-accel). Results go to <results>/sweep-NAME/<protocol>/<model>/none/ (a
separate root, so the sweep never mixes with the leaderboard's results) and the headline metrics are printed
as one JSON line. Several sweeps run side by side on one GPU machine (they are mostly CPU-bound).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import slarm_bench.models.oracle as oracle
import slarm_bench.models.oracle_geometry as oracle_geometry
from slarm_bench.cli import main as cli_main

INTEGER_KEYS = {"PREFILTER_ITERATIONS", "MOVING_NEAREST_ONLY"}
ORACLES = ("oracle", "oracle-static", "oracle-accel")
HEADLINE = ("psnr", "psnr_static", "psnr_dynamic", "flow_epe3d", "flow_epe3d_accel", "miou")


def override(assignment: str) -> None:
    key, _, value = assignment.partition("=")
    module = next((m for m in (oracle, oracle_geometry) if hasattr(m, key)), None)
    if module is None or not key.isupper() or not value:
        raise SystemExit(f"unknown oracle constant {assignment!r}; use KEY=VALUE with KEY one of the upper-case "
                         "constants of slarm_bench/models/oracle.py or oracle_geometry.py")
    setattr(module, key, int(value) if key in INTEGER_KEYS else float(value))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    ap.add_argument("--model", default="oracle", choices=ORACLES)
    ap.add_argument("--protocol", default="synthetic-mini")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--results", type=Path, default=Path("results-sweep"))
    args = ap.parse_args()
    for item in args.overrides:
        override(item)
    root = args.results / f"sweep-{args.name}"
    cli_main(["run", "--model", args.model, "--protocol", args.protocol, "--results", str(root),
              "--device", args.device, "--quiet"])
    metrics = json.loads((root / args.protocol / args.model / "none" / "summary.json").read_text())["metrics"]
    print(json.dumps({"name": args.name, "model": args.model, "overrides": args.overrides,
                      **{k: round(metrics[k]["mean"], 3) for k in HEADLINE if k in metrics}}))


if __name__ == "__main__":
    main()
