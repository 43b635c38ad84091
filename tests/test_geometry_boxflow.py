"""box_track_flow: points move with their tracked box's rigid motion, everything else stays still."""

import numpy as np
import pytest

from slarm_bench.clip import Boxes
from slarm_bench.geometry import box_track_flow


def _boxes(track_ids, centres, yaws, size=(4.0, 2.0, 1.5)) -> Boxes:
    n = len(track_ids)
    return Boxes(
        frame=np.zeros(n, np.int32), track_id=np.asarray(track_ids, np.int64), label=np.ones(n, np.uint8),
        centre=np.asarray(centres, np.float32).reshape(n, 3), size=np.tile(np.float32(size), (n, 1)),
        yaw=np.asarray(yaws, np.float32), velocity=np.full((n, 3), np.nan, np.float32),
        acceleration=np.full((n, 3), np.nan, np.float32), num_points=np.full(n, -1, np.int32))


def test_translation_moves_inside_points_only():
    b0 = _boxes([7], [[10.0, 0.0, 1.0]], [0.0])
    b1 = _boxes([7], [[11.0, 0.5, 1.0]], [0.0])
    pts = np.array([[10.0, 0.0, 1.0], [11.9, 0.9, 1.7], [20.0, 0.0, 1.0], [10.0, 1.2, 1.0]], np.float32)
    v = box_track_flow(pts, b0, b1, dt=0.1)
    np.testing.assert_allclose(v[0], [10.0, 5.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(v[1], [10.0, 5.0, 0.0], atol=1e-4)
    np.testing.assert_array_equal(v[2], 0.0)   # outside every box
    np.testing.assert_array_equal(v[3], 0.0)   # just outside the 2 m wide box
    assert v.dtype == np.float32


def test_rotation_is_rigid_about_box_centre():
    b0 = _boxes([1], [[0.0, 0.0, 0.0]], [0.0])
    b1 = _boxes([1], [[0.0, 0.0, 0.0]], [np.pi / 2])
    pts = np.array([[1.0, 0.0, 0.0]], np.float32)   # front of the box turns to +y
    v = box_track_flow(pts, b0, b1, dt=1.0)
    np.testing.assert_allclose(v[0], [-1.0, 1.0, 0.0], atol=1e-5)


def test_unmatched_tracks_and_backward_difference():
    b0 = _boxes([1, 2], [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]], [0.0, 0.0])
    b_prev = _boxes([1], [[-1.0, 0.0, 0.0]], [0.0])
    pts = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]], np.float32)
    # boxes_t1 one step *earlier*: dt < 0 gives the forward velocity estimated backwards
    v = box_track_flow(pts, b0, b_prev, dt=-0.5)
    np.testing.assert_allclose(v[0], [2.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_array_equal(v[1], 0.0)       # track 2 has no match
    with pytest.raises(ValueError):
        box_track_flow(pts, b0, b_prev, dt=0.0)


def test_empty_inputs():
    pts = np.zeros((3, 3), np.float32)
    assert (box_track_flow(pts, Boxes.empty(), Boxes.empty(), 0.1) == 0).all()
