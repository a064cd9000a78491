"""The PR comment and the regression check, driven through the make targets the train workflow
runs, on a throwaway git repository whose `main` and PR branch hold different metrics."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DATA = Path("serving/app/data")
MARKER = "<!-- mlops-template:model-report -->"


def metrics(accuracy: float, macro_f1: float, log_loss: float) -> dict[str, Any]:
    """A metrics.json in the shape `dvc repro` writes (see training/evaluate.py)."""
    per_class = {
        "Adelie": {"precision": 0.97, "recall": 1.0},
        "Chinstrap": {"precision": 1.0, "recall": 0.9286},
        "Gentoo": {"precision": 1.0, "recall": 1.0},
    }
    cv = {
        "accuracy_mean": accuracy - 0.01,
        "accuracy_std": 0.012,
        "macro_f1_mean": macro_f1 - 0.01,
        "macro_f1_std": 0.015,
    }
    return {
        "model": {
            "test": {
                "accuracy": accuracy,
                "macro_f1": macro_f1,
                "log_loss": log_loss,
                "per_class": per_class,
            },
            "cv": cv,
        },
        "baseline": {
            "test": {
                "accuracy": 0.4348,
                "macro_f1": 0.2020,
                "log_loss": 1.0512,
                "per_class": {"Adelie": {"precision": 0.4348, "recall": 1.0}},
            },
            "cv": {
                "accuracy_mean": 0.44,
                "accuracy_std": 0.01,
                "macro_f1_mean": 0.2,
                "macro_f1_std": 0.01,
            },
        },
        "improvement": {"accuracy": accuracy - 0.4348, "macro_f1": macro_f1 - 0.2020},
    }


MAIN = metrics(0.9710, 0.9650, 0.1010)
BETTER = metrics(0.9855, 0.9830, 0.0812)

# test_predictions.csv rows (actual, predicted), as the evaluate stage writes them: main's
# model takes two Chinstraps for Adelies, the PR's one.
RIGHT = (
    [("Adelie", "Adelie")] * 30 + [("Chinstrap", "Chinstrap")] * 12 + [("Gentoo", "Gentoo")] * 25
)
MAIN_PREDICTIONS = [*RIGHT, ("Chinstrap", "Adelie"), ("Chinstrap", "Adelie")]
BETTER_PREDICTIONS = [*RIGHT, ("Chinstrap", "Chinstrap"), ("Chinstrap", "Adelie")]


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    result = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout


def write_outputs(
    repo: Path, values: dict[str, Any], version: str, predictions: list[tuple[str, str]]
) -> None:
    data = repo / DATA
    data.mkdir(parents=True, exist_ok=True)
    (data / "test_predictions.csv").write_text(
        "actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in predictions), encoding="utf-8"
    )
    (data / "metrics.json").write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
    (data / "report.md").write_text(
        f"# Training report\n\nModel {version}: logistic regression on the penguins.\n",
        encoding="utf-8",
    )
    (data / "model_metadata.json").write_text(
        json.dumps(
            {
                "model_version": version,
                "estimator": "logistic_regression",
                "hyperparameters": {"max_iter": 1000, "C": 1.0},
            }
        ),
        encoding="utf-8",
    )


def make(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the project's Makefile in `repo`, reusing the project's ready .venv."""
    venv = ROOT / ".venv"
    if not (venv / ".synced").exists():
        pytest.skip("the project environment (.venv) is not built")
    # A parent make (`make test`) passes its flags and variables down through the environment;
    # the run here must see only what the test gives it.
    inherited = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GITHUB_STEP_SUMMARY", "BASE_REF", "BASE_NAME"}
    run_env = {k: v for k, v in os.environ.items() if k not in inherited}
    run_env.update(env or {})
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-f",
            str(ROOT / "Makefile"),
            f"VENV={venv}",
            f"CI_SCRIPTS={ROOT / '.github' / 'scripts'}",
            *args,
        ],
        cwd=repo,
        env=run_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with the project's params.yaml and a Pipfile.lock older than .venv's
    stamp, so the Makefile sees a built environment and rebuilds nothing."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    lock = repo / "Pipfile.lock"
    lock.write_text("{}\n", encoding="utf-8")
    os.utime(lock, (0, 0))
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "project without a model")
    return repo


def commit_model(
    repo: Path,
    values: dict[str, Any],
    version: str,
    message: str,
    predictions: list[tuple[str, str]] = BETTER_PREDICTIONS,
) -> None:
    write_outputs(repo, values, version, predictions)
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", message)


