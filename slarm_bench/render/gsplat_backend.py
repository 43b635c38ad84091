"""gsplat (CUDA) backend: one `gsplat.rasterization` call per batch, written against gsplat 1.5.x.

`import gsplat` happens inside the functions so that this module imports on machines without CUDA.
"""

from __future__ import annotations

from torch import Tensor


def available() -> bool:
    """True when gsplat imports (it needs a CUDA build to rasterize)."""
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str | None:
    try:
        import gsplat
    except ImportError:
        return None
    return str(getattr(gsplat, "__version__", "unknown"))


def rasterize(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, values: Tensor,
              viewmats: Tensor, Ks: Tensor, height: int, width: int, *, near: float, far: float,
              eps2d: float = 0.3, tile_size: int = 16, packed: bool = False,
              channel_chunk: int = 32) -> tuple[Tensor, Tensor, Tensor]:
    """Same contract as torch_backend.rasterize.

    means [B,N,3], quats [B,N,4], scales [B,N,3], opacities [B,N], values [B,N,D], viewmats [B,V,4,4]
    world-to-camera, Ks [B,V,3,3] -> values [B,V,H,W,D], expected depth [B,V,H,W] ("RGB+ED": the
    accumulated z divided by max(alpha, 1e-10)), alpha [B,V,H,W].

    All D channels and the depth go through one call; gsplat splits channels wider than
    `channel_chunk` into several rasterization passes over the same sorted tile lists.
    `packed=False` is the faster layout when most Gaussians are visible (pixel-aligned predictions).
    """
    from gsplat import rasterization

    colors, alphas, _ = rasterization(
        means=means.contiguous(), quats=quats.contiguous(), scales=scales.contiguous(),
        opacities=opacities.contiguous(), colors=values.contiguous(),
        viewmats=viewmats.contiguous(), Ks=Ks.contiguous(), width=width, height=height,
        near_plane=near, far_plane=far, radius_clip=0.0, eps2d=eps2d, sh_degree=None, packed=packed,
        tile_size=tile_size, backgrounds=None, render_mode="RGB+ED", rasterize_mode="classic",
        channel_chunk=channel_chunk, camera_model="pinhole",
    )
    return colors[..., :-1], colors[..., -1], alphas[..., 0]
