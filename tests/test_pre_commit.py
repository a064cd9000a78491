"""The pre-commit hooks run the project's own pinned tools, installed by its make targets,
with nothing to fetch: a hook that names a missing tool or a remote repository fails here."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".pre-commit-config.yaml"
PRE_COMMIT = Path(sys.executable).with_name("pre-commit")


def hooks() -> list[dict[str, Any]]:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def program(hook: dict[str, Any]) -> str:
    return shlex.split(hook["entry"])[0]


# The hooks' only tool from outside the project's environments: where it is missing its hook
# is skipped and listed at the end of `make test` (under CI=true the run fails).
SYSTEM_TOOLS = {"terraform"}


def test_config_is_valid_for_the_locked_pre_commit() -> None:
    argv = [str(PRE_COMMIT), "validate-config", str(CONFIG)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hook_is_local_so_nothing_is_fetched() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert [repo["repo"] for repo in config["repos"]] == ["local"]


@pytest.mark.parametrize(
    "hook",
    [
        pytest.param(
            h, id=h["id"], marks=pytest.mark.needs(program(h)) if program(h) in SYSTEM_TOOLS else ()
        )
        for h in hooks()
    ],
)
def test_hook_runs_a_tool_the_project_installs(hook: dict[str, Any]) -> None:
    tool = program(hook)
    if "/" in tool:
        assert (ROOT / tool).is_file(), f"{hook['id']}: {tool} is not installed"
    else:
        assert shutil.which(tool), f"{hook['id']}: {tool} is not on PATH"


def test_every_hook_passes_on_every_tracked_file_offline(tmp_path: Path) -> None:
    """What `pre-commit run --all-files` says on this checkout: the hooks and `make lint`/`make
    scan` must agree, or a commit the hooks accept fails CI (or the reverse)."""
    # A hook whose tool is missing here is skipped (its own test above says so), not failed.
    missing = [
        h["id"] for h in hooks() if program(h) in SYSTEM_TOOLS and not shutil.which(program(h))
    ]
    result = subprocess.run(
        [str(PRE_COMMIT), "run", "--all-files", "--show-diff-on-failure", "--color", "never"],
        cwd=ROOT,
        # Its own cache, not the user's: local hooks install nothing, so it stays empty.
        env={**os.environ, "PRE_COMMIT_HOME": str(tmp_path), "SKIP": ",".join(missing)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.count("Passed") == len(hooks()) - len(missing)


def test_the_hooks_cover_the_linters_and_scanners_ci_runs() -> None:
    assert {hook["id"] for hook in hooks()} >= {
        "ruff-check",
        "ruff-format",
        "mypy",
        "terraform-fmt",
        "check-workflows",
        "actionlint",
        "zizmor",
        "hadolint",
    }
