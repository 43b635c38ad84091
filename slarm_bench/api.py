"""The Python API that the CLI wraps: prepare(), validate(), list_everything(), run(), report(), regress().

Each function takes plain arguments, does the work, and returns a small result object with a `describe()`
for the CLI. Heavy modules are imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from slarm_bench import config
from slarm_bench.errors import SlarmBenchError, check_name


# ---------------------------------------------------------------------------------------------------------
# prepare
@dataclass
class PrepareSummary:
    dataset: str
    split: str
    root: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"prepared {self.dataset}/{self.split} in {self.root}: {len(self.written)} written, "
                 f"{len(self.skipped)} already there (skipped), {len(self.failed)} failed"]
        lines += [f"  FAILED {scene}: {message}" for scene, message in self.failed]
        return "\n".join(lines)


def select_scenes(available: list[str], scenes: str | None, scene_list: str | os.PathLike | None,
                  kind: str = "scene") -> list[str]:
    """Scenes to prepare: all, the first N (`scenes="N"`), a comma list, or the lines of a file."""
    if scenes and scene_list:
        raise SlarmBenchError("give either --scenes or --scene-list, not both")
    if scene_list:
        path = Path(scene_list)
        if not path.is_file():
            raise SlarmBenchError(f"scene list {path} does not exist: give a file with one scene per line")
        wanted = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    elif scenes and scenes.strip().isdigit():
        return available[: int(scenes)]
    elif scenes:
        wanted = [s.strip() for s in scenes.split(",") if s.strip()]
    else:
        return list(available)
    for name in wanted:
        check_name(kind, name, available)
    return wanted


def _build_and_write(dataset: str, adapter_options: dict[str, Any], split: str, scene: str,
                     root: str, force: bool) -> str:
    """Worker body: build one sequence and commit it to the store (in the worker: no big pickles)."""
    from slarm_bench.data import get_adapter
    from slarm_bench.store import Store

    sequence = get_adapter(dataset, **adapter_options).build(split, scene)
    sequence.validate()
    Store(root).write(sequence, split, force=force)
    return scene


def prepare(dataset: str, split: str | None = None, scenes: str | None = None,
            scene_list: str | os.PathLike | None = None, raw: str | os.PathLike | None = None,
            root: str | os.PathLike | None = None, workers: int = 1, force: bool = False,
            progress: bool = True, **adapter_options: Any) -> PrepareSummary:
    """Prepare scenes of a dataset split into the store; resumable (finished scenes are skipped)."""
    from slarm_bench.data import get_adapter

    if raw is not None:
        adapter_options["raw"] = str(raw)
    adapter = get_adapter(dataset, **adapter_options)  # unknown names fail here, before any I/O
    from slarm_bench.store import Store

    split = split or adapter.splits()[0]
    check_name("split", split, adapter.splits())
    chosen = select_scenes(adapter.scenes(split), scenes, scene_list)
    store_root = config.data_root(root)
    store = Store(store_root)
    store.cleanup_incomplete(dataset, split)
    summary = PrepareSummary(dataset, split, store.root)
    todo = []
    for scene in chosen:
        if store.has(dataset, split, scene) and not force:
            summary.skipped.append(scene)
        else:
            todo.append(scene)
    if workers < 1:
        raise SlarmBenchError(f"--workers must be at least 1, got {workers}")
    with _progress(progress, f"prepare {dataset}/{split}", len(todo)) as advance:
        if workers == 1 or len(todo) <= 1:
            for scene in todo:
                _run_one(summary, scene, lambda s=scene: _build_and_write(
                    dataset, adapter_options, split, s, str(store.root), force))
                advance()
        else:
            ctx = get_context("forkserver" if _torch_imported() else "fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = {pool.submit(_build_and_write, dataset, adapter_options, split, s,
                                       str(store.root), force): s for s in todo}
                for future in as_completed(futures):
                    _run_one(summary, futures[future], future.result)
                    advance()
    store.rebuild_index()
    return summary


def _torch_imported() -> bool:
    import sys

    return "torch" in sys.modules


def _run_one(summary: PrepareSummary, scene: str, job: Callable[[], Any]) -> None:
    try:
        job()
    except SlarmBenchError as exc:  # one bad segment must not stop the others
        summary.failed.append((scene, str(exc)))
    else:
        summary.written.append(scene)


class _progress:
    """A rich progress bar when asked for and stderr is a terminal; otherwise silent."""

    def __init__(self, enabled: bool, label: str, total: int):
        import sys

        self.enabled = enabled and sys.stderr.isatty() and total > 0
        self.label, self.total = label, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), transient=True)
        self._bar.start()
        task = self._bar.add_task(self.label, total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()


# ---------------------------------------------------------------------------------------------------------
# validate / list
def validate(root: str | os.PathLike | None = None, dataset: str | None = None, split: str | None = None,
             deep: bool = True) -> Any:
    """Check a prepared store (contract, checksums, schema version); returns the store's report."""
    from slarm_bench.store import Store

    return Store(config.data_root(root)).validate(dataset=dataset, split=split, deep=deep)


