"""The Train workflow's data job: the pull request's DVC-tracked data (files added with
`dvc add`), pulled with the read-only data role and handed to the training job as an artifact.

This job holds AWS credentials, so it runs the base branch's code only: the PR's head is
checked out aside (`--head`) and only its `.dvc` pointer files (paths and hashes, no code)
are copied into the base checkout, whose `.dvc/config` names the remote. The training job,
which runs the PR's code, never gets credentials for the data.

    python pr_data.py pointers --head build/ci/pr-head   # data=tracked|none (stdlib only)
    python pr_data.py pull --head build/ci/pr-head --out build/ci/data   # data=pulled|unavailable

Each writes `data=...` to $GITHUB_OUTPUT; without credentials `pull` writes a one-line notice
to $GITHUB_STEP_SUMMARY (a fork's PR gets no secrets) and succeeds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def pointer_files(head: Path) -> list[str]:
    """The `.dvc` files git tracks in the PR's head, relative to it."""
    listed = subprocess.run(
        ["git", "-C", str(head), "ls-files", "-z", "--", "*.dvc"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name]


def outputs(root: Path, pointer: str) -> list[str]:
    """The data paths a `.dvc` file names (relative to its directory), relative to `root`."""
    # Imported here: the other steps run before the environment exists, on any python3.
    import yaml

    spec = yaml.safe_load((root / pointer).read_text(encoding="utf-8")) or {}
    base = Path(pointer).parent
    return [str(base / entry["path"]) for entry in spec.get("outs") or []]


def report(output: str, summary: str | None = None) -> None:
    """A step output, and a line of the job summary, where GitHub Actions reads them."""
    print(output if summary is None else f"::notice::{summary}")
    for variable, line in (("GITHUB_OUTPUT", output), ("GITHUB_STEP_SUMMARY", summary)):
        path = os.environ.get(variable)
        if path and line:
            with Path(path).open("a", encoding="utf-8") as out:
                out.write(line + "\n")


def copy_pointers(head: Path, root: Path) -> list[str]:
    pointers = pointer_files(head)
    for name in pointers:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(head / name, root / name)
    return pointers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["pointers", "pull"])
    parser.add_argument("--head", type=Path, required=True, help="checkout of the PR's head")
    parser.add_argument("--out", type=Path, help="where `pull` copies the data (the artifact)")
    args = parser.parse_args(argv)
    if args.step == "pull" and args.out is None:
        parser.error("pull needs --out")
    root = Path.cwd()
    pointers = copy_pointers(args.head, root)
    if args.step == "pointers" or not pointers:
        print(f"DVC-tracked data in the PR: {', '.join(pointers) or 'none'}")
        report(f"data={'tracked' if pointers else 'none'}")
        return 0
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        report(
            "data=unavailable",
            f"Not retrained: the data ({', '.join(pointers)}) is tracked by DVC and this run has "
            "no credentials to pull it (a pull request from a fork gets none; re-open it from "
            "a branch of this repository, or set AWS_DATA_ROLE_ARN).",
        )
        return 0
    subprocess.run(["dvc", "pull", *pointers], cwd=root, check=True)
    for pointer in pointers:
        for path in outputs(root, pointer):
            destination = args.out / path
            destination.parent.mkdir(parents=True, exist_ok=True)
            if (root / path).is_dir():
                shutil.copytree(root / path, destination, dirs_exist_ok=True)
            else:
                shutil.copy2(root / path, destination)
    report("data=pulled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
