"""Result files: layout, provenance, atomic writes and resume.

    results/<protocol>/<preset>/<checkpoint sha256[:12] or "none">/
        frames.jsonl    one row per scored image (scene, window, frame, camera, every metric value)
        windows.jsonl   one line per finished window (timings); a window's rows count only once its
                        line is here, so a run killed mid-window resumes cleanly
        summary.json    aggregates (mean, std, count), timings, memory, provenance; written atomically

A results folder is bound to one protocol version and scene-list hash: a run with another is refused.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slarm_bench import __version__, config
from slarm_bench.errors import SlarmBenchError

RESULT_SCHEMA_VERSION = 1
FRAMES_FILE = "frames.jsonl"
WINDOWS_FILE = "windows.jsonl"
SUMMARY_FILE = "summary.json"


class ResultsError(SlarmBenchError):
    """A results folder that cannot be used as asked (another protocol version, corrupt files)."""


def result_dir(protocol: str, preset: str, checkpoint_sha256: str | None,
               root: str | os.PathLike | None = None) -> Path:
    return config.results_root(root) / protocol / preset / (checkpoint_sha256[:12] if checkpoint_sha256
                                                            else "none")


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(obj: Any, **kwargs: Any) -> str:
    """JSON with NaN/inf written as null (strict JSON readers accept the files)."""
    return json.dumps(_finite(obj), default=_json_default, allow_nan=False, **kwargs)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def git_state() -> dict[str, Any]:
    """Commit and dirtiness of the project checkout, when it is one (None otherwise)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=config.PROJECT_ROOT, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=config.PROJECT_ROOT, capture_output=True, text=True, timeout=5,
                                    check=True).stdout.strip())
        return {"git_commit": commit, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def environment() -> dict[str, Any]:
    """Package versions and hardware, for provenance (torch is imported: the harness has it anyway)."""
    import numpy as np
    import torch

    env: dict[str, Any] = {
        "slarm_bench": __version__, "python": platform.python_version(), "numpy": np.__version__,
        "torch": torch.__version__, "cuda": torch.version.cuda, "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import gsplat  # noqa: F401  (only its version is recorded)

        env["gsplat"] = getattr(sys.modules["gsplat"], "__version__", "unknown")
    except ImportError:
        env["gsplat"] = None
    env.update(git_state())
    return env


class ResultFolder:
    """One (protocol, preset, checkpoint) results folder: resume state, appends, summary."""

    def __init__(self, path: Path, protocol_name: str, protocol_version: int, scene_list_hash: str):
        self.path = Path(path)
        self.binding = {"protocol": protocol_name, "protocol_version": protocol_version,
                        "scene_list_hash": scene_list_hash, "result_schema": RESULT_SCHEMA_VERSION}
        self._check_binding()

    @property
    def frames_path(self) -> Path:
        return self.path / FRAMES_FILE

    @property
    def windows_path(self) -> Path:
        return self.path / WINDOWS_FILE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    def _check_binding(self) -> None:
        binding_file = self.path / "binding.json"
        if binding_file.exists():
            try:
                existing = json.loads(binding_file.read_text())
            except json.JSONDecodeError as exc:
                raise ResultsError(f"{binding_file} is corrupt ({exc}): move the folder away to start over") \
                    from exc
            if existing != self.binding:
                raise ResultsError(
                    f"{self.path} holds results of {existing.get('protocol')} v{existing.get('protocol_version')}"
                    f" (scene list {str(existing.get('scene_list_hash'))[:12]}), not "
                    f"{self.binding['protocol']} v{self.binding['protocol_version']} (scene list "
                    f"{self.binding['scene_list_hash'][:12]}): results are never mixed; move that folder away "
                    "or pass another --results root")
        else:
            atomic_write_text(binding_file, to_json(self.binding, indent=1))

    # -- resume -----------------------------------------------------------------------------------------
    def finished_windows(self) -> dict[tuple[str, int], dict[str, Any]]:
        """(scene, window start) -> its windows.jsonl record, for windows whose rows are complete."""
        out = {}
        for record in _read_jsonl(self.windows_path):
            out[(record["scene"], int(record["window"]))] = record
        return out

    def rows(self) -> list[dict[str, Any]]:
        """Per-image rows of finished windows only (rows of a window killed midway are ignored)."""
        done = self.finished_windows()
        return [r for r in _read_jsonl(self.frames_path) if (r["scene"], int(r["window"])) in done]

    def prune_unfinished(self) -> int:
        """Rewrite frames.jsonl without rows of unfinished windows (a previous run killed mid-window)."""
        if not self.frames_path.exists():
            return 0
        all_rows = list(_read_jsonl(self.frames_path))
        kept = self.rows()
        if len(kept) != len(all_rows):
            atomic_write_text(self.frames_path, "".join(to_json(r) + "\n" for r in kept))
        return len(all_rows) - len(kept)

    # -- appends ----------------------------------------------------------------------------------------
    def append_window(self, rows: Iterable[dict[str, Any]], record: dict[str, Any]) -> None:
        """Append a window's rows, then its completion record (each write flushed and fsynced)."""
        self.path.mkdir(parents=True, exist_ok=True)
        _append_lines(self.frames_path, [to_json(r) for r in rows])
        _append_lines(self.windows_path, [to_json(record)])

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary_path, to_json(summary, indent=1, sort_keys=False) + "\n")

    def read_summary(self) -> dict[str, Any] | None:
        if not self.summary_path.exists():
            return None
        return json.loads(self.summary_path.read_text())


def _append_lines(path: Path, lines: list[str]) -> None:
    if not lines:
        return
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn last line (a run killed mid-write) is skipped."""
    if not path.exists():
        return []
    out = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break  # torn final line: its window has no completion record either
            raise ResultsError(f"{path} line {i + 1} is corrupt ({exc}): move the folder away to start over") \
                from exc
    return out


def find_summaries(root: str | os.PathLike | None = None, protocol: str | None = None) -> list[Path]:
    """summary.json files under a results root (optionally of one protocol)."""
    base = config.results_root(root)
    pattern = f"{protocol}/*/*/{SUMMARY_FILE}" if protocol else f"*/*/*/{SUMMARY_FILE}"
    return sorted(base.glob(pattern))
