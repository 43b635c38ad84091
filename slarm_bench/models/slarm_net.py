"""The SLARM network (REFERENCE.md section 5): alternating frame-wise and global attention with 2D RoPE over
per-image tokens, pixel-aligned Gaussians with higher-order motion and a language-feature head.

Tokens of one frame (= one image: a timestep x a camera), in order: camera, 4 registers, 3 affine (one per
camera), sky, then the patch tokens row-major. Special tokens sit at RoPE position (0, 0) (no rotation);
patch (row, column) sits at (row + 1, column + 1) so that no patch shares the special tokens' position.
Every token of a frame gets the DiT time embedding of (t - t_context0) / time_span; a patch token also gets
Linear(6, D) of the Plucker ray through its patch centre.

Choices documented here (the paper leaves them open):
- Affine: a frame of camera c reads its c-th affine token, Linear(D, 12) -> A = [I | 0] + raw (so it starts
  near the identity); the transform of camera c is the mean of A over the frames of camera c. The other two
  affine tokens of a frame are context for attention only.
- Sky: SkyHead (from STORM) conditioned on the mean over frames of the sky token; sky colour = sigmoid of
  its output, in the [0,1] colour space of the Gaussians.
- Per-pixel heads: linear unpatchify of each patch token (Linear(D, p*p*C), as STORM's `gs_pred`): pixel
  aligned, cheap, and trains from scratch in minutes; STORM's transposed-conv upsampler is several times the
  compute at full resolution for no stated gain in the papers.
- Global attention in batch mode is block-causal over timesteps (a timestep sees itself and earlier ones) so
  that batch reconstruction equals full-attention streaming; `window` limits it to the last W timesteps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from slarm_bench.errors import SlarmBenchError, check_name
from slarm_bench.geometry import camera_rays_torch, plucker_torch
from slarm_bench.models.layers import (
    VIT_LN_EPS,
    AlternatingBlock,
    PatchEmbed,
    PluckerEmbedder,
    TimestepEmbedder,
    rope_2d_angles,
)
from slarm_bench.models.storm_net import GS_SPLIT, SkyHead

NUM_REGISTERS = 4
# 100 * sigmoid(0 - SPEED_SHIFT) = 0.1 m/s: the speed a zero raw speed means.
SPEED_SHIFT = 6.9068
SPEED_MAX = 100.0


class SlarmConfigError(SlarmBenchError, ValueError):
    """A SlarmConfig whose fields do not fit together, or an input that does not fit the config."""


@dataclass
class SlarmConfig:
    """Architecture of a SLARM network. `depth` = number of (frame, global) block pairs."""

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 8
    image_size: tuple[int, int] = (160, 240)
    motion_order: int = 3
    num_cameras: int = 3
    feature_dim: int = 64
    language_dim: int = 512
    decoder_hidden: tuple[int, ...] = (128, 256)
    near: float = 0.2
    far: float = 400.0
    max_scale: float = 0.5
    scale_bias: float = math.log(0.5)    # scale = min(exp(x + scale_bias), max_scale)
    opacity_bias: float = -2.0           # opacity = sigmoid(x + opacity_bias)
    speed_shift: float = SPEED_SHIFT     # speed = SPEED_MAX * sigmoid(x - speed_shift) (REFERENCE: 6.9068)
    mlp_ratio: float = 4.0
    time_span: float = 2.0               # model time = (t - t_context0) / time_span
    rope_base: float = 100.0
    sky_hidden: int = 512
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image_size = tuple(int(s) for s in self.image_size)
        self.decoder_hidden = tuple(int(c) for c in self.decoder_hidden)
        if self.embed_dim % self.num_heads or (self.embed_dim // self.num_heads) % 4:
            raise SlarmConfigError(f"SlarmConfig: embed_dim {self.embed_dim} / num_heads {self.num_heads} "
                                   f"must give a head width divisible by 4 (2D RoPE)")
        if any(s % self.patch_size for s in self.image_size):
            raise SlarmConfigError(f"SlarmConfig: image_size {self.image_size} is not a multiple of "
                                   f"patch_size {self.patch_size}")
        if self.motion_order not in (1, 2, 3):
            raise SlarmConfigError(f"SlarmConfig: motion_order must be 1, 2 or 3, got {self.motion_order}")
        if not 0 < self.near < self.far:
            raise SlarmConfigError(f"SlarmConfig: need 0 < near < far, got {self.near}, {self.far}")

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_special(self) -> int:
        return 1 + NUM_REGISTERS + self.num_cameras + 1

    @property
    def pixel_channels(self) -> int:
        return sum(n for _, n in GS_SPLIT) + 4 * self.motion_order + self.feature_dim

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["image_size"], d["decoder_hidden"] = list(self.image_size), list(self.decoder_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SlarmConfig:
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise SlarmConfigError(f"SlarmConfig: unknown fields {unknown}; this config is from another "
                                   f"model or version")
        return cls(**d)


SLARM_PRESETS: dict[str, SlarmConfig] = {
    "slarm-b8": SlarmConfig(768, 12, 16),
    # The tiny presets match storm-t's size: width 256, 6 attention blocks (3 frame/global pairs), < 7.5 M.
    "slarm-t": SlarmConfig(256, 3, 4, sky_hidden=256),
    "slarm-t-o1": SlarmConfig(256, 3, 4, sky_hidden=256, motion_order=1),
    "slarm-t-o2": SlarmConfig(256, 3, 4, sky_hidden=256, motion_order=2),
}


def slarm_config(name: str, **overrides) -> SlarmConfig:
    """A copy of the named preset with `overrides` applied (e.g. image_size, motion_order)."""
    return dataclasses.replace(SLARM_PRESETS[check_name("SLARM preset", name, SLARM_PRESETS)], **overrides)


@dataclass
class SlarmFrames:
    """Per-pixel outputs of F = T*V frames, [B,T,V,H,W,...].

    means [..,3] world at the frame's own time; scales [..,3]; quats [..,4] raw (w,x,y,z); opacities [..];
    colors [..,3] in (0,1); depths [..] z-depth; motion [..,K,3] Taylor coefficients (m/s, m/s^2, m/s^3);
    features [..,feature_dim] in (0,1); sky_tokens [B,T,V,D]; affine [B,T,V,3,4] (each frame's own camera).
    """

    means: torch.Tensor
    scales: torch.Tensor
    quats: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    depths: torch.Tensor
    motion: torch.Tensor
    features: torch.Tensor
    sky_tokens: torch.Tensor
    affine: torch.Tensor


def block_causal_mask(num_timesteps: int, tokens_per_timestep: int, window: int | None = None,
                      device: torch.device | None = None) -> torch.Tensor:
    """Bool [N,N] (True = may attend), N = T * tokens: query timestep i sees key timestep j iff
    j <= i and (window is None or i - j < window)."""
    t = torch.arange(num_timesteps, device=device).repeat_interleave(tokens_per_timestep)
    diff = t[:, None] - t[None, :]
    ok = diff >= 0
    if window is not None:
        ok &= diff < window
    return ok


class SlarmNet(nn.Module):
    """SLARM backbone and heads (see module doc). Batch `forward` and per-timestep `forward_step`."""

    def __init__(self, cfg: SlarmConfig):
        super().__init__()
        self.cfg = cfg
        d, (h, w) = cfg.embed_dim, cfg.image_size
        self.camera_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_tokens = nn.Parameter(torch.zeros(1, NUM_REGISTERS, d))
        self.affine_tokens = nn.Parameter(torch.zeros(1, cfg.num_cameras, d))
        self.sky_token = nn.Parameter(torch.zeros(1, 1, d))
        self.patch_embed = PatchEmbed(3, d, cfg.patch_size)
        self.ray_embed = nn.Linear(6, d)
        self.time_embedder = TimestepEmbedder(d)
        self.plucker_embedder = PluckerEmbedder(h, w)
        self.blocks = nn.ModuleList(AlternatingBlock(d, cfg.num_heads, cfg.mlp_ratio)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=VIT_LN_EPS)
        p2 = cfg.patch_size ** 2
        self.gs_pred = nn.Linear(d, p2 * sum(n for _, n in GS_SPLIT))
        self.motion_pred = nn.Linear(d, p2 * 4 * cfg.motion_order)
        self.feature_pred = nn.Linear(d, p2 * cfg.feature_dim)
        self.affine_linear = nn.Linear(d, 12)
        self.sky_head = SkyHead(d, cfg.sky_hidden)
        dims = (cfg.feature_dim, *cfg.decoder_hidden, cfg.language_dim)
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(nn.GELU())
        self.feature_decoder = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated-normal tokens and linear weights, zero biases; raw speeds start at exactly zero
        (0.1 m/s) and the affine head at exactly the identity."""
        for p in (self.camera_token, self.register_tokens, self.affine_tokens, self.sky_token):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        k, p2 = self.cfg.motion_order, self.cfg.patch_size ** 2
        with torch.no_grad():
            w = self.motion_pred.weight.view(p2, k, 4, -1)
            w[:, :, 3].zero_()
            nn.init.zeros_(self.affine_linear.weight)

    # ---------------------------------------------------------------------------------------------------
    def rope_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [n,hd] for the tokens of one frame (special tokens at (0,0), patches at (r+1, c+1))."""
        gh, gw = self.cfg.grid
        rows, cols = torch.meshgrid(torch.arange(gh, device=device) + 1, torch.arange(gw, device=device) + 1,
                                    indexing="ij")
        pos = torch.cat([torch.zeros(self.cfg.num_special, 2, dtype=torch.long, device=device),
                         torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=-1)])
        return rope_2d_angles(pos, self.cfg.embed_dim // self.cfg.num_heads, self.cfg.rope_base)

    def tokens(self, images: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
               time: torch.Tensor) -> torch.Tensor:
        """images [B,T,V,3,H,W] in [-1,1], poses [B,T,V,4,4], intrinsics [B,T,V,3,3], model time [B,T]
        -> frame tokens [B,T*V,n,D]."""
        cfg = self.cfg
        b, t, v, _, h, w = images.shape
        p = cfg.patch_size
        x = self.patch_embed(images.flatten(0, 2)).reshape(b, t, v, -1, cfg.embed_dim)
        gh, gw = h // p, w // p
        dev = images.device
        rows, cols = torch.meshgrid(torch.arange(gh, device=dev), torch.arange(gw, device=dev), indexing="ij")
        uv = (torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=-1).float() + 0.5) * p  # patch centres
        with torch.autocast(images.device.type, enabled=False):
            origins, dirs = camera_rays_torch(intrinsics.float(), cam_to_world.float(), uv)   # [B,T,V,P,3]
            rays = plucker_torch(origins, dirs)
        x = x + self.ray_embed(rays.to(x.dtype))
        special = torch.cat([self.camera_token, self.register_tokens, self.affine_tokens, self.sky_token], 1)
        x = torch.cat([special.to(x.dtype)[:, None, None].expand(b, t, v, -1, -1), x], dim=3)
        x = x + self.time_embedder(time)[:, :, None, None].to(x.dtype)
        return x.reshape(b, t * v, x.shape[3], -1)

    def backbone(self, x: torch.Tensor, global_mask: torch.Tensor | None = None,
                 past: list[tuple[torch.Tensor, torch.Tensor]] | None = None
                 ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """x [B,F,n,D] -> (normed tokens [B,F,n,D], per-block global (k, v) of x's tokens)."""
        cos, sin = self.rope_tables(x.device)
        kvs = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cos, sin, global_mask, None if past is None else past[i])
            kvs.append(kv)
        return self.norm(x), kvs

    def heads(self, x: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
              btv: tuple[int, int, int]) -> SlarmFrames:
        """Normed tokens [B,T*V,n,D] -> per-pixel SlarmFrames."""
        cfg = self.cfg
        b, t, v = btv
        p, k = cfg.patch_size, cfg.motion_order
        (h, w), (gh, gw) = cfg.image_size, cfg.grid
        ns = cfg.num_special
        patches = x[:, :, ns:]                                             # [B,F,P,D]

        def unpatchify(raw: torch.Tensor) -> torch.Tensor:
            c = raw.shape[-1] // (p * p)
            raw = raw.float().reshape(b, t, v, gh, gw, p, p, c).permute(0, 1, 2, 3, 5, 4, 6, 7)
            return raw.reshape(b, t, v, h, w, c)

        gs = unpatchify(self.gs_pred(patches))
        depth_raw, scale_raw, quats, opacity_raw, color_raw = gs.split([n for _, n in GS_SPLIT], dim=-1)
        with torch.autocast(x.device.type, enabled=False):
            origins, dirs = self.plucker_embedder.rays(intrinsics.float(), cam_to_world.float(), h, w)
        depths = cfg.near + torch.sigmoid(depth_raw[..., 0]) * (cfg.far - cfg.near)
        means = origins + depths[..., None] * dirs
        scales = torch.exp(scale_raw + cfg.scale_bias).clamp(max=cfg.max_scale)
        opacities = torch.sigmoid(opacity_raw[..., 0] + cfg.opacity_bias)
        colors = torch.sigmoid(color_raw)
        mraw = unpatchify(self.motion_pred(patches)).reshape(b, t, v, h, w, k, 4)
        speed = torch.sigmoid(mraw[..., 3:] - cfg.speed_shift) * SPEED_MAX
        motion = speed * F.normalize(mraw[..., :3], dim=-1, eps=1e-6)
        features = torch.sigmoid(unpatchify(self.feature_pred(patches)))
        # A frame of camera c reads affine token c (see module doc); A = [I | 0] + raw.
        first = 1 + NUM_REGISTERS
        aff_tok = x[:, :, first:first + cfg.num_cameras].reshape(b, t, v, cfg.num_cameras, -1)
        cams = torch.arange(v, device=x.device)                         # (on the device: no host copy)
        own = aff_tok[:, :, cams, cams]                                   # [B,T,V,D]
        eye = torch.eye(3, 4, device=x.device)
        affine = eye + self.affine_linear(own).float().reshape(b, t, v, 3, 4)
        sky_tokens = x[:, :, ns - 1].reshape(b, t, v, -1)
        return SlarmFrames(means=means, scales=scales, quats=quats, opacities=opacities, colors=colors,
                           depths=depths, motion=motion, features=features, sky_tokens=sky_tokens,
                           affine=affine)

    def _check(self, images: torch.Tensor) -> None:
        cfg = self.cfg
        if images.dim() != 6 or images.shape[3] != 3:
            raise SlarmConfigError(f"SlarmNet: images must be [B,T,V,3,H,W], got {tuple(images.shape)}")
        if images.shape[2] != cfg.num_cameras:
            raise SlarmConfigError(f"SlarmNet: {images.shape[2]} cameras given but the model has "
                                   f"{cfg.num_cameras} (one affine token each); pass that many")
        if tuple(images.shape[-2:]) != cfg.image_size:
            raise SlarmConfigError(f"SlarmNet: images are {tuple(images.shape[-2:])} but the model is built "
                                   f"for {cfg.image_size}; resize the images or build the config for them")

    def forward(self, images: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                time: torch.Tensor, window: int | None = None) -> SlarmFrames:
        """Batch mode: images [B,T,V,3,H,W] in [-1,1], cam_to_world [B,T,V,4,4] (OpenCV), intrinsics
        [B,T,V,3,3], time [B,T] (model time) -> SlarmFrames; global attention block-causal over timesteps,
        limited to the last `window` timesteps when given."""
        self._check(images)
        b, t, v = images.shape[:3]
        x = self.tokens(images, cam_to_world, intrinsics, time)
        mask = block_causal_mask(t, v * x.shape[2], window, x.device)
        x, _ = self.backbone(x, mask)
        return self.heads(x, cam_to_world, intrinsics, (b, t, v))

    def forward_step(self, images: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                     time: torch.Tensor, past: list[tuple[torch.Tensor, torch.Tensor]] | None
                     ) -> tuple[SlarmFrames, list[tuple[torch.Tensor, torch.Tensor]]]:
        """One timestep: inputs as `forward` with T = 1, `past` per-block cached global (k, v)
        [B,heads,M,hd] of earlier timesteps (or None) -> (SlarmFrames, this timestep's per-block (k, v))."""
        self._check(images)
        if images.shape[1] != 1:
            raise SlarmConfigError(f"SlarmNet.forward_step takes one timestep, got {images.shape[1]}")
        b, t, v = images.shape[:3]
        x = self.tokens(images, cam_to_world, intrinsics, time)
        x, kvs = self.backbone(x, None, past)
        return self.heads(x, cam_to_world, intrinsics, (b, t, v)), kvs

    def step_rope(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cos, sin) [n,hd] of one frame and (cos, sin) [V*n,hd] of one timestep's V frames (the global
        blocks'), built once per device and kept (they depend only on the config)."""
        device = torch.device(device)
        tables = self.__dict__.setdefault("_step_rope_tables", {})
        if device not in tables:
            cos, sin = self.rope_tables(device)
            v = self.cfg.num_cameras
            tables[device] = (cos, sin, cos.repeat(v, 1), sin.repeat(v, 1))
        return tables[device]

    def forward_cached(self, images: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                       time: torch.Tensor, cache_k: list[torch.Tensor], cache_v: list[torch.Tensor],
                       cache_index: torch.Tensor | slice,
                       rope: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                       ) -> SlarmFrames:
        """One timestep against preallocated per-block global key/value buffers: inputs as `forward` with
        T = 1; cache_k/cache_v [B,heads,L,hd] per block (L = cached timesteps x V*n tokens, e.g. a ring of
        W timesteps, or the valid part of one); cache_index (a slice of V*n positions, or the same as an
        int64 device tensor [V*n]) where this timestep's rotated keys/values are written (in place) before
        its queries attend to all L positions; rope =
        `step_rope(device)`. Same outputs as `forward_step` with past = the other timesteps of the buffers:
        attention does not depend on the order of the cached timesteps. Shapes are static for a fixed L, so
        this is the call to torch.compile (CUDA graphs)."""
        self._check(images)
        if images.shape[1] != 1:
            raise SlarmConfigError(f"SlarmNet.forward_cached takes one timestep, got {images.shape[1]}")
        b, t, v = images.shape[:3]
        cos, sin, gcos, gsin = self.step_rope(images.device) if rope is None else rope
        x = self.tokens(images, cam_to_world, intrinsics, time)
        for block, kk, vv in zip(self.blocks, cache_k, cache_v):
            x, _ = block(x, cos, sin, cache=(kk, vv), cache_index=cache_index, global_rope=(gcos, gsin))
        return self.heads(self.norm(x), cam_to_world, intrinsics, (b, t, v))

    def decode_features(self, features: torch.Tensor) -> torch.Tensor:
        """Rendered features [...,feature_dim] -> L2-normalised language features [...,language_dim]."""
        return F.normalize(self.feature_decoder(features), dim=-1)

    def sky_color(self, sky_token: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """sky_token [B,1,D], directions [B,...,3] -> sky colours [B,...,3] in (0,1)."""
        return torch.sigmoid(self.sky_head(directions, sky_token))


class KVCache:
    """Per global block key/value buffers [B,heads,capacity*n,hd] of a streaming session (`forward_cached`'s
    cache_k / cache_v; n = tokens of one timestep, all cameras), written in place: timestep s at positions
    slot*n .. slot*n + n - 1.

    ring (window attention): capacity = W timesteps, slot = s mod W; the buffers never grow or move.
    Otherwise (full attention) slot = s and the capacity doubles when full (one copy per doubling).
    The written timesteps always occupy the first `timesteps` slots, so the valid part is a prefix; once a
    ring is full every position is valid and a step's shapes are static. cache[i] = (k, v) of block i
    (the whole buffers).
    """

    def __init__(self, depth: int, batch: int, heads: int, tokens: int, head_dim: int, capacity: int,
                 ring: bool, dtype: torch.dtype, device: torch.device | str, session: int = 1):
        self.depth, self.tokens, self.ring = depth, tokens, ring
        self.shape = (batch, heads, head_dim)
        self.dtype, self.device = dtype, torch.device(device)
        self.session, self.steps = session, 0
        self._arange = torch.arange(tokens, device=self.device)
        self._allocate(capacity)
        # the write positions of each ring slot, built once (no per-step host work or host-to-device copy)
        self._slot_index = [self._arange + s * tokens for s in range(capacity)] if ring else None

    def _allocate(self, capacity: int) -> None:
        b, h, hd = self.shape
        shape = (b, h, capacity * self.tokens, hd)
        self.k = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.depth)]
        self.v = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.depth)]
        self.capacity = capacity

    def _grow(self, capacity: int) -> None:
        old_k, old_v, used = self.k, self.v, self.timesteps * self.tokens
        self._allocate(capacity)
        for new, old in zip(self.k + self.v, old_k + old_v):
            new[:, :, :used].copy_(old[:, :, :used])

    def reset(self, session: int) -> None:
        """Start a new session in the same buffers (nothing is cleared: only written slots are read)."""
        self.session, self.steps = session, 0

    @property
    def timesteps(self) -> int:
        """Timesteps the cache holds (at most the capacity for a ring)."""
        return min(self.steps, self.capacity) if self.ring else self.steps

    def slot_views(self, index_tensor: bool = False
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor | slice, bool]:
        """For the next step: (k buffers, v buffers, write positions, static). The buffers are the valid
        part including the next timestep's slot (the whole buffers once a ring is full: static = True); the
        positions a slice, or with `index_tensor` an int64 device tensor [n] (for torch.compile: one graph
        for every slot). A full-attention cache that is full doubles here."""
        s, n = self.steps, self.tokens
        if self.ring:
            slot, valid = s % self.capacity, min(s + 1, self.capacity)
        else:
            if s + 1 > self.capacity:
                self._grow(2 * self.capacity)
            slot, valid = s, s + 1
        if not index_tensor:
            index = slice(slot * n, slot * n + n)
        else:
            index = self._slot_index[slot] if self.ring else self._arange + slot * n
        if valid == self.capacity:
            return self.k, self.v, index, self.ring
        end = valid * n
        return [k[:, :, :end] for k in self.k], [v[:, :, :end] for v in self.v], index, False

    def advance(self) -> None:
        self.steps += 1

    def __len__(self) -> int:
        return self.depth

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[i], self.v[i]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)
