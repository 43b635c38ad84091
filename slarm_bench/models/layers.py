"""Generic building blocks shared by the reconstruction models (STORM, SLARM).

Everything here is architecture-neutral: a pre-norm ViT block with fused qkv and
`F.scaled_dot_product_attention`, a two-layer MLP, a conv patch embedding, a DiT-style time embedder, a
Plucker-ray embedder with pixel-centre buffers, a channels-first LayerNorm and absolute position-embedding
resampling. Parameter names (`qkv`, `proj`, `fc1`, `fc2`, `norm1`, `mlp.0`, ...) follow the common ViT/DiT
layout so that published checkpoints load by name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from slarm_bench.geometry import camera_rays_torch, plucker_torch

# timm's ViT uses LayerNorm(eps=1e-6); checkpoints trained with it expect the same eps.
VIT_LN_EPS = 1e-6


class Mlp(nn.Module):
    """fc1 -> activation -> fc2, applied to the last dimension: [..., in] -> [..., out]."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None,
                 act: type[nn.Module] = nn.GELU, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection: [B,N,D] -> [B,N,D].

    `attn_mask` (optional) is passed to SDPA: bool [N,N] or [B,1,N,N] (True = may attend) or an additive
    float mask; streaming models use it to restrict attention to a window of timesteps.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        # [B,N,3,H,hd] -> [3,B,H,N,hd]: the qkv output is laid out (q|k|v) x heads x head_dim.
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)) with a GELU MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 eps: float = VIT_LN_EPS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of `Block`s under the name `blocks` (no final norm: owners add their own)."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = VIT_LN_EPS):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, eps=eps) for _ in range(depth))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, attn_mask)
        return x


