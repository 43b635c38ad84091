"""The prepared store: round trips, partial reads, re-anchoring, atomicity, corruption, force, index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from slarm_bench import clip, geometry
from slarm_bench import store_write as store_mod
from slarm_bench.errors import ContractError, StoreError, UnknownNameError
from slarm_bench.store import Store
from slarm_bench.store_codec import codec_name, decode_chunk, encode_chunk, pack_frame, unpack_frame

T, V, H, W = 6, 2, 8, 12
ALL_FIELDS = ("images", "intrinsics", "cam_to_world", "time", *clip.PER_PIXEL_FIELDS)


def make_sequence(seed: int = 0, scene: str = "scene-a", dataset: str = "toy") -> clip.Sequence:
    """A tiny valid Sequence with every field, random poses and boxes."""
    rng = np.random.default_rng(seed)
    shape = (T, V, H, W)
    c2w = np.zeros((T, V, 4, 4), np.float32)
    for t in range(T):
        for v in range(V):
            q = rng.normal(size=4)
            c2w[t, v] = geometry.make_pose(geometry.quaternion_to_matrix(q / np.linalg.norm(q)),
                                           rng.normal(size=3) * 10)
    depth_dense = rng.uniform(1, 80, shape).astype(np.float32)
    depth = np.where(rng.random(shape) < 0.2, depth_dense, 0).astype(np.float32)
    flow = np.where(rng.random((*shape, 1)) < 0.3, rng.normal(size=(*shape, 3)), 0).astype(np.float32)
    n = 5
    boxes = clip.Boxes(
        frame=rng.integers(0, T, n).astype(np.int32), track_id=np.arange(n, dtype=np.int64) + 1,
        label=rng.integers(0, 9, n).astype(np.uint8), centre=rng.normal(size=(n, 3)).astype(np.float32),
        size=rng.uniform(1, 4, (n, 3)).astype(np.float32), yaw=rng.uniform(-3, 3, n).astype(np.float32),
        velocity=rng.normal(size=(n, 3)).astype(np.float32),
        acceleration=np.full((n, 3), np.nan, np.float32), num_points=np.full(n, -1, np.int32))
    semantic = rng.integers(0, 9, shape).astype(np.uint8)
    semantic[0, 0, 0] = clip.UNLABELLED
    return clip.Sequence(
        images=rng.integers(0, 256, (*shape, 3), dtype=np.uint8),
        intrinsics=np.broadcast_to(geometry.intrinsics_matrix(10, 11, W / 2, H / 2),
                                   (T, V, 3, 3)).astype(np.float32).copy(),
        cam_to_world=c2w, time=np.arange(T) * 0.1 + rng.uniform(0, 0.01, T) * (np.arange(T) > 0),
        meta={"dataset": dataset, "scene": scene, "camera_names": ["FRONT", "FRONT_RIGHT"],
              "label_names": list(clip.SLARM_CLASSES), "fps": 10.0, "frame_indices": list(range(10, 10 + T)),
              "schema_version": clip.SCHEMA_VERSION, "flow_dense": False},
        depth=depth, flow=flow, sky=rng.random(shape) < 0.3, dynamic=rng.random(shape) < 0.1,
        ground=rng.random(shape) < 0.4, semantic=semantic, depth_dense=depth_dense,
        instance=rng.integers(0, 4, shape).astype(np.int32), dynamic_box=rng.random(shape) < 0.2,
        boxes=boxes, extras={"note": "hello", "lidar_counts": np.arange(T, dtype=np.int16)})


@pytest.fixture()
def written(tmp_path: Path) -> tuple[Store, clip.Sequence]:
    store = Store(tmp_path / "prepared")
    seq = make_sequence()
    store.write(seq, split="mini")
    return store, seq


def assert_boxes_equal(a: clip.Boxes, b: clip.Boxes) -> None:
    for key, value in b.as_dict().items():
        np.testing.assert_array_equal(getattr(a, key), value, err_msg=key)


# -- codecs ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transform", ["raw", "shuffle", "packbits", "u8-rowdelta", "sparse"])
def test_every_transform_round_trips(transform: str) -> None:
    rng = np.random.default_rng(1)
    arr = {"packbits": rng.random((7, 9)) < 0.5,
           "u8-rowdelta": rng.integers(0, 256, (7, 9, 3), dtype=np.uint8),
           "shuffle": rng.normal(size=(7, 9, 3)).astype(np.float32),
           "raw": rng.integers(-5, 5, (7, 9)).astype(np.int32),
           "sparse": np.where(rng.random((7, 9, 3)) < 0.3, rng.normal(size=(7, 9, 3)), 0).astype(np.float32),
           }[transform]
    data = encode_chunk("depth", arr, transform=transform)
    out = np.empty_like(arr)
    decode_chunk(codec_name("depth", transform), data, out)
    np.testing.assert_array_equal(out, arr)


def _sparse_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    depth = np.where(rng.random((H, W)) < 0.2, rng.uniform(1, 80, (H, W)), 0).astype(np.float32)
    depth[0, 0], depth[0, 1], depth[-1, -1] = -0.0, np.nan, np.inf  # bytes decide what is zero, not ==
    flow = np.where(rng.random((H, W, 1)) < 0.3, rng.normal(size=(H, W, 3)), 0).astype(np.float32)
    flow[1, 1] = (0.0, -0.0, 0.0)
    return {
        "depth": depth, "flow": flow,
        "all-zero": np.zeros((H, W, 3), np.float32),
        "all-non-zero": rng.uniform(0.5, 2, (H, W, 3)).astype(np.float32),
        "all-non-zero 2d": rng.uniform(0.5, 2, (H, W)).astype(np.float32),
        "int32": np.where(rng.random((H, W)) < 0.1, rng.integers(-9, 9, (H, W)), 0).astype(np.int32),
        "bool": rng.random((H, W)) < 0.1, "uint8": rng.integers(0, 3, (H, W)).astype(np.uint8),
        "one pixel": np.pad(np.ones((1, 1), np.float64), ((H - 1, 0), (W - 1, 0))),
    }


@pytest.mark.parametrize("case", list(_sparse_cases()))
@pytest.mark.parametrize("zeroed", [False, True])
def test_sparse_codec_round_trips_bit_exactly(case: str, zeroed: bool) -> None:
    arr = _sparse_cases()[case]
    data = encode_chunk("depth", arr, transform="sparse")
    out = np.zeros_like(arr) if zeroed else np.full_like(arr, 7)  # zeroed=False must clear old contents
    decode_chunk("sparse+zstd", data, out, zeroed=zeroed)
    np.testing.assert_array_equal(out.view(np.uint8), arr.view(np.uint8))


def test_sparse_codec_stores_only_non_zero_pixels() -> None:
    import zstandard

    cases = _sparse_cases()
    dctx = zstandard.ZstdDecompressor()
    sizes = {k: len(dctx.decompress(encode_chunk("flow", cases[k], transform="sparse")))
             for k in ("all-zero", "all-non-zero", "flow")}
    assert sizes["all-zero"] == 4
    assert sizes["all-non-zero"] == 4 + H * W * (4 + 12)
    assert sizes["flow"] == 4 + int((cases["flow"].view(np.uint32) != 0).any(-1).sum()) * 16


def test_sparse_flow_rotates_as_rotate_vectors() -> None:
    rng = np.random.default_rng(5)
    q = rng.normal(size=4)
    rot = geometry.quaternion_to_matrix(q / np.linalg.norm(q))
    for case in ("flow", "all-zero", "all-non-zero"):
        arr = _sparse_cases()[case]
        for codec, transform in (("sparse+zstd", "sparse"), ("raw+zstd", "raw")):  # raw: stores of version 1
            out = np.full_like(arr, 3)
            decode_chunk(codec, encode_chunk("flow", arr, transform=transform), out, rotation=rot)
            np.testing.assert_array_equal(out, geometry.rotate_vectors(rot, arr), err_msg=f"{case} {codec}")
    with pytest.raises(StoreError, match=r"\[H,W,3\]"):
        decode_chunk("sparse+zstd", encode_chunk("depth", _sparse_cases()["depth"], transform="sparse"),
                     np.zeros((H, W), np.float32), rotation=rot)


def test_rotate_scattered_equals_rotating_each_decoded_chunk() -> None:
    from slarm_bench.store_codec import rotate_scattered

    q = np.array([0.9, 0.1, -0.3, 0.2])
    rot = geometry.quaternion_to_matrix(q / np.linalg.norm(q))
    cases = _sparse_cases()
    arrays = [cases["flow"], cases["all-non-zero"], cases["all-zero"]]
    slots = np.zeros((3, H, W, 3), np.float32)
    parts = []
    for slot, arr in zip(slots, arrays):
        index = decode_chunk("sparse+zstd", encode_chunk("flow", arr, transform="sparse"), slot, zeroed=True)
        parts.append((slot, index))
    assert parts[2][1].size == 0
    rotate_scattered(parts, rot)
    for slot, arr in zip(slots, arrays):
        np.testing.assert_array_equal(slot, geometry.rotate_vectors(rot, arr))


def test_sparse_codec_detects_malformed_chunks() -> None:
    import zstandard

    cctx = zstandard.ZstdCompressor(write_content_size=True)
    out = np.zeros((H, W), np.float32)
    count_too_big = np.array([5, 0, 1, 1], "<u4").tobytes() + np.ones(3, np.float32).tobytes()
    out_of_range = np.array([2, 3, H * W], "<u4").tobytes() + np.ones(2, np.float32).tobytes()
    for payload, message in ((count_too_big, "decodes to"), (out_of_range, "pixel index")):
        with pytest.raises(ValueError, match=message):
            decode_chunk("sparse+zstd", cctx.compress(payload), out)
    with pytest.raises(ValueError, match="corrupt"):
        decode_chunk("sparse+zstd", b"not zstd at all", out)
    with pytest.raises(StoreError, match="contiguous"):
        decode_chunk("raw+zstd", encode_chunk("depth", out[:, :4], transform="raw"), out[:, :4])


def test_frame_container_detects_truncation_and_bad_magic() -> None:
    data = pack_frame([b"abc", b"defgh"])
    assert [bytes(c) for c in unpack_frame(data, 2)] == [b"abc", b"defgh"]
    with pytest.raises(ValueError, match="truncated"):
        unpack_frame(data[:-1], 2)
    with pytest.raises(ValueError, match="magic"):
        unpack_frame(b"X" + data[1:], 2)


# -- round trips and reads -------------------------------------------------------------------------------
def test_round_trip_is_exact_for_every_field(written) -> None:
    store, seq = written
    assert store.has("toy", "mini", "scene-a")
    back = store.read_sequence("toy", "mini", "scene-a")
    for name in ALL_FIELDS:
        np.testing.assert_array_equal(getattr(back, name), getattr(seq, name), err_msg=name)
        assert getattr(back, name).dtype == getattr(seq, name).dtype, name
    assert_boxes_equal(back.boxes, seq.boxes)
    assert back.meta == seq.meta
    assert back.extras["note"] == "hello"
    np.testing.assert_array_equal(back.extras["lidar_counts"], seq.extras["lidar_counts"])
    back.validate()
    info = store.info("toy", "mini", "scene-a")
    assert info["num_frames"] == T and all(info["lossless"].values())
    assert store.num_frames("toy", "mini", "scene-a") == T


def test_fields_subset_skips_other_fields(written) -> None:
    store, seq = written
    back = store.read_sequence("toy", "mini", "scene-a", fields=["depth"])
    np.testing.assert_array_equal(back.depth, seq.depth)
    assert back.depth_dense is None and back.flow is None
    np.testing.assert_array_equal(back.images, seq.images)  # images always come: the contract needs them
    with pytest.raises(UnknownNameError, match="(?i)did you mean 'depth'"):
        store.read_sequence("toy", "mini", "scene-a", fields=["depht"])


def test_window_equals_from_sequence_window_and_is_anchored(written) -> None:
    store, seq = written
    frames = [2, 3, 5]
    win = store.read_window("toy", "mini", "scene-a", frames)
    ref = clip.Clip.from_sequence_window(seq, frames)
    for name in ALL_FIELDS:
        np.testing.assert_array_equal(getattr(win, name), getattr(ref, name), err_msg=name)
    assert_boxes_equal(win.boxes, ref.boxes)
    assert win.meta == ref.meta
    assert win.meta["frame_indices"] == [12, 13, 15]
    # The reference camera (FRONT, no reference_camera in meta) at the first frame is the FLU identity.
    np.testing.assert_allclose(geometry.opencv_cam_to_flu(win.cam_to_world[0, 0].astype(np.float64)),
                               np.eye(4), atol=1e-5)
    assert win.time[0] == 0
    win.validate()


def test_window_without_reference_camera_is_still_anchored_to_it(written) -> None:
    store, seq = written
    win = store.read_window("toy", "mini", "scene-a", [1, 2], cameras=["FRONT_RIGHT"])
    ref = clip.Clip.from_sequence_window(seq, [1, 2])
    assert win.camera_names == ["FRONT_RIGHT"] and win.images.shape == (2, 1, H, W, 3)
    np.testing.assert_array_equal(win.cam_to_world, ref.cam_to_world[:, 1:])
    np.testing.assert_array_equal(win.flow, ref.flow[:, 1:])
    unanchored = store.read_window("toy", "mini", "scene-a", [1, 2], anchor=False)
    np.testing.assert_array_equal(unanchored.cam_to_world, seq.cam_to_world[1:3])
    assert unanchored.time[0] == 0
    with pytest.raises(UnknownNameError, match="FRONT"):
        store.read_window("toy", "mini", "scene-a", [1], cameras=["FRONTT"])
    with pytest.raises(StoreError, match="outside"):
        store.read_window("toy", "mini", "scene-a", [T])


def test_window_reads_only_its_own_frame_files(written) -> None:
    store, seq = written
    folder = store.root / "toy" / "mini" / "scene-a"
    (folder / "frames" / "000000.slf").unlink()
    (folder / "frames" / "000005.slf").write_bytes(b"garbage")
    win = store.read_window("toy", "mini", "scene-a", [1, 2, 3, 4])
    np.testing.assert_array_equal(win.images, seq.images[1:5])
    with pytest.raises(StoreError, match="000000.slf is missing"):
        store.read_window("toy", "mini", "scene-a", [0, 1])
    (folder / "frames" / "000000.slf").mkdir()  # unreadable as a file, whoever runs the test
    with pytest.raises(StoreError, match="000000.slf is unreadable"):
        store.read_window("toy", "mini", "scene-a", [0, 1])


def test_all_zero_and_all_non_zero_sparse_frames_round_trip(tmp_path) -> None:
    seq = make_sequence()
    seq.flow[0] = 0  # a static frame: no vector stored
    seq.depth[1] = seq.depth_dense[1]  # a return at every pixel: every value stored
    seq.flow[2] = np.where(seq.flow[2] == 0, 0.5, seq.flow[2])
    store = Store(tmp_path)
    store.write(seq, split="mini")
    back = store.read_sequence("toy", "mini", "scene-a")
    for name in ("depth", "flow"):
        np.testing.assert_array_equal(getattr(back, name).view(np.uint32), getattr(seq, name).view(np.uint32))
    for frames in ([0, 1, 2], [1, 2]):
        win = store.read_window("toy", "mini", "scene-a", frames)
        ref = clip.Clip.from_sequence_window(seq, frames)
        np.testing.assert_array_equal(win.flow, ref.flow)
        np.testing.assert_array_equal(win.depth, ref.depth)


def test_flow_and_depth_are_stored_sparse(written) -> None:
    store, _ = written
    codecs = store.info("toy", "mini", "scene-a")["codecs"]
    assert codecs["flow"] == codecs["depth"] == "sparse+zstd"
    assert store.info("toy", "mini", "scene-a")["store_version"] == store_mod.STORE_VERSION == 2


def test_threads_give_the_same_window_and_bad_counts_are_refused(written) -> None:
    store, seq = written
    ref = clip.Clip.from_sequence_window(seq, [1, 2, 3, 4])
    for threads in (1, 3):
        win = Store(store.root, threads=threads).read_window("toy", "mini", "scene-a", [1, 2, 3, 4])
        for name in ALL_FIELDS:
            np.testing.assert_array_equal(getattr(win, name), getattr(ref, name), err_msg=f"{name} {threads}")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(StoreError, match="threads"):
            Store(store.root, threads=bad)


_INHERITED: list[Store] = []


def _read_with_inherited_store(frames: list[int]) -> np.ndarray:
    return _INHERITED[0].read_window("toy", "mini", "scene-a", frames).images


def test_forked_worker_reads_with_its_own_pool(written) -> None:
    import multiprocessing as mp
    import pickle

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    store, seq = written
    store.threads = 2
    store.read_window("toy", "mini", "scene-a", [0, 1, 2])  # the parent's thread pool exists and is warm
    _INHERITED[:] = [store]
    try:
        with mp.get_context("fork").Pool(1) as pool:
            # The child inherits the Store with a thread pool whose threads stayed in the parent.
            images = pool.apply_async(_read_with_inherited_store, ([0, 1, 2],)).get(timeout=60)
    finally:
        _INHERITED.clear()
    np.testing.assert_array_equal(images, seq.images[:3])
    copy = pickle.loads(pickle.dumps(store))  # spawn-style workers get a pickled Store
    np.testing.assert_array_equal(copy.read_window("toy", "mini", "scene-a", [4]).images, seq.images[4:5])


def test_recycled_window_memory_never_changes_arrays_still_in_use(written) -> None:
    store, seq = written
    first = store.read_window("toy", "mini", "scene-a", [0, 1, 2], anchor=False)
    kept_flow, kept_depth = first.flow[1:], first.depth[2, 0]  # views only
    want_flow, want_depth = kept_flow.copy(), kept_depth.copy()
    del first
    for frames in ([3, 4, 5], [2, 3, 4], [0, 1, 2]):
        win = store.read_window("toy", "mini", "scene-a", frames)
        ref = clip.Clip.from_sequence_window(seq, frames)
        for name in ALL_FIELDS:  # recycled sparse fields are cleared before the next window's scatter
            np.testing.assert_array_equal(getattr(win, name), getattr(ref, name), err_msg=name)
        del win
        np.testing.assert_array_equal(kept_flow, want_flow)
        np.testing.assert_array_equal(kept_depth, want_depth)
    # Dropped windows go back to the pool and are reused: no fresh allocation per read.
    pool = store._buffer_pool()
    before = {k: len(v) for k, v in pool._free.items()}
    assert before and all(0 < n <= pool.max_free for n in before.values())
    win = store.read_window("toy", "mini", "scene-a", [1, 2, 3])
    assert sum(len(v) for v in pool._free.values()) < sum(before.values())
    del win


def test_buffer_pool_keeps_freed_blocks_within_its_limits() -> None:
    from slarm_bench.store_buffers import BufferPool

    pool = BufferPool(max_free_per_shape=3, max_free_bytes=4 * 40)
    blocks = [pool.get((10,), np.float32, zero=False) for _ in range(5)]  # 40 bytes each
    addresses = {b.ctypes.data for b in blocks}
    view = blocks[0][2:5]
    del blocks
    assert sum(len(v) for v in pool._free.values()) == 3  # the view keeps the first block in use
    view[:] = 1
    again = pool.get((10,), np.float32, zero=True)
    assert again.ctypes.data in addresses and not again.any()  # reused and cleared
    small = BufferPool(max_free_per_shape=8, max_free_bytes=50)
    pair = [small.get((10,), np.float32, zero=False) for _ in range(2)]
    del pair
    assert small._free_bytes == 40  # the second block would exceed the byte budget


def test_store_version_1_stays_readable_and_unknown_versions_are_refused(tmp_path, monkeypatch) -> None:
    from slarm_bench import store_codec

    seq = make_sequence()
    monkeypatch.setattr(store_mod, "STORE_VERSION", 1)
    for field in store_codec.FIELD_TRANSFORMS:  # version 1 wrote every field but images raw
        if field != "images":
            monkeypatch.setitem(store_codec.FIELD_TRANSFORMS, field, "raw")
    store = Store(tmp_path)
    store.write(seq, split="mini")
    monkeypatch.undo()
    info = store.info("toy", "mini", "scene-a")
    assert info["store_version"] == 1 and info["codecs"]["flow"] == "raw+zstd"
    win = store.read_window("toy", "mini", "scene-a", [2, 3, 5])
    ref = clip.Clip.from_sequence_window(seq, [2, 3, 5])
    for name in ALL_FIELDS:
        np.testing.assert_array_equal(getattr(win, name), getattr(ref, name), err_msg=name)

    manifest = tmp_path / "toy" / "mini" / "scene-a" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["store_version"] = 99
    manifest.write_text(json.dumps(data))
    with pytest.raises(StoreError, match=r"manifest.json has store version 99, this slarm-bench reads 1 and "
                                         r"2: re-run `slarm-bench prepare toy --split mini --force`"):
        Store(tmp_path).read_window("toy", "mini", "scene-a", [0])


def test_frame_file_longer_than_written_is_reported(written) -> None:
    store, _ = written
    frame = store.root / "toy" / "mini" / "scene-a" / "frames" / "000002.slf"
    frame.write_bytes(frame.read_bytes() + b"xx")
    with pytest.raises(StoreError, match="000002.slf is longer than its chunk table"):
        store.read_window("toy", "mini", "scene-a", [1, 2])


# -- atomicity, force, cleanup ---------------------------------------------------------------------------
def test_write_interrupted_after_first_file_leaves_nothing_committed(tmp_path, monkeypatch) -> None:
    store = Store(tmp_path)
    real = store_mod._write_file
    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(path, data)

    monkeypatch.setattr(store_mod, "_write_file", failing)
    with pytest.raises(KeyboardInterrupt):
        store.write(make_sequence(), split="mini")
    monkeypatch.undo()
    assert not store.has("toy", "mini", "scene-a")
    assert list((tmp_path / "toy" / "mini").iterdir()) == []
    store.write(make_sequence(), split="mini")
    assert store.scenes("toy", "mini") == ["scene-a"]


def test_killed_writer_leaves_an_ignored_temp_dir_that_prepare_cleans(tmp_path) -> None:
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import make_sequence
        from slarm_bench import store_write as store_mod
        from slarm_bench.store import Store
        real = store_mod._write_file
        def dying(path, data):
            out = real(path, data)
            if path.name == "000002.slf":
                os._exit(9)   # no cleanup runs, as with SIGKILL
            return out
        store_mod._write_file = dying
        Store({str(tmp_path)!r}).write(make_sequence(scene="scene-b"), split="mini")
    """)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 9, proc.stderr
    store = Store(tmp_path)
    leftovers = list((tmp_path / "toy" / "mini").iterdir())
    assert len(leftovers) == 1 and ".tmp-" in leftovers[0].name
    assert not store.has("toy", "mini", "scene-b")
    assert store.datasets() == []
    report = store.validate()
    assert report.ok and "incomplete write" in report.describe()
    assert store.cleanup_incomplete("toy", "mini") == leftovers
    store.write(make_sequence(scene="scene-b"), split="mini")
    assert store.scenes("toy", "mini") == ["scene-b"]


