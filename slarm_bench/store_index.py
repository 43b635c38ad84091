"""The store's parquet index (rebuilt from manifests) and its validation report (see store.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from slarm_bench.errors import SlarmBenchError, check_name

if TYPE_CHECKING:
    import pandas as pd

    from slarm_bench.store import Store

SEQUENCE_COLUMNS = (
    "dataset", "split", "scene", "num_frames", "num_cameras", "height", "width", "camera_names", "fields",
    "has_boxes", "num_boxes", "bytes_total", "schema_version", "store_version", "package_version",
    "created_at", "manifest_mtime_ns",
)
FRAME_COLUMNS = ("dataset", "split", "scene", "frame", "frame_index", "time", "file", "bytes")


def frame_file_name(position: int) -> str:
    return f"frames/{position:06d}.slf"


@dataclass
class ValidationReport:
    """Outcome of Store.validate: `problems` (one line each, naming the file and what to do), `checked`
    (sequences looked at) and `notes` (harmless findings such as leftovers of interrupted writes)."""

    problems: list[str] = field(default_factory=list)
    checked: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        head = (f"{'OK' if self.ok else 'FAILED'}: {self.checked} sequence(s) checked, "
                f"{len(self.problems)} problem(s)")
        return "\n".join([head, *(f"  problem: {p}" for p in self.problems),
                          *(f"  note: {n}" for n in self.notes)])


def build_index_tables(store: Store) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sequences, frames) DataFrames read from every committed manifest under the store's root."""
    import pandas as pd

    from slarm_bench.store import MANIFEST

    seq_rows, frame_rows = [], []
    for dataset in store.datasets():
        for split in store.splits(dataset):
            for scene in store.scenes(dataset, split):
                man, static = store._load(dataset, split, scene)
                path = store.root / dataset / split / scene / MANIFEST
                meta = man["meta"]
                seq_rows.append({
                    "dataset": dataset, "split": split, "scene": scene, "num_frames": man["num_frames"],
                    "num_cameras": man["num_cameras"], "height": man["image_size"][0],
                    "width": man["image_size"][1], "camera_names": ",".join(meta["camera_names"]),
                    "fields": ",".join(man["fields"]), "has_boxes": bool(man["has_boxes"]),
                    "num_boxes": int(man["num_boxes"]), "bytes_total": int(man["bytes_total"]),
                    "schema_version": man["schema_version"], "store_version": man["store_version"],
                    "package_version": man["created_by"]["version"], "created_at": man["created_at"],
                    "manifest_mtime_ns": path.stat().st_mtime_ns,
                })
                for t in range(int(man["num_frames"])):
                    name = frame_file_name(t)
                    frame_rows.append({
                        "dataset": dataset, "split": split, "scene": scene, "frame": t,
                        "frame_index": int(meta["frame_indices"][t]), "time": float(static["time"][t]),
                        "file": name, "bytes": int(man["files"][name]["bytes"]),
                    })
    sequences = pd.DataFrame(seq_rows, columns=list(SEQUENCE_COLUMNS))
    frames = pd.DataFrame(frame_rows, columns=list(FRAME_COLUMNS))
    return sequences, frames


def validate_store(store: Store, dataset: str | None, split: str | None, deep: bool) -> ValidationReport:
    from slarm_bench.store import MANIFEST, OLD_MARK, TMP_MARK, read_manifest, redo_hint

    report = ValidationReport()
    if not store.root.is_dir():
        report.problems.append(f"prepared-data root {store.root} does not exist: run `slarm-bench prepare "
                               "...` or point $SLARM_BENCH_DATA at a prepared store")
        return report
    datasets = [check_name("dataset", dataset, _dirs(store.root))] if dataset else _dirs(store.root)
    for ds in datasets:
        splits = [check_name("split", split, _dirs(store.root / ds))] if split else _dirs(store.root / ds)
        for sp in splits:
            base = store.root / ds / sp
            for entry in sorted(base.iterdir()):
                if not entry.is_dir() or entry.name.startswith("."):
                    continue
                if TMP_MARK in entry.name or OLD_MARK in entry.name or not (entry / MANIFEST).is_file():
                    report.notes.append(f"{entry} is an incomplete write (no manifest); it is ignored and "
                                        f"removed by the next `slarm-bench prepare {ds} --split {sp}`")
                    continue
                report.checked += 1
                report.problems.extend(_check_scene(store, entry, ds, sp, deep, read_manifest,
                                                    redo_hint(ds, sp)))
    return report


def _check_scene(store: Store, folder: Path, dataset: str, split: str, deep: bool, read_manifest,
                 hint: str) -> list[str]:
    from slarm_bench.store import MANIFEST
    from slarm_bench.store_read import check_generated_by_current

    try:
        manifest = read_manifest(folder / MANIFEST, dataset, split)
        check_generated_by_current(manifest, folder)
    except SlarmBenchError as exc:
        return [str(exc)]
    problems = []
    if manifest.get("dataset") != dataset or manifest.get("split") != split \
            or manifest.get("scene") != folder.name:
        problems.append(f"{folder / MANIFEST} describes {manifest.get('dataset')}/{manifest.get('split')}/"
                        f"{manifest.get('scene')}, not the folder it is in: {hint}")
    expected = {frame_file_name(t) for t in range(int(manifest.get("num_frames", 0)))}
    missing_entries = sorted(expected - set(manifest.get("files", {})))
    if missing_entries:
        problems.append(f"{folder / MANIFEST} lists no checksum for {missing_entries[:3]}: {hint}")
    for name, entry in sorted(manifest.get("files", {}).items()):
        path = folder / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            problems.append(f"{path} is missing: {hint}")
            continue
        except OSError as exc:
            problems.append(f"{path} is unreadable ({exc}): {hint}")
            continue
        if len(data) != entry["bytes"]:
            what = "truncated" if len(data) < entry["bytes"] else "longer than written"
            problems.append(f"{path} is {what} ({len(data)} bytes, manifest says {entry['bytes']}): {hint}")
        elif hashlib.sha256(data).hexdigest() != entry["sha256"]:
            problems.append(f"{path} fails its sha256 checksum (changed after it was written): {hint}")
    if deep and not problems:
        try:
            store.read_sequence(dataset, split, folder.name).validate()
        except SlarmBenchError as exc:
            problems.append(f"{folder}: {exc}" if str(folder) not in str(exc) else str(exc))
    return problems


def _dirs(path: Path) -> list[str]:
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name != "index")
