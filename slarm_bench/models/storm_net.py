"""The STORM network (REFERENCE.md section 4): one global ViT over the patch tokens of every context image
plus sky, affine and motion tokens, predicting one Gaussian per input pixel with a per-pixel velocity.

Parameter names and shapes equal the official STORM-B/8 state dict (`specs/storm_b8_state_dict.tsv`) and the
forward reproduces the official outputs of `specs/storm_b8_reference.npz` (tests/test_storm_net.py).
Facts settled by that reference:
- patch input: 9 channels = RGB in [-1,1] then Plucker (o x d_hat, d_hat) of each pixel;
- rays (Plucker and Gaussian centres) go through (column + 1, row + 1): the official code adds half a pixel
  to buffers that already hold the pixel centres (`StormConfig.pixel_shift`);
- time: DiT sinusoid (256, cos then sin, max period 10000) of the raw time / timespan, MLP, added to every
  patch token of its timestep (all cameras); the absolute position embedding is added to every image;
- tokens: [sky, affine x V, motion x 16, patches in (T, V, row, column) order], one global attention stack,
  final `norm`;
- Gaussian head: `gs_pred` per patch token, unpatchified (row, column, channel) to 12 channels per pixel,
  split as depth 1, scale 3, quaternion 4, opacity 1, colour 3 (see `GS_SPLIT`);
- ViT LayerNorms use eps 1e-6; the key upsampler ends with a GELU after its last LayerNorm2d.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from slarm_bench.errors import SlarmBenchError, check_name
from slarm_bench.geometry import plucker_torch
from slarm_bench.models.layers import (
    VIT_LN_EPS,
    LayerNorm2d,
    Mlp,
    PatchEmbed,
    PluckerEmbedder,
    TimestepEmbedder,
    Transformer,
    resample_pos_embed,
)

AffineMode = Literal["released", "full"]
AFFINE_MODES = ("released", "full")
# Channel split of the 12 per-pixel Gaussian channels, in order.
GS_SPLIT = (("depth", 1), ("scale", 3), ("quat", 4), ("opacity", 1), ("color", 3))
GS_CHANNELS = sum(n for _, n in GS_SPLIT)


class StormConfigError(SlarmBenchError, ValueError):
    """A StormConfig whose fields do not fit together, or an input that does not fit the config."""


@dataclass
class StormConfig:
    """Architecture of a STORM network. The defaults after `image_size` are those of STORM-B/8."""

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    image_size: tuple[int, int]          # (H, W) the position embedding and Plucker buffers are built for
    num_motion_tokens: int = 16          # 0 = static model: no motion heads, velocity identically zero
    use_sky: bool = True
    use_affine: bool = True
    affine: AffineMode = "released"      # how `apply_affine` uses the predicted 3x4 (see there)
    near: float = 0.2
    far: float = 400.0
    num_cameras: int = 3                 # one affine token per camera
    mlp_ratio: float = 4.0
    max_scale: float = 0.5
    scale_bias: float = -2.3             # scale = min(exp(x + scale_bias), max_scale)
    opacity_bias: float = -2.0           # opacity = sigmoid(x + opacity_bias)
    motion_dim: int = 32                 # query / key width
    motion_temperature: float = 0.5      # softmax(q . k / temperature)
    motion_hidden: int = 256             # hidden width of the key head and of the basis decoder
    upsample_channels: tuple[int, ...] = (512, 256, 128)  # one x2 transposed-conv stage each
    sky_hidden: int = 512
    # Rays (Plucker input and Gaussian centres alike) pass through the `plucker_embedder` pixel-centre
    # buffers (column + 0.5, row + 0.5) moved by this many pixels right and down. The official code adds
    # another half pixel, so its rays go through (column + 1, row + 1); the reference outputs need it.
    pixel_shift: float = 0.5
    time_freq_dim: int = 256
    extra: dict = field(default_factory=dict)  # free-form notes carried into saved configs

    def __post_init__(self) -> None:
        self.image_size = tuple(int(s) for s in self.image_size)
        self.upsample_channels = tuple(int(c) for c in self.upsample_channels)
        check_name("STORM affine mode", self.affine, AFFINE_MODES)
        if self.embed_dim % self.num_heads:
            raise StormConfigError(f"StormConfig: embed_dim {self.embed_dim} is not divisible by "
                                   f"num_heads {self.num_heads}; pick a divisor")
        if any(s % self.patch_size for s in self.image_size):
            raise StormConfigError(f"StormConfig: image_size {self.image_size} is not a multiple of "
                                   f"patch_size {self.patch_size}")
        if self.num_motion_tokens and 2 ** len(self.upsample_channels) != self.patch_size:
            raise StormConfigError(f"StormConfig: {len(self.upsample_channels)} x2 upsampling stages do not "
                                   f"reach patch_size {self.patch_size}; give log2(patch_size) channels")
        if not 0 < self.near < self.far:
            raise StormConfigError(f"StormConfig: need 0 < near < far, got {self.near}, {self.far}")

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def static(self) -> bool:
        return self.num_motion_tokens == 0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["image_size"], d["upsample_channels"] = list(self.image_size), list(self.upsample_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StormConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise StormConfigError(f"StormConfig: unknown fields {unknown}; this config is from another "
                                   f"model or version")
        return cls(**d)


STORM_PRESETS: dict[str, StormConfig] = {
    "storm-b8": StormConfig(768, 12, 12, 8, (160, 240)),
    # The tiny presets (trained here) export under 15 MB in fp16 (<= 7 M parameters) and cast rays through
    # the pixel centres, as our renderer does; storm-b8 keeps the official extra half pixel.
    "storm-t": StormConfig(256, 6, 4, 8, (160, 240), upsample_channels=(128, 64, 32), sky_hidden=256,
                           motion_hidden=128, pixel_shift=0.0),
    "static-t": StormConfig(256, 6, 4, 8, (160, 240), num_motion_tokens=0, upsample_channels=(128, 64, 32),
                            sky_hidden=256, motion_hidden=128, pixel_shift=0.0),
}


def storm_config(name: str) -> StormConfig:
    """A copy of the named preset."""
    return dataclasses.replace(STORM_PRESETS[check_name("STORM preset", name, STORM_PRESETS)])


@dataclass
class StormOutput:
    """Per-pixel Gaussians [B,T,V,H,W,...] (one per input pixel) and the per-sample tokens.

    means [..,3] world; scales [..,3]; quats [..,4] raw (w,x,y,z order as predicted, unnormalised);
    opacities [..]; colors [..,3] raw, in the [-1,1] space of the input; depths [..] z-depth;
    motion_weights [..,K]; forward_flow [..,3] velocity in m/s (world); motion_bases [B,K,3];
    sky_token [B,1,D] | None (after the final norm); affine [B,V,3,4] | None (raw, not applied).
    """

    means: torch.Tensor
    scales: torch.Tensor
    quats: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    depths: torch.Tensor
    motion_weights: torch.Tensor
    forward_flow: torch.Tensor
    motion_bases: torch.Tensor
    sky_token: torch.Tensor | None
    affine: torch.Tensor | None


def apply_affine(rgb: torch.Tensor, affine: torch.Tensor, mode: AffineMode = "released") -> torch.Tensor:
    """Colour transform of rendered colours rgb [...,3] by affine [...,3,4] (broadcast over the leading dims;
    give affine [B,V,1,1,3,4] for images [B,V,H,W,3]).

    released: out_c = A[c,c] * rgb_c  -- only the diagonal of the 3x3 part, no offset (STORM's released
              einsum repeats the channel index, which takes the diagonal).
    full:     out_c = sum_j A[c,j] rgb_j + A[c,3]  -- the whole 3x3 matrix plus the offset column.
    """
    check_name("STORM affine mode", mode, AFFINE_MODES)
    if mode == "released":
        return rgb * torch.diagonal(affine[..., :3], dim1=-2, dim2=-1)
    return torch.einsum("...ij,...j->...i", affine[..., :3], rgb) + affine[..., 3]


class SkyHead(nn.Module):
    """Sky colour of a ray direction, modulated by the sky token (adaLN).

    h = linear(d_hat); (shift, scale) = adaLN_modulation(condition_mapping(token)), adaLN_modulation =
    Sequential(SiLU, Linear); h = SiLU(LayerNorm(h) * (1 + scale) + shift); colour = output(h), raw in the
    colour space of the Gaussians. The parameter names and shapes are the official ones; the forward past
    them is not covered by the reference outputs.
    """

    def __init__(self, token_dim: int, hidden: int = 512):
        super().__init__()
        self.linear = nn.Linear(3, hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.condition_mapping = nn.Linear(token_dim, hidden)
        self.output = nn.Linear(hidden, 3)

    def forward(self, directions: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """directions [B,...,3] (normalised here), token [B,1,D] -> colours [B,...,3]."""
        d_hat = F.normalize(directions, dim=-1)
        shift, scale = self.adaLN_modulation(self.condition_mapping(token[:, 0])).chunk(2, dim=-1)
        extra = (1,) * (directions.dim() - 2)
        shift, scale = shift.reshape(shift.shape[0], *extra, -1), scale.reshape(scale.shape[0], *extra, -1)
        h = self.linear(d_hat)
        h = F.layer_norm(h, h.shape[-1:], eps=1e-6) * (1 + scale) + shift
        return self.output(F.silu(h))


def upsampler(in_dim: int, channels: tuple[int, ...]) -> nn.Sequential:
    """x2 transposed-conv stages (ConvT k2 s2, LayerNorm2d, GELU), the last one included:
    [N,in,h,w] -> [N,channels[-1],h*2^n,w*2^n]."""
    layers: list[nn.Module] = []
    for i, c in enumerate(channels):
        c_in = in_dim if i == 0 else channels[i - 1]
        layers += [nn.ConvTranspose2d(c_in, c, 2, 2), LayerNorm2d(c), nn.GELU()]
    return nn.Sequential(*layers)


def upsample_channels_last(stages: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`stages` (built by `upsampler`) applied channels-last: [N,h,w,C] -> [N,h*2^n,w*2^n,C'].

    Equal to `stages(x.permute(0,3,1,2)).permute(0,2,3,1)`, but a stride-2 kernel-2 transposed conv is a
    per-pixel matmul to the 2x2 children, and LayerNorm over the last dimension needs no transposes.
    """
    mods = list(stages)
    for i in range(0, len(mods), 3):
        conv, norm, act = mods[i], mods[i + 1], mods[i + 2]
        n, h, w, _ = x.shape
        c = conv.out_channels
        # weight [C,C',2,2] -> columns ordered (c', di, dj); the bias repeats over the 2x2 children.
        y = F.linear(x, conv.weight.flatten(1).t(), conv.bias.repeat_interleave(4))
        y = y.reshape(n, h, w, c, 2, 2).permute(0, 1, 4, 2, 5, 3).reshape(n, 2 * h, 2 * w, c)
        x = act(_layer_norm_keep_dtype(y, norm))
    return x


