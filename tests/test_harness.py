"""End to end: a tiny synthetic store, the harness with nearest/oracle, resume, bad model outputs, plug-ins."""

from __future__ import annotations

import dataclasses
import math
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch

from slarm_bench.data.synthetic import generate_sequence
from slarm_bench.errors import SlarmBenchError, UnknownNameError
from slarm_bench.harness import HarnessError, run_protocol
from slarm_bench.models import registry
from slarm_bench.models.base import Model, Prediction, Scene
from slarm_bench.models.registry import load_model
from slarm_bench.protocols import get_protocol
from slarm_bench.results import ResultFolder, ResultsError
from slarm_bench.scoring import Scorer
from slarm_bench.store import Store

H, W = 32, 48
SCENES = ("mini-00000", "mini-00001")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    s = Store(root)
    for i, name in enumerate(SCENES):
        seq = generate_sequence(3_000_000 + i, height=H, width=W, num_frames=20, scene=name)
        s.write(seq, "mini")
    return s


@pytest.fixture
def protocol():
    return dataclasses.replace(get_protocol("synthetic-mini"), scenes=SCENES, image_size=(H, W))


def _run(model, protocol, store, path, **kw):
    folder = ResultFolder(path, protocol.name, protocol.version, protocol.scene_list_hash)
    return run_protocol(model, protocol, store, folder, Scorer(protocol, lpips=False), {"test": True},
                        progress=False, **kw)


def test_nearest_end_to_end_rows_summary_and_not_produced(store, protocol, tmp_path):
    result = _run(load_model("nearest"), protocol, store, tmp_path / "r")
    s = result.summary
    assert s["complete"] and result.windows_scored == 2
    rows = ResultFolder(tmp_path / "r", protocol.name, protocol.version, protocol.scene_list_hash).rows()
    assert len(rows) == 2 * len(protocol.targets) * 3
    assert {r["camera"] for r in rows} == {"FRONT_LEFT", "FRONT", "FRONT_RIGHT"}
    assert s["metrics"]["psnr"]["count"] == len(rows) and math.isfinite(s["metrics"]["psnr"]["mean"])
    assert s["metrics"]["depth_rmse"]["count"] == 0
    assert "depth_rmse" in s["not_produced"] and "flow_epe3d" in s["not_produced"]
    # The mean over rows equals the summary: what report reads agrees with what run printed.
    assert np.isclose(np.mean([r["psnr"] for r in rows]), s["metrics"]["psnr"]["mean"])


def test_rerun_resumes_without_rescoring(store, protocol, tmp_path):
    first = _run(load_model("nearest"), protocol, store, tmp_path / "r")
    second = _run(load_model("nearest"), protocol, store, tmp_path / "r")
    assert second.windows_scored == 0 and second.windows_skipped == 2
    for key in ("psnr", "ssim_nonsky", "psnr_dynamic"):
        a, b = first.summary["metrics"][key], second.summary["metrics"][key]
        assert a["count"] == b["count"] and np.isclose(a["mean"], b["mean"], rtol=1e-12)


def test_a_rerun_that_times_nothing_keeps_the_timings_and_devices_are_recorded(store, protocol, tmp_path):
    first = _run(load_model("nearest"), protocol, store, tmp_path / "r")
    second = _run(load_model("nearest"), protocol, store, tmp_path / "r")
    t1, t2 = first.summary["timing"], second.summary["timing"]
    assert t1["windows_timed"] == 2 and t2["windows_timed"] == 2      # not overwritten by an empty run
    assert t2["render"] == t1["render"] and t2["windows_by_device"] == {"cpu": 2}


def test_a_folder_resumed_on_another_device_says_so_in_summary_and_report(store, protocol, tmp_path):
    from slarm_bench.report import _summary_row
    from slarm_bench.report_tables import build_layout, to_markdown

    path = tmp_path / "r"
    _run(load_model("nearest"), protocol, store, path, max_windows=1)
    folder = ResultFolder(path, protocol.name, protocol.version, protocol.scene_list_hash)
    # Pretend the first window was scored on a GPU machine (what a resumed H100 run leaves behind).
    lines = folder.windows_path.read_text().splitlines()
    lines[0] = lines[0].replace('"device": "cpu", "gpu": null', '"device": "cuda", "gpu": "H100"')
    folder.windows_path.write_text("\n".join(lines) + "\n")
    s = _run(load_model("nearest"), protocol, store, path).summary
    assert s["timing"]["windows_by_device"] == {"cpu": 1, "cuda: H100": 1}
    row = _summary_row(folder.summary_path, s)
    assert row["mixed_devices"] and row["timed_on"] == "cpu x1; cuda: H100 x1"
    import pandas as pd

    frame = pd.DataFrame([{**row, "ranked": True, "status": "complete"}])
    md = to_markdown(build_layout(frame, protocol.name, pd.DataFrame()))
    assert "†" in md and "more than one device (cpu x1; cuda: H100 x1)" in md


class _FailsOnSecondWindow(Model):
    name = "flaky"

    def __init__(self):
        self.calls = 0
        self.inner = load_model("nearest")

    def reconstruct(self, context):
        self.calls += 1
        if self.calls == 3:  # warm-up, first scored window, then the failure
            raise HarnessError("model exploded")
        return self.inner.reconstruct(context)

    def render(self, scene, cam_to_world, intrinsics, time, size):
        return self.inner.render(scene, cam_to_world, intrinsics, time, size)


