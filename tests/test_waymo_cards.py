"""Waymo scene-list cards: counts, sources named, agreement with the protocol's frozen list."""

from pathlib import Path

import pytest
import yaml

from slarm_bench.data.waymo import load_scene_list, scene_list_cards
from slarm_bench.errors import UnknownNameError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name,count", [("storm_train", 798), ("storm_val", 202), ("notr_static32", 32),
                                        ("notr_dynamic32", 32), ("notr_diverse56", 56)])
def test_cards(name, count):
    card = yaml.safe_load(scene_list_cards()[name].read_text())
    assert card["count"] == count and card["source"]["repository"] and len(card["source"]["commit"]) == 40
    scenes = load_scene_list(name)
    assert len(scenes) == count == len(set(scenes))
    assert all(s.startswith("segment-") and s.endswith("_with_camera_labels") for s in scenes)


def test_notr_lists_are_storm_training_segments_and_val_matches_protocol():
    train = set(load_scene_list("storm_train"))
    for name in ("notr_static32", "notr_dynamic32", "notr_diverse56"):
        assert set(load_scene_list(name)) <= train
    frozen = ROOT / "datasets" / "protocols" / "scene_lists" / "waymo_storm_val.txt"
    if frozen.is_file():
        assert load_scene_list(frozen) == load_scene_list("storm_val")


def test_unknown_card_suggests():
    with pytest.raises(UnknownNameError, match="storm_val"):
        load_scene_list("storm_vall")
