"""Shipped checkpoints: the card's path and sha256 are honoured, and a mismatch is an error."""

import shutil

import pytest

from slarm_bench import config
from slarm_bench.models.checkpoint import CheckpointError, shipped_checkpoint
from slarm_bench.models.registry import load_model


@pytest.mark.parametrize("name, sha", [("storm-t", "48910ecfd2e4"), ("static-t", "a8098e36cd92"),
                                       ("slarm-t", "9ee8d596bd6d"), ("slarm-t-o1", "a0752f32fe6b"),
                                       ("slarm-t-o2", "99902bb771b1")])
def test_trained_presets_run_with_the_shipped_weights_of_their_cards(name, sha):
    path = shipped_checkpoint(name)
    assert path is not None and path.name == f"{name}.safetensors"
    model = load_model(name, device="cpu", backend="torch")
    assert model.checkpoint_sha256().startswith(sha)


@pytest.mark.parametrize("name", ["slarm", "slarm-w", "slarm-f"])
def test_slarm_aliases_run_with_the_shipped_slarm_t_weights(name):
    assert shipped_checkpoint("slarm-t").name == "slarm-t.safetensors"
    model = load_model(name, device="cpu", backend="torch")
    assert model.checkpoint_sha256().startswith("9ee8d596bd6d")


@pytest.mark.parametrize("name", ["static-t", "slarm-t-o2"])
def test_a_card_without_weights_gives_random_weights_said_in_provenance(tmp_path, monkeypatch, name):
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / f"{name}.yaml").write_text("checkpoint:\n  path: null\n  sha256: null\n")
    monkeypatch.setenv(config.CARDS_ENV, str(tmp_path))
    assert shipped_checkpoint(name) is None
    model = load_model(name, device="cpu", backend="torch")
    assert model.checkpoint_sha256() is None and "random" in str(model.provenance())


def test_a_checkpoint_that_does_not_match_its_card_is_refused(tmp_path, monkeypatch):
    (tmp_path / "baselines").mkdir()
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(config.PROJECT_ROOT / "checkpoints" / "storm-t.json", tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / "storm-t.safetensors").write_bytes(b"not the shipped weights")
    (tmp_path / "baselines" / "storm-t.yaml").write_text(
        "checkpoint:\n  path: checkpoints/storm-t.safetensors\n  sha256: afffdd050552\n")
    monkeypatch.setenv(config.CARDS_ENV, str(tmp_path))
    with pytest.raises(CheckpointError, match="restore the file"):
        shipped_checkpoint("storm-t")
