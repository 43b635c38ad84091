"""Has a trained model learned motion? Per-Gaussian velocities of its context pixels against the ground truth.

    python3 benchmarks/bench_motion_learned.py [MODEL[=CHECKPOINT] ...] [--protocol synthetic-mini] [--windows 2]

For each model (default: slarm-t, slarm-t-o1, storm-t with their shipped weights; PRESET=PATH loads a
safetensors export instead) and the first --windows
windows of the protocol: the velocity (first motion coefficient) of the Gaussian of every context pixel,
against the pixel's ground-truth scene flow (m/s, world frame), split by the dynamic mask. Prints the mean
and median speed on static and dynamic pixels, the mean cosine between predicted and true direction on
dynamic pixels, and the correlation of the speeds. A model that learned motion has dynamic speeds near the
truth and a cosine near 1; one that did not has speeds near its initialisation and a cosine near 0.
For STORM models it also prints the entropy of each pixel's softmax over the motion tokens (a fraction of
its maximum, log K) on static and dynamic pixels: 1 means every pixel mixes the same bases equally, so the
head cannot give moving and static pixels different velocities.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from slarm_bench import config
from slarm_bench.harness import context_clip
from slarm_bench.models.registry import load_model
from slarm_bench.protocols import get_protocol
from slarm_bench.store import Store


def token_entropy(weights: torch.Tensor) -> torch.Tensor:
    """weights [..., K] (softmax over K motion tokens) -> entropy / log K per pixel [...], in [0, 1]."""
    k = weights.shape[-1]
    return -(weights.clamp_min(1e-12).log() * weights).sum(-1) / float(np.log(k))


def velocities_vs_truth(model_name: str, protocol: str, windows: int, device: str = "cpu") -> dict[str, float]:
    proto = get_protocol(protocol)
    store = Store(config.data_root(None))
    preset, _, checkpoint = model_name.partition("=")
    options = {"checkpoint": checkpoint} if checkpoint else {}
    model = load_model(preset, device=device, backend="auto", **options)
    pred, true, dyn, entropy = [], [], [], []
    captured = {}
    net = getattr(model, "net", None)
    hook = None
    if net is not None and getattr(getattr(net, "cfg", None), "num_motion_tokens", 0):
        hook = net.register_forward_hook(lambda module, inputs, out: captured.__setitem__("out", out))
    done = 0
    for scene in proto.scenes:
        for start in proto.window_starts(store.num_frames(proto.dataset, proto.split, scene)):
            if done == windows:
                break
            window = store.read_window(proto.dataset, proto.split, scene,
                                       list(range(start, start + proto.window_length)), cameras=list(proto.cameras))
            motion = model.reconstruct(context_clip(window, proto, model)).gaussians.motion  # [1,N,K,3]
            pred.append(motion[0, :, 0].float().cpu())
            pos = list(proto.context)
            true.append(torch.as_tensor(np.asarray(window.flow)[pos], dtype=torch.float32).reshape(-1, 3))
            dyn.append(torch.as_tensor(np.asarray(window.dynamic)[pos]).reshape(-1).bool())
            if "out" in captured:
                entropy.append(token_entropy(captured.pop("out").motion_weights[0].float()).reshape(-1).cpu())
            done += 1
    if hook is not None:
        hook.remove()
    v, f, d = torch.cat(pred), torch.cat(true), torch.cat(dyn)
    speed, true_speed = v.norm(dim=-1), f.norm(dim=-1)
    moving = d & (true_speed > 0.5)
    heads = {}
    if entropy:
        e = torch.cat(entropy)
        heads = {"token_entropy_static": float(e[~d].mean()), "token_entropy_dynamic": float(e[d].mean())}
    return {**heads,
        "static_speed_mean": float(speed[~d].mean()), "dynamic_speed_mean": float(speed[d].mean()),
        "dynamic_speed_median": float(speed[d].median()), "true_dynamic_speed_mean": float(true_speed[d].mean()),
        "direction_cosine": float(torch.nn.functional.cosine_similarity(v[moving], f[moving], dim=-1).mean()),
        "speed_correlation": float(np.corrcoef(speed[d].numpy(), true_speed[d].numpy())[0, 1]),
        "windows": done, "dynamic_pixels": int(d.sum()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", default=["slarm-t", "slarm-t-o1", "storm-t"])
    p.add_argument("--protocol", default="synthetic-mini")
    p.add_argument("--windows", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    for name in a.models:
        r = velocities_vs_truth(name, a.protocol, a.windows, a.device)
        print(f"{name}: speed static {r['static_speed_mean']:.3f} m/s, dynamic {r['dynamic_speed_mean']:.3f} "
              f"(median {r['dynamic_speed_median']:.3f}; truth {r['true_dynamic_speed_mean']:.3f}); direction "
              f"cosine on moving pixels {r['direction_cosine']:.3f}; speed correlation "
              f"{r['speed_correlation']:.3f} ({r['windows']} windows, {r['dynamic_pixels']} dynamic pixels)")
        if "token_entropy_static" in r:
            print(f"{name}: motion-token softmax entropy / log K, static {r['token_entropy_static']:.3f}, "
                  f"dynamic {r['token_entropy_dynamic']:.3f}")


if __name__ == "__main__":
    main()
