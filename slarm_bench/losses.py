"""STORM's training losses (REFERENCE.md section 4).

total = MSE(rgb) + lpips_weight * LPIPS-VGG(rgb)            (LPIPS from `lpips_start` on, when available)
      + L1(depth / max gt depth) on lidar pixels
      + 0.1 * L1(alpha, 1 - sky)
      + 0.005 * mean(v^2) over every Gaussian's velocity.
Colours are compared in [0,1] (PSNR is 10 log10(1 / MSE) of the clamped prediction); the depth
normaliser is the largest ground-truth depth of each sample's targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slarm_bench.train_options import DEPTH_WEIGHT, SKY_WEIGHT, VELOCITY_WEIGHT


@dataclass
class LossWeights:
    lpips: float = 0.05
    depth: float = DEPTH_WEIGHT
    sky: float = SKY_WEIGHT
    velocity: float = VELOCITY_WEIGHT


def storm_losses(rgb: torch.Tensor, gt_rgb: torch.Tensor, depth: torch.Tensor, gt_depth: torch.Tensor,
                 alpha: torch.Tensor, sky: torch.Tensor, has_sky: torch.Tensor, velocity: torch.Tensor,
                 weights: LossWeights, lpips_fn=None) -> dict[str, torch.Tensor]:
    """rgb, gt_rgb [B,S,V,H,W,3] in [0,1]; depth, gt_depth, alpha [B,S,V,H,W]; sky bool [B,S,V,H,W];
    has_sky bool [B]; velocity [B,...,3] (m/s). lpips_fn: a differentiable LPIPS taking [N,3,H,W] in [-1,1]
    (None = no perceptual term). Returns the terms, their weighted sum "loss" and "psnr" (no grad)."""
    out: dict[str, torch.Tensor] = {}
    out["rgb"] = torch.mean((rgb - gt_rgb) ** 2)
    total = out["rgb"]
    if lpips_fn is not None and weights.lpips > 0:
        to_net = lambda x: x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2) * 2.0 - 1.0  # noqa: E731
        out["lpips"] = lpips_fn(to_net(rgb), to_net(gt_rgb)).mean()
        total = total + weights.lpips * out["lpips"]
    valid = gt_depth > 0
    b = gt_depth.shape[0]
    scale = gt_depth.reshape(b, -1).amax(dim=1).clamp_min(1e-6).reshape(b, *([1] * (gt_depth.dim() - 1)))
    diff = ((depth - gt_depth) / scale).abs()
    out["depth"] = (diff * valid).sum() / valid.sum().clamp_min(1)
    total = total + weights.depth * out["depth"]
    sky_w = has_sky.reshape(b, *([1] * (alpha.dim() - 1))).to(alpha.dtype).expand_as(alpha)
    sky_err = (alpha - (1.0 - sky.to(alpha.dtype))).abs() * sky_w
    out["sky"] = sky_err.sum() / sky_w.sum().clamp_min(1)
    total = total + weights.sky * out["sky"]
    out["velocity"] = velocity.float().pow(2).mean() if velocity.numel() else total.new_zeros(())
    total = total + weights.velocity * out["velocity"]
    out["loss"] = total
    with torch.no_grad():
        mse = torch.mean((rgb.clamp(0, 1) - gt_rgb) ** 2)
        out["psnr"] = -10.0 * torch.log10(mse.clamp_min(1e-10))
    return out
