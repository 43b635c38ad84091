"""Protocol cards: loading, frozen scene lists and hashes, deterministic windows, unknown names."""

import pytest

from slarm_bench.errors import UnknownNameError
from slarm_bench.protocols import get_protocol, protocol_names


def test_all_cards_load_with_their_required_protocols():
    assert {"synthetic", "synthetic-mini", "waymo-storm", "waymo-slarm"} <= set(protocol_names())


def test_synthetic_protocol_matches_the_issue():
    p = get_protocol("synthetic")
    assert p.window_length == 20 and p.context == (0, 5, 10, 15)
    assert len(p.targets) == 16 and not set(p.targets) & set(p.context)
    assert p.cameras == ("FRONT_LEFT", "FRONT", "FRONT_RIGHT") and p.image_size == (160, 240)
    assert p.semantic and len(p.semantic_classes) == 9
    assert p.flow.frames == "targets"


def test_waymo_protocols_follow_reference_section_3():
    storm, slarm = get_protocol("waymo-storm"), get_protocol("waymo-slarm")
    assert len(storm.scenes) == 202 and storm.scenes == slarm.scenes
    assert storm.window_length == 20 and slarm.window_length == 16
    assert len(storm.targets) == 16 and len(slarm.targets) == 12 and max(slarm.targets) == 14
    assert storm.flow_target_positions() == (0, 5, 10, 15) and storm.flow.filter == "window"
    assert slarm.flow_target_positions() == tuple(t for t in slarm.targets if 1 <= t <= 14)
    assert storm.depth.min_depth == 0.0 and storm.depth.max_depth == float("inf")
    assert (slarm.depth.min_depth, slarm.depth.max_depth) == (0.01, 200.0)
    assert storm.full_image == "whole" and slarm.full_image == "nonsky"
    assert slarm.semantic and not storm.semantic


def test_windows_are_deterministic_and_the_last_is_shifted_to_fit():
    p = get_protocol("waymo-slarm")
    assert p.window_starts(198) == p.window_starts(198)
    starts = p.window_starts(198)
    assert starts[:3] == [0, 16, 32] and starts[-1] == 198 - 16
    assert p.window_starts(15) == []
    assert get_protocol("synthetic").window_starts(40) == [0, 20]


def test_scene_list_hash_is_stable_and_distinguishes_lists():
    a, b = get_protocol("synthetic"), get_protocol("synthetic-mini")
    assert a.scene_list_hash == get_protocol("synthetic").scene_list_hash
    assert a.scene_list_hash != b.scene_list_hash and len(a.scene_list_hash) == 64


def test_unknown_protocol_suggests_the_closest_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'synthetic-mini'"):
        get_protocol("synthetic-mni")
