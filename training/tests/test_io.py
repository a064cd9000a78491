"""Tests of `training.io.run_stage`: how a stage ends on a user's mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training import paths
from training.data import DataError
from training.io import run_stage


def test_a_data_error_ends_the_stage_as_one_line_with_exit_status_2(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def main() -> None:
        raise DataError("prepare.target: 'price' holds text (e.g. 'cheap')")

    with pytest.raises(SystemExit) as exited:
        run_stage(main)
    assert exited.value.code == 2
    assert [record.getMessage() for record in caplog.records] == [
        "prepare.target: 'price' holds text (e.g. 'cheap')"
    ]


def test_a_bug_keeps_its_traceback() -> None:
    def main() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_stage(main)


@pytest.mark.slow
def test_stage_with_invalid_params_prints_the_key_and_no_traceback(
    tmp_path: Path, stage_env: dict[str, str]
) -> None:
    """The real entry point, on a scratch copy whose params.yaml names an unknown estimator."""
    root = tmp_path / "repo"
    (root / "training").mkdir(parents=True)
    for source in (paths.ROOT / "training").glob("*.py"):
        (root / "training" / source.name).write_bytes(source.read_bytes())
    params = paths.PARAMS.read_text(encoding="utf-8").replace(
        "  seed: 42\n  # The estimator", "  seed: 42\n  estimator: svm\n  # The", 1
    )
    assert "estimator: svm" in params
    (root / "params.yaml").write_text(params, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "training.train"],
        cwd=root,
        env=stage_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("ERROR __main__: params.yaml: train.estimator: 'svm' is neither")
