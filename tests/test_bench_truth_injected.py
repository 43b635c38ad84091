"""benchmarks/bench_truth_injected.py: the wrapped model never sees the truth, and the truth lands where it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slarm_bench.clip import SLARM_CLASSES, Boxes
from slarm_bench.metrics.semantic import predict_semantic
from tests.benchmark_script import load_benchmark
from tests.test_slarm import H, V, W, tiny_clip, tiny_model


def _probe_module():
    return load_benchmark("bench_truth_injected")


def _context(t: int = 2):
    clip = tiny_clip(t)
    rng = np.random.default_rng(1)
    return clip.replace(flow=rng.normal(0, 5, (t, V, H, W, 3)).astype(np.float32))


class _Spy:
    """Wraps a model and records the context fields it was given."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def reconstruct(self, context):
        self.seen.append((context.flow, context.semantic, context.instance, context.boxes))
        return self.inner.reconstruct(context)


def test_velocity_truth_replaces_the_motion_and_hides_the_flow_from_the_model():
    probe = _probe_module()
    spy = _Spy(tiny_model())
    wrapped = probe.TruthInjected(spy, ("velocity",))
    assert wrapped.context_fields == ("flow",)
    context = _context()
    scene = wrapped.reconstruct(context)
    assert spy.seen == [(None, None, None, None)]
    motion = scene.gaussians.motion                                      # [1, T*V*H*W, 3, 3]
    assert motion.shape == (1, context.flow[..., 0].size, 3, 3)
    torch.testing.assert_close(motion[0, :, 0], torch.from_numpy(context.flow.reshape(-1, 3)))
    assert float(motion[0, :, 1:].abs().max()) == 0.0


def test_acceleration_truth_is_each_pixels_box_acceleration_at_its_frame_as_order_two():
    probe = _probe_module()
    model = tiny_model()
    wrapped = probe.TruthInjected(model, ("velocity", "acceleration"))
    assert set(wrapped.context_fields) == {"flow", "instance", "boxes"}
    context = _context()
    instance = np.zeros(context.semantic.shape, np.int32)
    instance[:, 0, 4:8, 4:10] = 7                                       # track 7 on camera 0 at both frames
    acc = np.array([[1.0, 0, 0], [0, 2.0, 0]], np.float32)              # its acceleration at frame 0 and 1
    boxes = Boxes(frame=np.array([0, 1], np.int32), track_id=np.full(2, 7, np.int64),
                  label=np.zeros(2, np.uint8), centre=np.zeros((2, 3), np.float32),
                  size=np.ones((2, 3), np.float32), yaw=np.zeros(2, np.float32),
                  velocity=np.zeros((2, 3), np.float32), acceleration=acc, num_points=np.zeros(2, np.int32))
    spy = _Spy(model)
    wrapped.inner = spy
    motion = wrapped.reconstruct(context.replace(instance=instance, boxes=boxes)).gaussians.motion[0]
    assert spy.seen == [(None, None, None, None)]
    expect = np.zeros((2, V, H, W, 3), np.float32)
    expect[0][instance[0] == 7] = acc[0]
    expect[1][instance[1] == 7] = acc[1]
    torch.testing.assert_close(motion[:, 1], torch.from_numpy(expect.reshape(-1, 3)))
    torch.testing.assert_close(motion[:, 0], torch.from_numpy(context.flow.reshape(-1, 3)))
    with pytest.raises(SystemExit, match="needs velocity too"):
        probe.TruthInjected(model, ("acceleration",))


def test_feature_codes_decode_to_their_class_and_land_on_labelled_pixels_only():
    probe = _probe_module()
    model = tiny_model()
    wrapped = probe.TruthInjected(model, ("features",))
    codes = wrapped.codes                                               # [9, 64] in (0,1)
    decoded = model.net.decode_features(codes).float()
    got = predict_semantic(decoded, model.class_embeddings(), others_index=SLARM_CLASSES.index("others"))
    assert got.tolist() == list(range(len(SLARM_CLASSES)))
    context = _context()
    own = model.reconstruct(context).gaussians.features[0]
    features = wrapped.reconstruct(context).gaussians.features[0]
    labels = torch.from_numpy(context.semantic.reshape(-1).astype(np.int64))
    labelled = labels != probe.UNLABELLED
    torch.testing.assert_close(features[labelled], codes[labels[labelled]])
    torch.testing.assert_close(features[~labelled], own[~labelled])


def test_label_render_reads_the_true_classes_back_and_shows_sky_where_nothing_is():
    probe = _probe_module()
    model = tiny_model()
    wrapped = probe.TruthInjected(model, ("labels",))
    context = _context(1)
    scene = wrapped.reconstruct(context)
    g = scene.gaussians
    # Geometry exact enough to read labels back: small opaque Gaussians on camera 0's pixel rays only (the
    # tiny clip's cameras look the same way, so the others' Gaussians would occlude camera 0's).
    n = g.means.shape[1]
    opacities = torch.zeros(1, n)
    opacities[0, :H * W] = 1.0
    scene.gaussians = type(g)(means=g.means, quats=g.quats, scales=torch.full((1, n, 3), 1e-3),
                              opacities=opacities, colors=g.colors, features=g.features,
                              motion=g.motion, origin_time=g.origin_time)
    pred = wrapped.render(scene, context.cam_to_world[0], context.intrinsics[0], float(context.time[0]), (H, W))
    truth = torch.from_numpy(context.semantic[0, 0].astype(np.int64))
    labelled = truth != probe.UNLABELLED
    assert float((pred.semantic[0][labelled] == truth[labelled]).float().mean()) > 0.9
    # The unlabelled rows carry all-zero one-hot vectors: nothing is composited there, so the rule says sky.
    assert bool((pred.semantic[0][~labelled] == SLARM_CLASSES.index("sky")).all())


def test_a_model_without_features_is_refused_with_a_message():
    probe = _probe_module()
    wrapped = probe.TruthInjected(tiny_model(), ("velocity",))
    scene = wrapped.inner.reconstruct(_context())
    scene.gaussians = type(scene.gaussians)(**{**scene.gaussians.__dict__, "features": None})
    with pytest.raises(SystemExit, match="no semantic features"):
        wrapped._true_features(scene.gaussians, _context())


def test_semantic_truth_on_a_model_without_semantics_is_refused_before_any_work():
    probe = _probe_module()
    model = tiny_model()
    model.produces = ("rgb", "depth", "flow")          # as a STORM model declares
    for truth in (("features",), ("labels",)):
        with pytest.raises(SystemExit, match="renders no semantics"):
            probe.TruthInjected(model, truth)
