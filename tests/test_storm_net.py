"""STORM network: official names and outputs, and each piece on its own; checkpoints."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slarm_bench.errors import UnknownNameError
from slarm_bench.geometry import camera_rays, look_at_opencv, plucker
from slarm_bench.models import layers
from slarm_bench.models.checkpoint import (
    CheckpointError,
    check_state_dict,
    load_into,
    load_official_checkpoint,
    load_safetensors,
    load_storm,
    save_safetensors,
)
from slarm_bench.models.storm_net import (
    GS_CHANNELS,
    STORM_PRESETS,
    StormConfig,
    StormConfigError,
    StormNet,
    apply_affine,
    storm_config,
)

SPECS = Path(__file__).resolve().parents[1].parent / "shared" / "specs"
REFERENCE = SPECS / "storm_b8_reference.npz"
STATE_DICT_TSV = SPECS / "storm_b8_state_dict.tsv"
KEEP_DEFAULT = ("max_scale", "plucker_embedder.x", "plucker_embedder.y")


def tiny_config(**kw) -> StormConfig:
    base = dict(embed_dim=32, depth=1, num_heads=2, patch_size=4, image_size=(8, 12), num_motion_tokens=4,
                num_cameras=2, upsample_channels=(16, 8), motion_hidden=16, sky_hidden=16, motion_dim=8)
    base.update(kw)
    return StormConfig(**base)


def tiny_inputs(cfg: StormConfig, b: int = 1, t: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.image_size
    v = cfg.num_cameras
    images = torch.rand(b, t, v, 3, h, w, generator=g) * 2 - 1
    poses = np.stack([look_at_opencv([i * 0.3, 0.1 * j, 1.5], [10.0, j - 0.5, 1.0]) for i in range(t)
                      for j in range(v)]).reshape(t, v, 4, 4)
    c2w = torch.from_numpy(poses).float()[None].expand(b, -1, -1, -1, -1).clone()
    k = torch.tensor([[10.0, 0.0, w / 2], [0.0, 11.0, h / 2], [0.0, 0.0, 1.0]]).expand(b, t, v, 3, 3).clone()
    time = torch.linspace(0, 0.75, t)[None].expand(b, -1).clone()
    return images, c2w, k, time


def read_tsv() -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in STATE_DICT_TSV.read_text().splitlines()[1:]:
        name, shape = line.split("\t")
        rows.append((name, tuple(int(s) for s in shape.strip("[]").split(","))))
    return rows


def reference_weights(model_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The closed-form weights of specs/README.md: 0.06 sin(1.3 j + 0.7 i) (+1 for norm weights), float64
    then float32; max_scale and the Plucker pixel buffers keep their defaults."""
    out = {}
    for i, (name, shape) in enumerate(read_tsv()):
        if name in KEEP_DEFAULT:
            out[name] = model_sd[name].clone()
            continue
        j = np.arange(math.prod(shape), dtype=np.float64)
        value = 0.06 * np.sin(1.3 * j + 0.7 * i)
        if len(shape) == 1 and name.endswith("weight") and "norm" in name:
            value = value + 1.0
        out[name] = torch.from_numpy(value.reshape(shape).astype(np.float32))
    return out


# ---------------------------------------------------------------------------------------------------------
# Official names, shapes and outputs
@pytest.mark.skipif(not STATE_DICT_TSV.is_file(), reason="shared/specs absent")
def test_state_dict_names_and_shapes_equal_official_tsv():
    with torch.device("meta"):
        model = StormNet(STORM_PRESETS["storm-b8"])
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert len(got) == 255
    assert got == read_tsv()
    assert {k for k, _ in model.named_buffers()} == {"plucker_embedder.x", "plucker_embedder.y"}


def test_plucker_buffers_hold_pixel_centres():
    emb = layers.PluckerEmbedder(2, 3)
    assert emb.x.tolist() == [[0.5, 1.5, 2.5, 0.5, 1.5, 2.5]]
    assert emb.y.tolist() == [[0.5, 0.5, 0.5, 1.5, 1.5, 1.5]]