class PatchEmbed(nn.Module):
    """Non-overlapping conv patch embedding: [N,C,H,W] -> tokens [N, (H/p)(W/p), D], row-major patches."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


def timestep_sinusoid(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """DiT's sinusoidal features of (fractional) times t [...] -> [..., dim] = (cos(t f_k), sin(t f_k)).

    f_k = max_period^(-k / (dim/2)), k = 0 .. dim/2 - 1; cosines first, then sines (an odd `dim` gets a
    trailing zero). Computed in float32 whatever the input dtype.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[..., None] * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[..., :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """DiT time embedding: sinusoid(t) [..., freq_dim] -> Linear -> SiLU -> Linear -> [..., dim]."""

    def __init__(self, dim: int, freq_dim: int = 256, max_period: float = 10000.0):
        super().__init__()
        self.freq_dim, self.max_period = freq_dim, max_period
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = timestep_sinusoid(t, self.freq_dim, self.max_period)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class PluckerEmbedder(nn.Module):
    """Per-pixel Plucker rays (o x d_hat, d_hat) of pinhole cameras.

    Buffers `x`, `y` [1, H*W] hold the pixel-centre column and row (+0.5) of the H x W grid, row-major; they
    are part of the state dict because published checkpoints carry them.
    """

    def __init__(self, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width
        uv = pixel_centre_grid(height, width, torch.device("cpu"))
        self.register_buffer("x", uv[None, :, 0].clone())
        self.register_buffer("y", uv[None, :, 1].clone())

    def uv(self, height: int, width: int) -> torch.Tensor:
        """[H*W,2] (u, v) pixel centres: the buffers at the built size, else computed the same way."""
        if (height, width) == (self.height, self.width):
            return torch.stack([self.x[0], self.y[0]], dim=-1)
        return pixel_centre_grid(height, width, self.x.device)

    def rays(self, intrinsics: torch.Tensor, cam_to_world: torch.Tensor, height: int, width: int,
             shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """intrinsics [...,3,3], cam_to_world [...,4,4] -> origins, directions [...,H,W,3] (camera z = 1),
        through the pixel centres moved by `shift` pixels right and down."""
        uv = self.uv(height, width).to(intrinsics.dtype)
        if shift:
            uv = uv + shift
        origins, dirs = camera_rays_torch(intrinsics, cam_to_world, uv)
        shape = (*dirs.shape[:-2], height, width, 3)
        return origins.reshape(shape), dirs.reshape(shape)

    def forward(self, intrinsics: torch.Tensor, cam_to_world: torch.Tensor, height: int, width: int,
                shift: float = 0.0) -> torch.Tensor:
        """-> Plucker coordinates [...,H,W,6] = (o x d_hat, d_hat)."""
        return plucker_torch(*self.rays(intrinsics, cam_to_world, height, width, shift))


def pixel_centre_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    """[H*W,2] (u, v) = (column + 0.5, row + 0.5), row-major, float32."""
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=device) + 0.5,
                          torch.arange(width, dtype=torch.float32, device=device) + 0.5, indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a channels-first map [N,C,H,W] (SAM-style, eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def resample_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int],
                       new_grid: tuple[int, int]) -> torch.Tensor:
    """Absolute position embedding [1, h*w, D] of a h x w patch grid -> [1, H*W, D] for an H x W grid.

    Bicubic interpolation with antialiasing and align_corners=False, as timm's `resample_abs_pos_embed`
    (no prefix tokens). The same grid returns the input unchanged.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    h, w = old_grid
    if pos_embed.shape[1] != h * w:
        raise ValueError(f"position embedding has {pos_embed.shape[1]} entries, not {h}x{w}")
    dim = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, h, w, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", antialias=True, align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)


# ---------------------------------------------------------------------------------------------------------
# 2D rotary attention and the frame / global alternating block (SLARM, VGGT-style backbones).
def rope_2d_angles(positions: torch.Tensor, head_dim: int, base: float = 100.0) -> tuple[torch.Tensor,
                                                                                          torch.Tensor]:
    """cos, sin [..., N, head_dim] of 2D rotary encoding for integer (row, column) positions [..., N, 2].

    The first half of each head's channels rotates with the row, the second half with the column; within a
    half, channel pairs (j, j + half/2) rotate by position * base^(-2j/half) (the "rotate_half" layout).
    Position (0, 0) is the identity rotation, which is how tokens without a position are left unrotated.
    """
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs a head width divisible by 4, got {head_dim}")
    quarter = head_dim // 4
    freqs = base ** (-torch.arange(quarter, dtype=torch.float32, device=positions.device) / quarter)
    angles = positions.float()[..., None] * freqs                       # [...,N,2,quarter]
    angles = torch.cat([angles, angles], dim=-1)                        # [...,N,2,half] (pairs j, j+q)
    angles = angles.flatten(-2)                                         # [...,N,head_dim] rows then cols
    return angles.cos(), angles.sin()


def apply_rope_2d(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [...,N,hd] (e.g. [B,heads,N,hd], or q and k stacked [2,B,heads,N,hd]) by `rope_2d_angles`
    output (broadcast [N,hd] or [B,1,N,hd]); computed in float32, returned in x's dtype."""
    xf = x.float()
    # rotate_half within each of the row and column halves: (a, b) -> (-b, a) for pairs (j, j + quarter);
    # one negation and one stack for both halves (the same values as slicing each half).
    parts = xf.unflatten(-1, (2, 2, x.shape[-1] // 4))                 # [...,half,(a|b),quarter]
    rotated = torch.stack([-parts[..., 1, :], parts[..., 0, :]], dim=-2).flatten(-3)
    return (xf * cos + rotated * sin).to(x.dtype)


class RopeAttention(nn.Module):
    """Self-attention with 2D RoPE on queries and keys and an optional key/value cache.

    forward(x [B,N,D], cos/sin [N,hd] or [B,1,N,hd] | None, attn_mask, past_kv, cache, cache_index,
    return_kv) -> (out [B,N,D], (k, v) [B,heads,N,hd] of x's own tokens, already rotated, for the caller
    to cache; None when return_kv is False or a `cache` is given).
    past_kv (k, v) [B,heads,M,hd] are prepended to the keys and values: queries see cache then own tokens.
    cache (k, v) [B,heads,L,hd] are preallocated buffers (a ring, or the valid part of one): x's own rotated
    keys/values are written in place at positions `cache_index` (a slice of N positions, or an int64 device
    tensor [N]: the same write with nothing for torch.compile to specialise on) and the queries attend to
    all L positions. Keys are cached after rotation, so a cached key does not depend on where it sits (as
    long as the rotary positions do not encode the slot: SLARM's are positions within a frame), and
    attention (a softmax-weighted sum over keys) does not depend on the order of the slots.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None = None, sin: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None,
                past_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache_index: torch.Tensor | slice | None = None,
                return_kv: bool = True) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        keep = return_kv and cache is None
        if cos is not None:
            if keep:   # k goes back to the caller: rotated on its own, so that it does not hold q's memory
                q, k = apply_rope_2d(q, cos, sin), apply_rope_2d(k, cos, sin)
            else:      # q and k in one pass (fewer kernels)
                q, k = apply_rope_2d(qkv[:2], cos, sin).unbind(0)
        own = (k, v) if keep else None
        if cache is not None:
            if isinstance(cache_index, slice):
                cache[0][:, :, cache_index].copy_(k)
                cache[1][:, :, cache_index].copy_(v)
            else:
                cache[0].index_copy_(2, cache_index, k)
                cache[1].index_copy_(2, cache_index, v)
            k, v = cache
        elif past_kv is not None:
            k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d)), own


class RopeBlock(nn.Module):
    """Pre-norm transformer block with `RopeAttention`; returns (x, own rotated (k, v) or None; see there)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 eps: float = VIT_LN_EPS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = RopeAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None = None, sin: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None,
                past_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache_index: torch.Tensor | slice | None = None,
                return_kv: bool = True) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        h, kv = self.attn(self.norm1(x), cos, sin, attn_mask, past_kv, cache, cache_index, return_kv)
        x = x + h
        return x + self.mlp(self.norm2(x)), kv


class AlternatingBlock(nn.Module):
    """One frame-wise then one global `RopeBlock` (VGGT-style).

    forward(x [B,F,n,D] tokens of F frames of n tokens each, cos/sin [n,hd] per-frame rotary tables,
    global_mask [F*n, F*n] | None, past_kv for the global block) -> (x [B,F,n,D], global (k, v) of x).
    The frame block attends within each frame; the global block attends over all F*n tokens (plus past_kv).
    Streaming with preallocated buffers: `cache`/`cache_index` go to the global block (see RopeAttention;
    the returned (k, v) is then None) and `global_rope` = (cos, sin) [F*n,hd], the tables repeated over the
    F frames, saves rebuilding them in every block.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.frame = RopeBlock(dim, num_heads, mlp_ratio)
        self.glob = RopeBlock(dim, num_heads, mlp_ratio)

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None = None, sin: torch.Tensor | None = None,
                global_mask: torch.Tensor | None = None,
                past_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache_index: torch.Tensor | slice | None = None,
                global_rope: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        b, f, n, d = x.shape
        x, _ = self.frame(x.reshape(b * f, n, d), cos, sin, return_kv=False)
        gcos = gsin = None
        if global_rope is not None:
            gcos, gsin = global_rope
        elif cos is not None:
            gcos, gsin = cos.repeat(f, 1), sin.repeat(f, 1)
        x, kv = self.glob(x.reshape(b, f * n, d), gcos, gsin, global_mask, past_kv, cache, cache_index)
        return x.reshape(b, f, n, d), kv
