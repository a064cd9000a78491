"""The comment poster edits the one bot comment carrying the marker, or creates it: run against
a fake `gh` on PATH that serves canned comments and records the calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
POSTER = ROOT / ".github" / "scripts" / "post_comment.py"
MARKER = "<!-- mlops-template:model-report -->"
BOT = "github-actions[bot]"

FAKE_GH = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GH_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({{"args": args, "stdin": sys.stdin.read()}}) + "\\n")
if os.environ.get("FAKE_GH_FAIL"):
    print("HTTP 403: Resource not accessible by integration", file=sys.stderr)
    sys.exit(1)
if "--paginate" in args:
    # What `gh api --jq '... | @json'` prints: one JSON array per comment.
    for comment in json.loads(os.environ["FAKE_GH_COMMENTS"]):
        first_line = comment["body"].split("\\n")[0]
        print(json.dumps([comment["id"], comment["login"], first_line]))
"""


def post(
    tmp_path: Path, comments: list[dict[str, Any]], body: str, fail: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text(FAKE_GH.format(python=sys.executable), encoding="utf-8")
    gh.chmod(0o755)
    log = tmp_path / "gh.log"
    log.write_text("", encoding="utf-8")
    body_file = tmp_path / "comment.md"
    body_file.write_text(body, encoding="utf-8")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_GH_LOG": str(log),
        "FAKE_GH_COMMENTS": json.dumps(comments),
    }
    if fail:
        env["FAKE_GH_FAIL"] = "1"
    result = subprocess.run(
        [
            sys.executable,
            str(POSTER),
            "--repo",
            "octo/penguins",
            "--pr",
            "7",
            "--body-file",
            str(body_file),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return result, calls


BODY = f"{MARKER}\n## Model report\n\n| a | b |\n"


def test_first_run_creates_the_comment(tmp_path):
    result, calls = post(tmp_path, [{"id": 1, "login": "alice", "body": "LGTM"}], BODY)
    assert result.returncode == 0, result.stderr
    assert calls[0]["args"][:3] == ["api", "--paginate", "repos/octo/penguins/issues/7/comments"]
    write = calls[-1]
    assert write["args"][:4] == ["api", "--method", "POST", "repos/octo/penguins/issues/7/comments"]
    assert json.loads(write["stdin"]) == {"body": BODY}


def test_later_runs_edit_the_existing_bot_comment_instead_of_adding_one(tmp_path):
    comments = [
        {"id": 10, "login": "alice", "body": "please retrain"},
        {"id": 11, "login": BOT, "body": f"{MARKER}\n## Model report\nold numbers"},
        {"id": 12, "login": BOT, "body": "some other bot message"},
    ]
    result, calls = post(tmp_path, comments, BODY)
    assert result.returncode == 0, result.stderr
    writes = [c for c in calls if "--method" in c["args"]]
    assert len(writes) == 1
    assert writes[0]["args"][:4] == [
        "api",
        "--method",
        "PATCH",
        "repos/octo/penguins/issues/comments/11",
    ]
    assert json.loads(writes[0]["stdin"]) == {"body": BODY}
    assert "updated comment 11" in result.stdout


def test_a_human_comment_carrying_the_marker_is_never_edited(tmp_path):
    comments = [{"id": 20, "login": "mallory", "body": f"{MARKER}\nfake report"}]
    result, calls = post(tmp_path, comments, BODY)
    assert result.returncode == 0, result.stderr
    assert calls[-1]["args"][2] == "POST"


def test_a_body_without_its_marker_is_refused(tmp_path):
    result, calls = post(tmp_path, [], "## Model report without a marker\n")
    assert result.returncode == 1
    assert "marker" in result.stderr
    assert calls == []


def test_a_github_error_fails_the_step_with_the_message(tmp_path):
    result, _ = post(tmp_path, [], BODY, fail=True)
    assert result.returncode == 1
    assert "Resource not accessible" in result.stderr


@pytest.mark.parametrize("repo", ["penguins", ""])
def test_repo_must_be_owner_slash_name(tmp_path, repo):
    result = subprocess.run(
        [sys.executable, str(POSTER), "--repo", repo, "--pr", "7", "--body-file", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "owner/name" in result.stderr
