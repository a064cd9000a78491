"""List (or copy aside) the files `dvc repro` changes that git tracks: dvc.lock and every stage
output declared with ``cache: false`` in dvc.yaml (metadata, metrics, report, plots data).

The train workflow commits exactly these to the PR branch; the cached outputs (the model
binary, the data splits) go to the DVC remote instead. Reading dvc.yaml, rather than keeping
a second list, means a new git-tracked output is committed without touching CI.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

OUTPUT_KINDS = ("outs", "metrics", "plots")


def git_tracked_outputs(dvc_yaml: Path) -> list[str]:
    """dvc.lock, then each `cache: false` output of each stage, in file order, without repeats."""
    spec = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}
    paths = ["dvc.lock"]
    stages: dict[str, Any] = spec.get("stages") or {}
    for stage in stages.values():
        for kind in OUTPUT_KINDS:
            for entry in stage.get(kind) or []:
                # An output is a plain path (cached) or {path: {options}}.
                if isinstance(entry, dict):
                    for path, options in entry.items():
                        if (options or {}).get("cache", True) is False and path not in paths:
                            paths.append(str(path))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    parser.add_argument(
        "--copy-to", type=Path, help="copy the files into this directory, keeping their paths"
    )
    args = parser.parse_args(argv)
    paths = git_tracked_outputs(args.dvc_yaml)
    root = args.dvc_yaml.parent
    missing = [p for p in paths if not (root / p).is_file()]
    if args.copy_to is not None:
        if missing:
            print(f"error: not produced (run `make train`): {', '.join(missing)}", file=sys.stderr)
            return 1
        shutil.rmtree(args.copy_to, ignore_errors=True)
        for path in paths:
            target = args.copy_to / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / path, target)
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
