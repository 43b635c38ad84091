"""SLARM streaming with preallocated KV caches (ring for the window, doubling for full attention) against the
previous concatenating implementation and the masked batch forward; tiny CPU configs."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from slarm_bench.clip import SLARM_CLASSES, Clip
from slarm_bench.errors import SlarmBenchError
from slarm_bench.models.base import Scene
from slarm_bench.models.layers import RopeAttention, apply_rope_2d, rope_2d_angles
from slarm_bench.models.registry import load_model
from slarm_bench.models.slarm import SlarmInputError, SlarmModel
from slarm_bench.models.slarm_net import SlarmFrames, slarm_config
from slarm_bench.render import Gaussians, RenderError, check_cameras, render

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
    # the validity flag computed inside the compiled graph: a NaN pose gives NaN means, raised by the next read
    state = model.start()
    for i in range(4):
        state, scene = model.step(state, clip.select([i]))
    bad = clip.select([4])
    bad.cam_to_world[0, 1, 0, 3] = np.nan
    with pytest.raises(RenderError, match=r"streaming step 5 .*non-finite values \(NaN or inf\) in means"):
        state, scene = model.step(state, bad)
        model.step(state, clip.select([5]))
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_render_heads_equal_eager():
    """With `compile`, render() runs the sky colour and the feature decoding + class query compiled: the
    same Prediction as eager (the rasterizer is not compiled)."""
    clip = tiny_clip(4)
    eager, compiled = tiny_model("window", window=3), tiny_model("window", window=3, compile="default")
    compiled.net.load_state_dict(eager.net.state_dict())
    assert compiled._heads_fn is not eager._heads_fn
    states = [m.start() for m in (eager, compiled)]
    for i in range(clip.num_frames):
        frame = clip.select([i])
        preds = []
        for j, m in enumerate((eager, compiled)):
            states[j], scene = m.step(states[j], frame)
            preds.append(render_frame(m, scene, frame))
        a, b = preds
        for name in ("rgb", "depth", "flow", "features"):
            x, y = getattr(a, name), getattr(b, name)
            assert torch.allclose(x, y, atol=1e-4, rtol=1e-4), (name, (x - y).abs().max())
        assert (a.semantic == b.semantic).float().mean() > 0.999


def _stream(model: SlarmModel, clip: Clip):
    """Each step's own timestep (state.kept[-1])."""
    state = model.start()
    for i in range(clip.num_frames):
        state, _ = model.step(state, clip.select([i]))
        yield state.kept[-1]


# --- validation without host syncs (streaming render) ------------------------------------------------------
def poison(monkeypatch, model: SlarmModel, at_call: int, field: str = "means", value: float = float("nan")):
    """Make the network's `at_call`-th streaming forward (1-based) return `value` in one pixel of `field`
    (for quats: the whole quaternion, so that value 0 gives a zero-norm one)."""
    forward, calls = model.net.forward_cached, [0]

    def wrapped(*args, **kwargs):
        out = forward(*args, **kwargs)
        calls[0] += 1
        if calls[0] == at_call:
            x = getattr(out, field).clone()
            x.view(-1, 4 if field == "quats" else 1)[0] = value
            out = dataclasses.replace(out, **{field: x})
        return out

    monkeypatch.setattr(model.net, "forward_cached", wrapped)


def render_frame(model: SlarmModel, scene: Scene, frame: Clip):
    return model.render(scene, frame.cam_to_world[0], frame.intrinsics[0], float(frame.time[0]), (H, W))


NAN_STEP_3 = r"streaming step 3 \(t = 0\.200 s\): Gaussians have non-finite values \(NaN or inf\) in means"


