"""nuScenes tables through nuscenes-devkit: loading with one-line errors, splits, timelines, box tracks.

Facts of the schema used here (nuScenes v1.0, also Lyft Level 5's v1.01 tables):
- calibrated_sensor: sensor-to-ego `translation` and `rotation` (quaternion w, x, y, z); cameras also carry
  `camera_intrinsic` (3x3, pixels of the raw image). Camera axes are x right, y down, z forward (OpenCV).
- ego_pose: ego-to-global pose at a sample_data's own `timestamp` (microseconds); the ego frame is x forward,
  y left, z up. Each sample_data has its own ego pose: cameras and lidar fire at different times.
- sample_annotation: global-frame box centre `translation`, `size` = [width, length, height], `rotation` a
  quaternion about global z; `instance_token` links the same object across the samples (2 Hz keyframes).
- sample_data of a channel form a prev/next chain (keyframes and the sweeps between them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slarm_bench import geometry
from slarm_bench.errors import SlarmBenchError, check_name

TABLES = (
    "attribute",
    "calibrated_sensor",
    "category",
    "ego_pose",
    "instance",
    "log",
    "map",
    "sample",
    "sample_annotation",
    "sample_data",
    "scene",
    "sensor",
    "visibility",
)
# Splits of nuscenes.utils.splits that apply to each kind of version; "all" = every scene in the dataroot.
VERSION_SPLITS = {
    "mini": ("mini_train", "mini_val"),
    "trainval": ("train", "val", "train_detect", "train_track"),
    "test": ("test",),
}
INSTALL_HINT = (
    "install it with `make nuscenes` (pip install --no-deps nuscenes-devkit==1.2.0 plus its "
    "dependencies, keeping numpy 2)"
)
# Errors nuscenes-devkit raises on broken tables or files; each is re-explained in one line.
DEVKIT_ERRORS = (AssertionError, FileNotFoundError, KeyError, IndexError, ValueError, TypeError, OSError)


class NuScenesDataError(SlarmBenchError):
    """A nuScenes dataroot, table, scene or file that cannot be used."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_devkit(raw: Path, version: str) -> Any:
    """A nuscenes.nuscenes.NuScenes over `raw` after checking what the devkit would assert on."""
    try:
        from nuscenes.nuscenes import NuScenes
    except ImportError as exc:
        raise NuScenesDataError(f"nuscenes-devkit is not installed ({exc}): {INSTALL_HINT}") from exc
    if not raw.is_dir():
        raise NuScenesDataError(
            f"nuScenes dataroot {raw} does not exist: point --raw at the folder holding "
            "v1.0-*/, samples/ and sweeps/"
        )
    versions = sorted(p.name for p in raw.iterdir() if p.is_dir() and (p / "scene.json").is_file())
    if version not in versions:
        check_name(f"nuScenes version in {raw}", version, versions)
    missing = [t for t in TABLES if not (raw / version / f"{t}.json").is_file()]
    if missing:
        raise NuScenesDataError(
            f"nuScenes dataroot {raw}/{version} lacks tables {missing}: "
            "unpack the metadata archive of this version there"
        )
    try:
        return NuScenes(version=version, dataroot=str(raw), verbose=False)
    except (*DEVKIT_ERRORS, json.JSONDecodeError) as exc:
        raise NuScenesDataError(
            f"nuscenes-devkit cannot load {raw}/{version} ({_first_line(exc)}): "
            "check that the tables are complete and of one version"
        ) from exc


def version_splits(version: str) -> list[str]:
    """Split names for a version: nuscenes.utils.splits' lists that apply, then "all"."""
    kind = next((k for k in VERSION_SPLITS if version.endswith(k)), None)
    return [*(VERSION_SPLITS[kind] if kind else ()), "all"]


def split_scene_names(split: str) -> list[str] | None:
    """Scene names of a named split (None for "all")."""
    if split == "all":
        return None
    from nuscenes.utils.splits import create_splits_scenes

    return list(create_splits_scenes(verbose=False)[split])


def pose_of(record: dict[str, Any]) -> np.ndarray:
    """A calibrated_sensor or ego_pose record -> [4,4] float64 transform (sensor->ego, ego->global)."""
    return geometry.make_pose(
        geometry.quaternion_to_matrix(np.asarray(record["rotation"], np.float64)),
        np.asarray(record["translation"], np.float64),
    )


def scene_samples(nusc: Any, scene: dict[str, Any]) -> list[dict[str, Any]]:
    """The keyframe samples of a scene in time order."""
    out, token = [], scene["first_sample_token"]
    while token:
        try:
            out.append(nusc.get("sample", token))
        except KeyError as exc:
            raise NuScenesDataError(
                f"scene {scene['name']}: its sample chain names sample {token}, which the "
                "sample table lacks: the tables are pruned or incomplete"
            ) from exc
        token = out[-1]["next"]
    return out


