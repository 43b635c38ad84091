"""Named, versioned evaluation protocols, loaded from the cards in `datasets/protocols/*.yaml`.

A protocol is frozen data: dataset and split, a frozen scene list (hashed into every result), window length
and stride, context and target frames, cameras, image size, and the metric knobs of REFERENCE.md sections
2-3. Window selection is deterministic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from slarm_bench import config
from slarm_bench.errors import SlarmBenchError, check_name


@dataclass(frozen=True)
class DepthKnobs:
    field: str = "depth"          # "depth" (lidar) or "depth_dense" (exact, synthetic)
    min_depth: float = 0.0        # valid = min_depth < d < max_depth (exclusive)
    max_depth: float = float("inf")


@dataclass(frozen=True)
class FlowKnobs:
    enabled: bool = True
    frames: str = "targets"       # "targets", "context", or "targets:A-B" (positions among the targets)
    filter: str = "timestep"      # "window" (STORM), "timestep" (SLARM) or "none"
    threshold: float = 1.0        # m/s: the frame filter's max-|v| threshold
    pred_zero_below: float = 1.0  # predicted |v| below this is set to 0 (REFERENCE.md)
    exclude_ground: bool = True
    accelerating_threshold: float = 1.0  # |a| (m/s^2) of the agents that form the "accelerating" subset


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    dataset: str
    split: str
    description: str
    scenes: tuple[str, ...]
    window_length: int
    window_stride: int
    last_window: str              # "shift" (move the last window back to fit) or "drop"
    context: tuple[int, ...]      # positions within the window
    targets: tuple[int, ...]
    cameras: tuple[str, ...]
    image_size: tuple[int, int]   # (H, W)
    mode: str = "batch"           # "batch" or "stream"
    reference_camera: str = "FRONT"
    full_image: str = "whole"     # "whole" or "nonsky": the mask of the headline PSNR/SSIM
    dynamic_mask: str = "dynamic"  # clip field used as the dynamic mask ("dynamic" or "dynamic_box")
    depth: DepthKnobs = field(default_factory=DepthKnobs)
    flow: FlowKnobs = field(default_factory=FlowKnobs)
    semantic: bool = False
    semantic_classes: tuple[str, ...] = ()
    lpips_net: str = "alex"
    time_span: float = 2.0        # seconds; model time = (t - t_context0) / time_span
    card: str = ""

    @property
    def scene_list_hash(self) -> str:
        return hashlib.sha256("\n".join(self.scenes).encode()).hexdigest()

    def window_starts(self, num_frames: int) -> list[int]:
        """Deterministic window starts for a sequence of `num_frames` frames."""
        length, stride = self.window_length, self.window_stride
        if num_frames < length:
            return []
        starts = list(range(0, num_frames - length + 1, stride))
        if self.last_window == "shift" and starts[-1] + length < num_frames:
            shifted = num_frames - length
            # Only when the uncovered tail is real: a remainder smaller than the stride makes a new window.
            if shifted > starts[-1]:
                starts.append(shifted)
        return starts

    def flow_target_positions(self) -> tuple[int, ...]:
        """Window positions at which flow is scored (before the per-window/timestep filter)."""
        spec = self.flow.frames
        if spec == "targets":
            return self.targets
        if spec == "context":
            return self.context
        if spec.startswith("targets:"):
            lo, hi = (int(x) for x in spec.split(":")[1].split("-"))
            return tuple(t for t in self.targets if lo <= t <= hi)
        raise SlarmBenchError(f"protocol {self.name}: unknown flow frames {spec!r}")

    def knobs(self) -> dict[str, Any]:
        """Everything that changes a number, for provenance."""
        return {
            "full_image": self.full_image, "dynamic_mask": self.dynamic_mask,
            "depth": vars(self.depth), "flow": vars(self.flow), "semantic": self.semantic,
            "lpips_net": self.lpips_net, "time_span": self.time_span,
        }


def protocols_dir() -> Path:
    return config.cards_dir("datasets") / "protocols"


def _load_card(path: Path) -> Protocol:
    import yaml

    raw = yaml.safe_load(path.read_text())
    try:
        scenes = _resolve_scenes(raw["scenes"], path)
        window = raw["window"]
        length = int(window["length"])
        context = tuple(int(c) for c in window["context"])
        targets_spec = window.get("targets", "rest")
        targets = (tuple(i for i in range(length) if i not in context) if targets_spec == "rest"
                   else tuple(int(t) for t in targets_spec))
        metrics = raw.get("metrics", {})
        depth = DepthKnobs(**metrics.get("depth", {}))
        flow = FlowKnobs(**metrics.get("flow", {}))
        return Protocol(
            name=raw["name"], version=int(raw["version"]), dataset=raw["dataset"], split=raw["split"],
            description=raw.get("description", "").strip(), scenes=tuple(scenes),
            window_length=length, window_stride=int(window["stride"]),
            last_window=window.get("last", "shift"), context=context, targets=targets,
            cameras=tuple(raw["cameras"]), image_size=tuple(raw["image_size"]),
            mode=raw.get("mode", "batch"), reference_camera=raw.get("reference_camera", "FRONT"),
            full_image=metrics.get("full_image", "whole"),
            dynamic_mask=metrics.get("dynamic_mask", "dynamic"), depth=depth, flow=flow,
            semantic=bool(metrics.get("semantic", False)),
            semantic_classes=tuple(metrics.get("semantic_classes", ())),
            lpips_net=metrics.get("lpips_net", "alex"), time_span=float(raw.get("time_span", 2.0)),
            card=str(path),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SlarmBenchError(f"protocol card {path} is malformed ({exc!r}): fix the card") from exc


def _resolve_scenes(spec: Any, card: Path) -> list[str]:
    """A scene list: explicit names, {file: relative path}, or {prefix, count} for generated splits."""
    if isinstance(spec, list):
        return [str(s) for s in spec]
    if isinstance(spec, dict) and "file" in spec:
        path = (card.parent / spec["file"]).resolve()
        if not path.is_file():
            raise SlarmBenchError(f"protocol card {card} names scene list {path}, which does not exist")
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if isinstance(spec, dict) and "count" in spec:
        return [f"{spec['prefix']}{i:05d}" for i in range(int(spec["count"]))]
    raise SlarmBenchError(f"protocol card {card}: `scenes` must be a list, {{file: ...}} or "
                          "{prefix: ..., count: N}")


@lru_cache(maxsize=1)
def _all_protocols() -> dict[str, Protocol]:
    out = {}
    folder = protocols_dir()
    if not folder.is_dir():
        raise SlarmBenchError(f"no protocol cards in {folder}: run from a slarm-bench checkout or set "
                              f"${config.CARDS_ENV} to one")
    for path in sorted(folder.glob("*.yaml")):
        protocol = _load_card(path)
        out[protocol.name] = protocol
    return out


def protocol_names() -> list[str]:
    return sorted(_all_protocols())


def get_protocol(name: str) -> Protocol:
    protocols = _all_protocols()
    check_name("protocol", name, protocols)
    return protocols[name]


def iter_protocols() -> Iterator[tuple[str, str]]:
    for name, p in sorted(_all_protocols().items()):
        first_line = p.description.splitlines()[0] if p.description else ""
        yield name, f"v{p.version} {p.dataset}/{p.split}, {len(p.scenes)} scenes: {first_line}"