def _layer_norm_keep_dtype(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """LayerNorm over the last dim whose output keeps x's dtype under autocast.

    Autocast runs layer_norm in float32 and returns float32, which doubles the traffic of these
    full-resolution maps; the kernel accumulates in float32 either way. Without autocast nothing changes.
    """
    c = x.shape[-1]
    if not torch.is_autocast_enabled(x.device.type) or x.dtype == torch.float32:
        return F.layer_norm(x, (c,), norm.weight, norm.bias, norm.eps)
    with torch.autocast(x.device.type, enabled=False):
        return F.layer_norm(x, (c,), norm.weight.to(x.dtype), norm.bias.to(x.dtype), norm.eps)


class StormNet(nn.Module):
    """STORM: context images, poses and times -> per-pixel Gaussians with velocities (see module doc)."""

    def __init__(self, cfg: StormConfig):
        super().__init__()
        self.cfg = cfg
        d, (h, w) = cfg.embed_dim, cfg.image_size
        # Registration order fixes the state-dict order, which equals the official one.
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid[0] * cfg.grid[1], d))
        self.sky_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.use_sky else None
        self.affine_token = nn.Parameter(torch.zeros(1, cfg.num_cameras, d)) if cfg.use_affine else None
        self.max_scale = nn.Parameter(torch.tensor([cfg.max_scale]), requires_grad=False)
        self.motion_tokens = None if cfg.static else nn.Parameter(torch.zeros(1, cfg.num_motion_tokens, d))
        self.patch_embed = PatchEmbed(3 + 6, d, cfg.patch_size)
        self.transformer = Transformer(d, cfg.depth, cfg.num_heads, cfg.mlp_ratio)
        self.norm = nn.LayerNorm(d, eps=VIT_LN_EPS)
        self.plucker_embedder = PluckerEmbedder(h, w)
        self.time_embedder = TimestepEmbedder(d, cfg.time_freq_dim)
        self.sky_head = SkyHead(d, cfg.sky_hidden) if cfg.use_sky else None
        self.affine_linear = nn.Linear(d, 12) if cfg.use_affine else None
        self.gs_pred = nn.Linear(d, cfg.patch_size ** 2 * GS_CHANNELS)
        if not cfg.static:
            self.output_upscaling = upsampler(d, cfg.upsample_channels)
            self.motion_key_head = Mlp(cfg.upsample_channels[-1], cfg.motion_hidden, cfg.motion_dim)
            self.motion_query_heads = nn.ModuleList(
                Mlp(d, d, cfg.motion_dim) for _ in range(cfg.num_motion_tokens))
            self.motion_basis_decoder = Mlp(d, cfg.motion_hidden, 3)
        self.reset_parameters()

    # ---------------------------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Training initialisation: truncated-normal tokens and linear weights, zero biases."""
        for p in (self.pos_embed, self.sky_token, self.affine_token, self.motion_tokens):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def num_prefix_tokens(self) -> int:
        cfg = self.cfg
        return int(cfg.use_sky) + cfg.num_cameras * int(cfg.use_affine) + cfg.num_motion_tokens

    def prefix_tokens(self, batch: int) -> torch.Tensor:
        """[B,P,D] = [sky, affine x V, motion x K] (absent kinds left out)."""
        parts = [p for p in (self.sky_token, self.affine_token, self.motion_tokens) if p is not None]
        return torch.cat(parts, dim=1).expand(batch, -1, -1)

    def patch_inputs(self, images: torch.Tensor, plucker: torch.Tensor) -> torch.Tensor:
        """images [N,3,H,W] in [-1,1], plucker [N,H,W,6] -> the 9-channel patch input [N,9,H,W]."""
        return torch.cat([images, plucker.permute(0, 3, 1, 2).to(images.dtype)], dim=1)

    def embed(self, images: torch.Tensor, plucker: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """images [B,T,V,3,H,W], plucker [B,T,V,H,W,6], time [B,T] -> patch tokens [B, T*V*h*w, D]."""
        b, t, v, _, h, w = images.shape
        x = self.patch_embed(self.patch_inputs(images.flatten(0, 2), plucker.flatten(0, 2)))
        grid = (h // self.cfg.patch_size, w // self.cfg.patch_size)
        x = x + resample_pos_embed(self.pos_embed, self.cfg.grid, grid)
        temb = self.time_embedder(time)                                # [B,T,D]
        x = x.reshape(b, t, v * x.shape[1], -1) + temb[:, :, None]
        return x.reshape(b, -1, x.shape[-1])

    def sky_color(self, sky_token: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """Sky colour of rays: sky_token [B,1,D], directions [B,...,3] (any length) -> [B,...,3]."""
        if self.sky_head is None:
            raise StormConfigError("this STORM model was built with use_sky=False; it has no sky head")
        return self.sky_head(directions, sky_token)

    def apply_affine(self, rgb: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
        """`apply_affine` with this model's `cfg.affine` mode."""
        return apply_affine(rgb, affine, self.cfg.affine)

    # ---------------------------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, cam_to_world: torch.Tensor, intrinsics: torch.Tensor,
                time: torch.Tensor) -> StormOutput:
        """images [B,T,V,3,H,W] in [-1,1], cam_to_world [B,T,V,4,4] (OpenCV), intrinsics [B,T,V,3,3]
        (pixels), time [B,T] (seconds since the first context frame / timespan) -> StormOutput."""
        cfg = self.cfg
        if images.dim() != 6 or images.shape[3] != 3:
            raise StormConfigError(f"StormNet: images must be [B,T,V,3,H,W], got {tuple(images.shape)}")
        b, t, v, _, h, w = images.shape
        if cfg.use_affine and v != cfg.num_cameras:
            raise StormConfigError(f"StormNet: {v} cameras given but the model has {cfg.num_cameras} affine "
                                   f"tokens; pass {cfg.num_cameras} cameras or build with use_affine=False")
        if h % cfg.patch_size or w % cfg.patch_size:
            raise StormConfigError(f"StormNet: image size {h}x{w} is not a multiple of the patch size "
                                   f"{cfg.patch_size}; resize the images")
        p = cfg.patch_size
        gh, gw = h // p, w // p
        with torch.autocast(images.device.type, enabled=False):
            k, c2w = intrinsics.float(), cam_to_world.float()
            origins, dirs = self.plucker_embedder.rays(k, c2w, h, w, cfg.pixel_shift)  # [B,T,V,H,W,3]
            plucker = plucker_torch(origins, dirs)                     # [B,T,V,H,W,6]
        x = torch.cat([self.prefix_tokens(b).to(images.dtype), self.embed(images, plucker, time)], dim=1)
        x = self.norm(self.transformer(x))
        n_pre = self.num_prefix_tokens
        patches = x[:, n_pre:]                                         # [B, T*V*gh*gw, D]
        i = 0
        sky_token = x[:, i:i + 1] if cfg.use_sky else None
        i += int(cfg.use_sky)
        affine = None
        if cfg.use_affine:
            affine = self.affine_linear(x[:, i:i + cfg.num_cameras]).float().reshape(b, v, 3, 4)
            i += cfg.num_cameras

        # Gaussian head: one 12-channel vector per pixel, unpatchified (row, column, channel).
        raw = self.gs_pred(patches).float().reshape(b, t, v, gh, gw, p, p, GS_CHANNELS)
        raw = raw.permute(0, 1, 2, 3, 5, 4, 6, 7).reshape(b, t, v, h, w, GS_CHANNELS)
        depth_raw, scale_raw, quats, opacity_raw, colors = raw.split([n for _, n in GS_SPLIT], dim=-1)
        depths = cfg.near + torch.sigmoid(depth_raw[..., 0]) * (cfg.far - cfg.near)
        means = origins + depths[..., None] * dirs
        scales = torch.minimum(torch.exp(scale_raw + cfg.scale_bias), self.max_scale.float())
        opacities = torch.sigmoid(opacity_raw[..., 0] + cfg.opacity_bias)

        if cfg.static:
            weights = raw.new_zeros(b, t, v, h, w, 0)
            bases = raw.new_zeros(b, 0, 3)
            flow = torch.zeros_like(means)
        else:
            motion = x[:, i:i + cfg.num_motion_tokens]                 # [B,K,D]
            weights, bases, flow = self.motion(motion, patches.reshape(b * t * v, gh, gw, -1), (b, t, v))
        return StormOutput(means=means, scales=scales, quats=quats, opacities=opacities, colors=colors,
                           depths=depths, motion_weights=weights, forward_flow=flow, motion_bases=bases,
                           sky_token=sky_token, affine=affine)

    def motion(self, motion_tokens: torch.Tensor, patches: torch.Tensor,
               btv: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """motion_tokens [B,K,D], patch tokens [B*T*V,h,w,D] -> weights [B,T,V,H,W,K], bases [B,K,3],
        velocity [B,T,V,H,W,3]: velocity = sum_k softmax_k(q_k . key / temperature) basis_k."""
        b, t, v = btv
        cfg = self.cfg
        bases = self.motion_basis_decoder(motion_tokens).float()      # [B,K,3]
        # The K query MLPs run as one batched matmul over their stacked weights (names stay per-head).
        heads = self.motion_query_heads
        w1 = torch.stack([m.fc1.weight for m in heads])                # [K,D,D]
        b1 = torch.stack([m.fc1.bias for m in heads])                  # [K,D]
        w2 = torch.stack([m.fc2.weight for m in heads])                # [K,C,D]
        b2 = torch.stack([m.fc2.bias for m in heads])                  # [K,C]
        hid = F.gelu(torch.einsum("bkd,ked->bke", motion_tokens, w1) + b1)
        queries = torch.einsum("bke,kce->bkc", hid, w2) + b2          # [B,K,C]
        keys = self.motion_key_head(upsample_channels_last(self.output_upscaling, patches))  # [BTV,H,W,C]
        h, w = keys.shape[1:3]
        keys = keys.reshape(b, t * v * h * w, -1)
        logits = torch.einsum("bnc,bkc->bnk", keys, queries).float() / cfg.motion_temperature
        weights = logits.softmax(dim=-1)
        with torch.autocast(keys.device.type, enabled=False):  # velocities in float32 whatever the autocast
            flow = torch.einsum("bnk,bkc->bnc", weights, bases)
        return weights.reshape(b, t, v, h, w, -1), bases, flow.reshape(b, t, v, h, w, 3)