def channel_chain(
    nusc: Any, samples: list[dict[str, Any]], channel: str, margin_us: int
) -> list[dict[str, Any]]:
    """sample_data of `channel` from the first keyframe's to the last keyframe's (+ margin), in order."""
    first = nusc.get("sample_data", samples[0]["data"][channel])
    end = nusc.get("sample_data", samples[-1]["data"][channel])["timestamp"] + margin_us
    out, rec = [], first
    while True:
        out.append(rec)
        if not rec["next"]:
            break
        rec = nusc.get("sample_data", rec["next"])
        if rec["timestamp"] > end:
            break
    return out


@dataclass
class BoxState:
    """Boxes of one time in the global frame. M boxes: instance tokens, yaw-only poses, sizes, velocities."""

    instances: list[str]
    category: list[str]
    centre: np.ndarray  # [M,3] float64
    yaw: np.ndarray  # [M]
    size: np.ndarray  # [M,3] length, width, height
    velocity: np.ndarray  # [M,3] global frame, m/s; NaN where the track has one annotation
    num_points: np.ndarray  # [M] int


def _yaw(quat: list[float]) -> float:
    rot = geometry.quaternion_to_matrix(np.asarray(quat, np.float64))
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


class BoxTracks:
    """Annotated boxes of a scene's keyframes, interpolated to any time between them.

    Between keyframes k and k+1 an instance annotated at both moves linearly in centre and yaw (the shorter
    way round); an instance annotated at only one of them exists only at that keyframe's exact time.
    """

    def __init__(self, nusc: Any, samples: list[dict[str, Any]]) -> None:
        self.times = np.array([s["timestamp"] for s in samples], np.int64)
        self.anns: list[dict[str, dict[str, Any]]] = []
        for s in samples:
            per = {}
            for token in s["anns"]:
                a = nusc.get("sample_annotation", token)
                w, length, h = (float(x) for x in a["size"])
                per[a["instance_token"]] = {
                    "centre": np.asarray(a["translation"], np.float64),
                    "yaw": _yaw(a["rotation"]),
                    "size": np.array([length, w, h]),
                    "category": a["category_name"],
                    "num_points": int(a.get("num_lidar_pts", -1)),
                }
            self.anns.append(per)

    @property
    def count(self) -> int:
        return sum(len(a) for a in self.anns)

    def segment(self, t_us: int) -> int:
        """Index k of the keyframe segment [k, k+1] used for time t (clamped to the ends)."""
        if len(self.times) < 2:
            return 0
        return int(np.clip(np.searchsorted(self.times, t_us, side="right") - 1, 0, len(self.times) - 2))

    def at(self, t_us: int) -> BoxState:
        """Boxes at time t (microseconds): interpolated inside a segment, extrapolated linearly outside."""
        k = self.segment(t_us)
        rows: list[tuple[str, dict[str, Any], np.ndarray, float, np.ndarray]] = []
        if len(self.times) < 2:
            for inst, a in self.anns[0].items():
                if t_us == self.times[0]:
                    rows.append((inst, a, a["centre"], a["yaw"], np.full(3, np.nan)))
        else:
            t0, t1 = self.times[k], self.times[k + 1]
            alpha = (t_us - t0) / (t1 - t0)
            a0, a1 = self.anns[k], self.anns[k + 1]
            for inst, a in a0.items():
                b = a1.get(inst)
                if b is not None:
                    dyaw = (b["yaw"] - a["yaw"] + np.pi) % (2 * np.pi) - np.pi
                    vel = (b["centre"] - a["centre"]) / ((t1 - t0) * 1e-6)
                    rows.append(
                        (
                            inst,
                            a,
                            a["centre"] + alpha * (b["centre"] - a["centre"]),
                            a["yaw"] + alpha * dyaw,
                            vel,
                        )
                    )
                elif t_us == t0:
                    rows.append((inst, a, a["centre"], a["yaw"], np.full(3, np.nan)))
            if t_us == t1:
                rows += [
                    (inst, b, b["centre"], b["yaw"], np.full(3, np.nan))
                    for inst, b in a1.items()
                    if inst not in a0
                ]
        return BoxState(
            instances=[r[0] for r in rows],
            category=[r[1]["category"] for r in rows],
            centre=np.array([r[2] for r in rows]).reshape(-1, 3),
            yaw=np.array([r[3] for r in rows]),
            size=np.array([r[1]["size"] for r in rows]).reshape(-1, 3),
            velocity=np.array([r[4] for r in rows]).reshape(-1, 3),
            num_points=np.array([r[1]["num_points"] for r in rows], np.int64),
        )

    def flow_partner(self, t_us: int) -> int | None:
        """The keyframe time against which points at t are differenced (the segment's far end), or None."""
        if len(self.times) < 2:
            return None
        k = self.segment(t_us)
        return int(self.times[k + 1] if t_us < self.times[k + 1] else self.times[k])
