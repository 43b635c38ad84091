"""Harness overhead: where the time of a `nearest` run goes (model calls, data loading, scoring, the rest).

    python benchmarks/bench_harness.py --protocol synthetic-mini --root data/prepared

Prepare the protocol's split first (`slarm-bench prepare synthetic --split mini`). The harness's own
bookkeeping (context stripping, output checks, result writing, progress, timing) is what remains of the
run's wall time after the model's calls, window loading and metric computation; it is printed as a share of
the run, along with each part.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slarm_bench import api  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", default="synthetic-mini")
    ap.add_argument("--model", default="nearest")
    ap.add_argument("--root", default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = api.run(args.model, args.protocol, root=args.root, results=tmp, device=args.device,
                         progress=False)
        total = time.perf_counter() - t0
    timing = result.summary["timing"]
    part = {k: (timing[k] or {}).get("total_s", 0.0) for k in ("reconstruct", "render", "load", "score")}
    run_wall = timing["run_wall_s"]
    model = part["reconstruct"] + part["render"]
    bookkeeping = run_wall - model - part["load"] - part["score"]
    print(json.dumps({
        "bench": "harness_overhead", "model": args.model, "protocol": args.protocol,
        "windows": result.windows_scored, "run_wall_s": round(run_wall, 3),
        "model_s": round(model, 3), "load_s": round(part["load"], 3), "score_s": round(part["score"], 3),
        "bookkeeping_s": round(bookkeeping, 3), "bookkeeping_share": round(bookkeeping / run_wall, 4),
        "command_wall_s_incl_startup_and_warmup": round(total, 3),
    }))


if __name__ == "__main__":
    main()
