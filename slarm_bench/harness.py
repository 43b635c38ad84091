"""Drive a model over a protocol (batch or streaming), time it, score it, and write the results.

Batch mode: the model gets the context clip (images, poses, intrinsics, time; ground truth only for models
that declare it, e.g. the oracle) and renders every target timestep (all cameras at once).
Streaming mode: the harness feeds the context one timestep (all cameras) at a time to a StreamingModel and
records each step's latency and peak memory, then renders the targets from the final state.

Timing: CUDA events when the model runs on a GPU, `time.perf_counter` (monotonic) on the CPU; the first
window is run once unscored as warm-up. Peak memory: the CUDA allocator's peak, or the process peak RSS.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slarm_bench.clip import Clip
from slarm_bench.errors import SlarmBenchError
from slarm_bench.models.base import Model, Prediction, StreamingModel
from slarm_bench.protocols import Protocol

BASE_CONTEXT_FIELDS = ("images", "intrinsics", "cam_to_world", "time")
RGB_TOLERANCE = 1e-4


class HarnessError(SlarmBenchError):
    """A model output the harness cannot score (NaN, wrong shape, RGB outside [0,1])."""


@dataclass
class Timings:
    """Wall-clock seconds per call kind, as measured (see module docstring)."""

    reconstruct: list[float] = field(default_factory=list)
    render: list[float] = field(default_factory=list)
    step: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    peak_memory_bytes: int = 0

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {"median_ms": 1e3 * statistics.median(values), "mean_ms": 1e3 * statistics.fmean(values),
                    "total_s": float(sum(values)), "count": len(values)}

        return {"reconstruct": stats(self.reconstruct), "render": stats(self.render),
                "stream_step": stats(self.step), "load": stats(self.load), "score": stats(self.score),
                "peak_memory_bytes": self.peak_memory_bytes}


class Clock:
    """Times a callable on the model's device: CUDA events on a GPU, perf_counter on the CPU."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith("cuda")

    def __call__(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        if self.cuda:
            import torch

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            return out, start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0


def peak_memory_bytes(device: str) -> int:
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated())
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def context_clip(window: Clip, protocol: Protocol, model: Model) -> Clip:
    """The context frames of a window, with ground-truth fields removed unless the model declares them."""
    context = window.select(list(protocol.context))
    allowed = set(BASE_CONTEXT_FIELDS) | set(model.context_fields)
    stripped = {name: None for name in ("depth", "flow", "sky", "dynamic", "ground", "semantic",
                                        "depth_dense", "instance", "dynamic_box") if name not in allowed}
    if "boxes" not in allowed:
        stripped["boxes"] = None
    return context.replace(**stripped)


def check_prediction(pred: Prediction, model_name: str, where: str, num_cameras: int,
                     size: tuple[int, int]) -> None:
    """Refuse outputs that cannot be scored, naming model, window and field."""
    import torch

    h, w = size
    expected = {"rgb": (num_cameras, h, w, 3), "depth": (num_cameras, h, w), "flow": (num_cameras, h, w, 3),
                "semantic": (num_cameras, h, w)}
    if not isinstance(pred, Prediction):
        raise HarnessError(f"model {model_name!r} at {where}: render() returned {type(pred).__name__}, "
                           "expected models.base.Prediction")
    for name, shape in expected.items():
        value = getattr(pred, name)
        if value is None:
            if name == "rgb":
                raise HarnessError(f"model {model_name!r} at {where}: rgb is None; every model must render RGB")
            continue
        if tuple(value.shape) != shape:
            raise HarnessError(f"model {model_name!r} at {where}: {name} has shape {list(value.shape)}, "
                               f"expected {list(shape)}")
        if name != "semantic" and not bool(torch.isfinite(value).all()):
            raise HarnessError(f"model {model_name!r} at {where}: {name} has NaN or infinite values")
    lo, hi = float(pred.rgb.min()), float(pred.rgb.max())
    if lo < -RGB_TOLERANCE or hi > 1 + RGB_TOLERANCE:
        raise HarnessError(f"model {model_name!r} at {where}: rgb values span [{lo:.4g}, {hi:.4g}], outside "
                           "[0, 1]; clamp or fix the model's colour activation")


def _gpu_name(device: str | None) -> str | None:
    if not device or not str(device).startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(device))


