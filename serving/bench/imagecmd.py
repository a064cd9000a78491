"""The service's launch command and working directory, read from its Dockerfile.

`make serve`, `make bench` and the tests run exactly what the image runs. The image puts the
build context (serving/app) at `<WORKDIR>/app`, so `serving/` is the local WORKDIR.

    python -m bench.imagecmd        # from serving/: exec the image's command here
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from container import dockerfile

SERVING_DIR = Path(__file__).resolve().parent.parent
DOCKERFILE = SERVING_DIR / "app" / "Dockerfile"


def read(path: Path = DOCKERFILE) -> list[str]:
    """The final stage's exec-form CMD, its WORKDIR checked against the local layout (where
    `SERVING_DIR` plays the WORKDIR's part)."""
    image = dockerfile.read(path)
    argv, workdir = image.require_cmd(), image.require_workdir()
    # The app lands in WORKDIR/app (from the context or from a build stage), as serving/app
    # sits in serving/ here.
    targets = {"app", f"{workdir.rstrip('/')}/app"}
    if not any(words[-1].rstrip("/") in targets for words in image.copies):
        raise dockerfile.DockerfileError(
            f"{path}: expected the app copied to {workdir.rstrip('/')}/app (`COPY ... app/` "
            "after WORKDIR); the local run (cwd serving/) mirrors that layout"
        )
    return argv


def main() -> None:
    argv = read()
    print(f"$ cd {SERVING_DIR} && {shlex.join(argv)}", file=sys.stderr, flush=True)
    os.chdir(SERVING_DIR)
    # Replace this process, as the image's entrypoint is the server itself (signals reach it).
    os.execvp(argv[0], argv)  # noqa: S606


if __name__ == "__main__":
    main()
