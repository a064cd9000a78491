"""Facts about the service image read from its Dockerfile, the one contract with serving/app."""

from __future__ import annotations

import re
from pathlib import Path

_USER = re.compile(r"^\s*USER\s+(\S+)\s*$", re.IGNORECASE)
_FROM = re.compile(r"^\s*FROM\s", re.IGNORECASE)
_NUMERIC_USER = re.compile(r"^(\d+)(:\d+)?$")
_VOLUME = re.compile(r"^\s*VOLUME\s+(.+?)\s*$", re.IGNORECASE)


class DockerfileError(ValueError):
    """The Dockerfile does not meet what the deployment relies on."""


def runtime_user(dockerfile: Path) -> str:
    """The numeric `uid[:gid]` the image's final stage runs as.

    The task definition sets the same user, so ECS itself refuses to start the container as
    root even if a later image drops its USER line. A name cannot be checked for root here,
    hence the numeric id.
    """
    if not dockerfile.is_file():
        raise DockerfileError(f"{dockerfile} not found: the service image is built from it")
    user: str | None = None
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if _FROM.match(line):
            user = None  # each stage starts as root again
        elif match := _USER.match(line):
            user = match.group(1)
    if user is None:
        raise DockerfileError(f"{dockerfile}: the final stage has no USER, so it runs as root")
    numeric = _NUMERIC_USER.fullmatch(user)
    if numeric is None:
        raise DockerfileError(f"{dockerfile}: USER {user} must be a numeric uid[:gid]")
    if int(numeric.group(1)) == 0:
        raise DockerfileError(f"{dockerfile}: USER {user} is root")
    return user


def declares_volume(dockerfile: Path, path: str) -> bool:
    """Whether the final stage declares `VOLUME path`.

    Fargate creates a task volume mounted over a path as an empty root-owned 0755 directory,
    which a non-root user cannot write, unless the image declares that path a VOLUME: then the
    directory's content and permissions (1777 for /tmp) are copied into the volume.
    """
    declared: set[str] = set()
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if _FROM.match(line):
            declared = set()
        elif match := _VOLUME.match(line):
            arguments = match.group(1)
            if arguments.startswith("["):
                declared.update(re.findall(r'"([^"]+)"', arguments))
            else:
                declared.update(arguments.split())
    return path.rstrip("/") in {volume.rstrip("/") for volume in declared}
