"""Writing side of the prepared store (see store.py): frame files, static arrays, fsync and atomic commit."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import time as _time
from pathlib import Path
from typing import Any

import numpy as np

from slarm_bench import __version__, clip
from slarm_bench.errors import StoreError
from slarm_bench.store_codec import choose_transform, codec_name, encode_chunk, pack_frame
from slarm_bench.store_index import frame_file_name

STORE_FORMAT = "slarm-bench-store"
# 2: depth and flow stored sparse (store_codec.py). Readers also read 1 (every field dense).
STORE_VERSION = 2
READABLE_STORE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
STATIC_FILE = "sequence.npz"
FRAMES_DIR = "frames"
INDEX_DIR = "index"
TMP_MARK = ".tmp-"
OLD_MARK = ".old-"
_BOX_PREFIX, _EXTRA_PREFIX = "boxes.", "extras."
# Temporary directories this process is writing right now: cleanup_incomplete must not remove them.
_IN_FLIGHT: set[Path] = set()


# -- helpers ---------------------------------------------------------------------------------------
def _write_contents(folder: Path, seq: clip.Sequence, split: str, level: int) -> dict[str, Any]:
    fields = ["images", *seq.present_fields()]
    transforms = {f: choose_transform(f, getattr(seq, f)[0, 0], level) for f in fields}
    files: dict[str, dict[str, Any]] = {}
    field_bytes = dict.fromkeys(fields, 0)
    (folder / FRAMES_DIR).mkdir()
    for t in range(seq.num_frames):
        chunks = []
        for f in fields:
            arr = getattr(seq, f)
            for v in range(seq.num_cameras):
                chunks.append(encode_chunk(f, arr[t, v], level, transforms[f]))
                field_bytes[f] += len(chunks[-1])
        name = frame_file_name(t)
        files[name] = _write_file(folder / name, pack_frame(chunks))
    static, extras = _static_arrays(seq)
    buf = io.BytesIO()
    np.savez(buf, **static)
    files[STATIC_FILE] = _write_file(folder / STATIC_FILE, buf.getvalue())
    _fsync_dir(folder / FRAMES_DIR)
    t, v, h, w = seq.num_frames, seq.num_cameras, *seq.image_size
    shapes = {f: list(getattr(seq, f).shape) for f in fields}
    return {
        "format": STORE_FORMAT, "store_version": STORE_VERSION, "schema_version": clip.SCHEMA_VERSION,
        "created_by": {"package": "slarm-bench", "version": __version__},
        "created_at": _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime()),
        "dataset": seq.meta["dataset"], "split": split, "scene": seq.meta["scene"],
        "num_frames": t, "num_cameras": v, "image_size": [h, w],
        "fields": fields, "shapes": shapes, "dtypes": {f: getattr(seq, f).dtype.str for f in fields},
        "codecs": {f: codec_name(f, transforms[f]) for f in fields}, "lossless": dict.fromkeys(fields, True),
        "zstd_level": level, "has_boxes": seq.boxes is not None,
        "num_boxes": len(seq.boxes) if seq.boxes is not None else 0,
        "meta": _jsonable(seq.meta, "meta"), "extras": extras,
        "files": files, "field_bytes": field_bytes,
        "bytes_total": int(sum(f["bytes"] for f in files.values())),
    }


def _static_arrays(seq: clip.Sequence) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    static = {"intrinsics": seq.intrinsics, "cam_to_world": seq.cam_to_world, "time": seq.time}
    if seq.boxes is not None:
        static.update({_BOX_PREFIX + k: v for k, v in seq.boxes.as_dict().items()})
    json_extras: dict[str, Any] = {}
    for key, value in seq.extras.items():
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise StoreError(f"sequence extra {key!r} is an object array: store plain numeric arrays")
            static[_EXTRA_PREFIX + key] = value
        else:
            json_extras[key] = _jsonable(value, f"extras[{key!r}]")
    return static, json_extras


def _jsonable(value: Any, what: str) -> Any:
    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(type(obj).__name__)

    try:
        return json.loads(json.dumps(value, default=default))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"sequence {what} holds a value JSON cannot store ({exc}): use numbers, strings, "
                         "lists and dicts") from exc


def _write_file(path: Path, data: bytes) -> dict[str, Any]:
    """Write and fsync one file; returns its manifest entry (sha256, bytes)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync elsewhere
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, dest: Path) -> None:
    """Rename a complete temporary folder into place; an existing one is moved aside first, then removed."""
    old = None
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(f"{dest.name}{OLD_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        os.replace(dest, old)
    try:
        os.rename(tmp, dest)
    except OSError as exc:
        if old is not None:
            os.replace(old, dest)
        raise StoreError(f"cannot move {tmp.name} into place as {dest} ({exc}): is another prepare writing "
                         "the same scene?") from exc
    _fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old)


def _writer_alive(tmp: Path) -> bool:
    if tmp in _IN_FLIGHT:
        return True
    try:
        pid = int(tmp.name.split(TMP_MARK)[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