@pytest.mark.slow
@pytest.mark.skipif(not REFERENCE.is_file(), reason="shared/specs absent")
def test_storm_b8_reproduces_official_reference_outputs():
    model = StormNet(STORM_PRESETS["storm-b8"])
    model.load_state_dict(reference_weights(model.state_dict()))
    model.eval()
    ref = np.load(REFERENCE)
    args = [torch.from_numpy(ref[f"input.{k}"]) for k in
            ("context_image", "context_camtoworlds", "context_intrinsics", "context_time")]
    with torch.no_grad():
        out = model(*args)
    for name in ("means", "scales", "quats", "opacities", "colors", "depths", "motion_weights",
                 "forward_flow", "motion_bases", "sky_token", "affine"):
        got = getattr(out, name)
        if name not in ("motion_bases", "sky_token", "affine"):
            got = got[:, :, :, ::8, ::8]
        want = ref[f"output.{name}"]
        assert got.shape == want.shape, name
        err = np.abs(got.double().numpy() - want).max() / np.abs(want).max()
        assert err < 1e-4, f"{name}: relative error {err:.2e}"


# ---------------------------------------------------------------------------------------------------------
# Pieces
def test_token_order_sky_affine_motion_then_patches():
    cfg = tiny_config(depth=0)  # no attention: each output token is norm(its own input token)
    model = StormNet(cfg).eval()
    images, c2w, k, time = tiny_inputs(cfg)
    with torch.no_grad():
        out = model(images, c2w, k, time)
        norm = model.norm
        assert torch.allclose(out.sky_token, norm(model.sky_token), atol=1e-6)
        want_affine = model.affine_linear(norm(model.affine_token)).reshape(1, cfg.num_cameras, 3, 4)
        assert torch.allclose(out.affine, want_affine, atol=1e-6)
        want_bases = model.motion_basis_decoder(norm(model.motion_tokens))
        assert torch.allclose(out.motion_bases, want_bases, atol=1e-6)
    assert model.num_prefix_tokens == 1 + cfg.num_cameras + cfg.num_motion_tokens


def test_gaussian_head_activations_and_channel_split():
    cfg = tiny_config()
    model = StormNet(cfg).eval()
    # channels: depth 1, scale 3, quat 4, opacity 1, colour 3 -- same values at every pixel
    per_pixel = torch.tensor([0.3, -1.0, 0.5, 4.0, 0.1, 0.2, 0.3, 0.4, 1.5, -0.7, 0.0, 0.7])
    with torch.no_grad():
        model.gs_pred.weight.zero_()
        model.gs_pred.bias.copy_(per_pixel.repeat(cfg.patch_size ** 2))
        out = model(*tiny_inputs(cfg))
    h, w = cfg.image_size
    assert out.depths.shape == (1, 2, 2, h, w) and out.means.shape == (1, 2, 2, h, w, 3)
    sig = torch.sigmoid
    want_depth = 0.2 + sig(torch.tensor(0.3)) * (400 - 0.2)
    assert torch.allclose(out.depths, want_depth.expand_as(out.depths))
    want_scale = torch.minimum(torch.exp(torch.tensor([-1.0, 0.5, 4.0]) - 2.3), torch.tensor(0.5))
    assert torch.allclose(out.scales, want_scale.expand_as(out.scales))
    assert torch.allclose(out.quats, per_pixel[4:8].expand_as(out.quats))
    assert torch.allclose(out.opacities, sig(torch.tensor(1.5 - 2.0)).expand_as(out.opacities))
    assert torch.allclose(out.colors, per_pixel[9:].expand_as(out.colors))


def test_unpatchify_puts_each_sub_pixel_in_place():
    cfg = tiny_config()
    model = StormNet(cfg).eval()
    p = cfg.patch_size
    # opacity channel (index 8) of sub-pixel (r, c) = r * p + c: the bias layout is (row, column, channel)
    bias = torch.zeros(p, p, GS_CHANNELS)
    bias[..., 8] = torch.arange(p * p, dtype=torch.float32).reshape(p, p) / 10.0 + 2.0
    with torch.no_grad():
        model.gs_pred.weight.zero_()
        model.gs_pred.bias.copy_(bias.reshape(-1))
        out = model(*tiny_inputs(cfg))
    logit = torch.logit(out.opacities[0, 0, 0]) + 2.0
    h, w = cfg.image_size
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    assert torch.allclose(logit, ((rows % p) * p + cols % p) / 10.0 + 2.0, atol=1e-4)