def test_force_replaces_atomically_and_is_required(written, monkeypatch) -> None:
    store, seq = written
    with pytest.raises(StoreError, match="force"):
        store.write(seq, split="mini")
    newer = make_sequence(seed=7)
    real = store_mod._write_file
    monkeypatch.setattr(store_mod, "_write_file", lambda p, d: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        store.write(newer, split="mini", force=True)
    monkeypatch.setattr(store_mod, "_write_file", real)
    # The failed replacement left the old sequence intact and readable.
    np.testing.assert_array_equal(store.read_sequence("toy", "mini", "scene-a").images, seq.images)
    store.write(newer, split="mini", force=True)
    np.testing.assert_array_equal(store.read_sequence("toy", "mini", "scene-a").images, newer.images)
    assert sorted(p.name for p in (store.root / "toy" / "mini").iterdir()) == ["scene-a"]


def test_invalid_sequences_and_names_are_refused(tmp_path) -> None:
    store = Store(tmp_path)
    bad = make_sequence()
    bad.depth = bad.depth[..., :-1]
    with pytest.raises(ContractError):
        store.write(bad, split="mini")
    with pytest.raises(StoreError, match="cannot be a store folder"):
        store.write(make_sequence(scene="../escape"), split="mini")
    assert not any(tmp_path.iterdir())


# -- validation and errors -------------------------------------------------------------------------------
def test_validate_reports_checksum_truncation_and_schema_version(written) -> None:
    store, seq = written
    store.write(make_sequence(scene="scene-b"), split="mini")
    store.write(make_sequence(scene="scene-c"), split="mini")
    assert store.validate().ok
    folder = store.root / "toy" / "mini"
    frame = folder / "scene-a" / "frames" / "000003.slf"
    data = bytearray(frame.read_bytes())
    data[-5] ^= 0xFF
    frame.write_bytes(bytes(data))
    truncated = folder / "scene-b" / "frames" / "000001.slf"
    truncated.write_bytes(truncated.read_bytes()[:-10])
    manifest = folder / "scene-c" / "manifest.json"
    info = json.loads(manifest.read_text())
    info["schema_version"] = clip.SCHEMA_VERSION + 1
    manifest.write_text(json.dumps(info))

    report = store.validate(deep=False)
    assert not report.ok and report.checked == 3
    text = report.describe()
    assert "000003.slf fails its sha256 checksum" in text
    assert "000001.slf is truncated" in text
    assert f"schema version {clip.SCHEMA_VERSION + 1}" in text
    assert all("re-run `slarm-bench prepare toy --split mini --force`" in p for p in report.problems)
    # Reading hits the same problems with one-line errors naming the file.
    with pytest.raises(StoreError, match="000003.slf is corrupt"):
        store.read_window("toy", "mini", "scene-a", [3])
    with pytest.raises(StoreError, match="000001.slf is truncated"):
        store.read_window("toy", "mini", "scene-b", [1])
    with pytest.raises(StoreError, match="schema version"):
        store.read_sequence("toy", "mini", "scene-c")


def test_deep_validate_catches_contract_violations(written) -> None:
    store, _ = written
    manifest_path = store.root / "toy" / "mini" / "scene-a" / "manifest.json"
    info = json.loads(manifest_path.read_text())
    info["meta"]["fps"] = -1
    manifest_path.write_text(json.dumps(info))
    assert store.validate(deep=False).ok
    report = store.validate(deep=True)
    assert not report.ok and "fps" in report.problems[0]


def test_missing_root_and_unknown_names(tmp_path) -> None:
    store = Store(tmp_path / "nowhere")
    assert not store.has("toy", "mini", "x")
    with pytest.raises(StoreError, match="does not exist"):
        store.datasets()
    assert not store.validate().ok
    store = Store(tmp_path)
    store.write(make_sequence(), split="mini")
    with pytest.raises(UnknownNameError, match="(?i)did you mean 'mini'"):
        store.scenes("toy", "minii")
    with pytest.raises(UnknownNameError, match="(?i)did you mean 'scene-a'"):
        store.read_sequence("toy", "mini", "scene-aa")


def test_root_from_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SLARM_BENCH_DATA", str(tmp_path / "env-root"))
    assert Store().root == tmp_path / "env-root"
    assert Store(tmp_path).root == tmp_path


# -- index -----------------------------------------------------------------------------------------------
def test_index_is_rebuilt_from_manifests(written) -> None:
    store, _ = written
    store.write(make_sequence(scene="scene-b"), split="val")
    seqs = store.index()
    assert sorted(zip(seqs.split, seqs.scene)) == [("mini", "scene-a"), ("val", "scene-b")]
    assert (store.root / "index" / "sequences.parquet").is_file()
    frames = store.frame_index()
    assert len(frames) == 2 * T and frames.frame_index.tolist()[:T] == list(range(10, 10 + T))
    # The index is never the source of truth: a deleted or stale index is rebuilt on demand.
    (store.root / "index" / "sequences.parquet").unlink()
    store.write(make_sequence(scene="scene-c"), split="val")
    assert len(store.index()) == 3
    assert store.datasets() == ["toy"] and store.splits("toy") == ["mini", "val"]
    store.rebuild_index()
    assert len(store.frame_index()) == 3 * T
