"""The commit-back: which files it commits, that it pushes only as a fast-forward of the
trained commit, and that it dispatches the tests on the new head. Run against a local bare
repository standing in for GitHub, with a fake `gh` recording the dispatch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / ".github" / "scripts"

DVC_YAML = {
    "stages": {
        "train": {
            "cmd": "python -m training.train",
            "outs": [
                "serving/app/data/model.joblib",
                {"serving/app/data/model_metadata.json": {"cache": False}},
            ],
        },
        "evaluate": {
            "cmd": "python -m training.evaluate",
            "outs": [
                {"serving/app/data/report.md": {"cache": False}},
                {"training/data/scratch.parquet": {"persist": True}},
            ],
            "metrics": [{"serving/app/data/metrics.json": {"cache": False}}],
            "plots": [{"serving/app/data/test_predictions.csv": {"cache": False, "x": "a"}}],
        },
    }
}
TRACKED = [
    "dvc.lock",
    "serving/app/data/model_metadata.json",
    "serving/app/data/report.md",
    "serving/app/data/metrics.json",
    "serving/app/data/test_predictions.csv",
]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


def run(
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    identity: bool = True,
) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL") and not k.startswith("GIT_")
    }
    if identity:
        full_env.update(GIT_ENV)
    full_env.update(env or {})
    return subprocess.run(
        list(args), cwd=cwd, env=full_env, capture_output=True, text=True, check=check, timeout=120
    )


def test_the_git_tracked_outputs_are_dvc_lock_and_the_uncached_outs(script, tmp_path):
    spec = tmp_path / "dvc.yaml"
    spec.write_text(yaml.safe_dump(DVC_YAML, sort_keys=False), encoding="utf-8")
    assert script("training_outputs").git_tracked_outputs(spec) == TRACKED


def test_the_projects_own_pipeline_commits_its_metrics_and_report(script):
    tracked = script("training_outputs").git_tracked_outputs(ROOT / "dvc.yaml")
    assert tracked[0] == "dvc.lock"
    assert {
        "serving/app/data/metrics.json",
        "serving/app/data/report.md",
        "serving/app/data/model_metadata.json",
    } <= set(tracked)
    assert "serving/app/data/model.joblib" not in tracked


def test_staging_refuses_outputs_that_were_not_produced(tmp_path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False), encoding="utf-8")
    result = run(
        tmp_path,
        sys.executable,
        str(SCRIPTS / "training_outputs.py"),
        "--dvc-yaml",
        str(tmp_path / "dvc.yaml"),
        "--copy-to",
        "out",
        check=False,
    )
    assert result.returncode == 1
    assert "dvc.lock" in result.stderr


@pytest.fixture
def github(tmp_path: Path) -> dict[str, Path]:
    """A bare 'GitHub' repository with a PR branch, a clone of its head commit (what the
    commit-back job checks out) holding staged outputs, and a fake gh on PATH."""
    origin = tmp_path / "origin.git"
    run(tmp_path, "git", "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    seed = tmp_path / "seed"
    run(tmp_path, "git", "clone", "--quiet", str(origin), str(seed))
    (seed / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False), encoding="utf-8")
    (seed / "params.yaml").write_text("train: {C: 1.0}\n", encoding="utf-8")
    run(seed, "git", "add", ".")
    run(seed, "git", "commit", "--quiet", "-m", "base")
    run(seed, "git", "push", "--quiet", "origin", "HEAD:refs/heads/main")
    (seed / "params.yaml").write_text("train: {C: 0.5}\n", encoding="utf-8")
    run(seed, "git", "commit", "--quiet", "-am", "try C=0.5")
    run(seed, "git", "push", "--quiet", "origin", "HEAD:refs/heads/pr")
    trained_sha = run(seed, "git", "rev-parse", "HEAD").stdout.strip()

    checkout = tmp_path / "checkout"
    run(tmp_path, "git", "clone", "--quiet", str(origin), str(checkout))
    run(checkout, "git", "checkout", "--quiet", "--detach", trained_sha)
    staged = checkout / "build" / "ci" / "training-outputs"
    for path in TRACKED:
        (staged / path).parent.mkdir(parents=True, exist_ok=True)
        (staged / path).write_text(f"new {path}\n", encoding="utf-8")

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path / "gh.log"}"\n', encoding="utf-8")
    gh.chmod(0o755)
    return {
        "origin": origin,
        "seed": seed,
        "checkout": checkout,
        "bin": bin_dir,
        "gh_log": tmp_path / "gh.log",
    }


def commit_back(checkout: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    return run(
        checkout,
        "make",
        "--no-print-directory",
        "-f",
        str(ROOT / "Makefile"),
        "commit-training-outputs",
        env={"BRANCH": "pr", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        check=False,
        identity=False,
    )


def test_commit_back_pushes_the_outputs_onto_the_trained_commit_and_dispatches_tests(github):
    result = commit_back(github["checkout"], github["bin"])
    assert result.returncode == 0, result.stdout + result.stderr
    origin = github["origin"]
    files = run(origin, "git", "diff", "--name-only", "pr~1", "pr").stdout.split()
    assert sorted(files) == sorted(TRACKED)
    assert run(origin, "git", "show", "pr:serving/app/data/metrics.json").stdout == (
        "new serving/app/data/metrics.json\n"
    )
    author = run(origin, "git", "log", "-1", "--format=%an", "pr").stdout.strip()
    assert author == "github-actions[bot]"
    # Nothing else of the checkout (the staging directory itself) was committed.
    assert "build/" not in run(origin, "git", "ls-tree", "-r", "--name-only", "pr").stdout
    assert github["gh_log"].read_text().split() == ["workflow", "run", "tests.yml", "--ref", "pr"]


def test_commit_back_refuses_to_push_over_newer_commits_and_dispatches_nothing(github):
    seed = github["seed"]
    (seed / "params.yaml").write_text("train: {C: 0.1}\n", encoding="utf-8")
    run(seed, "git", "commit", "--quiet", "-am", "developer pushed again meanwhile")
    run(seed, "git", "push", "--quiet", "origin", "HEAD:refs/heads/pr")
    result = commit_back(github["checkout"], github["bin"])
    assert result.returncode != 0
    assert "rejected" in result.stderr or "non-fast-forward" in result.stderr
    latest = run(github["origin"], "git", "log", "-1", "--format=%s", "pr").stdout.strip()
    assert latest == "developer pushed again meanwhile"
    assert not github["gh_log"].exists()


def test_unchanged_outputs_make_no_commit(github):
    assert commit_back(github["checkout"], github["bin"]).returncode == 0
    head = run(github["origin"], "git", "rev-parse", "pr").stdout
    # A second run on the new head with the same outputs has nothing to commit.
    checkout = github["checkout"]
    run(checkout, "git", "fetch", "--quiet", "origin")
    run(checkout, "git", "checkout", "--quiet", "--detach", "origin/pr")
    github["gh_log"].unlink()
    result = commit_back(checkout, github["bin"])
    assert result.returncode == 0, result.stderr
    assert "nothing to commit" in result.stdout
    assert run(github["origin"], "git", "rev-parse", "pr").stdout == head
    assert not github["gh_log"].exists()


def test_commit_back_needs_a_branch(github):
    result = run(
        github["checkout"],
        "make",
        "--no-print-directory",
        "-f",
        str(ROOT / "Makefile"),
        "commit-training-outputs",
        env={"BRANCH": ""},
        check=False,
    )
    assert result.returncode != 0
    assert "usage: BRANCH=" in result.stderr