@pytest.mark.parametrize("then", ["render", "step", "reset", "synchronize"])
@pytest.mark.parametrize("compile", [None, "reduce-overhead"])    # compile: the shared cache (steps run eager)
def test_nan_gaussians_raise_no_later_than_the_next_read(monkeypatch, then, compile):
    clip = tiny_clip(6)
    model = tiny_model("window", window=4, compile=compile)  # W = 4: no full-ring step, nothing compiles here
    poison(monkeypatch, model, at_call=3)
    state = model.start()
    for i in range(2):
        state, scene = model.step(state, clip.select([i]))
        render_frame(model, scene, clip.select([i]))
    frame = clip.select([2])
    with pytest.raises(RenderError, match=NAN_STEP_3):   # the poisoned step, or at the latest the next read
        state, scene = model.step(state, frame)
        if then == "render":
            render_frame(model, scene, frame)
        elif then == "step":
            model.step(state, clip.select([3]))
        elif then == "reset":
            model.reset()
        else:
            model.synchronize()
    # a Scene holding the invalid Gaussians never renders (every call raises)
    with pytest.raises(RenderError, match=NAN_STEP_3):
        render_frame(model, scene, frame)
    # the model recovers: a fresh session streams and renders (the error was reported, no longer pending)
    state = model.reset()
    for i in range(3, 6):
        state, scene = model.step(state, clip.select([i]))
    pred = render_frame(model, scene, clip.select([5]))
    assert torch.isfinite(pred.rgb).all() and torch.isfinite(pred.features).all()
    assert model._compiled_step is None


@pytest.mark.parametrize("field,value,message", [("quats", 0.0, "zero-norm quaternion"),
                                                  ("features", float("inf"), "non-finite values .* in features"),
                                                  ("motion", float("nan"), "non-finite values .* in motion")])
def test_other_invalid_gaussians_raise_the_renderer_error(monkeypatch, field, value, message):
    clip = tiny_clip(3)
    model = tiny_model("full")
    poison(monkeypatch, model, at_call=2, field=field, value=value)
    state, _ = model.step(model.start(), clip.select([0]))
    with pytest.raises(RenderError, match=f"streaming step 2 .*{message}"):
        state, scene = model.step(state, clip.select([1]))
        render_frame(model, scene, clip.select([1]))


class _LateEvent:
    """Stands in for a CUDA event the device has not reached yet, until the host waits on it."""

    def __init__(self):
        self.waited = False

    def query(self) -> bool:
        return self.waited

    def synchronize(self) -> None:
        self.waited = True


def _defer(check) -> _LateEvent:
    check._event, check._ok = _LateEvent(), None
    return check._event


def test_deferred_check_is_read_after_rasterizing_or_at_the_next_step(monkeypatch):
    """The CUDA path on the CPU: a check the device has not reached is not waited for before rasterizing; it
    is read (waiting) after the rasterizer, or at the next step, and raises there."""
    clip = tiny_clip(4)
    model = tiny_model("window", window=3)
    poison(monkeypatch, model, at_call=2)
    state, scene = model.step(model.start(), clip.select([0]))
    event = _defer(scene.payload["checks"][-1])
    render_frame(model, scene, clip.select([0]))
    assert event.waited                                    # read after the rasterizer; valid: no error
    state, scene = model.step(state, clip.select([1]))     # poisoned
    event = _defer(scene.payload["checks"][-1])
    rasterized = []
    monkeypatch.setattr("slarm_bench.models.slarm.render",
                        lambda *args, **kwargs: rasterized.append(1) or render(*args, **kwargs))
    with pytest.raises(RenderError, match="streaming step 2 .*non-finite"):
        render_frame(model, scene, clip.select([1]))
    assert rasterized and event.waited                     # not ready before rasterizing: raised after it
    # without a render: the next step waits for the pending check and raises
    model, clip = tiny_model("window", window=3), tiny_clip(3)
    poison(monkeypatch, model, at_call=2)
    state, _ = model.step(model.start(), clip.select([0]))
    state, _ = model.step(state, clip.select([1]))
    assert len(model._pending) == 1
    event = _defer(model._pending[0])
    with pytest.raises(RenderError, match="streaming step 2 .*non-finite"):
        model.step(state, clip.select([2]))
    assert event.waited and not model._pending


