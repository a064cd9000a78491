"""The Train workflow's data job (.github/scripts/pr_data.py), against a local DVC remote: the
PR's .dvc pointers are found and copied into the base checkout, the data is pulled and set
aside for the training job, and a run without credentials gets a one-line notice, not a
traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / ".github" / "scripts" / "pr_data.py"
DATA = "data/customers.csv"


def sh(cwd: Path, *argv: str) -> None:
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True, env=tool_env())


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GITHUB_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return {**env, **(extra or {})}


def repository(path: Path, remote: Path) -> Path:
    path.mkdir()
    sh(path, "git", "init", "--quiet")
    sh(path, "dvc", "init", "--quiet")
    sh(path, "dvc", "remote", "add", "--default", "storage", str(remote))
    return path


def commit(path: Path) -> None:
    sh(path, "git", "add", "--all")
    sh(path, "git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "x")


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base branch's checkout and, beside it, the PR's head with `dvc add`-ed data pushed
    to the local remote both name (built once: DVC's commands take seconds each)."""
    root = tmp_path_factory.mktemp("pr-data")
    remote = root / "remote"
    commit(repository(root / "base", remote))
    head = repository(root / "head", remote)
    (head / DATA).parent.mkdir()
    (head / DATA).write_text("id,churned\n1,yes\n2,no\n", encoding="utf-8")
    sh(head, "dvc", "add", "--quiet", DATA)
    sh(head, "dvc", "push", "--quiet")
    commit(head)
    return root


@pytest.fixture
def checkouts(pushed: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of both checkouts for one test (the remote is shared, read-only)."""
    for name in ("base", "head"):
        shutil.copytree(pushed / name, tmp_path / name, symlinks=True)
    return tmp_path / "base", tmp_path / "head"


def run(
    step: str, base: Path, head: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], str, str]:
    output, summary = base.parent / "output", base.parent / "summary"
    output.write_text("", encoding="utf-8")
    summary.write_text("", encoding="utf-8")
    extra = {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary), **env}
    argv = [sys.executable, str(SCRIPT), step, "--head", str(head), "--out", str(base / "out")]
    result = subprocess.run(
        argv, cwd=base, env=tool_env(extra), capture_output=True, text=True, check=False
    )
    return result, output.read_text(encoding="utf-8"), summary.read_text(encoding="utf-8")


def test_the_prs_pointer_files_are_found_and_copied_into_the_base_checkout(checkouts):
    base, head = checkouts
    result, output, _ = run("pointers", base, head)
    assert result.returncode == 0, result.stderr
    assert output == "data=tracked\n"
    assert (base / f"{DATA}.dvc").read_bytes() == (head / f"{DATA}.dvc").read_bytes()
    assert not (base / DATA).exists(), "only the pointer is copied, never the PR's files"


def test_without_credentials_a_one_line_notice_and_no_training(checkouts):
    base, head = checkouts
    result, output, summary = run("pull", base, head)
    assert result.returncode == 0, result.stderr
    assert output == "data=unavailable\n"
    assert len(summary.splitlines()) == 1
    assert f"{DATA}.dvc" in summary
    assert "Traceback" not in result.stdout + result.stderr
    assert not (base / "out").exists()


def test_with_credentials_the_data_is_pulled_and_set_aside_for_the_training_job(checkouts):
    base, head = checkouts
    # The local remote ignores them; their presence is what says the role was assumed.
    result, output, summary = run("pull", base, head, AWS_ACCESS_KEY_ID="test")
    assert result.returncode == 0, result.stderr
    assert output == "data=pulled\n"
    assert summary == ""
    assert (base / "out" / DATA).read_bytes() == (head / DATA).read_bytes()


def test_a_pr_without_dvc_tracked_data_needs_no_pull(checkouts):
    base, head = checkouts
    sh(head, "git", "rm", "--quiet", f"{DATA}.dvc")
    commit(head)
    for step in ("pointers", "pull"):
        result, output, _ = run(step, base, head, AWS_ACCESS_KEY_ID="test")
        assert result.returncode == 0, result.stderr
        assert output == "data=none\n"
