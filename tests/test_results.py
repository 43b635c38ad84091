"""Result folders: binding to one protocol version, resume after a kill, torn lines, atomic summaries."""

import json

import pytest

from slarm_bench.results import ResultFolder, ResultsError, atomic_write_text, find_summaries, result_dir


def _folder(path, version=1, scene_hash="abc"):
    return ResultFolder(path, "synthetic-mini", version, scene_hash)


def test_result_dir_layout(tmp_path):
    assert result_dir("p", "m", "0123456789abcdef", tmp_path) == tmp_path / "p" / "m" / "0123456789ab"
    assert result_dir("p", "m", None, tmp_path) == tmp_path / "p" / "m" / "none"


def test_another_protocol_version_or_scene_list_is_refused(tmp_path):
    _folder(tmp_path)
    with pytest.raises(ResultsError, match="never mixed"):
        _folder(tmp_path, version=2)
    with pytest.raises(ResultsError, match="never mixed"):
        _folder(tmp_path, scene_hash="other")
    _folder(tmp_path)  # the same binding is accepted


def test_rows_of_an_unfinished_window_are_ignored_and_pruned(tmp_path):
    folder = _folder(tmp_path)
    folder.append_window([{"scene": "a", "window": 0, "psnr": 20.0}], {"scene": "a", "window": 0})
    # A run killed after writing rows of window 20 but before its completion record:
    with open(folder.frames_path, "a") as f:
        f.write(json.dumps({"scene": "a", "window": 20, "psnr": 1.0}) + "\n")
        f.write('{"scene": "a", "wind')  # torn last line
    assert [r["window"] for r in folder.rows()] == [0]
    assert set(folder.finished_windows()) == {("a", 0)}
    assert folder.prune_unfinished() == 1
    assert [json.loads(x)["window"] for x in folder.frames_path.read_text().splitlines()] == [0]


def test_corrupt_line_in_the_middle_is_an_error(tmp_path):
    folder = _folder(tmp_path)
    folder.frames_path.write_text('{"scene": "a", "window": 0}\nnot json\n{"scene": "a", "window": 0}\n')
    folder.windows_path.write_text('{"scene": "a", "window": 0}\n')
    with pytest.raises(ResultsError, match="line 2 is corrupt"):
        folder.rows()


def test_summary_is_strict_json_with_nan_as_null(tmp_path):
    folder = _folder(tmp_path)
    folder.write_summary({"metrics": {"psnr": {"mean": float("nan"), "std": float("inf")}}})
    data = json.loads(folder.summary_path.read_text())
    assert data["metrics"]["psnr"] == {"mean": None, "std": None}


def test_find_summaries_by_protocol(tmp_path):
    for proto, preset in (("p1", "a"), ("p1", "b"), ("p2", "a")):
        ResultFolder(result_dir(proto, preset, None, tmp_path), proto, 1, "h").write_summary({"x": 1})
    assert len(find_summaries(tmp_path)) == 3
    assert len(find_summaries(tmp_path, "p1")) == 2


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "f.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