def test_means_lie_on_rays_through_shifted_pixel_centres():
    cfg = tiny_config()
    model = StormNet(cfg).eval()
    images, c2w, k, time = tiny_inputs(cfg)
    with torch.no_grad():
        out = model(images, c2w, k, time)
    h, w = cfg.image_size
    uv = np.stack(np.meshgrid(np.arange(w) + 1.0, np.arange(h) + 1.0, indexing="xy"), -1)
    origins, dirs = camera_rays(k[0, 1, 0].numpy(), c2w[0, 1, 0].numpy(), h, w, uv=uv)
    want = origins + out.depths[0, 1, 0].double().numpy()[..., None] * dirs
    np.testing.assert_allclose(out.means[0, 1, 0].numpy(), want, rtol=1e-5, atol=1e-4)


def test_plucker_rays_match_geometry():
    h, w = 5, 7
    emb = layers.PluckerEmbedder(h, w)
    k = np.array([[6.0, 0, 3.2], [0, 5.0, 2.4], [0, 0, 1]])
    c2w = look_at_opencv([1.0, -2.0, 1.5], [8.0, 1.0, 0.5])
    got = emb(torch.tensor(k, dtype=torch.float32), torch.tensor(c2w, dtype=torch.float32), h, w)
    want = plucker(*camera_rays(k, c2w, h, w))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    shifted = emb(torch.tensor(k, dtype=torch.float32), torch.tensor(c2w, dtype=torch.float32), h, w, 0.5)
    uv = np.stack(np.meshgrid(np.arange(w) + 1.0, np.arange(h) + 1.0, indexing="xy"), -1)
    np.testing.assert_allclose(shifted.numpy(), plucker(*camera_rays(k, c2w, h, w, uv=uv)), atol=1e-5)
    # another image size than the buffers: the same formula, computed on the fly
    other = emb(torch.tensor(k, dtype=torch.float32), torch.tensor(c2w, dtype=torch.float32), 3, 4)
    np.testing.assert_allclose(other.numpy(), plucker(*camera_rays(k, c2w, 3, 4)), atol=1e-5)


def test_time_embedding_is_dit_sinusoid_cos_then_sin():
    t = torch.tensor([0.0, 0.25, 0.75])
    emb = layers.timestep_sinusoid(t, 256, 10000.0)
    freqs = np.exp(-np.log(10000.0) * np.arange(128) / 128)
    args = t.numpy()[:, None].astype(np.float64) * freqs
    np.testing.assert_allclose(emb.numpy(), np.concatenate([np.cos(args), np.sin(args)], -1), atol=1e-6)
    embedder = layers.TimestepEmbedder(16, freq_dim=256)
    assert embedder(torch.zeros(2, 3)).shape == (2, 3, 16)
    assert [n for n, _ in embedder.named_parameters()] == ["mlp.0.weight", "mlp.0.bias", "mlp.2.weight",
                                                            "mlp.2.bias"]


def test_position_embedding_resampling():
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(1, 6, 4, generator=g)
    assert layers.resample_pos_embed(pos, (2, 3), (2, 3)) is pos
    const = torch.ones(1, 20 * 30, 5) * 0.25
    np.testing.assert_allclose(layers.resample_pos_embed(const, (20, 30), (24, 40)).numpy(), 0.25, atol=1e-6)
    smooth = torch.linspace(0, 1, 30).repeat(20)[None, :, None]  # varies along columns only
    up = layers.resample_pos_embed(smooth, (20, 30), (20, 60)).reshape(20, 60)
    assert torch.allclose(up[0], up[7]) and (up[0, 1:] >= up[0, :-1] - 1e-6).all()
    want = F.interpolate(pos.reshape(1, 2, 3, 4).permute(0, 3, 1, 2), size=(4, 5), mode="bicubic",
                         antialias=True, align_corners=False).permute(0, 2, 3, 1).reshape(1, 20, 4)
    assert torch.allclose(layers.resample_pos_embed(pos, (2, 3), (4, 5)), want)


def test_model_runs_at_another_image_size():
    cfg = tiny_config()
    model = StormNet(cfg).eval()
    images, c2w, k, time = tiny_inputs(cfg)
    images = F.interpolate(images.flatten(0, 2), size=(12, 16)).reshape(1, 2, 2, 3, 12, 16)
    with torch.no_grad():
        out = model(images, c2w, k, time)
    assert out.means.shape == (1, 2, 2, 12, 16, 3) and out.motion_weights.shape[3:5] == (12, 16)


