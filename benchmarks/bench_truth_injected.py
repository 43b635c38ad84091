"""What would a trained model score with exact motion, or exact semantics, on its own geometry?

    python3 benchmarks/bench_truth_injected.py MODEL[=CHECKPOINT] ... [--truth velocity velocity,labels ...]
        [--protocol synthetic] [--device cuda] [--results results-sweep] [--max-windows N] [--skip-baseline]

For each model (a registered preset; PRESET=PATH loads a safetensors export instead) this scores, through
the harness and with the protocol's metrics, the model's own reconstruction of every window with the
ground truth put into its Gaussians (one pixel-aligned Gaussian per context pixel):
- `velocity`: the motion of each context Gaussian becomes its pixel's true scene flow (m/s, order 1,
  higher-order coefficients zero) about the context frame's time;
- `acceleration` (with `velocity`): adds, as the order-2 coefficient, the acceleration of the box of the
  pixel's agent at the context time (the box centre's, as `oracle-accel`; zero off boxes), whatever order
  the model itself predicts;
- `features` (SLARM models): each context Gaussian of a labelled pixel carries the feature code that the
  model's own decoder turns into that pixel's true class (one 64-d code per class, found by gradient descent
  through the decoder and the query rule; unlabelled pixels keep the model's features);
- `labels` (SLARM models): the semantic map is rendered from the true class of each context Gaussian's
  pixel as a one-hot vector, alpha-composited and read by argmax, or `sky` where the composited weight is
  below 0.5 (the sky is what shows behind the Gaussians); no decoder, so this is geometry's bound alone.
Geometry, colours, opacities, sky and colour transform stay the model's, and the wrapped model never sees
the truth: it reconstructs from the context as the harness gives it. The scores bound what learning motion,
or semantics, can reach with the model's geometry: the distance between a model's row and its bound is what
the missing motion (or semantics) costs; the distance from the bound to the target is what geometry costs.
The model's own row (its own motion and features) is scored too unless --skip-baseline.

Results go to <results>/truth-injected/<protocol>/<model>+truth-<what>/<sha>/ (a root of their own, so these
rows never mix with the leaderboard's); one JSON line per run with the headline metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slarm_bench import api
from slarm_bench.clip import SLARM_CLASSES, UNLABELLED
from slarm_bench.metrics.semantic import QUERY_TEMPERATURE, predict_semantic
from slarm_bench.models import registry
from slarm_bench.models.base import Model, Prediction, Scene
from slarm_bench.models.oracle import box_acceleration
from slarm_bench.render import render

HEADLINE = ("psnr", "psnr_static", "psnr_dynamic", "flow_epe3d", "flow_epe3d_accel", "miou", "accuracy")
PROBE_NAME = "truth-injected"
TRUTHS = ("velocity", "acceleration", "features", "labels")
SKY_BELOW = 0.5     # a pixel whose composited label weight is below this shows the sky behind the Gaussians


def class_codes(model: Any, steps: int = 400) -> Any:
    """[C, F] feature codes in (0,1) that the model's decoder and the query rule turn into each class C.

    Found by Adam on the logits of the sigmoid's argument; checked: every code must classify as its class.
    """
    net, text = model.net, model.class_embeddings().float()
    num, dim = text.shape[0], net.cfg.feature_dim
    raw = torch.zeros(num, dim, device=text.device, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=0.1)
    target = torch.arange(num, device=text.device)
    with torch.enable_grad():
        for _ in range(steps):
            logits = net.decode_features(torch.sigmoid(raw)).float() @ text.T / QUERY_TEMPERATURE
            loss = torch.nn.functional.cross_entropy(logits, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
    codes = torch.sigmoid(raw).detach()
    got = predict_semantic(net.decode_features(codes).float(), text, others_index=SLARM_CLASSES.index("others"))
    if not bool((got == target).all()):
        raise SystemExit(f"{model.name}: no feature code found for classes "
                         f"{[SLARM_CLASSES[i] for i in range(num) if got[i] != i]}; the decoder cannot express them")
    return codes


class TruthInjected(Model):
    """A trained model whose context Gaussians carry ground truth (see the module docstring).

    The wrapped model reconstructs from the context with the truth removed, as the harness gives it; only the
    motion [1, T*V*H*W, K, 3] and/or features [1, T*V*H*W, F] of its Gaussians are overwritten afterwards
    (`labels`: a one-hot [1, T*V*H*W, 9] beside them, rendered into the semantic map instead of the model's).
    """

    def __init__(self, inner: Model, truth: tuple[str, ...]) -> None:
        self.inner, self.truth = inner, truth
        self.produces = inner.produces
        if "acceleration" in truth and "velocity" not in truth:
            raise SystemExit("--truth acceleration needs velocity too: write velocity,acceleration")
        needs = {"velocity": ("flow",), "acceleration": ("instance", "boxes"), "features": ("semantic",),
                 "labels": ("semantic",)}
        self.context_fields = tuple(dict.fromkeys(f for t in truth for f in needs[t]))
        if {"features", "labels"} & set(truth) and "semantic" not in inner.produces:
            raise SystemExit(f"{inner.name} renders no semantics; --truth features or labels needs a SLARM model")
        self.codes = class_codes(inner) if "features" in truth else None

    def reconstruct(self, context: Any) -> Scene:
        scene = self.inner.reconstruct(context.replace(flow=None, semantic=None, instance=None, boxes=None))
        g = scene.gaussians
        changes: dict[str, Any] = {}
        if "velocity" in self.truth:
            changes.update(self._true_motion(g, context))
        if "features" in self.truth:
            changes["features"] = self._true_features(g, context)
        scene.gaussians = dataclasses.replace(g, **changes)
        if "labels" in self.truth:
            scene.payload["labels"] = self._one_hot_labels(scene.gaussians, context)
        return scene

    def _pixels(self, g: Any, values: np.ndarray, what: str) -> np.ndarray:
        """Context values [T,V,H,W,...] -> [N, ...] in the order of the model's N pixel-aligned Gaussians."""
        n = g.means.shape[1]
        if values.size % n:
            raise SystemExit(f"{self.inner.name}: {n} Gaussians but context {what} of shape {values.shape}; "
                             "the probe needs one pixel-aligned Gaussian per context pixel")
        return values.reshape(n, -1)

    def _labels(self, g: Any, context: Any) -> Any:
        """[N] int64 true class of each context Gaussian's pixel (UNLABELLED where none)."""
        labels = self._pixels(g, np.asarray(context.semantic), "semantic")[:, 0].astype(np.int64)
        return torch.from_numpy(labels).to(g.means.device)

    def _true_motion(self, g: Any, context: Any) -> dict[str, Any]:
        n = g.means.shape[1]
        flow = self._pixels(g, np.asarray(context.flow, np.float32), "flow")      # [T*V*H*W, 3], g's order
        order = max(g.motion.shape[2] if g.motion is not None else 1, 2 if "acceleration" in self.truth else 1)
        motion = torch.zeros(1, n, order, 3, dtype=g.means.dtype, device=g.means.device)
        motion[0, :, 0] = torch.from_numpy(flow).to(g.means.device, g.means.dtype)
        if "acceleration" in self.truth:
            motion[0, :, 1] = torch.from_numpy(self._box_accelerations(g, context)).to(g.means.device,
                                                                                      g.means.dtype)
        origin = g.origin_time
        if origin is None:              # a static model: each Gaussian moves about its own frame's time
            t = len(context.time)
            seconds = torch.as_tensor(np.asarray(context.time, np.float64), dtype=torch.float32)
            origin = seconds[:, None].expand(t, n // t).reshape(1, n).to(g.means.device)
        return {"motion": motion, "origin_time": origin}

    def _box_accelerations(self, g: Any, context: Any) -> np.ndarray:
        """[T*V*H*W, 3] acceleration (m/s^2, world) of each context pixel's box at its frame."""
        instance = np.asarray(context.instance)                           # [T,V,H,W]
        self._pixels(g, instance, "instance")
        t = instance.shape[0]
        return np.concatenate([box_acceleration(context, ti, instance[ti].reshape(-1)) for ti in range(t)])

    def _true_features(self, g: Any, context: Any) -> Any:
        if g.features is None or self.codes is None:  # storm models carry no features
            raise SystemExit(f"{self.inner.name} has no semantic features; --truth features needs a SLARM model")
        labels = self._labels(g, context)
        labelled = labels != UNLABELLED
        features = g.features.clone()
        features[0, labelled] = self.codes[labels[labelled]].to(features.dtype)
        return features

    def _one_hot_labels(self, g: Any, context: Any) -> Any:
        """[1, N, C] one-hot true class of each context Gaussian's pixel (all zero where unlabelled)."""
        labels = self._labels(g, context).clamp(max=len(SLARM_CLASSES))    # unlabelled -> a dropped column
        one_hot = torch.nn.functional.one_hot(labels, len(SLARM_CLASSES) + 1).float()
        return one_hot[None, :, :len(SLARM_CLASSES)]

    def render(self, scene: Scene, cam_to_world: np.ndarray, intrinsics: np.ndarray, time: float,
               size: tuple[int, int]) -> Prediction:
        pred = self.inner.render(scene, cam_to_world, intrinsics, time, size)
        if "labels" in scene.payload:
            pred.semantic = self._render_labels(scene, cam_to_world, intrinsics, time, size)
        return pred

    def _render_labels(self, scene: Scene, cam_to_world: np.ndarray, intrinsics: np.ndarray, time: float,
                       size: tuple[int, int]) -> Any:
        g = dataclasses.replace(scene.gaussians, features=scene.payload["labels"])
        dev = g.means.device
        c2w = torch.as_tensor(np.asarray(cam_to_world, np.float32), device=dev)[None]
        k = torch.as_tensor(np.asarray(intrinsics, np.float32), device=dev)[None]
        cfg = self.inner.cfg
        out = render(g, c2w, k, size, time=float(time), backend=self.inner.backend, features=True, flow=False,
                     near=cfg.near, far=cfg.far)
        weights = out.features[0]                                   # [V,H,W,C], alpha-weighted sums
        cls = weights.argmax(dim=-1)
        return torch.where(weights.sum(-1) < SKY_BELOW, torch.full_like(cls, SLARM_CLASSES.index("sky")), cls)

    def provenance(self) -> dict[str, Any]:
        return {**self.inner.provenance(), "probe": f"ground truth in the context Gaussians: {', '.join(self.truth)}"}

    def checkpoint_sha256(self) -> str | None:
        return self.inner.checkpoint_sha256()

    def synchronize(self) -> None:
        self.inner.synchronize()


def make_truth_injected(inner: str, truth: tuple[str, ...], inner_checkpoint: str | None = None,
                        **options: Any) -> TruthInjected:
    if inner_checkpoint:
        options["checkpoint"] = inner_checkpoint
    return TruthInjected(registry.load_model(inner, **options), tuple(truth))


def score(name: str, truth: tuple[str, ...], protocol: str, device: str, results: Path,
          max_windows: int | None) -> dict[str, Any]:
    preset, _, checkpoint = name.partition("=")
    if truth:
        # Registered for this process only, so the harness and the result layout are api.run's own.
        probe = f"{preset}+truth-{'-'.join(truth)}"
        registry.BUILTIN_MODELS[probe] = (f"{__name__}:make_truth_injected", "probe")
        summary = api.run(probe, protocol, device=device, results=results, max_windows=max_windows,
                          progress=False,
                          model_options={"inner": preset, "truth": truth, "inner_checkpoint": checkpoint or None})
    else:
        summary = api.run(preset, protocol, checkpoint=checkpoint or None, device=device, results=results,
                          max_windows=max_windows, progress=False)
    metrics = summary.summary["metrics"]
    return {"model": name, "truth": list(truth) or "none (the model's own)",
            **{k: round(metrics[k]["mean"], 4) for k in HEADLINE if k in metrics}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", metavar="MODEL[=CHECKPOINT]")
    ap.add_argument("--truth", nargs="+", default=["velocity"], metavar="WHAT[,WHAT...]",
                    help=f"one run each: what to replace by the ground truth, of {', '.join(TRUTHS)}; "
                         "join several with commas for one run with all of them")
    ap.add_argument("--protocol", default="synthetic-mini")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--results", type=Path, default=Path("results-sweep"))
    ap.add_argument("--max-windows", type=int, default=None)
    ap.add_argument("--skip-baseline", action="store_true", help="do not score the model's own row")
    args = ap.parse_args()
    root = args.results / PROBE_NAME
    runs = [tuple(item.split(",")) for item in args.truth]
    for run in runs:
        unknown = [t for t in run if t not in TRUTHS]
        if unknown:
            ap.error(f"unknown --truth {','.join(unknown)}: choose from {', '.join(TRUTHS)}")
    for name in args.models:
        for truth in ([] if args.skip_baseline else [()]) + runs:
            print(json.dumps(score(name, truth, args.protocol, args.device, root, args.max_windows)), flush=True)


if __name__ == "__main__":
    main()
