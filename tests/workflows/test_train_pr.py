"""The Train workflow's pull-request steps (.github/scripts/train_pr.py), run as the workflow runs
them on throwaway repositories: a DVC project whose `main` and PR branch hold different models,
a bare repository standing in for GitHub, and a fake `gh` that records its calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".github" / "scripts" / "train_pr.py"
DATA = Path("serving/app/data")
MARKER = "<!-- mlops-template:model-report -->"
LIMIT = 0.02
DVC_YAML = {
    "stages": {
        "train": {
            "cmd": "true",
            "params": ["train"],
            "outs": [
                "serving/app/data/model.joblib",
                {"serving/app/data/model_metadata.json": {"cache": False}},
                {"serving/app/data/report.md": {"cache": False}},
            ],
            "metrics": [{"serving/app/data/metrics.json": {"cache": False}}],
            "plots": [
                {
                    "serving/app/data/test_predictions.csv": {
                        "cache": False,
                        "template": "confusion",
                        "x": "actual",
                        "y": "predicted",
                    }
                }
            ],
        }
    }
}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


def run(
    cwd: Path,
    *argv: str,
    env: dict[str, str] | None = None,
    identity: bool = True,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITHUB_"))}
    clean.pop("BASE_REF", None)
    full = {**clean, **(GIT_ENV if identity else {}), **(env or {})}
    return subprocess.run(
        list(argv), cwd=cwd, env=full, capture_output=True, text=True, check=check, timeout=120
    )


def step(cwd: Path, command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """One workflow step: `python .github/scripts/train_pr.py <command>`."""
    return run(cwd, sys.executable, str(SCRIPT), command, env=env, check=False)


def classification(accuracy: float, macro_f1: float, log_loss: float, chinstrap_recall: float):
    per_class = {
        "Adelie": {"precision": 0.97, "recall": 1.0},
        "Chinstrap": {"precision": 1.0, "recall": chinstrap_recall},
        "Gentoo": {"precision": 1.0, "recall": 1.0},
    }
    test = {"accuracy": accuracy, "macro_f1": macro_f1, "log_loss": log_loss}
    return {
        "model": {"test": {**test, "per_class": per_class}, "cv": {"accuracy_mean": accuracy}},
        "baseline": {"test": {"accuracy": 0.4348, "macro_f1": 0.202, "log_loss": 1.0512}},
    }


MAIN = classification(0.9710, 0.9650, 0.1010, 0.8571)
BETTER = classification(0.9855, 0.9830, 0.0812, 0.9286)
RIGHT = (
    [("Adelie", "Adelie")] * 30 + [("Chinstrap", "Chinstrap")] * 12 + [("Gentoo", "Gentoo")] * 25
)
MAIN_PREDICTIONS = [*RIGHT, ("Chinstrap", "Adelie"), ("Chinstrap", "Adelie")]
BETTER_PREDICTIONS = [*RIGHT, ("Chinstrap", "Chinstrap"), ("Chinstrap", "Adelie")]


def regression(rmse: float, mae: float, r2: float) -> dict[str, Any]:
    return {
        "model": {"test": {"rmse": rmse, "mae": mae, "r2": r2}, "cv": {"rmse_mean": rmse}},
        "baseline": {"test": {"rmse": 80.0, "mae": 65.0, "r2": 0.0}},
        "improvement": {"rmse": (80.0 - rmse) / 80.0},
    }


def commit_model(
    repo: Path,
    metrics: dict[str, Any],
    predictions: list[tuple[Any, Any]],
    C: float,
    task: str = "classification",
) -> None:
    data = repo / DATA
    data.mkdir(parents=True, exist_ok=True)
    (data / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    rows = "".join(f"{a},{p}\n" for a, p in predictions)
    (data / "test_predictions.csv").write_text("actual,predicted\n" + rows, encoding="utf-8")
    (data / "report.md").write_text(f"# Training report\n\nC={C}\n", encoding="utf-8")
    metadata = {"model_version": f"v{C}", "estimator": "ridge", "hyperparameters": {"C": C}}
    (data / "model_metadata.json").write_text(json.dumps({**metadata, "task": task}), "utf-8")
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["hyperparameters"]["logistic_regression"]["C"] = C
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    run(repo, "git", "add", ".")
    run(repo, "git", "commit", "--quiet", "-m", f"model C={C}")


def project_params(gated: list[str] | None, task: str = "classification") -> dict[str, Any]:
    """The project's params.yaml, for `task`, gating `gated` at LIMIT."""
    params: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["prepare"]["task"] = task
    params["compare"] = {"metrics": gated, "max_regression": LIMIT}
    return params