def test_streaming_render_skips_the_device_checks_and_matches_the_checked_render(monkeypatch):
    clip = tiny_clip(4)
    model = tiny_model("window", window=2)
    state = model.start()
    for i in range(4):
        state, scene = model.step(state, clip.select([i]))
    frame = clip.select([3])
    batch_scene = dataclasses.replace(scene, payload={k: v for k, v in scene.payload.items() if k != "checks"})
    checked = render_frame(model, batch_scene, frame)      # check=True: Gaussians.validate and device camera checks

    def forbidden(*args, **kwargs):
        raise AssertionError("a device-syncing check ran on the streaming path")

    monkeypatch.setattr(Gaussians, "validate", forbidden)
    monkeypatch.setattr("slarm_bench.render._check_cameras", forbidden)
    copies = []
    monkeypatch.setattr(model, "_to_device", lambda a: copies.append(a.shape) or torch.from_numpy(a))
    streamed = render_frame(model, scene, frame)
    for name in ("rgb", "depth", "flow", "semantic", "features"):
        assert torch.equal(getattr(streamed, name), getattr(checked, name)), name
    assert copies == []                                    # the cameras of the step / last render are re-used
    other = clip.select([1])
    render_frame(model, scene, other)                      # other cameras: copied (2 small arrays)
    assert copies == [(1, V, 4, 4), (1, V, 3, 3)]


@pytest.mark.parametrize("edit,message", [
    (lambda c2w, k: (c2w * np.nan, k), "non-finite or non-invertible pose"),
    (lambda c2w, k: (c2w * 0, k), "non-finite or non-invertible pose"),
    (lambda c2w, k: (c2w, k * np.array([0, 1, 1], np.float32)[:, None]), "positive focal lengths"),
    (lambda c2w, k: (c2w, k + np.array([[np.inf, 0, 0], [0, 0, 0], [0, 0, 0]], np.float32)), "positive focal"),
    (lambda c2w, k: (c2w, k[:2]), r"intrinsics must be \[B,V,3,3\]"),
    (lambda c2w, k: (c2w[..., :3, :], k), r"cam_to_world must be \[B,V,4,4\]"),
])
def test_streaming_render_checks_cameras_on_the_host(edit, message):
    """Bad cameras raise the renderer's check=True error on the streaming path too (checked on the host)."""
    clip = tiny_clip(2)
    model = tiny_model("window")
    _, scene = model.step(model.start(), clip.select([0]))
    c2w, k = edit(clip.cam_to_world[0].copy(), clip.intrinsics[0].copy())
    with pytest.raises(RenderError, match=message):
        model.render(scene, c2w, k, 0.0, (H, W))
    # and the same message as the device check of render(check=True)
    with pytest.raises(RenderError) as host, np.errstate(all="ignore"):
        check_cameras(c2w[None].astype(np.float32), k[None].astype(np.float32), 1, (H, W))
    with pytest.raises(RenderError) as device:
        render(scene.gaussians, torch.from_numpy(c2w[None]).float(), torch.from_numpy(k[None]).float(), (H, W),
               time=0.0, backend="torch")
    assert str(host.value) == str(device.value)


def test_batch_render_keeps_the_checked_path_and_its_messages():
    clip = tiny_clip(2)
    model = tiny_model("causal")
    scene = model.reconstruct(clip)
    assert "checks" not in scene.payload
    g = scene.gaussians
    g.means = g.means.clone()
    g.means[0, 0, 0] = float("nan")
    with pytest.raises(RenderError, match=r"^Gaussians have non-finite values \(NaN or inf\) in means"):
        model.render(scene, clip.cam_to_world[1], clip.intrinsics[1], 0.1, (H, W))


def test_non_finite_frame_time_is_refused():
    clip = tiny_clip(1)
    model = tiny_model("window")
    for t in (float("nan"), float("inf"), 1e39):
        with pytest.raises(SlarmInputError, match="not a finite float32"):
            model.step(model.start(), clip.replace(time=np.array([t])))


def test_streaming_render_under_bf16_autocast_on_cpu():
    clip = tiny_clip(5)
    model = tiny_model("window", window=3, dtype=torch.bfloat16)
    dtypes = []
    model.net.feature_decoder.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    state = model.start()
    for i in range(clip.num_frames):
        state, scene = model.step(state, clip.select([i]))
        pred = render_frame(model, scene, clip.select([i]))
        assert pred.semantic.shape == (V, H, W) and pred.semantic.dtype == torch.int64
        assert 0 <= pred.semantic.min() and pred.semantic.max() < len(SLARM_CLASSES)
        assert pred.features.shape == (V, H, W, 512) and pred.features.dtype == torch.float32
        for name in ("rgb", "depth", "flow", "features"):
            assert torch.isfinite(getattr(pred, name)).all(), name
    assert dtypes and set(dtypes) == {torch.bfloat16}      # the language decoder ran under autocast
