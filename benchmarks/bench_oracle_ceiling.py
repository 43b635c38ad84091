"""How well can any reconstruction from the context frames reproduce a synthetic target's static regions?

The oracle's static-region PSNR (issue: "above 30 dB") is bounded by resampling: with one sample per pixel,
edges and fine texture alias, and a target pixel whose ray hits the surface between two context samples
cannot be predicted exactly from them. This script measures that bound with an ideal re-projection that no
model can beat in this setting: every static target pixel is traced back with its exact ground-truth depth
into the same camera at the nearest context time and read there with bilinear interpolation (only pixels
visible in that context frame count). It generates the first window of each synthetic-mini scene in memory
(the prepared store is not read) and does so for the same geometry rendered as

- `1spp`: one ray per pixel centre (generate_sequence(antialias=1): slarm-synthetic-1.0 images),
- `adaptive`: the generator's default images (antialias=S: S x S rays in the pixels that alias),
- `full`: S x S rays in every pixel (antialias_pixels="all"), equal to a render at S x S the resolution
  with the texture footprint of an output pixel, box-filtered down,
- `hires` (with --hires): a render at S x S the resolution with its own, S times finer texture footprint,
  box-filtered down (this script's reference before the generator anti-aliased),

and prints the oracle model's own static-region PSNR on each image set beside it (--no-oracle skips it).
Mean over the targets of the synthetic-mini windows (positions 1, 2, 3, 7, 12, 18; all 3 cameras).

    .venv/bin/python benchmarks/bench_oracle_ceiling.py [--scenes 4] [--supersample 3] [--hires]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from slarm_bench.clip import Clip
from slarm_bench.data.synthetic import SyntheticAdapter, generate_sequence, split_seed
from slarm_bench.geometry import camera_rays
from slarm_bench.harness import context_clip
from slarm_bench.protocols import get_protocol

POSITIONS = (1, 2, 3, 7, 12, 18)


def static_mask(window, pos: int, cam: int) -> np.ndarray:
    return ~window.sky[pos, cam].astype(bool) & ~window.dynamic[pos, cam].astype(bool)


def warp_psnr(window, images: np.ndarray, context: list[int]) -> float:
    """Static-region PSNR of the ideal bilinear re-projection from the nearest context frame (same camera)."""
    h, w = images.shape[2:4]
    se, n = 0.0, 0
    for pos in POSITIONS:
        src = min(context, key=lambda c: abs(window.time[c] - window.time[pos]))
        origins, dirs = camera_rays(window.intrinsics[pos], window.cam_to_world[pos], h, w)
        for cam in range(images.shape[1]):
            world = origins[cam] + window.depth_dense[pos, cam][..., None] * dirs[cam]
            c2w = window.cam_to_world[src, cam]
            local = (world - c2w[:3, 3]) @ c2w[:3, :3]
            uvw = local @ window.intrinsics[src, cam].T
            uv = uvw[..., :2] / np.maximum(uvw[..., 2:3], 1e-6)
            grid = torch.from_numpy(np.stack([uv[..., 0] / w * 2 - 1, uv[..., 1] / h * 2 - 1], -1)).float()[None]
            img = torch.from_numpy(images[src, cam].astype(np.float32) / 255).permute(2, 0, 1)[None]
            out = F.grid_sample(img, grid, mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
            seen = F.grid_sample(torch.from_numpy(window.depth_dense[src, cam])[None, None].float(), grid,
                                 mode="nearest", align_corners=False)[0, 0].numpy()
            visible = np.abs(seen - local[..., 2]) < 0.02 * local[..., 2]
            keep = static_mask(window, pos, cam) & visible
            err = ((np.clip(out, 0, 1) - images[pos, cam].astype(np.float32) / 255) ** 2).mean(-1)[keep]
            se, n = se + float(err.sum()), n + err.size
    return -10 * np.log10(se / n)


def oracle_psnr(window, protocol) -> float:
    from slarm_bench.models.oracle import make_oracle

    model = make_oracle(backend="torch")
    scene = model.reconstruct(context_clip(window, protocol, model))
    se, n = 0.0, 0
    for pos in POSITIONS:
        pred = model.render(scene, window.cam_to_world[pos], window.intrinsics[pos], float(window.time[pos]),
                            tuple(window.images.shape[2:4]))
        for cam in range(window.images.shape[1]):
            gt = window.images[pos, cam].astype(np.float32) / 255
            err = ((pred.rgb[cam].numpy() - gt) ** 2).mean(-1)[static_mask(window, pos, cam)]
            se, n = se + float(err.sum()), n + err.size
    return -10 * np.log10(se / n)


def hires_images(seed: int, height: int, width: int, frames: int, s: int) -> np.ndarray:
    """One ray per pixel at s x s the resolution (so an s times finer texture footprint), box-filtered down."""
    fine = generate_sequence(seed, height * s, width * s, frames, antialias=1).images
    t, v = fine.shape[:2]
    return np.round(fine.astype(np.float32).reshape(t, v, height, s, width, s, 3).mean((3, 5))).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--supersample", type=int, default=3)
    ap.add_argument("--hires", action="store_true", help="also the S x S resolution render (slow)")
    ap.add_argument("--no-oracle", action="store_true", help="only the ideal re-projection bound")
    args = ap.parse_args()
    protocol = get_protocol("synthetic-mini")
    s = args.supersample
    adapter = SyntheticAdapter(*protocol.image_size)  # the prepared scenes' size and length
    frames = list(range(protocol.window_length))
    rows = []
    for i in range(args.scenes):
        scene = f"mini-{i:05d}"
        seed = split_seed("mini", i)
        size = (adapter.height, adapter.width, adapter.num_frames)
        # Same seed and length: the same scene, ground truth and (antialias=1) the same bytes as `prepare`.
        base = generate_sequence(seed, *size, antialias=1)
        window = Clip.from_sequence_window(base, frames)
        t = len(frames)
        images = {"1spp": window.images,
                  "adaptive": generate_sequence(seed, *size, antialias=s).images[:t],
                  "full": generate_sequence(seed, *size, antialias=s, antialias_pixels="all").images[:t]}
        if args.hires:
            images["hires"] = hires_images(seed, *size, s)[:t]
        context = list(protocol.context)
        row = {"scene": scene}
        for name, imgs in images.items():
            row[f"warp_{name}"] = warp_psnr(window, imgs, context)
        if not args.no_oracle:
            for name, imgs in images.items():
                row[f"oracle_{name}"] = oracle_psnr(window.replace(images=imgs), protocol)
        print(json.dumps({k: round(x, 2) if isinstance(x, float) else x for k, x in row.items()}), flush=True)
        rows.append(row)
    means = {k: round(float(np.mean([r[k] for r in rows])), 2) for k in rows[0] if k != "scene"}
    print(json.dumps({"mean_static_psnr_db": means, "positions": POSITIONS, "scenes": len(rows), "S": s}))


if __name__ == "__main__":
    main()