def windows_by_device(records: dict[Any, dict[str, Any]]) -> dict[str, int]:
    """How many finished windows were scored (and timed) on each device ("cpu", "cuda: <GPU name>"), from
    their windows.jsonl records; records written before devices were recorded count as "unrecorded".
    More than one key means the folder was resumed elsewhere: its timing summary covers the last run only."""
    counts: dict[str, int] = {}
    for rec in records.values():
        dev = rec.get("device")
        key = "unrecorded" if not dev else f"{dev}: {rec['gpu']}" if rec.get("gpu") else str(dev)
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


@dataclass
class WindowResult:
    rows: list[dict[str, Any]]
    record: dict[str, Any]


def run_window(model: Model, protocol: Protocol, window: Clip, scene: str, start: int, scorer: Any,
               clock: Clock, timings: Timings, score: bool = True, device: str | None = None) -> WindowResult:
    """Reconstruct one window and render (and score) its targets and flow frames."""
    h, w = protocol.image_size
    num_cams = window.num_cameras
    context = context_clip(window, protocol, model)
    step_ms: list[float] = []
    if protocol.mode == "stream":
        if not isinstance(model, StreamingModel):
            raise HarnessError(f"protocol {protocol.name} streams, but model {model.name!r} is not a "
                               "StreamingModel")
        state = model.start()
        scene_obj = None
        for i in range(context.num_frames):
            frame = context.select([i])
            (state, scene_obj), dt = clock(lambda s=state, f=frame: model.step(s, f))
            step_ms.append(1e3 * dt)
            timings.step.append(dt)
    else:
        scene_obj, dt = clock(lambda: model.reconstruct(context))
        timings.reconstruct.append(dt)
    image_positions = set(protocol.targets)
    flow_positions = set(protocol.flow_target_positions()) if protocol.flow.enabled else set()
    rows: list[dict[str, Any]] = []
    render_ms: list[float] = []
    for pos in sorted(image_positions | flow_positions):
        where = f"scene {scene} window {start} frame {start + pos}"
        pred, dt = clock(lambda p=pos: model.render(scene_obj, window.cam_to_world[p], window.intrinsics[p],
                                                    float(window.time[p]), (h, w)))
        timings.render.append(dt)
        render_ms.append(1e3 * dt)
        check_prediction(pred, model.name, where, num_cams, (h, w))
        if not score:
            continue
        t0 = time.perf_counter()
        new_rows = scorer.score(pred, window, pos, images=pos in image_positions, flow=pos in flow_positions)
        timings.score.append(time.perf_counter() - t0)
        for cam, row in enumerate(new_rows):
            row.update({"scene": scene, "window": start, "frame": int(window.meta["frame_indices"][pos]),
                        "position": pos, "camera": window.camera_names[cam],
                        "kind": "target" if pos in image_positions else "flow"})
        rows.extend(new_rows)
    record = {"scene": scene, "window": start, "reconstruct_ms": 1e3 * timings.reconstruct[-1]
              if protocol.mode != "stream" and timings.reconstruct else None,
              "render_ms": render_ms, "step_ms": step_ms or None, "num_rows": len(rows),
              # per window, so a folder resumed on another machine says which windows' timings are whose
              "device": device, "gpu": _gpu_name(device)}
    return WindowResult(rows, record)


@dataclass
class RunSummary:
    """What `run` returns: where the results are and how complete they are."""

    path: Any
    summary: dict[str, Any]
    windows_scored: int
    windows_skipped: int
    missing_scenes: list[str]

    def describe(self) -> str:
        s = self.summary
        head = (f"{s['model']['preset']} on {s['protocol']['name']} v{s['protocol']['version']}: "
                f"{self.windows_scored} windows scored, {self.windows_skipped} resumed; "
                f"{'complete' if s['complete'] else 'INCOMPLETE'} -> {self.path}")
        lines = [head]
        for key, agg in s["metrics"].items():
            if agg.get("count"):
                arrow = "↑" if agg["higher_is_better"] else "↓"
                lines.append(f"  {key:<22}{arrow} {agg['mean']:.4f} ± {agg['std']:.4f}  (n={agg['count']})")
        for key, why in s.get("not_produced", {}).items():
            lines.append(f"  {key:<22}  not produced ({why})")
        if self.missing_scenes:
            lines.append(f"  missing scenes ({len(self.missing_scenes)}): prepare them with `slarm-bench "
                         f"prepare {s['protocol']['dataset']} --split {s['protocol']['split']}`")
        return "\n".join(lines)


