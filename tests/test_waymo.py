"""Waymo adapter on small Frame files built with the official schema: exact geometry, flow, masks, errors."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("waymo_open_dataset.dataset_pb2")

from slarm_bench import geometry  # noqa: E402
from slarm_bench.clip import SLARM_CLASSES  # noqa: E402
from slarm_bench.data.tfrecord import write_records  # noqa: E402
from slarm_bench.data.waymo import WaymoAdapter, build_sequence, segment_report, track_id  # noqa: E402
from slarm_bench.data.waymo_frame import WaymoDataError  # noqa: E402
from slarm_bench.data.waymo_synth import make_frame  # noqa: E402
from slarm_bench.errors import SlarmBenchError, UnknownNameError  # noqa: E402

D = 10.0          # the wall: plane x = D in the vehicle frame
INTR = [100.0, 100.0, 96.0, 64.0, 0.01, -0.02, 0.0, 0.0, 0.0]
H, W = 32, 48     # prepared size (source cameras 128x192: a clean 1/4 JPEG DCT scale)


def _pose(yaw: float, t) -> np.ndarray:
    return geometry.make_pose(geometry.rotation_z(yaw), np.asarray(t, float))


POSE0 = _pose(np.deg2rad(30), [100.0, 200.0, 5.0])
FL_EXT = _pose(np.pi / 4, [1.0, 2.0, 3.0])


def _cameras(with_side: bool = True) -> dict:
    pan = np.zeros((128, 192), np.uint16)
    pan[:64] = 25 * 1000            # sky
    pan[64:] = 20 * 1000 + 3        # road, instance 3
    img = np.zeros((128, 192, 3), np.uint8)
    img[..., 0], img[..., 1] = 200, 100
    cams = {"FRONT": dict(width=192, height=128, intrinsic=INTR, image=img, panoptic=pan),
            "FRONT_LEFT": dict(width=192, height=128, intrinsic=INTR, extrinsic=FL_EXT, image=img, panoptic=pan),
            "FRONT_RIGHT": dict(width=192, height=128, intrinsic=INTR, image=img, panoptic=pan)}
    if with_side:
        cams["SIDE_LEFT"] = dict(width=192, height=88, intrinsic=INTR, image=img[:88], panoptic=pan[:88])
    return cams


def _lidar(flow: bool) -> dict:
    from slarm_bench.data.waymo_lidar import LidarGeometry
    from slarm_bench.data.waymo_synth import wall_range_image

    geom = LidarGeometry.from_calibration(np.eye(4), 64, 400, [], -0.4, 0.4)
    rng = wall_range_image(geom, D)
    las = {"inclination_range": (-0.4, 0.4), "range": rng, "range2": None}
    if flow:
        f = np.zeros((64, 400, 4), np.float32)
        f[:32] = (5.0, 0.0, 0.0, 1.0)        # upper beams: a labelled moving surface
        f[32:] = (7.0, 0.0, 0.0, -1.0)       # lower beams: no label -> counts as zero
        las["flow"] = f
    return {"FRONT": las}


def _boxes(x: float) -> list:
    return [dict(id="car", type=1, centre=(x, 0.0, 0.0), size=(2.0, 4.0, 1.0), speed=(3.0, 0.0, 0.0)),
            dict(id="sign", type=3, centre=(D, 3.0, 0.0), size=(0.5, 0.5, 0.5), speed=(0.0, 0.0, 0.0))]


def _write_segment(path, flow: bool = True, ego_turn: bool = True, with_side: bool = True) -> None:
    pose1 = POSE0 @ (_pose(np.pi / 2, [1.0, 0.0, 0.0]) if ego_turn else np.eye(4))
    frames = [
        make_frame(timestamp_micros=1_000_000, pose=POSE0, cameras=_cameras(with_side), lasers=_lidar(flow),
                   boxes=_boxes(D)),
        make_frame(timestamp_micros=1_100_000, pose=pose1, cameras=_cameras(with_side), lasers=_lidar(flow),
                   boxes=_boxes(D + 1.0 if not ego_turn else D)),
    ]
    write_records(path, frames)


@pytest.fixture(scope="module")
def seq(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "segment-1_with_camera_labels.tfrecord"
    _write_segment(path)
    return build_sequence(path, ["FRONT_LEFT", "FRONT", "FRONT_RIGHT", "SIDE_LEFT"], height=H, width=W)


def test_sizes_and_intrinsics(seq):
    assert seq.images.shape == (2, 4, H, W, 3)
    np.testing.assert_allclose(seq.intrinsics[0, 1], [[25, 0, 24], [0, 25, 16], [0, 0, 1]], atol=1e-5)
    # the side camera keeps its aspect (88 rows -> 22) and is padded below
    assert seq.meta["valid_height"]["SIDE_LEFT"] == 22
    np.testing.assert_allclose(seq.intrinsics[0, 3], seq.intrinsics[0, 1], atol=1e-5)
    assert (seq.images[0, 3, 22:] == 0).all() and (seq.images[0, 3, :22, :, 0] > 150).all()
    assert (seq.semantic[0, 3, 22:] == 255).all()
    assert seq.meta["distortion"]["FRONT"] == [0.01, -0.02, 0.0, 0.0, 0.0]


def test_cam_to_world_opencv_convention(seq):
    # frame 0: world = vehicle frame of frame 0; FRONT camera at the origin looking along +x
    np.testing.assert_allclose(seq.cam_to_world[0, 1], geometry.OPENCV_TO_FLU_4x4, atol=1e-5)
    c2w = seq.cam_to_world[0, 0]                      # FRONT_LEFT: yawed 45 deg, at (1, 2, 3)
    s = np.sqrt(0.5)
    np.testing.assert_allclose(c2w[:3, 2], [s, s, 0], atol=1e-5)     # optical axis
    np.testing.assert_allclose(c2w[:3, 0], [s, -s, 0], atol=1e-5)    # image x = right
    np.testing.assert_allclose(c2w[:3, 1], [0, 0, -1], atol=1e-5)    # image y = down
    np.testing.assert_allclose(c2w[:3, 3], [1, 2, 3], atol=1e-5)
    # frame 1: the ego turned 90 deg left and moved 1 m forward
    np.testing.assert_allclose(seq.cam_to_world[1, 1][:3, 2], [0, 1, 0], atol=1e-5)
    np.testing.assert_allclose(seq.cam_to_world[1, 1][:3, 3], [1, 0, 0], atol=1e-5)
    np.testing.assert_allclose(seq.meta["sequence_world_to_global"], POSE0)
    np.testing.assert_allclose(seq.time, [0.0, 0.1])


def test_depth_of_wall(seq):
    d = seq.depth[0, 1]
    assert d[16, 24] == pytest.approx(D, abs=1e-3)
    hit = d > 0
    assert hit[10:22].all()                            # the lidar's +-0.4 rad band is fully covered
    np.testing.assert_allclose(d[hit], D, atol=1e-3)   # z-depth of a fronto-parallel wall is constant
    assert not hit[0].any()                            # above the highest beam


def test_flow_labels_rules_and_world_rotation(seq):
    assert seq.meta["flow_source"] == "labels"
    f0, f1 = seq.flow[0, 1], seq.flow[1, 1]
    np.testing.assert_allclose(f0[12, 24], [5, 0, 0], atol=1e-4)    # upper beams, labelled
    np.testing.assert_allclose(f0[20, 24], [0, 0, 0], atol=1e-6)    # class -1 counts as zero
    np.testing.assert_allclose(f1[12, 24], [0, 5, 0], atol=1e-4)    # ego turned 90 deg: world frame
    assert seq.dynamic[0, 1, 12, 24] and not seq.dynamic[0, 1, 20, 24]
    assert not seq.dynamic[0, 1, 0].any()               # no depth, no dynamic


def test_dynamic_box_semantic_sky_boxes(seq):
    m = seq.dynamic_box[0, 1]
    assert m[16, 24] and not m[0, 0] and not m[16, 47]
    expected = geometry.box_rectangle_mask(
        geometry.box_corners(np.array([[D, 0, 0]]), np.array([[2.0, 4.0, 1.0]]), np.zeros(1)),
        seq.cam_to_world[0, 1], seq.intrinsics[0, 1], H, W)
    np.testing.assert_array_equal(m, expected)
    assert (seq.semantic[0, 1, :16] == SLARM_CLASSES.index("sky")).all()
    assert (seq.semantic[0, 1, 16:] == SLARM_CLASSES.index("road")).all()
    np.testing.assert_array_equal(seq.sky[0, 1], seq.semantic[0, 1] == SLARM_CLASSES.index("sky"))
    assert len(seq.boxes) == 4
    assert seq.meta["track_ids"]["car"] == track_id("car")
    car1 = (seq.boxes.frame == 1) & (seq.boxes.track_id == track_id("car"))
    np.testing.assert_allclose(seq.boxes.centre[car1][0], [1.0, D, 0.0], atol=1e-4)  # world frame
    np.testing.assert_allclose(seq.boxes.velocity[car1][0], [0.0, 3.0, 0.0], atol=1e-4)
    assert seq.boxes.label[car1][0] == SLARM_CLASSES.index("vehicle")


def test_box_track_flow_without_labels(tmp_path):
    path = tmp_path / "segment-2.tfrecord"
    _write_segment(path, flow=False, ego_turn=False, with_side=False)
    seq = build_sequence(path, ["FRONT"], height=H, width=W)
    assert seq.meta["flow_source"] == "boxes"
    assert "flow labels" in seq.meta["missing"]
    np.testing.assert_allclose(seq.flow[0, 0, 16, 24], [10.0, 0, 0], atol=1e-3)   # car moved 1 m in 0.1 s
    assert seq.depth[0, 0, 16, 40] > 0 and (seq.flow[0, 0, 16, 40] == 0).all()    # wall outside the box


def test_missing_camera_refused(tmp_path):
    path = tmp_path / "segment-3.tfrecord"
    _write_segment(path, with_side=False)
    with pytest.raises(WaymoDataError, match=r"SIDE_RIGHT.*it has \['FRONT', 'FRONT_LEFT', 'FRONT_RIGHT'\]"):
        build_sequence(path, ["FRONT", "SIDE_RIGHT"], height=H, width=W)


def test_adapter_scenes_build_and_corruption(tmp_path):
    raw = tmp_path / "raw"
    (raw / "validation").mkdir(parents=True)
    seg = raw / "validation" / "segment-9_with_camera_labels.tfrecord"
    _write_segment(seg, with_side=False)
    (raw / "validation" / "notes.txt").write_text("not a segment")
    ad = WaymoAdapter(raw, height=H, width=W)
    assert ad.splits() == ["training", "validation"]
    assert ad.scenes("validation") == ["segment-9_with_camera_labels"]
    assert ad.scenes("training") == []
    with pytest.raises(UnknownNameError):
        ad.scenes("val")
    listed = tmp_path / "list.txt"
    listed.write_text("# none of ours\nsegment-1_with_camera_labels\n")
    assert WaymoAdapter(raw, scene_list=listed).scenes("validation") == []
    before = seg.read_bytes()
    s = ad.build("validation", "segment-9_with_camera_labels")
    assert s.meta["camera_names"] == ["FRONT_LEFT", "FRONT", "FRONT_RIGHT"]
    assert s.meta["source_checksum"].startswith("sha256:")
    assert seg.read_bytes() == before                  # raw files are never modified
    broken = bytearray(before)
    broken[100] ^= 0x55                                # inside record 0's data
    seg.write_bytes(bytes(broken))
    with pytest.raises(SlarmBenchError, match=r"segment-9_with_camera_labels\.tfrecord: record 0 is corrupt"):
        ad.build("validation", "segment-9_with_camera_labels")


def test_report_of_segment_without_sensors(tmp_path):
    path = tmp_path / "segment-4.tfrecord"
    write_records(path, [make_frame(cameras={"FRONT": dict(width=192, height=128, intrinsic=INTR)},
                                    boxes=_boxes(D))])
    rep = segment_report(path)
    assert rep["missing"] == ["images", "lidar_range_images", "flow_labels", "camera_segmentation"]
    assert rep["boxes"] == 2 and rep["calibrated_cameras"] == ["FRONT"]
    with pytest.raises(WaymoDataError, match="no frame has camera images"):
        build_sequence(path, ["FRONT"], height=H, width=W)


def test_import_never_loads_tensorflow(tmp_path):
    path = tmp_path / "segment-5.tfrecord"
    _write_segment(path, with_side=False)
    code = textwrap.dedent(f"""
        import sys
        class Guard:
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    raise ImportError("tensorflow must not be imported")
                return None
        sys.meta_path.insert(0, Guard())
        import slarm_bench.data.waymo as w
        seq = w.build_sequence({str(path)!r}, ["FRONT"], height=32, width=48)
        assert seq.depth is not None
        assert not any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_jpeg_decoders_agree(monkeypatch):
    """simplejpeg (when installed) and Pillow's draft decode give the same pixels and scales."""
    import io

    from PIL import Image

    from slarm_bench.data import waymo_frame

    yy, xx = np.mgrid[0:128, 0:192]
    img = np.stack([xx % 256, (yy * 2) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    fast = [waymo_frame.decode_jpeg(data, h, w) for h, w in ((32, 48), (40, 48), (128, 192))]
    monkeypatch.setattr(waymo_frame, "_simplejpeg", None)
    slow = [waymo_frame.decode_jpeg(data, h, w) for h, w in ((32, 48), (40, 48), (128, 192))]
    for (a, sxa, sya), (b, sxb, syb) in zip(fast, slow):
        assert a.shape == b.shape and (sxa, sya) == (sxb, syb)
        assert np.abs(a.astype(int) - b).max() <= 1
    assert fast[0][0].shape == (32, 48, 3) and fast[0][1] == 0.25
