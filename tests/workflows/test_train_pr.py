"""The Train workflow's pull-request steps (.github/scripts/train_pr.py), run as the workflow runs
them on throwaway repositories: a DVC project whose `main` and PR branch hold different models,
and a local DVC remote."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".github" / "scripts" / "train_pr.py"
DATA = Path("serving/app/data")
LIMIT = 0.02
DVC_YAML = """stages:
  train:
    cmd: "true"
    params: [train]
    outs:
      - serving/app/data/model.joblib
      - serving/app/data/model_metadata.json: {cache: false}
      - serving/app/data/report.md: {cache: false}
    metrics:
      - serving/app/data/metrics.json: {cache: false}
    plots:
      - serving/app/data/test_predictions.csv:
          {cache: false, template: confusion, x: actual, y: predicted}
"""


def run(cwd: Path, *argv: str, check: bool = True, **env: str) -> Any:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITHUB_", "AWS_"))}
    clean.pop("BASE_REF", None)
    full = {**clean, **env}
    return subprocess.run(argv, cwd=cwd, env=full, capture_output=True, text=True, check=check)


def git(cwd: Path, *args: str) -> Any:
    """git as a developer: the script's own commits carry only the identity it gives them."""
    return run(cwd, "git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args)


def dvc(cwd: Path, *args: str) -> Any:
    return run(cwd, sys.executable, "-m", "dvc", *args)


def step(cwd: Path, command: str, **env: str) -> Any:
    """One workflow step: `python .github/scripts/train_pr.py <command>`."""
    return run(cwd, sys.executable, str(SCRIPT), command, check=False, **env)


def classification(accuracy: float, log_loss: float, chinstrap_recall: float) -> dict[str, Any]:
    per_class = {c: {"precision": 1.0, "recall": 1.0} for c in ("Adelie", "Chinstrap", "Gentoo")}
    per_class["Chinstrap"]["recall"] = chinstrap_recall
    test = {"accuracy": accuracy, "macro_f1": accuracy, "log_loss": log_loss}
    return {
        "model": {"test": {**test, "per_class": per_class}, "cv": {"accuracy_mean": accuracy}},
        "baseline": {"test": {"accuracy": 0.4348, "log_loss": 1.0512, "per_class": {}}},
    }


def regression(rmse: float, mae: float) -> dict[str, Any]:
    test = {"rmse": rmse, "mae": mae, "r2": 0.4}
    return {"model": {"test": test}, "baseline": {"test": {"rmse": 80.0, "mae": 65.0, "r2": 0.0}}}


MAIN, BETTER = classification(0.9710, 0.1010, 0.8571), classification(0.9855, 0.0812, 0.9286)
RIGHT = [("Adelie", "Adelie")] * 30 + [("Chinstrap", "Chinstrap")] * 12
MAIN_ROWS = [*RIGHT, ("Chinstrap", "Adelie"), ("Chinstrap", "Adelie")]
BETTER_ROWS = [*RIGHT, ("Chinstrap", "Chinstrap"), ("Chinstrap", "Adelie")]


def project_params(gated: list[str], task: str = "classification") -> dict[str, Any]:
    params: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["prepare"]["task"] = task
    params["compare"] = {"metrics": gated, "max_regression": LIMIT}
    return params


def commit_model(repo: Path, metrics: dict[str, Any], rows: list[Any], C: float) -> None:
    """A trained model's git-tracked outputs (params.yaml's C changed), committed."""
    task = "classification" if "per_class" in metrics["model"]["test"] else "regression"
    files = {
        "metrics.json": json.dumps(metrics),
        "test_predictions.csv": "actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in rows),
        "report.md": f"# Training report\n\nC={C}\n",
        "model_metadata.json": json.dumps(
            {"model_version": f"v{C}", "estimator": "ridge", "hyperparameters": {"C": C}}
            | {"task": task}
        ),
    }
    for name, text in files.items():
        (repo / DATA / name).write_text(text, encoding="utf-8")
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["hyperparameters"]["logistic_regression"]["C"] = C
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", f"model C={C}")


def dvc_project(path: Path, params: dict[str, Any], main: list[Any], pr: list[Any]) -> Path:
    """A DVC project: a commit without a model, `main` with `main`'s, branch `pr` with `pr`'s."""
    git(path.parent, "init", "--quiet", "--initial-branch=main", str(path))
    dvc(path, "init", "--quiet")
    (path / DATA).mkdir(parents=True)
    (path / "dvc.yaml").write_text(DVC_YAML, encoding="utf-8")
    (path / ".gitignore").write_text("build/\n", encoding="utf-8")
    (path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "project without a model")
    commit_model(path, *main)
    git(path, "checkout", "--quiet", "-b", "pr")
    commit_model(path, *pr)
    return path


def report(repo: Path, **env: str) -> str:
    result = step(repo, "report", BASE_REF="main", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return (repo / "build/ci/pr-comment.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def pr_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`main` holds one classifier; the checked-out branch `pr` a retrained one (C changed)."""
    params = project_params(["accuracy", "macro_f1"])
    path = tmp_path_factory.mktemp("classification") / "repo"
    return dvc_project(path, params, [MAIN, MAIN_ROWS, 1.0], [BETTER, BETTER_ROWS, 0.5])


@pytest.fixture(scope="module")
def comment(pr_repo: Path) -> str:
    return report(pr_repo)


def section(text: str, title: str) -> str:
    return text.split(f"### {title}", 1)[1].split("\n### ", 1)[0]


def row(text: str, first_cell: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {first_cell} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def mermaid(text: str) -> dict[str, Any]:
    """The first Mermaid chart's x-axis, bar and line, parsed."""
    block = text.split("```mermaid\nxychart-beta\n", 1)[1].split("```", 1)[0]
    parts = dict(line.strip().split(" ", 1) for line in block.splitlines())
    return {key: json.loads(parts[key]) for key in ("x-axis", "bar", "line") if key in parts}


def test_the_comment_carries_dvcs_param_and_metric_diffs(comment):
    assert comment.splitlines()[0] == "## Model report"
    param = project_params([])["train"]["hyperparameters"]["logistic_regression"]["C"]
    changed = ["train.hyperparameters.logistic_regression.C", str(param), "0.5"]
    assert row(comment, "params.yaml")[1:] == changed
    assert row(comment, "serving/app/data/metrics.json")[1] == "model.cv.accuracy_mean"
    assert "Model `v0.5`: `ridge` with `C=0.5`." in comment


def test_the_verdict_compares_each_test_metric_in_its_direction(comment):
    assert "✅ **Check passed:**" in comment
    accuracy = row(comment, "**accuracy** (gated), higher is better")
    assert accuracy[1:] == ["0.9710", "0.9855", "+0.0145 (better)"]
    assert row(comment, "log_loss, lower is better")[3] == "-0.0198 (better)"


def test_per_class_chart_and_table_put_the_pr_beside_main(comment):
    per_class = section(comment, "Per class (test split)")
    chart = mermaid(per_class)
    assert chart["x-axis"][2:4] == ["Chinstrap P", "Chinstrap R"]
    assert (chart["bar"][3], chart["line"][3]) == (0.9286, 0.8571)
    assert row(per_class, "Chinstrap") == ["Chinstrap", "1.0000", "0.9286 (0.8571)"]


def test_the_confusion_matrix_shows_the_change_from_main(comment):
    matrix = section(comment, "Confusion matrix (test split)")
    assert row(matrix, "actual \\ predicted")[1:] == ["Adelie", "Chinstrap"]
    assert row(matrix, "**Adelie**")[1:] == ["30", "0"]
    # One Chinstrap fewer taken for an Adelie, one more right: the cells say by how much.
    assert row(matrix, "**Chinstrap**")[1:] == ["1 (-1)", "13 (+1)"]
    assert "43 of 44 test rows predicted right (`main`: 42 of 44)." in matrix


def test_the_baseline_plots_report_job_summary_and_run_link_are_there(pr_repo, comment, tmp_path):
    assert row(section(comment, "Against the baseline"), "accuracy")[1:] == ["0.4348", "0.9855"]
    assert "<details><summary>Training report" in comment
    assert "\nC=0.5\n" in comment
    plots = (pr_repo / "build/ci/plots/index.html").read_text("utf-8")
    assert '"rev": "main"' in plots
    assert '"rev": "workspace"' in plots
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    github = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r"}
    rebuilt = report(pr_repo, GITHUB_STEP_SUMMARY=str(summary), GITHUB_RUN_ID="7", **github)
    link = "[this run's artifacts](https://github.com/o/r/actions/runs/7)"
    assert rebuilt == comment.replace("build/ci/plots", link)
    assert summary.read_text(encoding="utf-8") == "earlier step\n" + rebuilt


@pytest.mark.parametrize(("drop", "passes"), [(LIMIT, True), (LIMIT + 0.005, False)])
def test_the_gate_fails_only_a_drop_beyond_max_regression(pr_repo, drop, passes):
    worse = json.loads(json.dumps(MAIN))
    worse["model"]["test"]["accuracy"] = round(MAIN["model"]["test"]["accuracy"] - drop, 4)
    commit_model(pr_repo, worse, BETTER_ROWS, C=0.1)
    try:
        result = step(pr_repo, "gate", BASE_REF="main")
    finally:
        git(pr_repo, "reset", "--quiet", "--hard", "HEAD~1")
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    assert ("Check failed: accuracy worse" in result.stdout) is not passes


def test_the_first_model_compares_with_nothing_and_passes(script, pr_repo):
    first = step(pr_repo, "gate", BASE_REF="HEAD~2")  # the commit before main's model
    assert first.returncode == 0, first.stdout + first.stderr
    assert "`HEAD~2` has no model yet" in first.stdout
    assert row(first.stdout, "accuracy (gated), higher is better")[1:] == ["—", "0.9855", "—"]
    train_pr = script("train_pr")
    assert row(train_pr.confusion(BETTER_ROWS, None, "main"), "**Chinstrap**")[1:] == ["1", "13"]
    assert "line" not in mermaid(train_pr.per_class(BETTER, None, "main"))


def test_a_regression_model_gets_residuals_and_its_errors_may_grow_by_a_fraction(tmp_path):
    params = project_params(["rmse"], "regression")
    main: list[Any] = [regression(60.0, 50.0), [(100, 160), (200, 140), (150, 150)], 1.0]
    # The same params (a change of data or code): the diff says so instead of an empty table.
    pr: list[Any] = [regression(55.0, 52.0), [(100, 110), (200, 190), (150, 150)], 1.0]
    repo = dvc_project(tmp_path / "repo", params, main, pr)
    text = report(repo)
    assert "None: the same params as `main`." in text
    assert row(text, "**rmse** (gated), lower is better")[3] == "-5.0000 (better)"
    assert row(text, "mae, lower is better")[3] == "+2.0000 (worse)"
    chart = mermaid(section(text, "Residuals (test split)"))
    # Errors of 60 at most: ten bins of 12 from -60; the PR's -10 lands in [-12, 0), its 0 and
    # +10 in [0, 12); main's -60, 0 and +60 in the first, that one and the last.
    assert chart["bar"] == [0, 0, 0, 0, 1, 2, 0, 0, 0, 0]
    assert chart["line"] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert "Per class" not in text
    assert "Confusion" not in text
    # rmse 60 on main: LIMIT as a difference would fail any change above 0.02 of the target's
    # unit; as a fraction of main's value, 60 * (1 + LIMIT) passes and 60 * (1 + 2 LIMIT) not.
    for rmse, passes in [(60 * (1 + LIMIT), True), (60 * (1 + 2 * LIMIT), False)]:
        commit_model(repo, regression(rmse, 52.0), pr[1], 0.2)
        gate = step(repo, "gate", BASE_REF="main")
        assert (gate.returncode == 0) is passes, gate.stdout + gate.stderr
    assert "Check failed: rmse worse" in gate.stdout


@pytest.mark.parametrize(
    ("params", "base", "message"),
    [
        ({"max_regression": -1}, "main", r"compare\.max_regression: .*greater than or equal"),
        ({"metrics": ["roc_auc"]}, "main", r"the new metrics.json has no model\.test\.roc_auc"),
        ({}, "origin/no-such-branch", "BASE_REF=origin/no-such-branch is not a commit here"),
    ],
)
def test_bad_settings_fail_the_gate_with_a_message_not_a_pass(pr_repo, params, base, message):
    valid = (pr_repo / "params.yaml").read_text(encoding="utf-8")
    changed = yaml.safe_load(valid)
    changed["compare"].update(params)
    (pr_repo / "params.yaml").write_text(yaml.safe_dump(changed), encoding="utf-8")
    try:
        result = step(pr_repo, "gate", BASE_REF=base)
    finally:
        (pr_repo / "params.yaml").write_text(valid, encoding="utf-8")
    assert result.returncode == 2
    assert re.search(message, result.stderr), result.stderr


def test_predictions_without_their_columns_are_rejected_with_the_reason(script):
    with pytest.raises(script("train_pr").ReportError, match="expected the columns actual and"):
        script("train_pr").predictions("species,guess\nAdelie,Adelie\n", "x.csv")


# --- the data job: data-pointers and pull-data --------------------------------------------

PR_FILE = "data/customers.csv"


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base branch's checkout with the PR's head checked out in build/ci/pr-head, whose
    `dvc add`-ed data is pushed to the local remote both name (built once: DVC takes seconds)."""
    base = tmp_path_factory.mktemp("pr-data") / "base"
    head = base / "build/ci/pr-head"
    for path in (base, head):
        git(base.parent, "init", "--quiet", str(path))
        dvc(path, "init", "--quiet")
        dvc(path, "remote", "add", "--default", "s", str(base.parent / "remote"))
    (head / PR_FILE).parent.mkdir()
    (head / PR_FILE).write_text("id,churned\n1,yes\n2,no\n", encoding="utf-8")
    dvc(head, "add", "--quiet", PR_FILE)
    dvc(head, "push", "--quiet")
    git(head, "add", "--all")
    git(head, "commit", "-qm", "data")
    return base


@pytest.fixture
def base(pushed: Path, tmp_path: Path) -> Path:
    """A copy of the checkouts for one test (the remote is shared, read-only)."""
    return Path(shutil.copytree(pushed, tmp_path / "base", symlinks=True))


def data_step(base: Path, command: str, **env: str) -> tuple[str, str]:
    """Run `command`; what it wrote to GITHUB_OUTPUT and GITHUB_STEP_SUMMARY."""
    files = {name: base.parent / name for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
    for path in files.values():
        path.write_text("", encoding="utf-8")
    result = step(base, command, **{k: str(v) for k, v in files.items()}, **env)
    assert result.returncode == 0, result.stderr
    output, summary = (path.read_text(encoding="utf-8") for path in files.values())
    return output, summary


def test_the_prs_pointer_files_are_copied_into_the_base_checkout_never_its_data(base):
    assert data_step(base, "data-pointers") == ("data=tracked\n", "")
    head = base / "build/ci/pr-head"
    assert (base / f"{PR_FILE}.dvc").read_bytes() == (head / f"{PR_FILE}.dvc").read_bytes()
    assert not (base / PR_FILE).exists()


def test_without_credentials_a_one_line_notice_and_no_training(base):
    output, summary = data_step(base, "pull-data")
    assert output == "data=unavailable\n"
    assert len(summary.splitlines()) == 1
    assert f"{PR_FILE}.dvc" in summary
    assert not (base / "build/ci/data").exists()


def test_with_credentials_the_data_is_pulled_and_set_aside_for_the_training_job(base):
    # The local remote ignores them; their presence is what says the role was assumed.
    assert data_step(base, "pull-data", AWS_ACCESS_KEY_ID="test") == ("data=pulled\n", "")
    pulled = (base / "build/ci/data" / PR_FILE).read_bytes()
    assert pulled == (base / "build/ci/pr-head" / PR_FILE).read_bytes()


def test_a_pr_without_dvc_tracked_data_needs_no_pull(base):
    git(base / "build/ci/pr-head", "rm", "--quiet", f"{PR_FILE}.dvc")
    for command in ("data-pointers", "pull-data"):
        assert data_step(base, command, AWS_ACCESS_KEY_ID="test") == ("data=none\n", "")
