"""Reading side of the prepared store (see store.py): manifest and static checks, frame decoding."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Sequence as _Seq
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from slarm_bench import clip
from slarm_bench.errors import StoreError, check_name
from slarm_bench.store_buffers import BufferPool
from slarm_bench.store_codec import decode_chunk, is_sparse, rotate_scattered, unpack_frame
from slarm_bench.store_index import frame_file_name
from slarm_bench.store_write import READABLE_STORE_VERSIONS, STATIC_FILE, STORE_FORMAT


def redo_hint(dataset: str, split: str) -> str:
    return f"re-run `slarm-bench prepare {dataset} --split {split} --force`"


def default_threads() -> int:
    """Decoding threads of a Store by default: the usable cores, at most 4 (zstd and numpy release the GIL,
    so one process loading a window uses them all; a process among several loaders should pass threads=1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def decode_pixels(folder: Path, manifest: dict, frames: list[int], cams: list[int], wanted: list[str],
                  flow_rotation: np.ndarray | None, pool: BufferPool | None,
                  executor: ThreadPoolExecutor | None) -> dict[str, np.ndarray]:
    """Per-pixel fields `wanted` [T,V,...] of the given frame and camera positions of the sequence in
    `folder`, one array per field, each frame file decoded straight into its slots. flow_rotation [3,3]
    rotates flow (in the calling thread, once all frames are decoded); arrays come from `pool` when given
    (see store_buffers.py); frame files are decoded on `executor` when given (zstd and numpy release the
    GIL)."""
    meta = manifest["meta"]
    dataset, split = meta["dataset"], manifest["split"]
    stored = list(manifest["fields"])
    codecs, files = manifest["codecs"], manifest["files"]
    v_all = len(meta["camera_names"])
    shapes = {f: (len(frames), len(cams), *manifest["shapes"][f][2:]) for f in wanted}
    if pool is not None:
        # Recycled memory holds the last window: each sparse slot is cleared by the thread that decodes it,
        # just before its scatter (in parallel, and while the slot is in cache).
        out = {f: pool.get(shapes[f], manifest["dtypes"][f], zero=False) for f in wanted}
        cleared = dict.fromkeys(wanted, False)
    else:
        # Fresh zeros from calloc cost nothing until touched: sparse chunks then write non-zero pixels only.
        out = {f: (np.zeros if is_sparse(codecs[f]) else np.empty)(shapes[f], manifest["dtypes"][f])
               for f in wanted}
        cleared = dict.fromkeys(wanted, True)
    # Sparse flow is rotated after decoding, all chunks in one call (see rotate_scattered); dense flow
    # (stores of version 1) as it is decoded.
    rotate_later = flow_rotation is not None and "flow" in wanted and is_sparse(codecs["flow"])
    plan = [(out[f][:, vi], codecs[f], stored.index(f) * v_all + v, cleared[f],
             flow_rotation if f == "flow" and not rotate_later else None, f == "flow" and rotate_later)
            for f in wanted for vi, v in enumerate(cams)]
    to_rotate: list[tuple[np.ndarray, np.ndarray]] = []

    def decode_frame(job: tuple[int, int]) -> None:
        ti, t = job
        path = folder / frame_file_name(t)
        try:
            data = _read_file(path, files[frame_file_name(t)]["bytes"])
            chunks = unpack_frame(data, len(stored) * v_all)
            for slots, codec, chunk, zeroed, rotation, collect in plan:
                index = decode_chunk(codec, chunks[chunk], slots[ti], zeroed, rotation)
                if collect and index.size:
                    to_rotate.append((slots[ti], index))  # list.append is atomic across threads
        except FileNotFoundError:
            raise StoreError(f"{path} is missing: {redo_hint(dataset, split)}") from None
        except OSError as exc:
            raise StoreError(f"{path} is unreadable ({exc}): fix its permissions or "
                             f"{redo_hint(dataset, split)}") from None
        except ValueError as exc:
            raise StoreError(f"{path} is {exc}: {redo_hint(dataset, split)}") from None

    jobs = list(enumerate(frames))
    if executor is not None:
        for _ in executor.map(decode_frame, jobs):
            pass  # map re-raises the first failure, in frame order, and cancels what has not started
    else:
        for job in jobs:
            decode_frame(job)
    if rotate_later:
        rotate_scattered(to_rotate, flow_rotation)
    return out


_scratch = threading.local()


def _read_file(path: Path, size: int) -> memoryview:
    """The bytes of `path` (expected `size`) in a buffer of this thread that the next call overwrites: a
    fresh ~200 KB bytes object per frame file costs page faults on every read."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or len(buf) < size + 1:
        buf = _scratch.buf = bytearray(max(size + 1, 2 * len(buf or b"")))
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        filled = 0
        while filled <= size:  # one byte more than expected, so that a longer file shows
            got = fh.readinto(view[filled:size + 1])
            if not got:
                break
            filled += got
    return view[:filled]


def read_manifest(path: Path, dataset: str, split: str) -> dict[str, Any]:
    """Parse and version-check a manifest; StoreError naming the file otherwise."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path} is unreadable or corrupt ({exc}): {redo_hint(dataset, split)}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise StoreError(f"{path} is not a slarm-bench store manifest: {redo_hint(dataset, split)}")
    if manifest.get("store_version") not in READABLE_STORE_VERSIONS:
        raise StoreError(f"{path} has store version {manifest.get('store_version')}, this slarm-bench reads "
                         f"{' and '.join(map(str, READABLE_STORE_VERSIONS))}: {redo_hint(dataset, split)}")
    if manifest.get("schema_version") != clip.SCHEMA_VERSION:
        raise StoreError(f"{path} has schema version {manifest.get('schema_version')}, this slarm-bench "
                         f"reads {clip.SCHEMA_VERSION}: {redo_hint(dataset, split)}")
    return manifest


def check_generated_by_current(manifest: dict, folder: Path) -> None:
    """StoreError (one line) when the sequence holds data of an older version of a generator this package
    ships (synthetic_version.stale_generator), so that old and new data are never mixed."""
    from slarm_bench.data.synthetic_version import stale_generator

    meta = manifest.get("meta") or {}
    why = stale_generator(meta)
    if why:
        raise StoreError(f"{folder} {why}: {redo_hint(str(meta.get('dataset')), str(manifest.get('split')))}")


def read_static(folder: Path, manifest: dict, dataset: str, split: str) -> dict[str, np.ndarray]:
    path = folder / STATIC_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"{path} is unreadable ({exc}): {redo_hint(dataset, split)}") from exc
    entry = manifest["files"].get(STATIC_FILE, {})
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise StoreError(f"{path} does not match its manifest checksum (changed or truncated after it was "
                         f"written): {redo_hint(dataset, split)}")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def check_frames(frames: _Seq[int], num_frames: int, folder: Path) -> list[int]:
    out = [int(f) for f in frames]
    if not out:
        raise StoreError(f"empty frame list for {folder}: pass at least one frame position")
    bad = [f for f in out if not 0 <= f < num_frames]
    if bad:
        raise StoreError(f"frames {bad} are outside 0..{num_frames - 1} of {folder}: pass frame positions "
                         "within the sequence")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise StoreError(f"frames {out} of {folder} must be strictly increasing")
    return out


def check_fields(fields: list[str] | None, stored: list[str], folder: Path) -> list[str]:
    if fields is None:
        return stored
    if isinstance(fields, str):
        raise StoreError(f"fields must be a list of names, got the string {fields!r}")
    for f in fields:
        check_name("field", f, ("images", *clip.PER_PIXEL_FIELDS))
    missing = [f for f in fields if f not in stored]
    if missing:
        raise StoreError(f"{folder} has no {missing} (stored: {stored}): drop them from `fields`")
    return ["images", *[f for f in stored if f in fields and f != "images"]]
