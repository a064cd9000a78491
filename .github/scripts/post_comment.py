"""Create or update the one pull-request comment that carries a given hidden marker.

Every train run edits the same comment, so a PR that is retrained ten times still has one
model report, always the latest. The comment is found by the marker on its first line and by
its author (the workflow's bot), so a human comment quoting the marker is never edited.

The GitHub API is reached through the `gh` CLI (preinstalled on GitHub-hosted runners,
authenticated by the GH_TOKEN environment variable): no HTTP client or token handling here,
and the tests substitute a fake `gh` on PATH.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_AUTHOR = "github-actions[bot]"


def gh(args: Sequence[str], stdin: str | None = None) -> str:
    result = subprocess.run(["gh", *args], input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"gh {' '.join(args[:3])} failed: {result.stderr.strip()}")
    return result.stdout


def find_comment(repo: str, pr: int, marker: str, author: str) -> int | None:
    # One compact JSON line per comment: [id, author login, first line of the body]. Only the
    # first line is fetched into the match, so a marker quoted inside a body does not count.
    listing = gh(
        [
            "api",
            "--paginate",
            f"repos/{repo}/issues/{pr}/comments",
            "--jq",
            '.[] | [.id, .user.login, (.body | split("\\n") | .[0])] | @json',
        ]
    )
    for line in listing.splitlines():
        if not line.strip():
            continue
        comment_id, login, first_line = json.loads(line)
        if login == author and first_line.strip() == marker:
            return int(comment_id)
    return None


def upsert(repo: str, pr: int, body: str, author: str) -> str:
    marker = body.split("\n", 1)[0].strip()
    if not (marker.startswith("<!--") and marker.endswith("-->")):
        raise ValueError("the comment body must start with its hidden marker line")
    payload = json.dumps({"body": body})
    existing = find_comment(repo, pr, marker, author)
    if existing is None:
        gh(
            ["api", "--method", "POST", f"repos/{repo}/issues/{pr}/comments", "--input", "-"],
            stdin=payload,
        )
        return f"created a comment on {repo}#{pr}"
    gh(
        ["api", "--method", "PATCH", f"repos/{repo}/issues/comments/{existing}", "--input", "-"],
        stdin=payload,
    )
    return f"updated comment {existing} on {repo}#{pr}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, help="owner/name")
    parser.add_argument("--pr", required=True, type=int, help="pull request number")
    parser.add_argument("--body-file", required=True, type=Path)
    parser.add_argument(
        "--author",
        default=DEFAULT_AUTHOR,
        help="login whose marked comment is edited (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if "/" not in args.repo:
        parser.error("--repo must be owner/name")
    try:
        print(upsert(args.repo, args.pr, args.body_file.read_text(encoding="utf-8"), args.author))
    except (RuntimeError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
