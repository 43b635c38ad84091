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

import hashlib
import io
import json
import os
import secrets
import shutil
from collections.abc import Sequence as _Seq
from pathlib import Path
from typing import Any

import numpy as np

from slarm_bench import clip, config
from slarm_bench import store_write as _w
from slarm_bench.errors import StoreError, check_name
from slarm_bench.store_codec import (
    DEFAULT_LEVEL,
    decode_chunk,
    unpack_frame,
)
from slarm_bench.store_index import ValidationReport, build_index_tables, frame_file_name
from slarm_bench.store_write import (
    _BOX_PREFIX,
    _EXTRA_PREFIX,
    _IN_FLIGHT,
    INDEX_DIR,
    MANIFEST,
    OLD_MARK,
    STATIC_FILE,
    STORE_FORMAT,
    STORE_VERSION,
    TMP_MARK,
)

__all__ = ["Store", "StoreError", "ValidationReport", "STORE_VERSION"]


def redo_hint(dataset: str, split: str) -> str:
    return f"re-run `slarm-bench prepare {dataset} --split {split} --force`"


class Store:
    """Prepared sequences under `root` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root: Path = config.data_root(root)
        self._cache: dict[Path, tuple[tuple[int, int, int], dict, dict[str, np.ndarray]]] = {}

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

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
        names = list(manifest["meta"]["camera_names"])
        frames = _check_frames(frames, int(manifest["num_frames"]), self._scene_dir(dataset, split, scene))
        wanted = [names.index(check_name("camera", c, names)) for c in (cameras or names)]
        if not anchor:
            seq = self._assemble(manifest, static, frames, wanted, fields, shift_time=True)
            return clip.Clip(**{k: getattr(seq, k) for k in seq.__dataclass_fields__})
        ref = manifest["meta"].get("reference_camera") or ("FRONT" if "FRONT" in names
                                                           else names[len(names) // 2])
        ref_index = names.index(ref)
        # The anchor is the reference camera even when the caller did not ask for it: load it, then drop it.
        loaded = wanted if ref_index in wanted else sorted([*wanted, ref_index])
        # from_sequence_window re-anchors poses, time, boxes and meta. Handed the pixel fields, it would also
        # copy each of them and rotate flow over the whole window in float64 (about half of the load time).
        # So it runs first on the poses alone (images a zero-size placeholder that never leaves this
        # method); the decoder then writes flow already rotated, with the same float64 arithmetic as
        # geometry.rotate_vectors (tested equal to the plain call on a whole Sequence).
        light = self._assemble(manifest, static, frames, loaded, [], shift_time=False, pixels=False)
        out = clip.Clip.from_sequence_window(light, list(range(len(frames))), reference_camera=ref)
        rotation = np.asarray(out.meta["anchor_from_sequence_world"], np.float64)[:3, :3]
        seq = self._assemble(manifest, static, frames, loaded, fields, shift_time=False,
                             flow_rotation=rotation)
        out = out.replace(**{f: getattr(seq, f) for f in ("images", *clip.PER_PIXEL_FIELDS)})
        if loaded != wanted:
            out = out.select(list(range(len(frames))), [loaded.index(c) for c in wanted])
        return out

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
        static = _read_static(folder, manifest, dataset, split)
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

    def _assemble(self, manifest: dict, static: dict[str, np.ndarray], frames: list[int], cams: list[int],
                  fields: list[str] | None, shift_time: bool, pixels: bool = True,
                  flow_rotation: np.ndarray | None = None) -> clip.Sequence:
        """A Sequence of the given frame and camera positions; pixels=False leaves every per-pixel field
        None and images a zero-size placeholder; flow_rotation [3,3] rotates flow as it is decoded."""
        meta = manifest["meta"]
        dataset, split = meta["dataset"], manifest["split"]
        folder = self._scene_dir(dataset, split, meta["scene"])
        stored = list(manifest["fields"])
        wanted = _check_fields(fields, stored, folder) if pixels else []
        t_count, v_count = len(frames), len(cams)
        v_all = len(meta["camera_names"])
        out = {f: np.empty((t_count, v_count, *manifest["shapes"][f][2:]), np.dtype(manifest["dtypes"][f]))
               for f in wanted}
        if not pixels:
            out["images"] = np.empty((t_count, v_count, 0, 0, 3), np.uint8)
        scratch = None
        if flow_rotation is not None and "flow" in wanted:
            scratch = np.empty(manifest["shapes"]["flow"][2:], np.dtype(manifest["dtypes"]["flow"]))
            rot_t = np.ascontiguousarray(flow_rotation.T, np.float64)
        for ti, t in enumerate(frames if wanted else []):
            path = folder / frame_file_name(t)
            try:
                data = path.read_bytes()
                chunks = unpack_frame(data, len(stored) * v_all)
                for f in wanted:
                    base = stored.index(f) * v_all
                    for vi, v in enumerate(cams):
                        if f == "flow" and scratch is not None:
                            # Decoded into a cache-sized scratch and rotated into place: one pass fewer.
                            decode_chunk(manifest["codecs"][f], chunks[base + v], scratch)
                            if scratch.any():
                                np.matmul(scratch, rot_t, out=out[f][ti, vi], casting="same_kind")
                            else:  # static frames: a rotated zero is zero
                                out[f][ti, vi] = 0
                        else:
                            decode_chunk(manifest["codecs"][f], chunks[base + v], out[f][ti, vi])
            except FileNotFoundError:
                raise StoreError(f"{path} is missing: {redo_hint(dataset, split)}") from None
            except ValueError as exc:
                raise StoreError(f"{path} is {exc}: {redo_hint(dataset, split)}") from None
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
def read_manifest(path: Path, dataset: str, split: str) -> dict[str, Any]:
    """Parse and version-check a manifest; StoreError naming the file otherwise."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path} is unreadable or corrupt ({exc}): {redo_hint(dataset, split)}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise StoreError(f"{path} is not a slarm-bench store manifest: {redo_hint(dataset, split)}")
    if manifest.get("store_version") != STORE_VERSION:
        raise StoreError(f"{path} has store version {manifest.get('store_version')}, this slarm-bench reads "
                         f"{STORE_VERSION}: {redo_hint(dataset, split)}")
    if manifest.get("schema_version") != clip.SCHEMA_VERSION:
        raise StoreError(f"{path} has schema version {manifest.get('schema_version')}, this slarm-bench "
                         f"reads {clip.SCHEMA_VERSION}: {redo_hint(dataset, split)}")
    return manifest


def _read_static(folder: Path, manifest: dict, dataset: str, split: str) -> dict[str, np.ndarray]:
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


def _component(kind: str, name: str) -> str:
    """A dataset, split or scene name usable as one folder name."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or name.startswith(".") or TMP_MARK in name or OLD_MARK in name
            or (kind == "dataset" and name == INDEX_DIR)):
        raise StoreError(f"{kind} name {name!r} cannot be a store folder: use a non-empty name without "
                         f"path separators, a leading dot, '{TMP_MARK}' or '{OLD_MARK}'"
                         + (f" (and not {INDEX_DIR!r})" if kind == "dataset" else ""))
    return name


def _check_frames(frames: _Seq[int], num_frames: int, folder: Path) -> list[int]:
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


def _check_fields(fields: list[str] | None, stored: list[str], folder: Path) -> list[str]:
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
