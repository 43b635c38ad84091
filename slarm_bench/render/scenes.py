"""Random but plausible Gaussian scenes for parity tests and benchmarks.

Gaussians are pixel-aligned like a feed-forward model's output: each sits on the ray of a random pixel of
one of the cameras, at a depth between 2 and 80 m, with a footprint of about 0.5 to 4 pixels (a few cm
near the camera, up to a metre far away), so images are neither empty nor one blob.
"""

from __future__ import annotations

import math

import torch

from slarm_bench.geometry import look_at_opencv
from slarm_bench.render.gaussians import Gaussians


def driving_cameras(batch: int, cameras: int, size: tuple[int, int], *, hfov_deg: float = 70.0,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """cam_to_world [B,V,4,4] and intrinsics [B,V,3,3]: V cameras at the origin fanned around +x (FLU
    world), 50 degrees apart, like the FRONT_LEFT / FRONT / FRONT_RIGHT rig."""
    h, w = size
    yaws = [math.radians(50.0 * (i - (cameras - 1) / 2)) for i in range(cameras)]
    poses = [look_at_opencv([0.0, 0.0, 1.5], [math.cos(y), math.sin(y), 1.5]) for y in yaws]
    c2w = torch.tensor([p.tolist() for p in poses], dtype=torch.float32)
    f = 0.5 * w / math.tan(math.radians(hfov_deg) / 2)
    k = torch.tensor([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])
    return (c2w.expand(batch, cameras, 4, 4).contiguous().to(device),
            k.expand(batch, cameras, 3, 3).contiguous().to(device))


def random_scene(num: int, batch: int = 1, cameras: int = 3, size: tuple[int, int] = (160, 240), *,
                 features: int = 0, motion_order: int = 0, seed: int = 0,
                 device: torch.device | str = "cpu") -> tuple[Gaussians, torch.Tensor, torch.Tensor]:
    """-> (Gaussians with `num` per scene, cam_to_world [B,V,4,4], intrinsics [B,V,3,3])."""
    gen = torch.Generator().manual_seed(seed)
    c2w, k = driving_cameras(batch, cameras, size)
    h, w = size

    def u(*shape: int, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        return torch.rand(*shape, generator=gen) * (hi - lo) + lo

    cam = torch.randint(0, cameras, (batch, num), generator=gen)
    pix_x, pix_y = u(batch, num, hi=w), u(batch, num, hi=h)
    depth = torch.exp(u(batch, num, lo=math.log(2.0), hi=math.log(80.0)))
    kk = k[torch.arange(batch)[:, None], cam]
    dirs = torch.stack([(pix_x - kk[..., 0, 2]) / kk[..., 0, 0], (pix_y - kk[..., 1, 2]) / kk[..., 1, 1],
                        torch.ones_like(pix_x)], -1)
    pose = c2w[torch.arange(batch)[:, None], cam]
    means = torch.einsum("bnij,bnj->bni", pose[..., :3, :3], dirs * depth[..., None]) + pose[..., :3, 3]
    pixel_angle = 1.0 / k[0, 0, 0, 0].item()
    scales = (depth[..., None] * pixel_angle * u(batch, num, 3, lo=0.5, hi=4.0)).clamp(0.02, 1.0)
    g = Gaussians(
        means=means, quats=torch.randn(batch, num, 4, generator=gen), scales=scales,
        opacities=u(batch, num, lo=0.05, hi=0.95), colors=u(batch, num, 3),
        features=u(batch, num, features) if features else None,
        motion=torch.randn(batch, num, motion_order, 3, generator=gen) * 2.0 if motion_order else None,
        origin_time=torch.zeros(batch) if motion_order else None,
    )
    return g.to(device), c2w.to(device), k.to(device)
