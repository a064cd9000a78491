"""The container engine and image `make image`, the tests and `make rollout-test` use.

    python -m container.engine      # from serving/: print the engine, or nothing

The Makefile asks this module (standard library only, so no environment is needed) and passes
CONTAINER_ENGINE and CONTAINER_IMAGE down, so every caller makes the same choice.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

# The tag `make image` builds; CONTAINER_IMAGE overrides it.
DEFAULT_IMAGE = "prediction-service:local"
# podman's settings for this kind of machine (runc, ulimits), which the Makefile exports too.
PODMAN_CONF = Path(__file__).with_name("containers.conf")


def detect() -> str | None:
    """CONTAINER_ENGINE, else docker when its daemon answers, else podman when installed.

    For podman, CONTAINERS_CONF is set to the project's containers.conf unless it names
    another, as the Makefile sets it, so that `pytest` alone runs containers as `make` does.
    """
    found = os.environ.get("CONTAINER_ENGINE") or _installed()
    if found is not None and Path(found).name == "podman":
        os.environ.setdefault("CONTAINERS_CONF", str(PODMAN_CONF))
    return found


def _installed() -> str | None:
    if shutil.which("docker"):
        with contextlib.suppress(subprocess.TimeoutExpired):
            answered = subprocess.run(["docker", "version"], capture_output=True, timeout=10)
            if answered.returncode == 0:
                return "docker"
    return "podman" if shutil.which("podman") else None


def image() -> str:
    """The image tag to run."""
    return os.environ.get("CONTAINER_IMAGE", DEFAULT_IMAGE)


if __name__ == "__main__":
    print(detect() or "")