def test_a_failure_keeps_finished_windows_and_the_rerun_finishes(store, protocol, tmp_path):
    with pytest.raises(HarnessError, match="exploded"):
        _run(_FailsOnSecondWindow(), protocol, store, tmp_path / "r")
    folder = ResultFolder(tmp_path / "r", protocol.name, protocol.version, protocol.scene_list_hash)
    assert len(folder.finished_windows()) == 1
    assert folder.read_summary()["complete"] is False
    again = _run(load_model("nearest"), protocol, store, tmp_path / "r")
    assert again.windows_scored == 1 and again.summary["complete"]


class _Broken(Model):
    name = "broken"

    def __init__(self, kind):
        self.kind = kind

    def reconstruct(self, context):
        return Scene()

    def render(self, scene, cam_to_world, intrinsics, time, size):
        v = cam_to_world.shape[0]
        rgb = torch.full((v, *size, 3), 0.5)
        if self.kind == "nan":
            rgb[0, 0, 0, 0] = float("nan")
        elif self.kind == "range":
            rgb[1, 2, 3, 1] = 1.5
        elif self.kind == "shape":
            rgb = rgb[:, :-1]
        elif self.kind == "depth":
            return Prediction(rgb=rgb, depth=torch.full((v, *size), float("inf")))
        return Prediction(rgb=rgb)


@pytest.mark.parametrize("kind, message", [("nan", "rgb has NaN"), ("range", "outside"),
                                           ("shape", "rgb has shape"), ("depth", "depth has NaN")])
def test_bad_outputs_name_model_window_and_field(store, protocol, tmp_path, kind, message):
    with pytest.raises(HarnessError, match=f"model 'broken' at scene {SCENES[0]} window 0.*{message}"):
        _run(_Broken(kind), protocol, store, tmp_path / "r")


def test_results_of_another_protocol_version_are_refused(store, protocol, tmp_path):
    _run(load_model("nearest"), protocol, store, tmp_path / "r")
    newer = dataclasses.replace(protocol, version=protocol.version + 1)
    with pytest.raises(ResultsError, match="never mixed"):
        _run(load_model("nearest"), newer, store, tmp_path / "r")


def test_missing_scenes_are_an_error_unless_allowed(store, protocol, tmp_path):
    wider = dataclasses.replace(protocol, scenes=(*SCENES, "mini-00003"))
    with pytest.raises(SlarmBenchError, match="slarm-bench prepare synthetic --split mini"):
        _run(load_model("nearest"), wider, store, tmp_path / "a")
    result = _run(load_model("nearest"), wider, store, tmp_path / "b", allow_missing=True)
    assert not result.summary["complete"] and result.missing_scenes == ["mini-00003"]


def test_context_hides_ground_truth_from_ordinary_models(store, protocol, tmp_path):
    seen = {}

    class Spy(Model):
        name = "spy"

        def reconstruct(self, context):
            seen.update({f: getattr(context, f) is None for f in ("depth", "flow", "semantic", "sky")})
            seen["frames"] = list(context.meta["frame_indices"])
            return Scene()

        def render(self, scene, cam_to_world, intrinsics, time, size):
            return Prediction(rgb=torch.zeros((cam_to_world.shape[0], *size, 3)))

    _run(Spy(), protocol, store, tmp_path / "r", max_windows=1)
    assert seen["depth"] and seen["flow"] and seen["semantic"] and seen["sky"]
    assert seen["frames"] == [0, 5, 10, 15]


def test_oracle_is_the_ceiling_and_static_oracle_loses_on_moving_things(store, protocol, tmp_path):
    oracle = _run(load_model("oracle", backend="torch"), protocol, store, tmp_path / "o", max_windows=1)
    static = _run(load_model("oracle-static", backend="torch"), protocol, store, tmp_path / "s",
                  max_windows=1)
    nearest = _run(load_model("nearest"), protocol, store, tmp_path / "n", max_windows=1)
    m, ms, mn = (r.summary["metrics"] for r in (oracle, static, nearest))
    assert m["psnr"]["mean"] > mn["psnr"]["mean"]
    assert m["depth_rmse"]["count"] > 0 and m["miou"]["mean"] > 0.5
    if m["flow_epe3d"]["count"]:
        assert m["flow_epe3d"]["mean"] <= ms["flow_epe3d"]["mean"] + 1e-9


def test_plugin_models_are_discovered_from_the_entry_point_group(monkeypatch):
    ep = EntryPoint(name="my-plugin", value="slarm_bench.models.simple:make_nearest",
                    group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == ep.group else [])
    assert "my-plugin" in dict(registry.iter_models())
    model = load_model("my-plugin")
    assert model.name == "my-plugin"
    with pytest.raises(UnknownNameError, match="Did you mean 'my-plugin'"):
        load_model("my-plugn")


def test_a_plugin_cannot_shadow_a_builtin(monkeypatch):
    ep = EntryPoint(name="nearest", value="some.module:factory", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep])
    assert registry.available_models()["nearest"] == registry.BUILTIN_MODELS["nearest"][0]
