"""Semantic quality of SLARM checkpoints on a held-out split, per class: to choose a training recipe
without looking at the test split.

    python3 benchmarks/bench_semantic_val.py CKPT [CKPT ...] [--split val] [--scenes 20] [--device cuda]

CKPT is a safetensors export (with its .json) or a preset name for its shipped weights (e.g. slarm-t).
Each is run like the `synthetic` protocol (same windows, context, targets and prediction rule) on the
first --scenes scenes of --split, which must be prepared (`slarm-bench prepare synthetic --split val
--scenes N`). Prints, per checkpoint: the protocol's mIoU and pixel accuracy (per-image means, as the
leaderboard), and per class the pooled IoU and how many pixels are labelled / predicted with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from slarm_bench import config
from slarm_bench.clip import SLARM_CLASSES
from slarm_bench.harness import context_clip
from slarm_bench.metrics.semantic import IGNORE_INDEX, semantic_scores
from slarm_bench.models.registry import load_model
from slarm_bench.protocols import get_protocol
from slarm_bench.store import Store


def evaluate(ckpt: str, split: str, scenes: int, device: str, root: str | None) -> dict:
    proto = get_protocol("synthetic")
    store = Store(config.data_root(root))
    names = sorted(store.scenes(proto.dataset, split))[:scenes]
    if not names:
        raise SystemExit(f"no prepared synthetic/{split} scenes under {store.root}: run `slarm-bench prepare "
                         f"synthetic --split {split} --scenes {scenes}`")
    proto = dataclasses.replace(proto, split=split, scenes=tuple(names))
    options = {"device": device, "backend": "auto"}
    if Path(ckpt).suffix in (".safetensors", ".json") or Path(ckpt + ".safetensors").is_file():
        model = load_model("slarm-t", checkpoint=ckpt, **options)
    else:
        model = load_model(ckpt, **options)
    c = len(SLARM_CLASSES)
    confusion = torch.zeros(c, c, dtype=torch.long)
    mious, accs = [], []
    t0 = time.perf_counter()
    for scene in names:
        for start in proto.window_starts(store.num_frames(proto.dataset, split, scene)):
            window = store.read_window(proto.dataset, split, scene, list(range(start, start + proto.window_length)),
                                       cameras=list(proto.cameras))
            rec = model.reconstruct(context_clip(window, proto, model))
            for pos in proto.targets:
                pred = model.render(rec, window.cam_to_world[pos], window.intrinsics[pos],
                                    float(window.time[pos]), proto.image_size).semantic.cpu().long()
                gt = torch.as_tensor(np.asarray(window.semantic[pos])).long()
                miou, acc, n = semantic_scores(pred, gt, c)
                mious += miou[n > 0].tolist()
                accs += acc[n > 0].tolist()
                keep = gt != IGNORE_INDEX
                confusion += torch.bincount(gt[keep] * c + pred[keep], minlength=c * c).reshape(c, c)
    inter = confusion.diag().double()
    union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
    per_class = {name: {"iou": float(inter[i] / max(int(union[i]), 1)), "gt_pixels": int(confusion[i].sum()),
                        "pred_pixels": int(confusion[:, i].sum())} for i, name in enumerate(SLARM_CLASSES)}
    return {"checkpoint": ckpt, "sha256": model.checkpoint_sha256(), "split": split, "scenes": len(names),
            "images": len(mious), "miou": float(np.mean(mious)), "accuracy": float(np.mean(accs)),
            "per_class": per_class, "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--split", default="val", choices=["train", "val", "mini"])
    p.add_argument("--scenes", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--root", default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args()
    results = []
    for ckpt in a.checkpoints:
        r = evaluate(ckpt, a.split, a.scenes, a.device, a.root)
        results.append(r)
        print(f"{ckpt} ({r['sha256'][:12]}): mIoU {r['miou']:.4f} accuracy {r['accuracy']:.4f} over "
              f"{r['images']} images of {r['scenes']} {a.split} scenes ({r['seconds']:.0f} s)")
        for name, v in r["per_class"].items():
            print(f"  {name:<11} IoU {v['iou']:.3f}  labelled {v['gt_pixels']:>9}  predicted {v['pred_pixels']:>9}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