def list_everything(what: str = "all") -> dict[str, list[tuple[str, str]]]:
    """Names and one-line summaries of datasets, protocols and models (cheap: reads cards and tables)."""
    from slarm_bench.data import iter_datasets

    out: dict[str, list[tuple[str, str]]] = {}
    if what in ("datasets", "all"):
        out["datasets"] = list(iter_datasets())
    if what in ("protocols", "all"):
        from slarm_bench.protocols import iter_protocols

        out["protocols"] = list(iter_protocols())
    if what in ("models", "all"):
        from slarm_bench.models.registry import iter_models

        out["models"] = list(iter_models())
    return out


def _as_list(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


# ---------------------------------------------------------------------------------------------------------
# run
def resolve_device(device: str = "auto") -> str:
    if device != "auto":
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise SlarmBenchError(f"--device {device} asked for, but CUDA is not available here: use "
                                      "--device cpu (or auto)")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(model: str, protocol: str, *, checkpoint: str | None = None, device: str = "auto",
        backend: str = "auto", root: str | os.PathLike | None = None,
        results: str | os.PathLike | None = None, mode: str | None = None, max_windows: int | None = None,
        allow_missing: bool = False, progress: bool = True, trust_pickle: bool = False,
        seed: int = 0, model_options: dict[str, Any] | None = None) -> Any:
    """Score a model preset on a protocol; resumes from an existing results folder of the same binding."""
    import sys
    from dataclasses import replace

    import torch

    from slarm_bench import harness
    from slarm_bench.models.registry import load_model
    from slarm_bench.protocols import get_protocol
    from slarm_bench.results import ResultFolder, environment, result_dir
    from slarm_bench.scoring import Scorer
    from slarm_bench.store import Store

    proto = get_protocol(protocol)
    if mode is not None:
        check_name("mode", mode, ["batch", "stream"])
        proto = replace(proto, mode=mode)
    device = resolve_device(device)
    torch.manual_seed(seed)
    options = dict(model_options or {})
    options.update(device=device, backend=backend)
    if checkpoint is not None:
        options.update(checkpoint=checkpoint, trust_pickle=trust_pickle)
    model_obj = load_model(model, **options)
    preset = model if proto.mode == "batch" else f"{model}@stream"
    folder = ResultFolder(result_dir(proto.name, preset, model_obj.checkpoint_sha256(), results),
                          proto.name, proto.version, proto.scene_list_hash)
    provenance = {**environment(), "argv": sys.argv, "seed": seed, "device": device,
                  "checkpoint_sha256": model_obj.checkpoint_sha256(), "protocol_card": proto.card}
    scorer = Scorer(proto, device=device)
    provenance["metrics"] = scorer.provenance()
    model_obj.name = preset
    return harness.run_protocol(model_obj, proto, Store(config.data_root(root)), folder, scorer, provenance,
                                device=device, progress=progress, max_windows=max_windows,
                                allow_missing=allow_missing)


# ---------------------------------------------------------------------------------------------------------
# regress
@dataclass
class RegressOutcome:
    protocol: str
    ok: bool
    table: str
    reference: Path

    def describe(self) -> str:
        verdict = "OK: no regression" if self.ok else "REGRESSION"
        return f"regress {self.protocol} against {self.reference}: {verdict}\n{self.table}"


def regress(protocol: str, models: str | Iterable[str] | None = None, root: str | os.PathLike | None = None,
            reference: str | os.PathLike | None = None, device: str = "cpu") -> RegressOutcome:
    """Re-run models on a protocol in a scratch results folder and compare with the committed leaderboard."""
    import tempfile

    import pandas as pd

    from slarm_bench import report

    ref_dir = Path(reference) if reference else config.cards_dir("leaderboards") / protocol
    csv = ref_dir / "leaderboard.csv"
    if not csv.is_file():
        raise SlarmBenchError(f"no committed leaderboard {csv}: run `slarm-bench run` for the models, then "
                              f"`slarm-bench report --protocol {protocol}`, and commit {ref_dir}")
    chosen = _as_list(models)
    if chosen is None:
        table = pd.read_csv(csv)
        chosen = [str(p) for p in table.loc[~table.get("paper", False).astype(bool), "preset"].unique()]
    with tempfile.TemporaryDirectory(prefix="slarm-regress-") as tmp:
        for name in chosen:
            run(name, protocol, root=root, results=tmp, device=device, progress=False)
        current = report.load_results(tmp, protocol)
        diff, ok = report.compare(current, ref_dir, models=chosen)
    return RegressOutcome(protocol, ok, report.format_diff(diff), ref_dir)


# ---------------------------------------------------------------------------------------------------------
# query
def query(text: str, model: str = "slarm", protocol: str = "synthetic-mini", out: str | os.PathLike = "query.png",
          checkpoint: str | None = None, clip_weights: str | None = None, root: str | os.PathLike | None = None,
          device: str = "auto") -> Path:
    """Render the relevance of `text` for the first window of a protocol and write it as a PNG."""
    from slarm_bench import text as text_module
    from slarm_bench.models.registry import load_model
    from slarm_bench.protocols import get_protocol
    from slarm_bench.store import Store

    if not text or not text.strip():
        raise SlarmBenchError("empty --text: give a class or phrase, e.g. --text vehicle")
    options: dict[str, Any] = {"device": resolve_device(device)}
    if checkpoint:
        options["checkpoint"] = checkpoint
    if clip_weights:
        options["clip_weights"] = clip_weights
    model_obj = load_model(model, **options)
    return text_module.query(model_obj, get_protocol(protocol), text, out, store=Store(config.data_root(root)))
