"""Tests of `training.io.run_stage`: how a stage ends on a user's mistake."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

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


def _stage_in_scratch_copy(
    root: Path, stage: str, edit: dict[str, Any], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`python -m training.<stage>` as dvc.yaml runs it, in a copy of training/ whose
    params.yaml has the keys of `edit` replaced."""
    shutil.copytree(
        paths.ROOT / "training", root / "training", ignore=shutil.ignore_patterns("data", "tests")
    )
    params = yaml.safe_load(paths.PARAMS.read_text(encoding="utf-8"))
    for block, values in edit.items():
        params[block] |= values
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", f"training.{stage}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("stage", "edit", "message"),
    [
        (
            "prepare",
            {
                "prepare": {
                    "source": "data/d.csv",
                    "target": "y",
                    "task": "classification",
                    "drop_columns": [],
                },
                "compare": {"metrics": ["accuracy"]},
            },
            "prepare.target: 'y' needs at least two classes",
        ),
        (
            "train",
            {"train": {"estimator": "svm"}},
            "params.yaml: train.estimator: 'svm' is neither",
        ),
    ],
    ids=["data error", "params error"],
)
def test_a_users_mistake_fails_the_stage_with_one_line_naming_the_key_and_no_traceback(
    tmp_path: Path, stage_env: dict[str, str], stage: str, edit: dict[str, Any], message: str
) -> None:
    """What a user sees from `dvc repro`: the message, not Python's stack."""
    (tmp_path / "data").mkdir()
    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a"] * 4}).to_csv(tmp_path / "data" / "d.csv")
    result = _stage_in_scratch_copy(tmp_path, stage, edit, stage_env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"ERROR __main__: {message}")