def run_protocol(model: Model, protocol: Protocol, store: Any, folder: Any, scorer: Any,
                 provenance: dict[str, Any], device: str = "cpu", progress: bool = True,
                 max_windows: int | None = None, allow_missing: bool = False) -> RunSummary:
    """Score `model` on every window of `protocol` not already in `folder`; write rows and summary."""
    from slarm_bench.api import _progress

    present = set(store.scenes(protocol.dataset, protocol.split)) if protocol.dataset in store.datasets() \
        and protocol.split in store.splits(protocol.dataset) else set()
    missing = [s for s in protocol.scenes if s not in present]
    if missing and not allow_missing:
        raise SlarmBenchError(
            f"{len(missing)} of {len(protocol.scenes)} scenes of protocol {protocol.name} are not in the store "
            f"{store.root} (first: {missing[0]}): run `slarm-bench prepare {protocol.dataset} --split "
            f"{protocol.split}` (or pass --allow-missing to score the others, marked incomplete)")
    folder.prune_unfinished()
    done = folder.finished_windows()
    scorer.add_rows(folder.rows())
    plan = []
    for scene in protocol.scenes:
        if scene not in present:
            continue
        for start in protocol.window_starts(store.num_frames(protocol.dataset, protocol.split, scene)):
            plan.append((scene, start))
    todo = [(sc, st) for sc, st in plan if (sc, st) not in done]
    if max_windows is not None:
        todo = todo[:max_windows]
    clock, timings = Clock(device), Timings()
    frames_of = lambda st: list(range(st, st + protocol.window_length))  # noqa: E731
    load = lambda sc, st: store.read_window(protocol.dataset, protocol.split, sc, frames_of(st),  # noqa: E731
                                            cameras=list(protocol.cameras))
    if todo:  # warm-up on the first window, unscored and untimed
        run_window(model, protocol, load(*todo[0]), todo[0][0], todo[0][1], scorer, clock, Timings(),
                   score=False)
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
    scored = 0
    t_run = time.perf_counter()
    try:
        with _progress(progress, f"{model.name} on {protocol.name}", len(todo)) as advance:
            for scene, start in todo:
                t0 = time.perf_counter()
                window = load(scene, start)
                timings.load.append(time.perf_counter() - t0)
                # Scoring updates the metric states as it goes; only resumed rows are re-added.
                result = run_window(model, protocol, window, scene, start, scorer, clock, timings,
                                    device=device)
                folder.append_window(result.rows, result.record)
                scored += 1
                advance()
    finally:
        # Written even on Ctrl-C or a model error: the summary says how complete it is.
        timings.peak_memory_bytes = peak_memory_bytes(device)
        wall = time.perf_counter() - t_run
        finished = folder.finished_windows()
        complete = not missing and all(w in finished for w in plan)
        timing = {**timings.summary(), "run_wall_s": wall, "windows_timed": scored}
        previous = folder.read_summary() if scored == 0 else None
        if previous and (previous.get("timing") or {}).get("windows_timed"):
            # Nothing was timed this time (every window was already there): keep the timings of the run
            # that measured them instead of overwriting them with empty ones.
            timing = dict(previous["timing"])
        timing["windows_by_device"] = windows_by_device(finished)
        summary = {
            "result_schema": folder.binding["result_schema"],
            "protocol": {"name": protocol.name, "version": protocol.version, "dataset": protocol.dataset,
                         "split": protocol.split, "scene_list_hash": protocol.scene_list_hash,
                         "num_scenes": len(protocol.scenes), "mode": protocol.mode, "knobs": protocol.knobs()},
            "model": {"preset": model.name, **model.provenance()},
            "complete": complete, "windows_total": len(plan), "windows_finished": len(finished),
            "missing_scenes": missing,
            "metrics": scorer.summary(), "not_produced": scorer.not_produced(model),
            "timing": timing,
            "provenance": provenance,
        }
        folder.write_summary(summary)
    return RunSummary(folder.path, summary, scored, len(plan) - len(todo), missing)
