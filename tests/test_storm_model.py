"""StormModel: random-weight presets on a tiny synthetic clip, checkpoints (ours and official-format)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from slarm_bench.clip import Clip
from slarm_bench.data.synthetic import generate_sequence
from slarm_bench.models.base import Prediction
from slarm_bench.models.checkpoint import CheckpointError, save_safetensors
from slarm_bench.models.storm import RANDOM_WEIGHTS, StormModel, StormModelError, file_sha256
from slarm_bench.models.storm_net import storm_config

H, W = 16, 24


def tiny(preset: str = "storm-t", **changes):
    return dataclasses.replace(storm_config(preset), embed_dim=32, depth=1, num_heads=2, image_size=(H, W),
                               upsample_channels=(16, 8, 8), sky_hidden=16, motion_hidden=16, motion_dim=8,
                               num_motion_tokens=0 if preset == "static-t" else 4, **changes)


@pytest.fixture(scope="module")
def window() -> Clip:
    return Clip.from_sequence_window(generate_sequence(3, height=H, width=W, num_frames=20), list(range(20)))


def run(model: StormModel, window: Clip, pos: int = 7) -> Prediction:
    scene = model.reconstruct(window.select([0, 5, 10, 15]))
    return model.render(scene, window.cam_to_world[pos], window.intrinsics[pos], float(window.time[pos]),
                        (H, W))


def check(pred: Prediction) -> None:
    assert pred.rgb.shape == (3, H, W, 3) and pred.flow.shape == (3, H, W, 3)
    assert pred.depth.shape == (3, H, W)
    for x in (pred.rgb, pred.depth, pred.flow):
        assert torch.isfinite(x).all()
    assert pred.rgb.min() >= 0 and pred.rgb.max() <= 1
    assert (pred.depth >= 0).all()


def test_random_storm_t_renders_valid_predictions_with_motion(window):
    model = StormModel("storm-t", config=tiny(), device="cpu", backend="torch")
    pred = run(model, window)
    check(pred)
    assert pred.flow.abs().max() > 0
    prov = model.provenance()
    assert prov["weights"] == RANDOM_WEIGHTS and prov["renderer_backend"] == "torch"
    assert model.checkpoint_sha256() is None


def test_static_t_has_zero_flow(window):
    model = StormModel("static-t", config=tiny("static-t"), device="cpu", backend="torch")
    pred = run(model, window)
    check(pred)
    assert torch.count_nonzero(pred.flow) == 0
    assert model.reconstruct(window.select([0, 5, 10, 15])).gaussians.motion is None


def test_other_image_size_resamples_position_embedding_and_says_so(window):
    model = StormModel("storm-t", config=dataclasses.replace(tiny(), image_size=(24, 32)), device="cpu",
                       backend="torch")
    check(run(model, window))
    assert any("resampled" in n for n in model.provenance()["notes"])
    bad = Clip.from_sequence_window(generate_sequence(4, height=12, width=20, num_frames=16), [0, 5, 10, 15])
    with pytest.raises(StormModelError, match="multiple of the patch size"):
        model.reconstruct(bad)


def test_safetensors_round_trip_gives_same_outputs(window, tmp_path):
    model = StormModel("storm-t", config=tiny(), device="cpu", backend="torch", seed=1)
    with torch.no_grad():  # move off the identity affine so the round trip covers every head
        for p in model.net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    tensors, _ = save_safetensors(model.net, model.cfg, tmp_path / "tiny")
    loaded = StormModel("storm-t", checkpoint=tensors, device="cpu", backend="torch")
    a, b = run(model, window), run(loaded, window)
    for x, y in ((a.rgb, b.rgb), (a.depth, b.depth), (a.flow, b.flow)):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5)
    assert loaded.checkpoint_sha256() == file_sha256(tensors)
    assert "safetensors" in loaded.provenance()["weights"]


def _official_file(path, state_dict):
    import argparse

    # The official file pickles an argparse namespace beside the weights, which weights_only refuses.
    torch.save({"model": state_dict, "args": argparse.Namespace(lr=4e-4), "latest_step": 10}, path)


def test_official_pickle_refused_without_trust_and_loaded_with_it(window, tmp_path):
    cfg = tiny()
    src = StormModel("storm-t", config=cfg, device="cpu", backend="torch", seed=2)
    path = tmp_path / "official.pth"
    _official_file(path, src.net.state_dict())
    with pytest.raises(CheckpointError, match="pickle"):
        StormModel("storm-t", checkpoint=path, device="cpu", backend="torch", config=cfg)
    model = StormModel("storm-t", checkpoint=path, device="cpu", backend="torch", trust_pickle=True,
                       config=cfg)
    torch.testing.assert_close(run(model, window).rgb, run(src, window).rgb, rtol=0, atol=1e-6)
    assert model.checkpoint_sha256() == file_sha256(path)


def test_checkpoint_of_another_architecture_names_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": torch.nn.Linear(3, 4).state_dict()}, path)
    with pytest.raises(CheckpointError, match="missing keys: pos_embed") as err:
        StormModel("storm-t", checkpoint=path, device="cpu", backend="torch", config=tiny())
    assert "unexpected keys: weight, bias" in str(err.value)


def test_registry_presets_resolve():
    from slarm_bench.models.registry import resolve_factory
    from slarm_bench.models.storm import make_static_t, make_storm_b8, make_storm_t

    assert resolve_factory("storm-t") is make_storm_t
    assert resolve_factory("static-t") is make_static_t
    assert resolve_factory("storm-b8") is make_storm_b8
