"""The Waymo adapter on real WOD v1 frames from ../shared/data (skipped when absent)."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("waymo_open_dataset.dataset_pb2")

from slarm_bench import geometry  # noqa: E402
from slarm_bench.clip import SLARM_CLASSES  # noqa: E402
from slarm_bench.data.waymo import build_sequence, segment_report  # noqa: E402
from slarm_bench.data.waymo_frame import CAMERA_NAMES, WaymoDataError  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "waymo"
PVPS = DATA / "wod_repo_testdata" / "pvps_data_one_frame.tfrecord"
VAL = DATA / "mmdet3d_tests" / "waymo_format" / "validation" / "val.tfrecord"
CAMS = ["FRONT_LEFT", "FRONT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"]
pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def seq():
    if not PVPS.is_file():
        pytest.skip(f"{PVPS} is absent")
    return build_sequence(PVPS, CAMS, height=320, width=480)


def test_five_cameras_at_the_right_sizes(seq):
    assert seq.images.shape == (1, 5, 320, 480, 3)
    assert seq.meta["valid_height"] == {"FRONT_LEFT": 320, "FRONT": 320, "FRONT_RIGHT": 320,
                                        "SIDE_LEFT": 222, "SIDE_RIGHT": 222}
    assert seq.images[0, 3, :222].mean() > 20 and (seq.images[0, 3, 222:] == 0).all()
    # FRONT: f = 2044.508, c = (949.575, 633.242) at 1920x1280, scaled by 1/4
    np.testing.assert_allclose(seq.intrinsics[0, 1], [[511.127, 0, 237.394], [0, 511.127, 158.311], [0, 0, 1]],
                               atol=1e-3)
    assert seq.depth is None and seq.flow is None and "lidar" in seq.meta["missing"]
    assert seq.sky is not None and seq.sky[0, 1, :40].mean() > 0.2   # sky at the top of the FRONT image
    assert seq.boxes is not None and len(seq.boxes) == 75
    assert seq.dynamic_box[0, :3].any()


def test_boxes_project_onto_their_segmentation_class(seq):
    """End-to-end geometry: the label under each visible box centre is the box's class for most boxes."""
    want = {SLARM_CLASSES.index("vehicle"): {SLARM_CLASSES.index("vehicle")},
            SLARM_CLASSES.index("people"): {SLARM_CLASSES.index("people")}}
    checked = agree = 0
    for v in range(5):
        h = seq.meta["valid_height"][CAMS[v]]
        for i in range(len(seq.boxes)):
            label = int(seq.boxes.label[i])
            if label not in want:
                continue
            uv, z = geometry.project_points(seq.boxes.centre[i:i + 1].astype(np.float64),
                                            seq.cam_to_world[0, v], seq.intrinsics[0, v])
            dist = float(np.linalg.norm(seq.boxes.centre[i] - seq.cam_to_world[0, v][:3, 3]))
            u, r = int(uv[0, 0]), int(uv[0, 1])
            if z[0] <= 1.0 or dist > 40 or not (0 <= u < 480 and 0 <= r < h):
                continue
            checked += 1
            agree += int(seq.semantic[0, v, r, u]) in want[label]
    assert checked >= 15
    assert agree / checked > 0.7, (agree, checked)


def test_val_record_reports_missing_fields():
    if not VAL.is_file():
        pytest.skip(f"{VAL} is absent")
    rep = segment_report(VAL)
    assert rep["frames"] == 1 and rep["boxes"] == 18
    assert rep["calibrated_cameras"] == sorted(CAMERA_NAMES)
    assert rep["missing"] == ["images", "lidar_range_images", "flow_labels", "camera_segmentation"]
    with pytest.raises(WaymoDataError, match=r"val\.tfrecord: no frame has camera images \(also absent: .*lidar"):
        build_sequence(VAL, ["FRONT"])