@pytest.fixture
def pr_repo(repo: Path) -> Path:
    """`main` holds one model; the checked-out branch `pr` holds a retrained one."""
    commit_model(repo, MAIN, "aaaaaaaaaaaa", "model on main", MAIN_PREDICTIONS)
    git(repo, "checkout", "--quiet", "-b", "pr")
    commit_model(repo, BETTER, "bbbbbbbbbbbb", "retrained model")
    return repo


def build_comment(repo: Path, base_ref: str = "main") -> str:
    result = make(repo, "pr-comment", f"BASE_REF={base_ref}")
    assert result.returncode == 0, result.stdout + result.stderr
    return (repo / "build/ci/pr-comment.md").read_text(encoding="utf-8")


def table_row(comment: str, label: str) -> list[str]:
    line = next(ln for ln in comment.splitlines() if ln.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_comment_shows_main_and_pr_values_and_the_change(pr_repo):
    comment = build_comment(pr_repo)
    assert comment.splitlines()[0] == MARKER
    assert table_row(comment, "Test accuracy") == [
        "Test accuracy",
        "0.9710",
        "0.9855",
        "+0.0145 (better)",
    ]
    assert table_row(comment, "Test macro F1") == [
        "Test macro F1",
        "0.9650",
        "0.9830",
        "+0.0180 (better)",
    ]
    # Lower log loss is better: a negative change reads as an improvement.
    assert table_row(comment, "Test log loss") == [
        "Test log loss",
        "0.1010",
        "0.0812",
        "-0.0198 (better)",
    ]
    assert "| Metric | `main` | This PR | Change |" in comment
    assert "✅ **Check passed:**" in comment
    assert "Model `bbbbbbbbbbbb`: `logistic_regression` with `C=1.0`, `max_iter=1000`." in comment


def test_comment_shows_the_confusion_matrix_and_its_change_from_main(pr_repo):
    comment = build_comment(pr_repo)
    matrix = comment.split("### Confusion matrix (test split)", 1)[1].split("###", 1)[0]
    assert "| actual \\ predicted | Adelie | Chinstrap | Gentoo |" in matrix
    assert table_row(matrix, "**Adelie**") == ["**Adelie**", "30", "0", "0"]
    # One Chinstrap fewer taken for an Adelie, one more right: the cells say by how much.
    assert table_row(matrix, "**Chinstrap**") == ["**Chinstrap**", "1 (-1)", "13 (+1)", "0"]
    assert table_row(matrix, "**Gentoo**") == ["**Gentoo**", "0", "0", "25"]
    assert "68 of 69 test rows predicted right (`main`: 67 of 69)." in matrix


def test_first_model_shows_its_confusion_matrix_without_changes(repo):
    git(repo, "checkout", "--quiet", "-b", "pr")
    commit_model(repo, BETTER, "bbbbbbbbbbbb", "first model")
    matrix = build_comment(repo).split("### Confusion matrix (test split)", 1)[1]
    assert table_row(matrix, "**Chinstrap**") == ["**Chinstrap**", "1", "13", "0"]
    assert "68 of 69 test rows predicted right." in matrix


def test_predictions_without_their_columns_are_rejected_with_the_reason(script, tmp_path):
    report = script("model_report")
    predictions = tmp_path / "test_predictions.csv"
    predictions.write_text("species,guess\nAdelie,Adelie\n", encoding="utf-8")
    with pytest.raises(report.ReportError, match="expected the columns actual and predicted"):
        report.load_predictions(predictions)


def test_comment_shows_the_baseline_and_the_training_report(pr_repo):
    comment = build_comment(pr_repo)
    baseline = comment.split("### Against the baseline", 1)[1]
    assert table_row(baseline, "Test accuracy") == [
        "Test accuracy",
        "0.4348",
        "0.9855",
        "+0.5507 (better)",
    ]
    assert "Model bbbbbbbbbbbb: logistic regression on the penguins." in comment
    assert "<details><summary>Training report" in comment


def test_comment_is_byte_identical_when_built_twice(pr_repo):
    first = build_comment(pr_repo).encode()
    second = build_comment(pr_repo).encode()
    assert first == second


def test_comment_is_also_written_to_the_job_summary(pr_repo, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    result = make(pr_repo, "pr-comment", "BASE_REF=main", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stderr
    comment = (pr_repo / "build/ci/pr-comment.md").read_text(encoding="utf-8")
    assert summary.read_text(encoding="utf-8") == "earlier step\n" + comment


def test_first_model_compares_against_nothing_and_passes(repo):
    git(repo, "checkout", "--quiet", "-b", "pr")
    commit_model(repo, BETTER, "bbbbbbbbbbbb", "first model")
    comment = build_comment(repo)
    assert "has no model yet" in comment
    assert table_row(comment, "Test accuracy") == ["Test accuracy", "—", "0.9855", "—"]
    result = make(repo, "compare-metrics", "BASE_REF=main")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no model yet" in result.stdout


def test_compare_fails_when_worse_than_main_by_more_than_the_threshold(pr_repo):
    threshold = yaml.safe_load((pr_repo / "params.yaml").read_text())["compare"]["max_regression"]
    worse = copy.deepcopy(MAIN)
    worse["model"]["test"]["accuracy"] = round(
        MAIN["model"]["test"]["accuracy"] - threshold - 0.005, 4
    )
    commit_model(pr_repo, worse, "cccccccccccc", "worse model")
    result = make(pr_repo, "compare-metrics", "BASE_REF=main")
    assert result.returncode != 0
    assert "Check failed" in result.stdout
    failures = result.stdout.split("\n", 1)[1]
    assert "`accuracy`" in failures
    assert "`macro_f1`" not in failures
    comment = build_comment(pr_repo)
    assert "❌ **Check failed:**" in comment
    assert "(worse)" in table_row(comment, "Test accuracy")[3]


def test_compare_passes_a_drop_within_the_threshold(pr_repo):
    threshold = yaml.safe_load((pr_repo / "params.yaml").read_text())["compare"]["max_regression"]
    slightly = copy.deepcopy(MAIN)
    slightly["model"]["test"]["accuracy"] = round(MAIN["model"]["test"]["accuracy"] - threshold, 4)
    commit_model(pr_repo, slightly, "dddddddddddd", "slightly worse model")
    result = make(pr_repo, "compare-metrics", "BASE_REF=main")
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_ref_that_does_not_exist_is_an_error_not_a_first_model(pr_repo):
    result = make(pr_repo, "compare-metrics", "BASE_REF=origin/no-such-branch")
    assert result.returncode != 0
    assert "is not a commit here" in result.stderr


# Direct calls to the builder, for the rules the make-driven tests above do not reach.


def test_log_loss_can_be_gated_and_counts_an_increase_as_worse(script):
    report = script("model_report")
    config = report.GateConfig(metrics=("log_loss",), max_regression=0.01)
    worse = copy.deepcopy(MAIN)
    worse["model"]["test"]["log_loss"] = MAIN["model"]["test"]["log_loss"] + 0.05
    (result,) = report.evaluate_gate(worse, MAIN, config)
    assert result.failed
    (result,) = report.evaluate_gate(BETTER, MAIN, config)
    assert not result.failed
    assert result.regression < 0


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({}, "no 'compare' block"),
        ({"compare": {"metrics": ["recall"], "max_regression": 0.01}}, "choose from"),
        ({"compare": {"metrics": ["accuracy"], "max_regression": -1}}, "must be a number >= 0"),
        ({"compare": {"metrics": [], "max_regression": 0.01}}, "non-empty list"),
    ],
)
def test_bad_compare_settings_are_rejected_with_their_reason(script, tmp_path, block, message):
    report = script("model_report")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(block), encoding="utf-8")
    with pytest.raises(report.ReportError, match=message):
        report.load_gate_config(params)


def test_missing_new_metric_is_an_error_not_a_pass(script):
    report = script("model_report")
    broken = copy.deepcopy(BETTER)
    del broken["model"]["test"]["accuracy"]
    config = report.GateConfig(metrics=("accuracy",), max_regression=0.01)
    with pytest.raises(report.ReportError, match=r"model\.test\.accuracy"):
        report.evaluate_gate(broken, MAIN, config)


def test_a_huge_report_is_cut_so_the_comment_fits_githubs_limit(script):
    report = script("model_report")
    config = report.GateConfig(metrics=("accuracy",), max_regression=0.01)
    text = report.build_comment(
        new=BETTER, base=MAIN, report="x" * 200_000, config=config, base_name="main"
    )
    assert len(text) < 65_536
    assert "report truncated" in text
