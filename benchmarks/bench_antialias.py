"""Fidelity and cost of the synthetic generator's adaptive anti-aliasing (generate_sequence(antialias=S)).

For each scene it generates the images three ways, with identical geometry and ground truth:

- `off`: antialias=1, one ray per pixel centre (slarm-synthetic-1.0 images),
- `adaptive`: the default, S x S rays only in the pixels that alias (synthetic_antialias.edge_pixels),
- `full`: antialias_pixels="all", S x S rays in every pixel: the full supersampled, box-filtered reference
  (byte-identical to a render at S times the resolution, with the texture footprint of an output pixel,
  averaged down as benchmarks/bench_oracle_ceiling.py does: tests/test_synthetic_antialias.py),

and prints the PSNR of `adaptive` and `off` against `full` over whole images (all frames and cameras of
the scene pooled into one mean squared error, 8-bit, peak 255), the worst single image, the fraction of
pixels supersampled and the CPU seconds of each. `--thresholds` sweeps the contrast threshold
(synthetic_antialias.CONTRAST_THRESHOLD) to show what it trades.

    .venv/bin/python benchmarks/bench_antialias.py [--scenes 4] [--frames 40] [--thresholds 48,96]
"""

from __future__ import annotations

import argparse
import json
import os
import time

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from slarm_bench.data import synthetic_antialias as aa  # noqa: E402
from slarm_bench.data.synthetic import ANTIALIAS, generate_sequence, split_seed  # noqa: E402


class _Counting(aa.Supersampler):
    """Supersampler that remembers itself, so the fraction of supersampled pixels can be read back."""

    made: list[aa.Supersampler] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _Counting.made.append(self)


def psnr(mse: float) -> float:
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def compare(images: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Pooled PSNR over all images [T,V,H,W,3] and the worst image's PSNR."""
    err = (images.astype(np.float64) - reference.astype(np.float64)) ** 2
    per_image = err.mean(axis=(2, 3, 4))
    return {"psnr": psnr(float(err.mean())), "worst_image_psnr": psnr(float(per_image.max()))}


def generate(seed: int, height: int, width: int, frames: int, **kwargs) -> tuple[np.ndarray, float, int]:
    _Counting.made.clear()
    start = time.process_time()
    images = generate_sequence(seed, height, width, frames, **kwargs).images
    cpu = time.process_time() - start
    return images, cpu, sum(s.supersampled for s in _Counting.made)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="mini")
    ap.add_argument("--scenes", type=int, default=4, help="scenes 0..N-1 of the split")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--height", type=int, default=160)
    ap.add_argument("--width", type=int, default=240)
    ap.add_argument("--antialias", type=int, default=ANTIALIAS)
    ap.add_argument("--thresholds", default=str(aa.CONTRAST_THRESHOLD),
                    help="comma-separated contrast thresholds to sweep (default: the generator's)")
    args = ap.parse_args()
    aa.Supersampler = _Counting  # generate_sequence looks the class up at call time
    generate_sequence(0, 32, 48, 2)  # warm-up: numba compilation or cache load
    thresholds = [int(x) for x in args.thresholds.split(",")]
    default = aa.CONTRAST_THRESHOLD
    s, size = args.antialias, (args.height, args.width, args.frames)
    totals: dict[str, list[float]] = {}
    for i in range(args.scenes):
        seed = split_seed(args.split, i)
        off, cpu_off, _ = generate(seed, *size, antialias=1)
        full, cpu_full, _ = generate(seed, *size, antialias=s, antialias_pixels="all")
        pixels = off.size // 3
        row = {"scene": f"{args.split}-{i:05d}", "off_vs_full": compare(off, full), "cpu_s_off": round(cpu_off, 3),
               "cpu_s_full": round(cpu_full, 3)}
        for thr in thresholds:
            aa.CONTRAST_THRESHOLD = thr
            ada, cpu_ada, done = generate(seed, *size, antialias=s)
            row[f"adaptive_t{thr}"] = {**compare(ada, full), "supersampled": round(done / pixels, 4),
                                       "cpu_s": round(cpu_ada, 3)}
            err = float(((ada.astype(np.float64) - full) ** 2).mean())
            totals.setdefault(f"t{thr}_mse", []).append(err)
            totals.setdefault(f"t{thr}_supersampled", []).append(done / pixels)
            totals.setdefault(f"t{thr}_cpu", []).append(cpu_ada)
        aa.CONTRAST_THRESHOLD = default
        totals.setdefault("off_mse", []).append(float(((off.astype(np.float64) - full) ** 2).mean()))
        totals.setdefault("off_cpu", []).append(cpu_off)
        print(json.dumps(row, default=lambda x: round(x, 2)), flush=True)
    frames = args.scenes * args.frames
    summary = {"scenes": args.scenes, "size": f"{args.height}x{args.width}x{args.frames}", "S": s,
               "off": {"psnr_vs_full": round(psnr(float(np.mean(totals["off_mse"]))), 2),
                       "frames_per_cpu_s": round(frames / sum(totals["off_cpu"]), 1)}}
    for thr in thresholds:
        summary[f"adaptive_t{thr}"] = {
            "psnr_vs_full": round(psnr(float(np.mean(totals[f"t{thr}_mse"]))), 2),
            "supersampled": round(float(np.mean(totals[f"t{thr}_supersampled"])), 4),
            "frames_per_cpu_s": round(frames / sum(totals[f"t{thr}_cpu"]), 1)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
