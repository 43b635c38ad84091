"""SLARM network, Model wrapper, streaming and losses on tiny CPU configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slarm_bench.clip import SLARM_CLASSES, Clip
from slarm_bench.losses_slarm import SlarmLossConfig, slarm_losses, slarm_training_outputs
from slarm_bench.models.layers import apply_rope_2d, rope_2d_angles
from slarm_bench.models.registry import load_model
from slarm_bench.models.slarm import SlarmInputError, SlarmModel
from slarm_bench.models.slarm_net import SlarmConfigError, SlarmNet, block_causal_mask, slarm_config
from slarm_bench.render import Gaussians, render

H, W, V = 16, 24, 3


def tiny_cfg(**kw):
    base = dict(image_size=(H, W), embed_dim=32, num_heads=2, depth=2, sky_hidden=16)
    return slarm_config("slarm-t", **{**base, **kw})


def tiny_clip(t: int = 4, fps: float = 10.0, seed: int = 0) -> Clip:
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4, dtype=np.float32), (t, V, 1, 1))
    c2w[:, :, 0, 3] = np.arange(t)[:, None] * 0.5
    c2w[:, :, 1, 3] = np.arange(V)[None] * 0.2
    k = np.tile(np.array([[20, 0, 12], [0, 20, 8], [0, 0, 1]], np.float32), (t, V, 1, 1))
    meta = dict(dataset="toy", scene="s", camera_names=["L", "F", "R"], label_names=list(SLARM_CLASSES),
                fps=fps, frame_indices=list(range(t)), schema_version=1)
    sem = rng.integers(0, 9, (t, V, H, W)).astype(np.uint8)
    sem[:, :, :2] = 255
    return Clip(images=rng.integers(0, 255, (t, V, H, W, 3), dtype=np.uint8), intrinsics=k, cam_to_world=c2w,
                time=np.arange(t) / fps, meta=meta, semantic=sem,
                depth=rng.uniform(0, 30, (t, V, H, W)).astype(np.float32))


def tiny_model(attention: str = "causal", **kw) -> SlarmModel:
    torch.manual_seed(0)
    model = SlarmModel(cfg=tiny_cfg(), attention=attention, backend="torch", **kw)
    model.name = f"slarm-{attention}"
    return model


def net_inputs(net: SlarmNet, t: int = 3, seed: int = 0):
    clip = tiny_clip(t, seed=seed)
    img = torch.from_numpy(clip.images).permute(0, 1, 4, 2, 3).float()[None] / 127.5 - 1
    return (img, torch.from_numpy(clip.cam_to_world)[None], torch.from_numpy(clip.intrinsics)[None],
            torch.from_numpy(clip.time).float()[None] / 2)


# --- network ---------------------------------------------------------------------------------------------
@torch.no_grad()
def test_shapes_and_activations():
    net = SlarmNet(tiny_cfg()).eval()
    out = net(*net_inputs(net))
    assert out.means.shape == (1, 3, V, H, W, 3) and out.motion.shape == (1, 3, V, H, W, 3, 3)
    assert out.features.shape == (1, 3, V, H, W, 64)
    assert 0 < out.colors.min() and out.colors.max() < 1
    assert out.scales.max() <= 0.5 and out.scales.min() > 0
    assert 0.2 <= out.depths.min() and out.depths.max() <= 400
    # zero-initialised raw speed: every coefficient has magnitude 100 * sigmoid(-6.9068) ~ 0.1
    speed = out.motion.norm(dim=-1)
    assert torch.allclose(speed, torch.full_like(speed, 0.1), atol=1e-4)
    # affine starts at the identity
    assert torch.allclose(out.affine, torch.eye(3, 4).expand_as(out.affine))
    assert net.decode_features(out.features).norm(dim=-1).sub(1).abs().max() < 1e-5


def test_activation_formulas_at_known_raw_values():
    cfg = tiny_cfg()
    assert math.isclose(min(math.exp(0 + cfg.scale_bias), 0.5), 0.5)
    assert math.isclose(1 / (1 + math.exp(2)), torch.sigmoid(torch.tensor(0.0 + cfg.opacity_bias)).item(),
                        rel_tol=1e-6)


def test_config_errors():
    with pytest.raises(SlarmConfigError, match="motion_order"):
        tiny_cfg(motion_order=4)
    with pytest.raises(SlarmConfigError, match="patch_size"):
        tiny_cfg(image_size=(15, 24))
    net = SlarmNet(tiny_cfg())
    img, c2w, k, t = net_inputs(net)
    with pytest.raises(SlarmConfigError, match="cameras"):
        net(img[:, :, :2], c2w[:, :, :2], k[:, :, :2], t)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_taylor_positions_and_backward_flow(order):
    torch.manual_seed(order)
    n = 5
    means, motion = torch.randn(1, n, 3), torch.randn(1, n, order, 3)
    origin = torch.tensor([0.3])
    g = Gaussians(means=means, quats=torch.tensor([1.0, 0, 0, 0]).expand(1, n, 4),
                  scales=torch.full((1, n, 3), 0.1), opacities=torch.full((1, n), 0.9),
                  colors=torch.rand(1, n, 3), motion=motion, origin_time=origin)
    t = 1.1
    dt = t - 0.3
    hand = means + sum(motion[:, :, i] * dt ** (i + 1) / math.factorial(i + 1) for i in range(order))
    assert torch.allclose(g.at_time(t), hand, atol=1e-5)
    fps = 10.0
    back = (g.at_time(t) - g.at_time(t - 1 / fps)) * fps
    # the rendered flow of a single opaque Gaussian covering the image centre is its backward difference
    one = g.select(torch.tensor([0]))
    one.means[:] = torch.tensor([0.0, 0.0, 5.0]) - (one.at_time(t) - one.means)
    one.scales[:] = 2.0
    one.opacities[:] = 1.0
    k = torch.tensor([[[[20.0, 0, 12], [0, 20, 8], [0, 0, 1]]]])
    r = render(one, torch.eye(4)[None, None], k, (H, W), time=t, backend="torch", flow=True, flow_dt=1 / fps)
    centre = r.flow[0, 0, H // 2, W // 2] / r.alpha[0, 0, H // 2, W // 2]
    assert torch.allclose(centre, back[0, 0], atol=1e-3)


def test_model_motion_order_reaches_gaussians():
    model = SlarmModel(cfg=tiny_cfg(motion_order=1), backend="torch")
    scene = model.reconstruct(tiny_clip(2))
    assert scene.gaussians.motion_order == 1


# --- RoPE --------------------------------------------------------------------------------------------------
def test_rope_relative_and_norm_preserving():
    torch.manual_seed(0)
    hd = 16
    q, k = torch.randn(1, 1, 1, hd), torch.randn(1, 1, 1, hd)
    pos = torch.tensor([[3, 5], [1, 2]])
    shift = torch.tensor([[4, -2]])

    def dot(pq, pk):
        cq, sq = rope_2d_angles(pq[None], hd)
        ck, sk = rope_2d_angles(pk[None], hd)
        return (apply_rope_2d(q, cq, sq) * apply_rope_2d(k, ck, sk)).sum()

    a, b = pos[0:1], pos[1:2]
    assert torch.allclose(dot(a, b), dot(a + shift, b + shift), atol=1e-5)
    assert not torch.allclose(dot(a, b), dot(a + shift, b), atol=1e-3)
    c, s = rope_2d_angles(a, hd)
    assert torch.allclose(apply_rope_2d(q, c, s).norm(), q.norm(), atol=1e-5)
    c0, s0 = rope_2d_angles(torch.zeros(1, 2, dtype=torch.long), hd)
    assert torch.equal(apply_rope_2d(q, c0, s0), q)  # position 0: no rotation


def test_block_causal_mask():
    m = block_causal_mask(3, 2)
    assert m[5, 0] and m[2, 3] and not m[0, 2]
    w = block_causal_mask(4, 1, window=2)
    assert w.tolist()[3] == [False, False, True, True]


# --- batch and streaming -----------------------------------------------------------------------------------
def _fields(g: Gaussians):
    return g.means, g.colors, g.opacities, g.scales, g.features, g.motion


@pytest.mark.parametrize("attention", ["full", "window"])
def test_streaming_equals_batch_block_causal(attention):
    clip = tiny_clip(5)
    model = tiny_model(attention, window=2)
    batch = model.reconstruct(clip).payload["frames"]
    state = model.start()
    per = H * W * V
    for i in range(clip.num_frames):
        state, scene = model.step(state, clip.select([i]))
        own = scene.payload["step_gaussians"]
        ref = model._gaussians(type(batch)(**{k: (getattr(batch, k)[:, i:i + 1])
                                              for k in batch.__dataclass_fields__}), clip.time[i:i + 1])
        for a, b in zip(_fields(own), _fields(ref)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)
        assert own.means.shape[1] == per


def test_streaming_full_last_scene_equals_batch_scene():
    clip = tiny_clip(3)
    model = tiny_model("full")
    batch = model.reconstruct(clip)
    state = model.start()
    for i in range(3):
        state, scene = model.step(state, clip.select([i]))
    assert torch.allclose(scene.gaussians.means, batch.gaussians.means, atol=1e-4, rtol=1e-5)
    assert torch.allclose(scene.gaussians.origin_time, batch.gaussians.origin_time)


def test_window_cache_is_bounded():
    clip = tiny_clip(7)
    model = tiny_model("window", window=3)
    state = model.start()
    sizes = []
    for i in range(7):
        state, scene = model.step(state, clip.select([i]))
        assert state.cached_timesteps <= 3
        sizes.append(state.kv[0][0].shape[2])
        assert scene.gaussians.num_gaussians <= 3 * V * H * W
    assert sizes[-1] == sizes[-2] == sizes[-3]  # constant once the window is full
    full = tiny_model("full")
    state = full.start()
    for i in range(4):
        state, _ = full.step(state, clip.select([i]))
    assert state.cached_timesteps == 4


def test_streaming_bad_inputs_and_reset():
    clip = tiny_clip(8)
    model = tiny_model("window", window=2)
    state = model.start()
    state, _ = model.step(state, clip.select([2]))
    with pytest.raises(SlarmInputError, match="time order"):
        model.step(state, clip.select([1]))
    with pytest.raises(SlarmInputError, match="frame periods"):
        model.step(state, clip.select([6]))           # 4 periods > window + 1 = 3
    state2, _ = model.step(state, clip.select([5]))    # exactly 3 periods is allowed
    with pytest.raises(SlarmInputError, match="cameras"):
        model.step(model.reset(), clip.select([0], cameras=[0, 1]))
    with pytest.raises(SlarmInputError, match="one timestep"):
        model.step(model.start(), clip.select([0, 1]))
    fresh = model.reset()
    assert fresh.kv is None and fresh.last_time is None
    model.step(fresh, clip.select([0]))                # an earlier time is fine after reset
    with pytest.raises(SlarmInputError, match="batch preset"):
        tiny_model("causal").start()


def test_render_prediction_fields():
    clip = tiny_clip(2)
    model = tiny_model("causal")
    scene = model.reconstruct(clip)
    pred = model.render(scene, clip.cam_to_world[1], clip.intrinsics[1], 0.15, (H, W))
    assert pred.rgb.shape == (V, H, W, 3) and 0 <= pred.rgb.min() and pred.rgb.max() <= 1
    assert pred.depth.shape == (V, H, W) and pred.flow.shape == (V, H, W, 3)
    assert pred.semantic.dtype == torch.int64 and pred.semantic.max() < len(SLARM_CLASSES)
    assert pred.features.shape == (V, H, W, 512)
    assert model.provenance()["text_encoder"]  # random tower here, CLIP where its weights are cached


# --- registry and losses -----------------------------------------------------------------------------------
def test_registry_entries_load():
    for name, attention in [("slarm-w", "window"), ("slarm-f", "full"), ("slarm", "causal")]:
        m = load_model(name, backend="torch")
        assert m.name == name and m.attention == attention and m.cfg.embed_dim == 256
        assert m.provenance()["checkpoint"].endswith("slarm-t.safetensors")   # the shipped weights
    o1 = load_model("slarm-t-o1", backend="torch")   # its own shipped weights
    assert o1.cfg.motion_order == 1 and o1.provenance()["checkpoint"].endswith("slarm-t-o1.safetensors")
    o2 = load_model("slarm-t-o2", backend="torch")   # its own shipped weights
    assert o2.cfg.motion_order == 2 and o2.provenance()["checkpoint"].endswith("slarm-t-o2.safetensors")


def test_losses_and_gradients():
    torch.manual_seed(0)
    net = SlarmNet(tiny_cfg())
    img, c2w, k, _ = net_inputs(net, t=2)
    clip = tiny_clip(2)
    time_s = torch.from_numpy(clip.time).float()[None]
    out = slarm_training_outputs(net, img, c2w, k, time_s, c2w[:, 1], k[:, 1], time_s[:, 1], fps=10.0,
                                 backend="torch")
    teacher = torch.nn.functional.normalize(torch.randn(1, V, H, W, 512), dim=-1)
    batch = {"rgb": (img[:, 1].permute(0, 1, 3, 4, 2) + 1) / 2, "depth": torch.from_numpy(clip.depth[1:2]),
             "sky": torch.zeros(1, V, H, W, dtype=torch.bool), "teacher": teacher,
             "teacher_valid": torch.ones(1, V, H, W, dtype=torch.bool)}
    terms = slarm_losses(out, batch, SlarmLossConfig())
    assert set(terms) == {"rgb", "depth", "sky", "motion", "feature", "total"}
    assert torch.isclose(terms["motion"], 0.005 * out["motion"].pow(2).mean())
    assert torch.isclose(terms["total"], sum(v for k_, v in terms.items() if k_ != "total"))
    terms["total"].backward()
    assert net.feature_decoder[0].weight.grad.abs().sum() > 0
    assert net.blocks[0].glob.attn.qkv.weight.grad.abs().sum() > 0
