"""Does the motion regulariser outweigh what correct motion gains? Its cost at the true motion against the
photometric gain of that motion, on the synthetic benchmark.

STORM's and SLARM's losses add `w * mean(v^2)` over every Gaussian's velocity (w = 0.005 in the reference).
A model whose Gaussians moved exactly as the scene does would pay `w * E[|v_true|^2]` for it, the mean taken
over every context pixel (static ones count as zero). What it gains is the drop in the RGB MSE term between
rendering with no motion and with the true motion: the ground-truth `oracle-static` and `oracle` rows, whose
per-image MSE is 10^(-PSNR/10) of their result files. When the cost exceeds the gain, a static model has
the lower training loss, and training pushes speeds toward zero whatever the data says.

    .venv/bin/python benchmarks/bench_motion_regulariser.py [--windows 12] [--results results]
        [--protocol synthetic] [--weights 0.005 1e-5]

E[|v|^2] is measured on the first --windows windows of the synthetic train split (generated here, frames
0..19, context {0,5,10,15}); the gain needs `oracle` and `oracle-static` scored on --protocol into
--results (`slarm-bench run --model oracle --protocol synthetic`, likewise oracle-static). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from slarm_bench.clip import Clip
from slarm_bench.data.synthetic import generate_sequence, split_seed
from slarm_bench.train_data import CONTEXT, WINDOW


def mean_squared_speed(windows: int, height: int = 160, width: int = 240) -> dict[str, float]:
    """E[|v|^2] (m^2/s^2) and the dynamic fraction over every context pixel of the first train windows."""
    v2, dynamic, speed = [], [], []
    for i in range(windows):
        seq = generate_sequence(split_seed("train", i), height, width, WINDOW, scene=f"train-{i:05d}")
        clip = Clip.from_sequence_window(seq, list(range(WINDOW)))
        flow, moving = clip.flow[list(CONTEXT)], clip.dynamic[list(CONTEXT)]
        sq = (flow ** 2).sum(-1)
        v2.append(sq.mean())
        dynamic.append(moving.mean())
        speed.append(np.sqrt(sq[moving]).mean() if moving.any() else 0.0)
    return {"mean_squared_speed": float(np.mean(v2)), "dynamic_fraction": float(np.mean(dynamic)),
            "mean_dynamic_speed": float(np.mean(speed)), "windows": windows}


def mean_mse(results: Path, protocol: str, model: str) -> float:
    frames = sorted((results / protocol / model).glob("*/frames.jsonl"))
    if not frames:
        raise SystemExit(f"no {model} results under {results / protocol}; run `slarm-bench run --model {model} "
                         f"--protocol {protocol} --results {results}` first")
    psnr = [json.loads(line)["psnr"] for line in frames[0].read_text().splitlines() if line.strip()]
    return float(np.mean(10.0 ** (-np.asarray(psnr) / 10.0)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--results", default="results")
    ap.add_argument("--protocol", default="synthetic")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.005, 1e-5])
    args = ap.parse_args()
    stats = mean_squared_speed(args.windows)
    moving, still = (mean_mse(Path(args.results), args.protocol, m) for m in ("oracle", "oracle-static"))
    gain = still - moving
    out = {**stats, "mse_oracle": moving, "mse_oracle_static": still, "photometric_gain": gain,
           "protocol": args.protocol,
           "cost_at_true_motion": {str(w): w * stats["mean_squared_speed"] for w in args.weights},
           "cost_over_gain": {str(w): w * stats["mean_squared_speed"] / gain for w in args.weights}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