def test_motion_weights_softmax_and_flow_is_weighted_sum_of_bases():
    cfg = tiny_config()
    model = StormNet(cfg).eval()
    with torch.no_grad():
        out = model(*tiny_inputs(cfg))
        assert out.motion_weights.shape == (1, 2, 2, 8, 12, cfg.num_motion_tokens)
        assert torch.allclose(out.motion_weights.sum(-1), torch.ones(1, 2, 2, 8, 12), atol=1e-5)
        assert torch.allclose(out.forward_flow, out.motion_weights @ out.motion_bases[:, None, None, None],
                              atol=1e-5)
        # batched query heads == the heads run one by one
        tokens = torch.randn(1, cfg.num_motion_tokens, cfg.embed_dim)
        patches = torch.randn(2, 2, 3, cfg.embed_dim)
        weights, _, _ = model.motion(tokens, patches, (1, 2, 1))
        queries = torch.stack([hd(tokens[:, i]) for i, hd in enumerate(model.motion_query_heads)], 1)
        keys = model.motion_key_head(model.output_upscaling(patches.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        logits = torch.einsum("nhwc,bkc->bnhwk", keys, queries) / 0.5
        assert torch.allclose(weights.reshape(logits.shape), logits.softmax(-1), atol=1e-5)


def test_static_preset_has_zero_velocity_and_no_motion_heads():
    cfg = tiny_config(num_motion_tokens=0)
    model = StormNet(cfg).eval()
    assert not any(k.startswith("motion") or k.startswith("output_upscaling") for k in model.state_dict())
    with torch.no_grad():
        out = model(*tiny_inputs(cfg))
    assert torch.equal(out.forward_flow, torch.zeros_like(out.means))
    assert out.motion_bases.shape == (1, 0, 3)
    assert STORM_PRESETS["static-t"].static and not STORM_PRESETS["storm-t"].static


def test_presets_and_config_validation():
    assert storm_config("storm-b8") == STORM_PRESETS["storm-b8"]
    assert storm_config("storm-b8") is not STORM_PRESETS["storm-b8"]
    t = STORM_PRESETS["storm-t"]
    assert 256 <= t.embed_dim <= 384 and 6 <= t.depth <= 8 and t.patch_size == 8
    with pytest.raises(StormConfigError, match="num_heads"):
        tiny_config(num_heads=5)
    with pytest.raises(StormConfigError, match="upsampling"):
        tiny_config(upsample_channels=(16,))
    with pytest.raises(UnknownNameError, match="Did you mean"):
        tiny_config(affine="ful")
    with pytest.raises(UnknownNameError, match="Did you mean"):
        storm_config("storm-b")
    assert StormConfig.from_dict(t.to_dict()) == t
    with pytest.raises(StormConfigError, match="unknown fields"):
        StormConfig.from_dict({**t.to_dict(), "num_register_tokens": 4})


def test_sky_head_and_affine():
    cfg = tiny_config()
    model = StormNet(cfg).eval()
    dirs = torch.randn(2, 5, 7, 3)
    token = torch.randn(2, 1, cfg.embed_dim)
    colours = model.sky_color(token, dirs)
    assert colours.shape == (2, 5, 7, 3)
    assert torch.allclose(model.sky_color(token, dirs * 3.0), colours, atol=1e-5)  # direction only
    rgb = torch.rand(4, 3)
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 10
    assert torch.allclose(apply_affine(rgb, a, "released"), rgb * torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(apply_affine(rgb, a, "full"), rgb @ a[:, :3].T + a[:, 3])
    assert model.apply_affine(rgb, a).shape == (4, 3)
    no_sky = StormNet(tiny_config(use_sky=False, use_affine=False)).eval()
    with torch.no_grad():
        out = no_sky(*tiny_inputs(cfg))
    assert out.sky_token is None and out.affine is None
    with pytest.raises(StormConfigError, match="use_sky"):
        no_sky.sky_color(token, dirs)


def test_bad_inputs_raise_clear_errors():
    cfg = tiny_config()
    model = StormNet(cfg).eval()
    images, c2w, k, time = tiny_inputs(cfg)
    with pytest.raises(StormConfigError, match="cameras"):
        model(images[:, :, :1], c2w[:, :, :1], k[:, :, :1], time)
    with pytest.raises(StormConfigError, match="images must be"):
        model(images[0], c2w, k, time)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
def fake_official(tmp_path: Path, sd: dict) -> Path:
    path = tmp_path / "storm_official.pth"
    torch.save({"model": sd, "optimizer": {}, "loss_scaler": {}, "latest_step": 10, "vis_slice_id": 0,
                "args": argparse.Namespace(model="STORM-T/8", lr=4e-4), "total_elapsed_time": 1.0}, path)
    return path


def test_official_checkpoint_needs_trust_and_loads(tmp_path):
    cfg = tiny_config()
    model = StormNet(cfg)
    path = fake_official(tmp_path, {f"module.{k}": v for k, v in model.state_dict().items()})
    with pytest.raises(CheckpointError, match="pickle.*trust_pickle"):
        load_official_checkpoint(path, trust_pickle=False)
    sd = load_official_checkpoint(path, trust_pickle=True)
    other = load_into(StormNet(cfg), sd)
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)
    # a plain tensor dict needs no trust
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    assert set(load_official_checkpoint(plain, trust_pickle=False)) == set(model.state_dict())


def test_checkpoint_mismatch_names_the_keys(tmp_path):
    cfg = tiny_config()
    model = StormNet(cfg)
    sd = dict(model.state_dict())
    sd.pop("norm.bias")
    sd["decoder.extra.weight"] = torch.zeros(2)
    sd["gs_pred.bias"] = torch.zeros(5)
    with pytest.raises(CheckpointError) as info:
        check_state_dict(model, sd, "checkpoint x.pth")
    msg = str(info.value)
    assert "norm.bias" in msg and "decoder.extra.weight" in msg and "gs_pred.bias [5]" in msg
    assert "\n" not in msg
    # another architecture's checkpoint: storm-t weights into a tiny model
    with torch.device("meta"):
        big = StormNet(STORM_PRESETS["storm-t"]).state_dict()
    with pytest.raises(CheckpointError, match="shape mismatches: pos_embed"):
        check_state_dict(model, big)


def test_truncated_and_missing_checkpoints(tmp_path):
    model = StormNet(tiny_config())
    path = fake_official(tmp_path, model.state_dict())
    data = path.read_bytes()
    short = tmp_path / "short.pth"
    short.write_bytes(data[: len(data) // 2])
    for trust in (False, True):
        with pytest.raises(CheckpointError, match="truncated"):
            load_official_checkpoint(short, trust_pickle=trust)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_official_checkpoint(tmp_path / "nope.pth", trust_pickle=True)


def test_safetensors_round_trip(tmp_path):
    cfg = tiny_config(affine="full")
    model = StormNet(cfg)
    t_path, c_path = save_safetensors(model, cfg, tmp_path / "ckpt" / "tiny")
    assert t_path.name == "tiny.safetensors" and c_path.name == "tiny.json"
    sd, config = load_safetensors(tmp_path / "ckpt" / "tiny.safetensors")
    assert StormConfig.from_dict(config) == cfg
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
    loaded = load_storm(t_path)
    assert loaded.cfg == cfg
    t_path.write_bytes(t_path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_safetensors(t_path)


def test_channels_last_upsampler_equals_conv_modules():
    from slarm_bench.models.storm_net import upsample_channels_last, upsampler

    stages = upsampler(12, (10, 6, 4))
    for m in stages:
        if isinstance(m, layers.LayerNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.1)
            torch.nn.init.normal_(m.bias, 0.0, 0.1)
    x = torch.randn(2, 3, 5, 12)
    with torch.no_grad():
        want = stages(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        got = upsample_channels_last(stages, x)
    assert got.shape == (2, 24, 40, 4)
    assert torch.allclose(got, want, atol=1e-5)


def test_bf16_autocast_forward_is_close_to_fp32():
    cfg = tiny_config()
    model = StormNet(cfg).eval()
    inputs = tiny_inputs(cfg)
    with torch.no_grad():
        ref = model(*inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(*inputs)
    assert low.means.dtype == torch.float32 and low.forward_flow.dtype == torch.float32
    assert torch.allclose(low.motion_weights, ref.motion_weights, atol=0.05)
    assert torch.allclose(low.depths, ref.depths, rtol=0.02)
