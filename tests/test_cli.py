"""Tests of the command line: fast help without heavy imports, one-line errors with 'did you mean'."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from slarm_bench import __version__
from slarm_bench.cli import main

REPO = Path(__file__).resolve().parents[1]
RUN_MAIN = "import sys; from slarm_bench.cli import main; sys.exit(main(sys.argv[1:]))"
HEAVY = ("torch", "gsplat", "lpips", "pandas", "skimage")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN_MAIN, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def test_help_is_fast() -> None:
    # The best of three runs, so that a busy machine does not fail the test; one slow import still does.
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        proc = run_cli("--help")
        best = min(best, time.perf_counter() - start)
        assert proc.returncode == 0, proc.stderr
        assert "prepare" in proc.stdout and "slarm-bench" in proc.stdout
        if best < 1.0:
            break
    assert best < 1.0, f"`slarm-bench --help` took {best:.2f} s"


@pytest.mark.parametrize("argv", [["--help"], ["prepare", "--help"], ["validate", "--help"], ["--version"],
                                  []])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    snippet = (
        "import sys\n"
        "from slarm_bench.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "assert code in (0, None), code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('clean')\n"
    )
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("clean")


def test_importtime_of_cli_has_no_torch() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", RUN_MAIN, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "slarm_bench.cli" in imported
    assert not {m for m in imported if m.split(".")[0] in ("torch", "gsplat")}


def test_version_and_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["prepar"])
    assert info.value.code == 2
    assert "prepare" in capsys.readouterr().err


def test_prepare_unknown_dataset_says_did_you_mean(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "store"
    code = main(["prepare", "synthetc", "--root", str(root), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "synthetc" in lines[0] and "'synthetic'" in lines[0]
    assert "did you mean" in lines[0].lower()
    assert "Traceback" not in captured.err
    assert not root.exists()  # a typo leaves nothing behind


def test_prepare_unknown_dataset_subprocess() -> None:
    proc = run_cli("prepare", "nuscene", "--root", "unused-root", "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "'nuscenes'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (REPO / "unused-root").exists()


def test_list_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("synthetic", "waymo", "nuscenes"):
        assert name in out


@pytest.mark.parametrize("flag", ["--flow-weight", "--context-flow-weight", "--label-weight"])
def test_train_slarm_only_loss_weights_reach_train(flag: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI passes each SLARM-only loss weight on to train(), whose check refuses it for a STORM preset
    in one line, before anything is written."""
    out = tmp_path / "run"
    code = main(["train", "--model", "storm-t", "--out-dir", str(out), "--steps", "1", "--root",
                 str(tmp_path / "data"), flag, "0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1, err
    assert "SLARM presets only" in err[0] and flag[2:].replace("-", "_") in err[0]
    assert not out.exists()
