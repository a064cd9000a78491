"""The service's launch command and working directory, read from its Dockerfile.

`make serve`, `make bench` and the tests run exactly what the image runs. The image copies
the build context (serving/app) to `<WORKDIR>/app`, so `serving/` is the local WORKDIR.

    python -m bench.imagecmd        # from serving/: exec the image's command here
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

SERVING_DIR = Path(__file__).resolve().parent.parent
DOCKERFILE = SERVING_DIR / "app" / "Dockerfile"


@dataclass(frozen=True)
class ImageCommand:
    argv: list[str]
    workdir: str
    """The WORKDIR inside the image; locally, `SERVING_DIR` plays its part."""
    local_cwd: Path


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def read(dockerfile: Path = DOCKERFILE) -> ImageCommand:
    """The final stage's WORKDIR and exec-form CMD, checked against the local layout."""
    stages: list[list[tuple[str, str]]] = []
    for keyword, arguments in _instructions(dockerfile.read_text(encoding="utf-8")):
        if keyword == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append((keyword, arguments))
    if not stages:
        raise ValueError(f"{dockerfile} has no FROM")
    final = stages[-1]
    workdirs = [arguments for keyword, arguments in final if keyword == "WORKDIR"]
    commands = [arguments for keyword, arguments in final if keyword == "CMD"]
    if not workdirs or not commands:
        raise ValueError(f"{dockerfile}: the final stage needs a WORKDIR and a CMD")
    workdir = workdirs[-1]
    try:
        argv = json.loads(commands[-1])
    except json.JSONDecodeError:
        raise ValueError(f"{dockerfile}: CMD must use the exec (JSON array) form") from None
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise ValueError(f"{dockerfile}: CMD must be a non-empty JSON array of strings")
    copies = [arguments.split() for keyword, arguments in final if keyword == "COPY"]
    context_copied_to_app = any(
        not any(part.startswith("--from") for part in parts)
        and parts[-2:-1] == ["."]
        and parts[-1].rstrip("/") in {"app", f"{workdir.rstrip('/')}/app"}
        for parts in copies
    )
    if not context_copied_to_app:
        raise ValueError(
            f"{dockerfile}: expected `COPY . app/` into WORKDIR {workdir}; the local run "
            "(cwd serving/) mirrors that layout"
        )
    return ImageCommand(argv=argv, workdir=workdir, local_cwd=SERVING_DIR)


def main() -> None:
    command = read()
    print(f"$ cd {command.local_cwd} && {shlex.join(command.argv)}", file=sys.stderr, flush=True)
    os.chdir(command.local_cwd)
    # Replace this process, as the image's entrypoint is the server itself (signals reach it).
    os.execvp(command.argv[0], command.argv)  # noqa: S606


if __name__ == "__main__":
    main()
