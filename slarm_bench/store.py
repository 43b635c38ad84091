"""On-disk store of prepared sequences: atomic writes, random access by frame, checksums, a parquet index.

Layout under the root (config.data_root(): an explicit root, else $SLARM_BENCH_DATA, else ./data/prepared):

    <root>/<dataset>/<split>/<scene>/
        frames/000000.slf ...  one file per frame: every stored per-pixel field of every camera, each
                               (field, camera) a separately decodable zstd chunk (store_codec.py)
        sequence.npz           per-frame poses, intrinsics, time; boxes; array extras (small, uncompressed)
        manifest.json          written LAST: schema and store versions, meta, shapes, codecs, per-file
                               sha256 and size, frame count, creating package version. No manifest means
                               an incomplete sequence, which every reader ignores.
    <root>/index/sequences.parquet, frames.parquet   rebuilt from the manifests; never the source of truth

A write goes to a sibling `<scene>.tmp-<pid>-<random>` directory, is fsynced and then renamed into place,
so a killed write never leaves a complete-looking sequence. Sequences are stored in their own world frame;
`read_window` re-anchors a window to its first frame's reference camera (Clip.from_sequence_window).
Everything is lossless (the manifest says so per field in "lossless").
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Sequence as _Seq
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from slarm_bench import clip, config
from slarm_bench import store_write as _w
from slarm_bench.errors import StoreError, check_name
from slarm_bench.store_buffers import BufferPool
from slarm_bench.store_codec import DEFAULT_LEVEL
from slarm_bench.store_index import ValidationReport, build_index_tables
from slarm_bench.store_read import (
    check_fields,
    check_frames,
    check_generated_by_current,
    decode_pixels,
    default_threads,
    read_manifest,
    read_static,
    redo_hint,
)
from slarm_bench.store_write import (
    _BOX_PREFIX,
    _EXTRA_PREFIX,
    _IN_FLIGHT,
    INDEX_DIR,
    MANIFEST,
    OLD_MARK,
    STORE_VERSION,
    TMP_MARK,
)

__all__ = ["Store", "StoreError", "ValidationReport", "STORE_VERSION"]


class Store:
    """Prepared sequences under `root` (see the module docstring).

    `threads` frame files are decoded at once by read_window and read_sequence (default_threads() when None;
    1 decodes in the calling thread). The pool is per process: a forked worker makes its own on first use.
    The arrays of a window belong to the caller; once every array and view of a window is gone, the store
    reuses that memory for a later window (store_buffers.py), which saves the kernel mapping it afresh.
    """

    def __init__(self, root: str | os.PathLike | None = None, threads: int | None = None) -> None:
        self.root: Path = config.data_root(root)
        self._cache: dict[Path, tuple[tuple[int, int, int], dict, dict[str, np.ndarray]]] = {}
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise StoreError(f"threads must be a positive int or None (default {default_threads()}), "
                             f"got {threads!r}")
        self.threads: int = default_threads() if threads is None else threads
        self._pool: tuple[int, int, ThreadPoolExecutor] | None = None
        self._buffers: tuple[int, BufferPool] | None = None

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Threads, locks and recycled memory stay with their process; a copy makes its own on first use.
        return {**self.__dict__, "_pool": None, "_buffers": None}

    # -- listing ------------------------------------------------------------------------------------------
    def has(self, dataset: str, split: str, scene: str) -> bool:
        """True only for a committed (manifest written) sequence."""
        return (self._scene_dir(dataset, split, scene) / MANIFEST).is_file()

    def datasets(self) -> list[str]:
        """Datasets holding at least one committed sequence."""
        return [d for d in self._subdirs(self._require_root()) if d != INDEX_DIR and self.splits(d)]

    def splits(self, dataset: str) -> list[str]:
        base = self._require_root() / _component("dataset", dataset)
        return [s for s in self._subdirs(base) if self._committed(base / s)]

    def scenes(self, dataset: str, split: str) -> list[str]:
        """Committed scenes of a dataset split, sorted; UnknownNameError for an unknown dataset or split."""
        root = self._require_root()
        check_name("dataset", dataset, self.datasets())
        check_name("split", split, self.splits(dataset))
        return self._committed(root / dataset / split)

    def info(self, dataset: str, split: str, scene: str) -> dict[str, Any]:
        """The sequence's manifest (a copy)."""
        return json.loads(json.dumps(self._load(dataset, split, scene)[0]))

    def num_frames(self, dataset: str, split: str, scene: str) -> int:
        return int(self._load(dataset, split, scene)[0]["num_frames"])

    # -- writing ------------------------------------------------------------------------------------------
    def write(self, sequence: clip.Sequence, split: str, force: bool = False,
              level: int = DEFAULT_LEVEL) -> Path:
        """Store a validated Sequence under <root>/<dataset>/<split>/<scene> atomically; returns its folder.

        Raises StoreError if it exists, unless `force` (then the old one stays intact until the new one
        is complete). dataset and scene come from sequence.meta.
        """
        sequence.validate()
        dataset, scene = str(sequence.meta["dataset"]), str(sequence.meta["scene"])
        dest = self._scene_dir(dataset, split, scene)
        if (dest.exists() or dest.is_symlink()) and not force:
            if (dest / MANIFEST).is_file():
                raise StoreError(f"{dest} already holds a prepared sequence: pass force=True (`--force`) "
                                 "to replace it")
            raise StoreError(f"{dest} exists without a manifest (an interrupted write or a foreign folder): "
                             "pass force=True (`--force`) to replace it")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{scene}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        tmp.mkdir()
        _IN_FLIGHT.add(tmp)
        try:
            manifest = _w._write_contents(tmp, sequence, split, level)
            _w._write_file(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
            _w._fsync_dir(tmp)
            _w._commit(tmp, dest)
        except BaseException:
            # Our own half-written folder: nothing else refers to it, so it goes.
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            _IN_FLIGHT.discard(tmp)
        self._cache.pop(dest, None)
        return dest

    def cleanup_incomplete(self, dataset: str, split: str) -> list[Path]:
        """Remove leftovers of interrupted writes in <root>/<dataset>/<split>; returns what was removed.

        `*.tmp-<pid>-*` folders of a live process (a parallel writer) are left alone. A `*.old-*` folder
        left by an interrupted forced replacement is put back when its scene has no committed folder.
        """
        base = self.root / _component("dataset", dataset) / _component("split", split)
        removed: list[Path] = []
        if not base.is_dir():
            return removed
        for entry in sorted(base.iterdir()):
            if TMP_MARK in entry.name and entry.is_dir() and not _w._writer_alive(entry):
                shutil.rmtree(entry)
                removed.append(entry)
            elif OLD_MARK in entry.name and entry.is_dir():
                dest = base / entry.name.split(OLD_MARK)[0]
                if (dest / MANIFEST).is_file() or not (entry / MANIFEST).is_file():
                    shutil.rmtree(entry)
                    removed.append(entry)
                elif not dest.exists():
                    os.replace(entry, dest)
        return removed

    # -- reading ------------------------------------------------------------------------------------------
    def read_sequence(self, dataset: str, split: str, scene: str,
                      fields: list[str] | None = None) -> clip.Sequence:
        """The whole sequence in its own world frame; `fields` limits the decoded per-pixel fields."""
        manifest, static = self._load(dataset, split, scene)
        check_generated_by_current(manifest, self._scene_dir(dataset, split, scene))
        frames = list(range(int(manifest["num_frames"])))
        cams = list(range(len(manifest["meta"]["camera_names"])))
        return self._assemble(manifest, static, frames, cams, fields, shift_time=False)

    def read_window(self, dataset: str, split: str, scene: str, frames: _Seq[int],
                    cameras: list[str] | None = None, fields: list[str] | None = None,
                    anchor: bool = True) -> clip.Clip:
        """Frames `frames` (positions 0..T-1, increasing) of a sequence as a Clip, reading only their files.

        anchor=True re-anchors to the reference camera at the first frame (the Clip world frame);
        anchor=False keeps the sequence's world frame. Time always restarts at 0.
        """
        manifest, static = self._load(dataset, split, scene)
        check_generated_by_current(manifest, self._scene_dir(dataset, split, scene))
        names = list(manifest["meta"]["camera_names"])
        frames = check_frames(frames, int(manifest["num_frames"]), self._scene_dir(dataset, split, scene))
        wanted = [names.index(check_name("camera", c, names)) for c in (cameras or names)]
        if not anchor:
            seq = self._assemble(manifest, static, frames, wanted, fields, shift_time=True, recycle=True)
            return clip.Clip(**{k: getattr(seq, k) for k in seq.__dataclass_fields__})
        ref = manifest["meta"].get("reference_camera") or ("FRONT" if "FRONT" in names
                                                           else names[len(names) // 2])
        ref_index = names.index(ref)
        # from_sequence_window re-anchors poses, time, boxes and meta. Handed the pixel fields, it would also
        # copy each of them and rotate flow over the whole window. So it runs on the poses alone (images a
        # zero-size placeholder, the reference camera loaded even when not asked for), and the decoder
        # then rotates flow as it scatters the stored non-zero vectors (rotate_vectors, tested equal).
        loaded = wanted if ref_index in wanted else sorted([*wanted, ref_index])
        light = self._assemble(manifest, static, frames, loaded, [], shift_time=False, pixels=False)
        out = clip.Clip.from_sequence_window(light, list(range(len(frames))), reference_camera=ref)
        if loaded != wanted:
            out = out.select(list(range(len(frames))), [loaded.index(c) for c in wanted])
        rotation = np.asarray(out.meta["anchor_from_sequence_world"], np.float64)[:3, :3]
        pixels = self._decode_pixels(manifest, frames, wanted, fields, rotation, recycle=True)
        return out.replace(**{f: pixels.get(f) for f in ("images", *clip.PER_PIXEL_FIELDS)})

    # -- index and validation -----------------------------------------------------------------------------
    def rebuild_index(self) -> None:
        """Rewrite <root>/index/{sequences,frames}.parquet from the manifests."""
        sequences, frames = build_index_tables(self)
        folder = self.root / INDEX_DIR
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, table in (("sequences.parquet", sequences), ("frames.parquet", frames)):
                tmp = folder / f"{name}{TMP_MARK}{os.getpid()}"
                table.to_parquet(tmp, index=False)
                os.replace(tmp, folder / name)
        except OSError as exc:
            raise StoreError(f"cannot write the index in {folder} ({exc}): make the store writable") from exc

    def index(self):  # -> pandas.DataFrame
        """One row per committed sequence; rebuilt when missing or out of date with the manifests."""
        return self._fresh_index()[0]

    def frame_index(self):  # -> pandas.DataFrame
        """One row per stored frame of every committed sequence."""
        return self._fresh_index()[1]

    def validate(self, dataset: str | None = None, split: str | None = None,
                 deep: bool = True) -> ValidationReport:
        """Check checksums, sizes, versions and frame files; deep also decodes and validates each sequence."""
        from slarm_bench.store_index import validate_store

        return validate_store(self, dataset, split, deep)

    # -- internals ----------------------------------------------------------------------------------------
    def _scene_dir(self, dataset: str, split: str, scene: str) -> Path:
        return self.root / _component("dataset", dataset) / _component("split", split) / \
            _component("scene", scene)

    def _require_root(self) -> Path:
        if not self.root.is_dir():
            raise StoreError(f"prepared-data root {self.root} does not exist: run `slarm-bench prepare ...`, "
                             f"or point ${config.DATA_ENV} or --data-root at a prepared store")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StoreError(f"prepared-data root {self.root} is not readable: fix its permissions")
        return self.root

    @staticmethod
    def _subdirs(path: Path) -> list[str]:
        if not path.is_dir():
            return []
        return sorted(p.name for p in path.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and TMP_MARK not in p.name
                      and OLD_MARK not in p.name)

    def _committed(self, split_dir: Path) -> list[str]:
        return [s for s in self._subdirs(split_dir) if (split_dir / s / MANIFEST).is_file()]

    def _load(self, dataset: str, split: str, scene: str) -> tuple[dict, dict[str, np.ndarray]]:
        """Manifest and static arrays of a committed sequence, cached until the manifest changes."""
        folder = self._scene_dir(dataset, split, scene)
        path = folder / MANIFEST
        try:
            st = path.stat()
        except FileNotFoundError:
            self._require_root()
            known = self._committed(folder.parent)
            check_name("scene", scene, known)
            raise StoreError(f"{folder} has no manifest: {redo_hint(dataset, split)}") from None
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        hit = self._cache.get(folder)
        if hit is not None and hit[0] == stamp:
            return hit[1], hit[2]
        manifest = read_manifest(path, dataset, split)
        static = read_static(folder, manifest, dataset, split)
        self._cache[folder] = (stamp, manifest, static)
        return manifest, static

    def _fresh_index(self):
        import pandas as pd

        folder = self._require_root() / INDEX_DIR
        current = {(d, s, c): (self.root / d / s / c / MANIFEST).stat().st_mtime_ns
                   for d in self.datasets() for s in self.splits(d)
                   for c in self._committed(self.root / d / s)}
        try:
            sequences = pd.read_parquet(folder / "sequences.parquet")
            frames = pd.read_parquet(folder / "frames.parquet")
            stored = {(r.dataset, r.split, r.scene): int(r.manifest_mtime_ns) for r in sequences.itertuples()}
            if stored == current:
                return sequences, frames
        except (OSError, ValueError, AttributeError):
            pass  # missing, unreadable or of an older layout: rebuilt below from the manifests
        sequences, frames = build_index_tables(self)
        try:
            self.rebuild_index()
        except StoreError:
            pass  # a read-only store still gets its (freshly built, identical) tables
        return sequences, frames

    def _executor(self) -> ThreadPoolExecutor:
        # A pool inherited through fork has no threads behind it: each process makes its own.
        if self._pool is None or self._pool[:2] != (os.getpid(), self.threads):
            self._pool = (os.getpid(), self.threads,
                          ThreadPoolExecutor(self.threads, thread_name_prefix="slarm-store"))
        return self._pool[2]

    def _buffer_pool(self) -> BufferPool:
        # Per process too: a lock held by another thread at fork time would never be released in the child.
        if self._buffers is None or self._buffers[0] != os.getpid():
            self._buffers = (os.getpid(), BufferPool())
        return self._buffers[1]

    def _decode_pixels(self, manifest: dict, frames: list[int], cams: list[int], fields: list[str] | None,
                       flow_rotation: np.ndarray | None = None,
                       recycle: bool = False) -> dict[str, np.ndarray]:
        meta = manifest["meta"]
        folder = self._scene_dir(meta["dataset"], manifest["split"], meta["scene"])
        wanted = check_fields(fields, list(manifest["fields"]), folder)
        executor = self._executor() if self.threads > 1 and len(frames) > 1 else None
        return decode_pixels(folder, manifest, frames, cams, wanted, flow_rotation,
                             self._buffer_pool() if recycle else None, executor)

    def _assemble(self, manifest: dict, static: dict[str, np.ndarray], frames: list[int], cams: list[int],
                  fields: list[str] | None, shift_time: bool, pixels: bool = True,
                  recycle: bool = False) -> clip.Sequence:
        """A Sequence of the given frame and camera positions; pixels=False leaves every per-pixel field
        None and images a zero-size placeholder."""
        meta = manifest["meta"]
        t_count = len(frames)
        if pixels:
            out = self._decode_pixels(manifest, frames, cams, fields, recycle=recycle)
        else:
            out = {"images": np.empty((t_count, len(cams), 0, 0, 3), np.uint8)}
        idx = np.asarray(frames, np.int64)
        cam_idx = np.asarray(cams, np.int64)
        seq_meta = json.loads(json.dumps(meta))
        seq_meta["frame_indices"] = [meta["frame_indices"][t] for t in frames]
        seq_meta["camera_names"] = [meta["camera_names"][v] for v in cams]
        seq_time = static["time"][idx]
        if shift_time:
            seq_time = seq_time - seq_time[0]
        boxes = None
        if manifest["has_boxes"]:
            boxes = clip.Boxes(**{k[len(_BOX_PREFIX):]: v for k, v in static.items()
                                  if k.startswith(_BOX_PREFIX)})
            if t_count != int(manifest["num_frames"]):
                boxes = boxes.select_frames(idx)
        extras = dict(manifest.get("extras", {}))
        extras.update({k[len(_EXTRA_PREFIX):]: v for k, v in static.items() if k.startswith(_EXTRA_PREFIX)})
        return clip.Sequence(
            intrinsics=static["intrinsics"][idx][:, cam_idx],
            cam_to_world=static["cam_to_world"][idx][:, cam_idx],
            time=seq_time, meta=seq_meta, boxes=boxes, extras=extras,
            **{f: out.get(f) for f in ("images", *clip.PER_PIXEL_FIELDS)})


# -- reading helpers ---------------------------------------------------------------------------------------
def _component(kind: str, name: str) -> str:
    """A dataset, split or scene name usable as one folder name."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or name.startswith(".") or TMP_MARK in name or OLD_MARK in name
            or (kind == "dataset" and name == INDEX_DIR)):
        raise StoreError(f"{kind} name {name!r} cannot be a store folder: use a non-empty name without "
                         f"path separators, a leading dot, '{TMP_MARK}' or '{OLD_MARK}'"
                         + (f" (and not {INDEX_DIR!r})" if kind == "dataset" else ""))
    return name


