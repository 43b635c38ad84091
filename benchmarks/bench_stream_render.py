"""What the render of one streaming timestep costs, channel group by channel group (GPU, gsplat).

SLARM's streaming step renders its current timestep into the 3 cameras: RGB + depth, the flow (3 channels)
and the 64-channel language features. This times `render()` on random Gaussians of that count (one per
pixel of 3 x 160x240 images: 115,200) with CUDA events, median of --repeats after warm-up, for
(a) RGB + depth, (b) + flow, (c) + features, each with check=True and check=False, and prints one JSON line
per case, to show where the streaming render's time goes.

    python3 benchmarks/bench_stream_render.py [--features 64] [--repeats 50]
"""

from __future__ import annotations

import argparse
import functools
import json

import torch
from bench_render import time_cuda  # benchmarks/ is on sys.path when run as a script

from slarm_bench.render import render
from slarm_bench.render.scenes import random_scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gaussians", type=int, default=3 * 160 * 240)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_stream_render.py needs a CUDA GPU (gsplat); run it on the GPU machine")
    g, c2w, k = random_scene(args.gaussians, features=args.features, motion_order=1, device="cuda")
    cases = {"rgb_depth": dict(features=False, flow=False), "rgb_depth_flow": dict(features=False, flow=True),
             "rgb_depth_flow_features": dict(features=True, flow=True)}
    for name, kw in cases.items():
        for check in (True, False):
            call = functools.partial(render, g, c2w, k, (160, 240), time=0.1, backend="gsplat", check=check,
                                     flow_dt=0.1, **kw)
            ms = time_cuda(call, repeats=args.repeats)
            print(json.dumps({"case": name, "check": check, "render_ms_median": round(ms, 3),
                              "gaussians": args.gaussians, "features": args.features if kw["features"] else 0,
                              "device": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    main()
