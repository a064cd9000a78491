"""The container engine and image the tests and `make rollout-test` use, chosen as `make image`
chooses them (the Makefile passes CONTAINER_ENGINE and CONTAINER_IMAGE down)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

# The tag `make image` builds; CONTAINER_IMAGE overrides it.
DEFAULT_IMAGE = "prediction-service:local"


def detect() -> str | None:
    """CONTAINER_ENGINE, else docker when its daemon answers, else podman when installed."""
    if configured := os.environ.get("CONTAINER_ENGINE"):
        return configured
    if shutil.which("docker"):
        with contextlib.suppress(subprocess.TimeoutExpired):
            answered = subprocess.run(["docker", "version"], capture_output=True, timeout=10)
            if answered.returncode == 0:
                return "docker"
    return "podman" if shutil.which("podman") else None


def image() -> str:
    """The image tag to run."""
    return os.environ.get("CONTAINER_IMAGE", DEFAULT_IMAGE)