def dvc_project(path: Path, gated: list[str], task: str = "classification") -> Path:
    """A DVC project with `main` checked out and no model yet."""
    run(path.parent, "git", "init", "--quiet", "--initial-branch=main", str(path))
    run(path, sys.executable, "-m", "dvc", "init", "--quiet")
    (path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False), encoding="utf-8")
    (path / ".gitignore").write_text("build/\n", encoding="utf-8")
    (path / "params.yaml").write_text(yaml.safe_dump(project_params(gated, task)), "utf-8")
    run(path, "git", "add", ".")
    run(path, "git", "commit", "--quiet", "-m", "project without a model")
    return path


def report(repo: Path, **env: str) -> str:
    result = step(repo, "report", BASE_REF="main", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return (repo / "build/ci/pr-comment.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def pr_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`main` holds one classifier; the checked-out branch `pr` a retrained one (C changed)."""
    repo = dvc_project(tmp_path_factory.mktemp("classification") / "repo", ["accuracy", "macro_f1"])
    commit_model(repo, MAIN, MAIN_PREDICTIONS, C=1.0)
    run(repo, "git", "checkout", "--quiet", "-b", "pr")
    commit_model(repo, BETTER, BETTER_PREDICTIONS, C=0.5)
    return repo


@pytest.fixture(scope="module")
def comment(pr_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return report(pr_repo)


def section(text: str, title: str) -> str:
    return text.split(f"### {title}", 1)[1].split("\n### ", 1)[0]


def row(text: str, first_cell: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def mermaid(text: str) -> dict[str, str]:
    """The first Mermaid chart's statements (title, x-axis, bar, line) by keyword."""
    block = text.split("```mermaid\nxychart-beta\n", 1)[1].split("```", 1)[0]
    return dict(line.strip().split(" ", 1) for line in block.splitlines())


def test_comment_starts_with_its_marker_and_carries_dvcs_param_and_metric_diffs(comment):
    assert comment.splitlines()[0] == MARKER
    params = section(comment, "Params changed (`dvc params diff`)")
    assert row(params, "params.yaml")[1:] == [
        "train.hyperparameters.logistic_regression.C",
        str(project_params(None)["train"]["hyperparameters"]["logistic_regression"]["C"]),
        "0.5",
    ]
    assert row(comment, "serving/app/data/metrics.json")[1] == "model.cv.accuracy_mean"
    assert "Model `v0.5`: `ridge` with `C=0.5`." in comment


def test_the_verdict_compares_each_test_metric_in_its_direction(comment):
    assert "✅ **Check passed:**" in comment
    assert row(comment, "**accuracy** (gated), higher is better")[1:] == [
        "0.9710",
        "0.9855",
        "+0.0145 (better)",
    ]
    # Lower log loss is better: a negative change reads as an improvement.
    assert row(comment, "log_loss, lower is better")[3] == "-0.0198 (better)"


def test_per_class_chart_and_table_put_the_pr_beside_main(comment):
    per_class = section(comment, "Per class (test split)")
    chart = mermaid(per_class)
    labels = json.loads(chart["x-axis"])
    assert labels[2:4] == ["Chinstrap P", "Chinstrap R"]
    assert json.loads(chart["bar"])[3] == 0.9286
    assert json.loads(chart["line"])[3] == 0.8571
    assert row(per_class, "Chinstrap") == ["Chinstrap", "1.0000", "0.9286 (0.8571)"]


def test_the_confusion_matrix_shows_the_change_from_main(comment):
    matrix = section(comment, "Confusion matrix (test split)")
    assert row(matrix, "actual \\ predicted") == [
        "actual \\ predicted",
        "Adelie",
        "Chinstrap",
        "Gentoo",
    ]
    assert row(matrix, "**Adelie**") == ["**Adelie**", "30", "0", "0"]
    # One Chinstrap fewer taken for an Adelie, one more right: the cells say by how much.
    assert row(matrix, "**Chinstrap**") == ["**Chinstrap**", "1 (-1)", "13 (+1)", "0"]
    assert "68 of 69 test rows predicted right (`main`: 67 of 69)." in matrix


def test_the_baseline_the_plots_link_and_the_training_report_are_there(comment, pr_repo):
    assert row(section(comment, "Against the baseline"), "accuracy") == [
        "accuracy",
        "0.4348",
        "0.9855",
    ]
    assert "<details><summary>Training report" in comment
    assert "\nC=0.5\n" in comment
    assert "`dvc plots diff`" in comment
    plots = (pr_repo / "build/ci/plots/index.html").read_text("utf-8")
    # Every test row of both models: the artifact compares them.
    assert plots.count('"rev": "main"') == plots.count('"rev": "workspace"') == 69


def test_a_rebuilt_comment_is_byte_identical_links_the_run_and_goes_to_the_job_summary(
    pr_repo, comment, tmp_path
):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    github = {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_RUN_ID": "7",
    }
    rebuilt = report(pr_repo, GITHUB_STEP_SUMMARY=str(summary), **github)
    link = "[this run's artifacts](https://github.com/o/r/actions/runs/7)"
    assert rebuilt == comment.replace("build/ci/plots", link)
    assert summary.read_text(encoding="utf-8") == "earlier step\n" + rebuilt


def gate_with(repo: Path, metrics: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    commit_model(repo, metrics, BETTER_PREDICTIONS, C=0.1)
    try:
        return step(repo, "gate", BASE_REF="main")
    finally:
        run(repo, "git", "reset", "--quiet", "--hard", "HEAD~1")


@pytest.mark.parametrize(("drop", "passes"), [(LIMIT, True), (LIMIT + 0.005, False)])
def test_the_gate_fails_only_a_drop_beyond_max_regression(pr_repo, drop, passes):
    worse = json.loads(json.dumps(MAIN))
    worse["model"]["test"]["accuracy"] = round(MAIN["model"]["test"]["accuracy"] - drop, 4)
    result = gate_with(pr_repo, worse)
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    assert ("Check failed: accuracy worse" in result.stdout) is not passes


def test_a_base_ref_that_is_not_a_commit_is_an_error_not_a_first_model(pr_repo):
    result = step(pr_repo, "gate", BASE_REF="origin/no-such-branch")
    assert result.returncode == 2
    assert "is not a commit here" in result.stderr


def test_the_first_model_compares_with_nothing_and_passes(script, pr_repo):
    train_pr = script("train_pr")
    passed, check = train_pr.verdict(BETTER, None, pr_repo / "params.yaml", "main")
    assert passed
    assert "`main` has no model yet" in check
    assert row(check, "**accuracy** (gated), higher is better")[1:] == ["—", "0.9855", "—"]
    matrix = train_pr.confusion(BETTER_PREDICTIONS, None, "main")
    assert row(matrix, "**Chinstrap**")[1:] == ["1", "13", "0"]
    assert "line" not in mermaid(train_pr.per_class(BETTER, None, "main"))
    first = step(pr_repo, "gate", BASE_REF="HEAD~2")  # the commit before main's model
    assert first.returncode == 0
    assert "has no model yet" in first.stdout


def test_a_regression_model_gets_residuals_and_lower_is_better_rmse_and_mae(tmp_path):
    repo = dvc_project(tmp_path / "repo", ["rmse", "r2"], "regression")
    commit_model(
        repo, regression(60.0, 50.0, 0.40), [(100, 160), (200, 140), (150, 150)], 1.0, "regression"
    )
    run(repo, "git", "checkout", "--quiet", "-b", "pr")
    pr_rows = [(100, 110), (200, 190), (150, 150)]
    commit_model(repo, regression(55.0, 52.0, 0.45), pr_rows, 0.5, "regression")
    text = report(repo)
    assert row(text, "**rmse** (gated), lower is better")[3] == "-5.0000 (better)"
    assert row(text, "mae, lower is better")[3] == "+2.0000 (worse)"
    chart = mermaid(section(text, "Residuals (test split)"))
    # Errors of 60 at most: ten bins of 12 from -60; the PR's -10 lands in [-12, 0), its 0 and
    # +10 in [0, 12); main's -60, 0 and +60 in the first, that one and the last.
    assert json.loads(chart["bar"]) == [0, 0, 0, 0, 1, 2, 0, 0, 0, 0]
    assert json.loads(chart["line"]) == [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert "Per class" not in text
    assert "Confusion" not in text
    worse = step(repo, "gate", BASE_REF="main")
    assert worse.returncode == 0, worse.stdout
    commit_model(repo, regression(62.0, 52.0, 0.45), pr_rows, 0.2, "regression")
    assert "Check failed: rmse worse" in step(repo, "gate", BASE_REF="main").stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metrics": ["recall"]}, r"compare\.metrics: \['recall'\] are not metrics of task"),
        ({"max_regression": -1}, r"compare\.max_regression: .*greater than or equal to 0"),
        ({"metrics": ["rmse"]}, r"compare\.metrics: \['rmse'\] are not metrics of task classif"),
    ],
)
def test_bad_compare_settings_are_rejected_naming_the_key(script, tmp_path, change, message):
    params = project_params(["accuracy"])
    params["compare"].update(change)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    with pytest.raises(script("train_pr").ReportError, match=message):
        script("train_pr").gate_config(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    ("rmse", "passes"), [(60.0 * (1 + LIMIT), True), (60.0 * (1 + 2 * LIMIT), False)]
)
def test_an_error_in_the_targets_units_may_grow_by_max_regression_as_a_fraction(
    script, tmp_path, rmse, passes
):
    """rmse 60 against main's 60: LIMIT as a difference would fail any change above 0.02 of
    a target's unit; as a fraction of main's value, 1.2 passes and 2.4 does not."""
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(project_params(["rmse"], "regression")), "utf-8"
    )
    main, pr = regression(60.0, 50.0, 0.4), regression(rmse, 50.0, 0.4)
    passed, _ = script("train_pr").verdict(pr, main, tmp_path / "params.yaml", "main")
    assert passed is passes


def test_a_gated_metric_missing_from_the_new_metrics_is_an_error_not_a_pass(script, tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(project_params(["roc_auc"])), "utf-8")
    with pytest.raises(script("train_pr").ReportError, match=r"model\.test\.roc_auc"):
        script("train_pr").verdict(BETTER, MAIN, tmp_path / "params.yaml", "main")


def test_predictions_without_their_columns_are_rejected_with_the_reason(script):
    with pytest.raises(script("train_pr").ReportError, match="expected the columns actual and"):
        script("train_pr").read_predictions("species,guess\nAdelie,Adelie\n", "x.csv")


# --- stage and commit-back ----------------------------------------------------------------

TRACKED = [
    "dvc.lock",
    *(
        f"serving/app/data/{n}"
        for n in ("model_metadata.json", "report.md", "metrics.json", "test_predictions.csv")
    ),
]


def test_stage_sets_aside_dvc_lock_and_the_uncached_outputs_only(tmp_path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML), encoding="utf-8")
    for path in [*TRACKED, "serving/app/data/model.joblib"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(path, encoding="utf-8")
    assert step(tmp_path, "stage").returncode == 0
    staged = tmp_path / "build/ci/training-outputs"
    assert sorted(str(p.relative_to(staged)) for p in staged.rglob("*.*")) == sorted(TRACKED)
    (tmp_path / "dvc.lock").unlink()
    refused = step(tmp_path, "stage")
    assert refused.returncode == 2
    assert "dvc.lock" in refused.stderr


def test_the_projects_own_pipeline_stages_its_metrics_and_report_not_the_model(script):
    staged = script("train_pr").tracked_outputs(ROOT / "dvc.yaml")
    names = {str(p.relative_to(ROOT)) for p in staged}
    assert {"dvc.lock", "serving/app/data/metrics.json", "serving/app/data/report.md"} <= names
    assert "serving/app/data/model.joblib" not in names


@pytest.fixture
def github(tmp_path: Path) -> dict[str, Path]:
    """A bare 'GitHub' with a PR branch, a clone of its head commit (what the commit-back job
    checks out) holding the staged outputs, and a fake gh on PATH logging its calls."""
    origin, seed, checkout = tmp_path / "origin.git", tmp_path / "seed", tmp_path / "checkout"
    run(tmp_path, "git", "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    run(tmp_path, "git", "clone", "--quiet", str(origin), str(seed))
    (seed / "params.yaml").write_text("train: {C: 0.5}\n", encoding="utf-8")
    run(seed, "git", "add", ".")
    run(seed, "git", "commit", "--quiet", "-m", "try C=0.5")
    run(seed, "git", "push", "--quiet", "origin", "HEAD:refs/heads/pr")
    run(tmp_path, "git", "clone", "--quiet", "--branch", "pr", str(origin), str(checkout))
    for path in TRACKED:
        staged = checkout / "build/ci/training-outputs" / path
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_text(f"new {path}\n", encoding="utf-8")
    (tmp_path / "bin").mkdir()
    gh = tmp_path / "bin" / "gh"
    gh.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path / "gh.log"}"\n', encoding="utf-8")
    gh.chmod(0o755)
    return {"origin": origin, "seed": seed, "checkout": checkout, "log": tmp_path / "gh.log"}


def commit_back(github: dict[str, Path], branch: str = "pr") -> subprocess.CompletedProcess[str]:
    path = f"{github['log'].parent / 'bin'}{os.pathsep}{os.environ['PATH']}"
    return run(
        github["checkout"],
        sys.executable,
        str(SCRIPT),
        "commit-back",
        env={"BRANCH": branch, "PATH": path},
        identity=False,
        check=False,
    )


def test_commit_back_pushes_the_outputs_onto_the_trained_commit_and_dispatches_tests(github):
    result = commit_back(github)
    assert result.returncode == 0, result.stdout + result.stderr
    origin = github["origin"]
    assert sorted(run(origin, "git", "diff", "--name-only", "pr~1", "pr").stdout.split()) == sorted(
        TRACKED
    )
    assert (
        run(origin, "git", "log", "-1", "--format=%an", "pr").stdout.strip()
        == "github-actions[bot]"
    )
    assert github["log"].read_text().split() == ["workflow", "run", "tests.yml", "--ref", "pr"]


def test_commit_back_refuses_to_push_over_newer_commits_and_dispatches_nothing(github):
    seed = github["seed"]
    run(seed, "git", "pull", "--quiet", "origin", "pr")
    (seed / "params.yaml").write_text("train: {C: 0.1}\n", encoding="utf-8")
    run(seed, "git", "commit", "--quiet", "-am", "developer pushed again meanwhile")
    run(seed, "git", "push", "--quiet", "origin", "HEAD:refs/heads/pr")
    result = commit_back(github)
    assert result.returncode == 2
    assert "rejected" in result.stderr
    assert run(github["origin"], "git", "log", "-1", "--format=%s", "pr").stdout.strip() == (
        "developer pushed again meanwhile"
    )
    assert not github["log"].exists()


def test_unchanged_outputs_make_no_commit_and_no_dispatch(github):
    assert commit_back(github).returncode == 0
    run(github["checkout"], "git", "pull", "--quiet", "origin", "pr")
    github["log"].unlink()
    result = commit_back(github)
    assert result.returncode == 0
    assert "nothing to commit" in result.stdout
    assert not github["log"].exists()


def test_commit_back_needs_the_branch(github):
    result = commit_back(github, branch="")
    assert result.returncode == 2
    assert "BRANCH" in result.stderr


# --- post ---------------------------------------------------------------------------------

FAKE_GH = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GH_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({{"args": args, "stdin": sys.stdin.read()}}) + "\\n")
if os.environ.get("FAKE_GH_FAIL"):
    sys.exit("HTTP 403: Resource not accessible by integration")
if "--paginate" in args:  # what `gh api --jq '... | @json'` prints: one array per comment
    for c in json.loads(os.environ["FAKE_GH_COMMENTS"]):
        print(json.dumps([c["id"], c["login"], c["body"].split("\\n")[0]]))
"""
BODY = f"{MARKER}\n## Model report\n"
BOT = "github-actions[bot]"


@pytest.fixture
def post(tmp_path: Path) -> Callable[..., tuple[subprocess.CompletedProcess[str], list[Any]]]:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "gh").write_text(FAKE_GH.format(python=sys.executable), "utf-8")
    (tmp_path / "bin" / "gh").chmod(0o755)
    (tmp_path / "build/ci").mkdir(parents=True)

    def call(comments: list[dict[str, Any]], body: str = BODY, **env: str) -> tuple[Any, list[Any]]:
        (tmp_path / "build/ci/pr-comment.md").write_text(body, encoding="utf-8")
        log = tmp_path / "gh.log"
        log.write_text("", encoding="utf-8")
        env = {
            "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "PR": "7",
            "GITHUB_REPOSITORY": "octo/penguins",
            "FAKE_GH_LOG": str(log),
            "FAKE_GH_COMMENTS": json.dumps(comments),
            **env,
        }
        result = step(tmp_path, "post", **env)
        return result, [json.loads(line) for line in log.read_text("utf-8").splitlines()]

    return call


def test_the_first_run_creates_the_comment(post):
    result, calls = post([{"id": 1, "login": "alice", "body": "LGTM"}])
    assert result.returncode == 0, result.stderr
    assert calls[-1]["args"][:4] == [
        "api",
        "--method",
        "POST",
        "repos/octo/penguins/issues/7/comments",
    ]
    assert json.loads(calls[-1]["stdin"]) == {"body": BODY}


def test_later_runs_edit_the_bots_marked_comment_instead_of_adding_one(post):
    result, calls = post(
        [
            {"id": 10, "login": "alice", "body": "please retrain"},
            {"id": 11, "login": BOT, "body": f"{MARKER}\nold numbers"},
            {"id": 12, "login": BOT, "body": f"other bot message\n{MARKER}"},
        ]
    )
    assert result.returncode == 0, result.stderr
    writes = [c["args"][:4] for c in calls if "--method" in c["args"]]
    assert writes == [["api", "--method", "PATCH", "repos/octo/penguins/issues/comments/11"]]


def test_a_human_comment_carrying_the_marker_is_never_edited(post):
    _, calls = post([{"id": 20, "login": "mallory", "body": f"{MARKER}\nfake report"}])
    assert calls[-1]["args"][2] == "POST"


def test_a_body_without_its_marker_is_refused_before_calling_github(post):
    result, calls = post([], body="## Model report without a marker\n")
    assert result.returncode == 2
    assert "marker" in result.stderr
    assert calls == []


def test_a_github_error_fails_the_step_with_its_message(post):
    result, _ = post([], FAKE_GH_FAIL="1")
    assert result.returncode == 2
    assert "Resource not accessible" in result.stderr
