"""docs/examples/sweep_trials.py plots a real sweep's trials, on both backends: run as a script,
and (for its other paths, without starting Python again) called in this process."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import REPO_ROOT, RealStore

EXAMPLE = REPO_ROOT / "docs" / "examples" / "sweep_trials.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    """The example, imported as a module."""
    spec = importlib.util.spec_from_file_location("sweep_trials", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 5_000


def test_the_example_script_plots_a_metric_of_the_trials_against_a_parameter(
    real_store: RealStore, tmp_path: Path
) -> None:
    out = tmp_path / "trials.png"
    arguments = ["--db", real_store.locator, "--sweep", real_store.sweep_id, "--out", str(out)]
    arguments += ["--param", "training.learning_rate", "--metric", "validation.rmse"]
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}  # no DISPLAY: the Agg backend
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *arguments], capture_output=True, text=True, timeout=120, env=environment
    )
    assert done.returncode == 0, done.stderr
    assert_png(out)
    assert all(run_id in done.stdout for run_id in real_store.trial_run_ids), done.stdout
    assert f"wrote {out}" in done.stdout


def test_the_example_finds_a_sweep_by_its_name(
    example: ModuleType, real_store: RealStore, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "by-name.png"
    arguments = ["--db", real_store.locator, "--sweep", "pytest_sweep", "--out", str(out)]
    example.main([*arguments, "--param", "training.learning_rate", "--metric", "loss"])
    assert_png(out)
    assert real_store.trial_run_ids[0] in capsys.readouterr().out


def test_the_example_names_what_it_cannot_find(example: ModuleType, real_store: RealStore, tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    common = ["--db", real_store.locator, "--out", str(out), "--param", "training.learning_rate"]
    with pytest.raises(SystemExit, match="no sweep nope; `host sweep show` lists the sweeps"):
        example.main([*common, "--sweep", "nope", "--metric", "validation.rmse"])
    with pytest.raises(SystemExit, match="the trials have no metric validation.accuracy; they have: .*validation.rmse"):
        example.main([*common, "--sweep", real_store.sweep_id, "--metric", "validation.accuracy"])
    assert not out.exists()
