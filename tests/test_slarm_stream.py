"""SLARM streaming with preallocated KV caches (ring for the window, doubling for full attention) against the
previous concatenating implementation and the masked batch forward; tiny CPU configs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from slarm_bench.clip import SLARM_CLASSES, Clip
from slarm_bench.errors import SlarmBenchError
from slarm_bench.models.layers import RopeAttention, apply_rope_2d, rope_2d_angles
from slarm_bench.models.registry import load_model
from slarm_bench.models.slarm import SlarmInputError, SlarmModel
from slarm_bench.models.slarm_net import SlarmFrames, slarm_config
from slarm_bench.render import Gaussians

H, W, V = 16, 24, 3


def tiny_clip(t: int, fps: float = 10.0, seed: int = 0) -> Clip:
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4, dtype=np.float32), (t, V, 1, 1))
    c2w[:, :, 0, 3] = np.arange(t)[:, None] * 0.5
    c2w[:, :, 1, 3] = np.arange(V)[None] * 0.2
    k = np.tile(np.array([[20, 0, 12], [0, 20, 8], [0, 0, 1]], np.float32), (t, V, 1, 1))
    meta = dict(dataset="toy", scene="s", camera_names=["L", "F", "R"], label_names=list(SLARM_CLASSES),
                fps=fps, frame_indices=list(range(t)), schema_version=1)
    return Clip(images=rng.integers(0, 255, (t, V, H, W, 3), dtype=np.uint8), intrinsics=k, cam_to_world=c2w,
                time=np.arange(t) / fps, meta=meta)


def tiny_model(attention: str = "window", **kw) -> SlarmModel:
    torch.manual_seed(0)
    cfg = slarm_config("slarm-t", image_size=(H, W), embed_dim=32, num_heads=2, depth=2, sky_hidden=16)
    model = SlarmModel(cfg=cfg, attention=attention, backend="torch", **kw)
    model.name = f"slarm-{attention}"
    return model


def concat_reference(model: SlarmModel, clip: Clip) -> list[SlarmFrames]:
    """The previous streaming step: per block torch.cat of the cached (k, v) and this timestep's, then the
    last W - 1 timesteps kept (window) or all (full)."""
    keep = None if model.attention == "full" else model.window - 1
    past, outs = None, []
    with torch.no_grad():
        for i in range(clip.num_frames):
            frame = clip.select([i])
            img, c2w, k = model._inputs(frame)
            mt = torch.tensor([[(frame.time[0] - clip.time[0]) / model.cfg.time_span]], dtype=torch.float32)
            with model._autocast():
                out, kvs = model.net.forward_step(img, c2w, k, mt, past)
            n, new = kvs[0][0].shape[2], []
            for j, (kk, vv) in enumerate(kvs):
                if past is not None:
                    kk, vv = torch.cat([past[j][0], kk], dim=2), torch.cat([past[j][1], vv], dim=2)
                if keep is not None:
                    kk, vv = kk[:, :, max(0, kk.shape[2] - keep * n):], vv[:, :, max(0, vv.shape[2] - keep * n):]
                new.append((kk, vv))
            past = new if new[0][0].shape[2] else None
            outs.append(out)
    return outs


def _fields(g: Gaussians):
    return g.means, g.colors, g.opacities, g.scales, g.quats, g.features, g.motion, g.origin_time


def assert_own_equal(a: dict, b: dict, atol=1e-4, rtol=1e-5):
    """The step's own Gaussians, sky and affine (state.kept[-1]) against another's."""
    for x, y in zip(_fields(a["gaussians"]), _fields(b["gaussians"])):
        assert torch.allclose(x, y, atol=atol, rtol=rtol), (x - y).abs().max()
    for name in ("sky", "affine"):
        assert torch.allclose(a[name], b[name], atol=atol, rtol=rtol), (a[name] - b[name]).abs().max()


def own_of(model: SlarmModel, out: SlarmFrames, time: float) -> dict:
    """What a step keeps of its own timestep (as SlarmModel.step builds it), from network outputs."""
    return {"gaussians": model._gaussians(out, np.array([time])), "sky": out.sky_tokens.float().mean(dim=(1, 2)),
            "affine": out.affine[:, 0]}


# --- layers ------------------------------------------------------------------------------------------------
def _old_apply_rope_2d(x, cos, sin):
    half, quarter = x.shape[-1] // 2, x.shape[-1] // 4
    parts = []
    for s in (slice(0, half), slice(half, 2 * half)):
        xs = x[..., s]
        parts.append(torch.cat([-xs[..., quarter:], xs[..., :quarter]], dim=-1))
    rotated = torch.cat(parts, dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_matches_previous_implementation_bitwise(dtype):
    g = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 20, (2, 7, 2), generator=g)
    cos, sin = rope_2d_angles(pos[:, None], 16)                        # [2,1,7,16]
    x = torch.randn(2, 3, 7, 16, generator=g).to(dtype)
    assert torch.equal(apply_rope_2d(x, cos, sin), _old_apply_rope_2d(x, cos, sin))
    both = torch.stack([x, x.flip(1)])                                  # q and k in one call
    out = apply_rope_2d(both, cos, sin)
    assert torch.equal(out[1], _old_apply_rope_2d(x.flip(1), cos, sin))


@torch.no_grad()
def test_attention_cache_in_any_slot_order_equals_prefix():
    torch.manual_seed(0)
    n, d, heads = 5, 16, 2
    attn = RopeAttention(d, heads).eval()
    cos, sin = rope_2d_angles(torch.randint(0, 9, (n, 2)), d // heads)
    x = torch.randn(1, n, d)
    pk, pv = torch.randn(1, heads, 2 * n, d // heads), torch.randn(1, heads, 2 * n, d // heads)   # 2 timesteps
    ref, own = attn(x, cos, sin, past_kv=(pk, pv))
    # a ring of 3 slots: earlier timestep A in slot 2, B in slot 0, this timestep written into slot 1
    kb, vb = torch.full((1, heads, 3 * n, d // heads), 7.0), torch.full((1, heads, 3 * n, d // heads), 7.0)
    kb[:, :, 2 * n:], vb[:, :, 2 * n:] = pk[:, :, :n], pv[:, :, :n]
    kb[:, :, :n], vb[:, :, :n] = pk[:, :, n:], pv[:, :, n:]
    for index in (torch.arange(n) + n, slice(n, 2 * n)):
        kb[:, :, n:2 * n], vb[:, :, n:2 * n] = 7.0, 7.0
        out, none = attn(x, cos, sin, cache=(kb, vb), cache_index=index)
        assert none is None
        assert torch.allclose(out, ref, atol=1e-6)
        assert torch.equal(kb[:, :, n:2 * n], own[0]) and torch.equal(vb[:, :, n:2 * n], own[1])


# --- streaming -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("attention,window", [("window", 3), ("window", 2), ("window", 1), ("full", 3)])
def test_cached_streaming_equals_concatenation_and_batch(attention, window):
    clip = tiny_clip(11)                       # several window fills; full crosses capacity 4 and 8
    model = tiny_model(attention, window=window)
    ref = concat_reference(model, clip)
    batch = model.reconstruct(clip).payload["frames"]
    state = model.start()
    for i in range(clip.num_frames):
        state, scene = model.step(state, clip.select([i]))
        assert scene.payload["step_gaussians"] is state.kept[-1]["gaussians"]
        assert_own_equal(state.kept[-1], own_of(model, ref[i], clip.time[i]))
        one = SlarmFrames(**{f: getattr(batch, f)[:, i:i + 1] for f in SlarmFrames.__dataclass_fields__})
        assert_own_equal(state.kept[-1], own_of(model, one, clip.time[i]))
        assert state.cached_timesteps == (i + 1 if attention == "full" else min(i + 1, window))


def test_ring_slots_hold_the_last_window_of_keys():
    clip = tiny_clip(8)
    model = tiny_model("window", window=3)
    state = model.start()
    ks = []                                                # this timestep's keys of block 0, per step
    with torch.no_grad():
        for i in range(clip.num_frames):
            frame = clip.select([i])
            img, c2w, k = model._inputs(frame)
            mt = torch.tensor([[(frame.time[0] - clip.time[0]) / model.cfg.time_span]])
            ks.append(model.net.forward_step(img, c2w, k, mt, None)[1][0][0])   # keys do not depend on past
            state, _ = model.step(state, frame)
    n = state.kv.tokens
    for s in range(clip.num_frames - 3, clip.num_frames):  # the last W timesteps, in slot s mod W
        slot = s % 3
        assert torch.allclose(state.kv[0][0][:, :, slot * n:(slot + 1) * n], ks[s], atol=1e-5)


def test_cache_memory_and_shapes_constant_after_fill():
    clip = tiny_clip(10)
    model = tiny_model("window", window=3)
    state = model.start()
    layouts, statics = [], []
    for i in range(clip.num_frames):
        statics.append(state.kv.slot_views()[3] if state.kv is not None else False)
        state, _ = model.step(state, clip.select([i]))
        kv = state.kv
        layouts.append([(t.data_ptr(), tuple(t.shape)) for t in kv.k + kv.v])
        assert kv.capacity == 3
    assert all(lay == layouts[0] for lay in layouts)      # allocated once, at the first step; never moves
    assert statics == [False, False, True] + [True] * 7   # static shapes from the step that fills the ring
    assert state.kv.nbytes() == 2 * 2 * 3 * state.kv.tokens * 32 * 4     # 2 blocks x (k, v) x W x n x D x 4 B
    # full attention: the capacity doubles (4 -> 8 -> 16) and the buffers move only then
    full = tiny_model("full")
    state = full.start()
    caps, ptrs = [], []
    for i in range(clip.num_frames):
        state, _ = full.step(state, clip.select([i]))
        caps.append(state.kv.capacity)
        ptrs.append(state.kv.k[0].data_ptr())
    assert caps == [4, 4, 4, 4, 8, 8, 8, 8, 16, 16]
    assert [a != b for a, b in zip(ptrs, ptrs[1:])] == [c != d for c, d in zip(caps, caps[1:])]


def test_reset_and_stale_states():
    a, b = tiny_clip(8, seed=1), tiny_clip(7, seed=2)
    model = tiny_model("window", window=3)
    state = model.start()
    for i in range(7):
        state, _ = model.step(state, a.select([i]))
    old = state
    state = model.reset()
    assert state.kv is None and state.cached_timesteps == 0
    ref = concat_reference(model, b)
    for i in range(b.num_frames):
        state, _ = model.step(state, b.select([i]))
        assert_own_equal(state.kept[-1], own_of(model, ref[i], b.time[i]))
    model.step(old, a.select([7]))                        # without compile, each session has its own cache
    s1 = model.start()
    s1, _ = model.step(s1, a.select([0]))
    s2, _ = model.step(s1, a.select([1]))
    with pytest.raises(SlarmInputError, match="step the state the last step returned"):
        model.step(s1, a.select([1]))                     # s1's cache was moved on by the step to s2
    model.step(s2, a.select([2]))


def test_compile_option_plumbing_and_shared_cache():
    m = load_model("slarm-w", backend="torch", compile=True)
    assert m.compile == "reduce-overhead" and m.provenance()["compile"].startswith("reduce-overhead")
    assert "compile" not in load_model("slarm-w", backend="torch").provenance()
    with pytest.raises(SlarmBenchError, match="compile mode"):
        tiny_model("window", compile="fastest")
    # with compile the model keeps one cache for every session: a superseded session cannot step
    model = tiny_model("window", window=3, compile="reduce-overhead")
    clip = tiny_clip(4)
    first, _ = model.step(model.start(), clip.select([0]))   # fill steps run eager: nothing compiles here
    second, _ = model.step(model.start(), clip.select([0]))
    assert second.kv is first.kv
    with pytest.raises(SlarmInputError, match="superseded"):
        model.step(first, clip.select([1]))
    model.step(second, clip.select([1]))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_window_steps_equal_eager():
    """torch.compile (mode reduce-overhead: no CUDA graphs on the CPU) on the full-ring steps; about a
    minute on a 2-core CPU when inductor's on-disk cache is cold, nearly all of it compilation."""
    from torch._dynamo.utils import counters

    clip = tiny_clip(8)
    ref = list(_stream(tiny_model("window", window=3), clip))
    model = tiny_model("window", window=3, compile="reduce-overhead")
    for mine, theirs in zip(_stream(model, clip), ref):
        assert_own_equal(mine, theirs)
    assert model._compiled_step is not None
    graphs = counters["stats"]["unique_graphs"]
    for mine, theirs in zip(_stream(model, clip), ref):   # a new session: same cache, same graph
        assert_own_equal(mine, theirs)
    assert counters["stats"]["unique_graphs"] == graphs


def _stream(model: SlarmModel, clip: Clip):
    """Each step's own timestep (state.kept[-1])."""
    state = model.start()
    for i in range(clip.num_frames):
        state, _ = model.step(state, clip.select([i]))
        yield state.kept[-1]
