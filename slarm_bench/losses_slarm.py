"""SLARM training losses (REFERENCE.md section 5) and the differentiable forward that feeds them.

total = 1.0 MSE(rgb) + 0.05 LPIPS (from `lpips_start`, when an LPIPS function is given)
      + 1.0 L1(depth / max gt depth) on lidar pixels (STORM's normalisation; SLARM's code is STORM's)
      + 0.1 L1(alpha, 1 - sky) + 0.005 mean(m^2) over every motion coefficient
      + 1.0 MSE(features, teacher) on labelled pixels.

`feature_balance` (default 0, the reference loss) weights the feature term (and the label term, when on)
per pixel by n_c^-p, n_c the number of labelled pixels of the pixel's class in the batch, normalised to
mean 1: p = 1 gives every class present the same total weight, p = 0.5 is in between. A training choice for
rare classes, not SLARM's.
`flow` (default 0: SLARM has no flow supervision) adds flow * L1(rendered flow - labelled flow) on pixels
with flow labels: a probe of what the motion head can represent when motion is supervised, not SLARM's.
`context_flow` (default 0: none) adds context_flow * L1(velocity of each context pixel's Gaussian - that
pixel's labelled flow): motion supervised where each Gaussian is, not where the render puts it; another probe.
`label` (default 0: distillation only) adds label * cross-entropy of the query rule's class logits
(decoded feature . class text embedding / the query temperature) against the ground-truth class: the
fine-tune on labelled frames that the paper mentions, not the zero-shot distillation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from slarm_bench.clip import UNLABELLED
from slarm_bench.errors import SlarmBenchError
from slarm_bench.geometry import camera_rays_torch
from slarm_bench.losses import DEPTH_WEIGHT, SKY_WEIGHT, VELOCITY_WEIGHT
from slarm_bench.metrics.semantic import QUERY_TEMPERATURE
from slarm_bench.models.layers import pixel_centre_grid
from slarm_bench.models.slarm_net import SlarmFrames, SlarmNet
from slarm_bench.render import Gaussians, render


class SlarmLossError(SlarmBenchError, ValueError):
    """Outputs or a batch that the SLARM losses cannot use."""


@dataclass
class SlarmLossConfig:
    rgb: float = 1.0
    lpips: float = 0.05
    lpips_start: int = 5000
    depth: float = DEPTH_WEIGHT
    depth_normalize: bool = True   # L1 of depth / max gt depth (STORM); False = L1 in metres
    sky: float = SKY_WEIGHT
    motion: float = VELOCITY_WEIGHT
    feature: float = 1.0
    feature_balance: float = 0.0
    flow: float = 0.0              # L1 of rendered vs labelled scene flow (m/s); 0 = the reference (none)
    context_flow: float = 0.0      # L1 of context Gaussians' velocity vs their pixels' flow; 0 = none
    label: float = 0.0             # cross-entropy of the query's class logits; 0 = the reference (none)


def slarm_losses(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg: SlarmLossConfig,
                 step: int = 0, lpips_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                 ) -> dict[str, torch.Tensor]:
    """Weighted loss terms and their sum ("total").

    outputs: rgb [B,V,H,W,3] in [0,1], depth [B,V,H,W] (m), alpha [B,V,H,W], features [B,V,H,W,512]
    (decoded, L2-normalised), motion [B,N,K,3] (every Gaussian's coefficients).
    batch: rgb [B,V,H,W,3] in [0,1], depth [B,V,H,W] (0 = no return), optional sky [B,V,H,W] bool,
    optional teacher [B,V,H,W,512] with teacher_valid [B,V,H,W] bool, or instead teacher_labels [B,V,H,W]
    int64 (255 = unlabelled) with teacher_table [C,512] (target of a pixel = the row of its label);
    optional flow [B,V,H,W,3] (m/s) with flow_valid [B,V,H,W] bool, used when cfg.flow > 0 and outputs
    hold the rendered flow; optional context_flow [B,T,V,H,W,3] with context_flow_valid [B,T,V,H,W], used
    when cfg.context_flow > 0 and outputs hold context_velocity [B,T,V,H,W,3] (each context pixel's
    Gaussian's first motion coefficient).
    lpips_fn(pred, gt) takes [N,3,H,W] in [-1,1] and returns [N] or a scalar (the `lpips` package's call).
    Terms whose inputs are absent are left out of the dict (and the total).
    """
    for key in ("rgb", "depth", "alpha", "motion"):
        if key not in outputs:
            raise SlarmLossError(f"slarm_losses: outputs lack {key!r}; produce them with "
                                 f"slarm_training_outputs")
    if "rgb" not in batch:
        raise SlarmLossError("slarm_losses: the batch lacks the target 'rgb' [B,V,H,W,3]")
    terms: dict[str, torch.Tensor] = {}
    terms["rgb"] = cfg.rgb * F.mse_loss(outputs["rgb"], batch["rgb"])
    if lpips_fn is not None and cfg.lpips and step >= cfg.lpips_start:
        to = lambda x: x.flatten(0, 1).permute(0, 3, 1, 2) * 2 - 1  # noqa: E731
        terms["lpips"] = cfg.lpips * lpips_fn(to(outputs["rgb"]), to(batch["rgb"])).mean()
    if batch.get("depth") is not None:
        gt = batch["depth"]
        valid = gt > 0
        if valid.any():
            scale = gt.amax().clamp_min(1e-6) if cfg.depth_normalize else gt.new_tensor(1.0)
            terms["depth"] = cfg.depth * ((outputs["depth"] - gt).abs() / scale)[valid].mean()
    if batch.get("sky") is not None:
        terms["sky"] = cfg.sky * (outputs["alpha"] - (~batch["sky"]).to(outputs["alpha"].dtype)).abs().mean()
    terms["motion"] = cfg.motion * outputs["motion"].pow(2).mean()
    if cfg.flow and outputs.get("flow") is not None and batch.get("flow") is not None:
        valid = batch["flow_valid"]
        if valid.any():
            terms["flow"] = cfg.flow * (outputs["flow"] - batch["flow"]).abs().sum(-1)[valid].mean()
    if cfg.context_flow and outputs.get("context_velocity") is not None and batch.get("context_flow") is not None:
        valid = batch["context_flow_valid"]
        if valid.any():
            err = (outputs["context_velocity"].float() - batch["context_flow"]).abs().sum(-1)
            terms["context_flow"] = cfg.context_flow * err[valid].mean()
    labels = batch.get("teacher_labels")
    if labels is not None and outputs.get("features") is not None:
        # Teacher by class: row `label` of teacher_table; the same loss as a dense teacher tensor without
        # materialising [B,V,H,W,512] targets.
        valid = labels != UNLABELLED
        if valid.any():
            picked = labels[valid]
            err = (outputs["features"][valid] - batch["teacher_table"][picked]).pow(2).mean(-1)
            weight = (class_balance_weights(picked, len(batch["teacher_table"]), cfg.feature_balance)
                      if cfg.feature_balance else None)
            terms["feature"] = cfg.feature * (err if weight is None else err * weight).mean()
            if cfg.label:
                # The logits the open-vocabulary query takes its softmax of (metrics.semantic).
                logits = outputs["features"][valid].float() @ batch["teacher_table"].float().T
                ce = F.cross_entropy(logits / QUERY_TEMPERATURE, picked, reduction="none")
                terms["label"] = cfg.label * (ce if weight is None else ce * weight).mean()
    elif batch.get("teacher") is not None and outputs.get("features") is not None:
        valid = batch.get("teacher_valid")
        diff = (outputs["features"] - batch["teacher"]).pow(2).mean(-1)
        if valid is None:
            terms["feature"] = cfg.feature * diff.mean()
        elif valid.any():
            terms["feature"] = cfg.feature * diff[valid].mean()
    terms["total"] = torch.stack([v for v in terms.values()]).sum()
    return terms


def class_balance_weights(labels: torch.Tensor, num_classes: int, power: float) -> torch.Tensor:
    """Per-pixel weights [N] proportional to count(label)^-power over `labels` [N], with mean 1."""
    if power < 0:
        raise SlarmLossError(f"feature_balance must be >= 0, got {power}")
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float32)
    weight = counts.clamp_min(1.0).pow(-power)[labels]
    return weight / weight.mean()


def slarm_training_outputs(net: SlarmNet, images: torch.Tensor, cam_to_world: torch.Tensor,
                           intrinsics: torch.Tensor, time: torch.Tensor, target_cam_to_world: torch.Tensor,
                           target_intrinsics: torch.Tensor, target_time: torch.Tensor, fps: float,
                           backend: str = "auto", window: int | None = None) -> dict[str, torch.Tensor]:
    """Differentiable forward + render of B samples at one target timestep each, for `slarm_losses`.

    images [B,T,V,3,H,W] in [-1,1]; cam_to_world [B,T,V,4,4]; intrinsics [B,T,V,3,3]; time [B,T] seconds
    since the first context frame; target_cam_to_world [B,V,4,4]; target_intrinsics [B,V,3,3];
    target_time [B] seconds (same clock). Returns rgb, depth, alpha, features (decoded), flow [B,V,H,W,...]
    and motion [B,N,K,3].
    """
    out = net(images, cam_to_world, intrinsics, (time - time[:, :1]) / net.cfg.time_span, window=window)
    return slarm_render_targets(net, out, time, target_cam_to_world, target_intrinsics, target_time, fps,
                                backend)


def slarm_render_targets(net: SlarmNet, out: SlarmFrames, time: torch.Tensor,
                         target_cam_to_world: torch.Tensor, target_intrinsics: torch.Tensor,
                         target_time: torch.Tensor, fps: float | None = None, backend: str = "auto",
                         flow: bool = True, features: bool = True) -> dict[str, torch.Tensor]:
    """Render one network output (any dtype; rendered in fp32) at one target timestep per sample.

    out: `net(...)` of B samples [B,T,V,H,W,...]; time [B,T] seconds; targets as in
    `slarm_training_outputs`. flow=False skips the flow render (then `fps` may be None); the losses do not
    use it. features=False skips rendering and decoding the language features ("features" is then None).
    Call several times on one `out` to supervise several target timesteps with one forward.
    """
    if flow and not fps:
        raise SlarmLossError("slarm_render_targets: rendering flow needs the frame rate fps > 0")
    b, t, v, h, w = out.opacities.shape
    n = t * v * h * w
    flat = lambda x: x.reshape(b, n, *x.shape[5:]).float()  # noqa: E731
    origin = time.float()[:, :, None].expand(b, t, v * h * w).reshape(b, n)
    g = Gaussians(means=flat(out.means), quats=flat(out.quats), scales=flat(out.scales),
                  opacities=flat(out.opacities), colors=flat(out.colors),
                  features=flat(out.features) if features else None,
                  motion=flat(out.motion), origin_time=origin)
    device = out.means.device
    _, dirs = camera_rays_torch(target_intrinsics.float(), target_cam_to_world.float(),
                                pixel_centre_grid(h, w, device))
    sky_token = out.sky_tokens.float().mean(dim=(1, 2))[:, None]
    sky = torch.sigmoid(net.sky_head(dirs.reshape(b, v, h, w, 3), sky_token))
    r = render(g, target_cam_to_world.float(), target_intrinsics.float(), (h, w), time=target_time.float(),
               backend=backend, background=sky, color_transform=out.affine.float().mean(dim=1),
               features=features, flow=flow, flow_dt=1.0 / fps if flow else None, near=net.cfg.near,
               far=net.cfg.far, check=False)
    decoded = net.decode_features(r.features) if features else None
    return {"rgb": r.rgb, "depth": r.depth, "alpha": r.alpha, "features": decoded,
            "flow": r.flow, "motion": g.motion}
