"""Text encoder, synthetic teacher and relevance queries (no downloads: a random text tower)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from slarm_bench.clip import SLARM_CLASSES, Clip
from slarm_bench.text import (
    SyntheticTeacher,
    TextEncoder,
    TextEncoderError,
    query,
    query_relevance,
)


@pytest.fixture(autouse=True)
def _no_cached_weights(tmp_path_factory, monkeypatch):
    # An empty Hugging Face cache: the encoder must fall back to the seeded random tower.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.getbasetemp() / "hf"))
    monkeypatch.delenv("SLARM_BENCH_CLIP_WEIGHTS", raising=False)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> TextEncoder:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-empty")))
        mp.delenv("SLARM_BENCH_CLIP_WEIGHTS", raising=False)
        return TextEncoder()


def test_random_tower_provenance_and_embeddings(encoder):
    assert encoder.provenance() == "random text tower (seed 0), not CLIP"
    emb = encoder.encode(list(SLARM_CLASSES))
    assert emb.shape == (9, 512)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(9), atol=1e-5)
    sim = emb @ emb.T
    assert (sim - torch.eye(9)).abs().max() < 0.999  # distinct names, distinct embeddings
    assert torch.equal(encoder.encode(["road"])[0], emb[SLARM_CLASSES.index("road")])


def test_same_seed_same_tower(encoder):
    other = TextEncoder(seed=0)
    assert torch.allclose(other.encode(["vehicle"]), encoder.encode(["vehicle"]), atol=1e-6)


def test_missing_weights_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "open_clip_model.safetensors"
    with pytest.raises(TextEncoderError, match=str(missing)):
        TextEncoder(weights=missing)


def test_weights_file_round_trip(tmp_path, encoder):
    from safetensors.torch import save_file

    path = tmp_path / "clip.safetensors"
    state = {k: v.contiguous() for k, v in encoder.model.state_dict().items()}
    state["logit_scale"] = torch.tensor(1.0)  # a full CLIP file also holds these
    save_file(state, str(path))
    loaded = TextEncoder(weights=path, seed=123)
    assert loaded.pretrained and str(path) in loaded.provenance()
    assert torch.allclose(loaded.encode(["sky"]), encoder.encode(["sky"]), atol=1e-6)


def test_empty_queries_raise(encoder):
    with pytest.raises(TextEncoderError, match="non-empty"):
        encoder.encode([""])
    with pytest.raises(TextEncoderError, match="empty text"):
        query_relevance(torch.zeros(1, 2, 2, 512), "  ", encoder)


def _clip(t: int = 2, h: int = 16, w: int = 24) -> Clip:
    rng = np.random.default_rng(0)
    c2w = np.tile(np.eye(4, dtype=np.float32), (t, 3, 1, 1))
    k = np.tile(np.array([[20, 0, 12], [0, 20, 8], [0, 0, 1]], np.float32), (t, 3, 1, 1))
    sem = rng.integers(0, 9, (t, 3, h, w)).astype(np.uint8)
    sem[:, :, 0] = 255
    meta = dict(dataset="toy", scene="s", camera_names=["L", "F", "R"], label_names=list(SLARM_CLASSES),
                fps=10.0, frame_indices=list(range(t)), schema_version=1)
    return Clip(images=rng.integers(0, 255, (t, 3, h, w, 3), dtype=np.uint8), intrinsics=k,
                cam_to_world=c2w, time=np.arange(t) / 10.0, meta=meta, semantic=sem)


def test_synthetic_teacher(encoder):
    clip = _clip()
    targets, valid = SyntheticTeacher(encoder).targets(clip, t=1)
    assert targets.shape == (3, 16, 24, 512) and valid.shape == (3, 16, 24)
    assert not valid[:, 0].any() and valid[:, 1:].all()
    assert targets[~valid].abs().max() == 0
    label = int(clip.semantic[1, 2, 5, 7])
    assert torch.allclose(targets[2, 5, 7], encoder.encode([SLARM_CLASSES[label]])[0])


def test_query_relevance_peaks_on_matching_features(encoder):
    emb = encoder.encode(["vehicle", "sky"])
    feats = torch.stack([emb[0], emb[1]]).reshape(1, 1, 2, 512)
    rel = query_relevance(feats, "vehicle", encoder)
    assert rel.shape == (1, 1, 2) and torch.isclose(rel[0, 0, 0], torch.tensor(1.0), atol=1e-5)
    assert rel[0, 0, 1] < rel[0, 0, 0]


def test_query_writes_png(tmp_path, encoder):
    from slarm_bench.models.slarm import SlarmModel
    from slarm_bench.models.slarm_net import slarm_config

    cfg = slarm_config("slarm-t", image_size=(16, 24), embed_dim=32, num_heads=2, depth=1, sky_hidden=16)
    model = SlarmModel(cfg=cfg, backend="torch")
    out = query(model, _clip(), "vehicle", tmp_path / "q" / "vehicle.png", encoder=encoder)
    img = np.asarray(Image.open(out))
    assert img.shape == (32, 72, 3)  # RGB row over the relevance row, 3 cameras side by side
    with pytest.raises(TextEncoderError, match="empty text"):
        query(model, _clip(), "", tmp_path / "x.png")
