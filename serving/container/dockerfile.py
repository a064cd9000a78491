"""What the service's Dockerfile declares about the running container, read in one place.

`make serve` and the tests run the image's CMD in its WORKDIR layout (bench.imagecmd); the
CDK stack takes the task definition's user, port and health check from here. The file is
parsed by dockerfile-parse, which joins continuation lines, scopes ARG and ENV to their stage
and substitutes `${VAR}` as the builders do; only the final stage (the image) counts.
"""

from __future__ import annotations

import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from dockerfile_parse import DockerfileParser
from dockerfile_parse.util import WordSplitter

_NUMERIC_USER = re.compile(r"^(\d+)(:\d+)?$")


class DockerfileError(ValueError):
    """The Dockerfile does not declare what the service's runners rely on."""


@dataclass(frozen=True)
class Image:
    """The final stage of a Dockerfile, as its builders resolve it."""

    path: Path
    workdir: str | None
    cmd: str | None
    """The last CMD's arguments, as written."""
    user: str | None
    envs: dict[str, str]
    """The environment the final stage sets (its own ENV lines and its base's, as declared)."""
    volumes: frozenset[str]
    exposed_ports: tuple[int, ...]
    healthcheck: str | None
    """The last HEALTHCHECK's arguments, options included, as written."""
    copies: tuple[tuple[str, ...], ...]
    """Each COPY's words, flags included."""
    layers: tuple[str, ...]
    """The instructions that add a filesystem layer (ADD, COPY, RUN), in order."""

    def require_cmd(self) -> list[str]:
        """The exec-form CMD (a shell would stand between the engine's signals and it)."""
        if self.cmd is None:
            raise DockerfileError(f"{self.path}: the final stage needs a CMD in exec form")
        return _exec_form(self.path, "CMD", self.cmd)

    def require_healthcheck(self) -> list[str]:
        """The exec-form HEALTHCHECK command."""
        command = None if self.healthcheck is None else _healthcheck(self.path, self.healthcheck)
        if command is None:
            raise DockerfileError(f"{self.path}: the final stage has no HEALTHCHECK CMD")
        return command

    def require_workdir(self) -> str:
        if self.workdir is None:
            raise DockerfileError(f"{self.path}: the final stage needs a WORKDIR")
        return self.workdir


def _exec_form(path: Path, instruction: str, text: str) -> list[str]:
    try:
        argv = json.loads(text)
    except json.JSONDecodeError:
        raise DockerfileError(
            f"{path}: {instruction} must use the exec (JSON array) form, not {text!r}"
        ) from None
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise DockerfileError(f"{path}: {instruction} must be a non-empty JSON array of strings")
    return argv


def _healthcheck(path: Path, value: str) -> list[str] | None:
    """The command of `HEALTHCHECK [--option=value ...] CMD [...]`."""
    options = value.strip()
    while options.startswith("--"):
        options = options.split(None, 1)[1] if " " in options else ""
    keyword, _, command = options.partition(" ")
    if keyword.upper() == "NONE":
        return None
    if keyword.upper() != "CMD":
        raise DockerfileError(f"{path}: HEALTHCHECK {value!r} has no CMD")
    return _exec_form(path, "HEALTHCHECK", command.strip())


def _port(path: Path, word: str) -> int:
    number, _, protocol = word.partition("/")
    if not number.isdigit() or protocol not in {"", "tcp"}:
        raise DockerfileError(f"{path}: EXPOSE {word!r} is not a TCP port")
    return int(number)


def _parser(path: Path, build_args: dict[str, str] | None = None) -> DockerfileParser:
    # From the file's content: given a path, dockerfile-parse takes any name that does not
    # end in "Dockerfile" for a directory.
    return DockerfileParser(
        fileobj=io.StringIO(path.read_text(encoding="utf-8")),
        env_replace=True,
        build_args=build_args or {},
    )


def read(path: Path, build_args: dict[str, str] | None = None) -> Image:
    """The final stage of the Dockerfile at `path`, with `build_args` as a build would pass."""
    if not path.is_file():
        raise DockerfileError(f"{path} not found: the service image is built from it")
    parser = _parser(path, build_args)
    stages: list[list[tuple[str, str]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        elif stages and instruction["instruction"] != "COMMENT":
            stages[-1].append((instruction["instruction"], instruction["value"]))
    if not stages:
        raise DockerfileError(f"{path} has no FROM")
    # The final stage's ARG and ENV values, for the instructions that substitute them.
    args, envs = parser.args, parser.envs
    workdir: str | None = None
    cmd: str | None = None
    user: str | None = None
    healthcheck: str | None = None
    volumes: set[str] = set()
    ports: list[int] = []
    copies: list[tuple[str, ...]] = []
    layers: list[str] = []
    for keyword, value in stages[-1]:
        words = [w for w in WordSplitter(value, args=args, envs=envs).split() if w is not None]
        if keyword in {"ADD", "COPY", "RUN"}:
            layers.append(f"{keyword} {' '.join(value.split())}")
        if keyword == "WORKDIR":
            workdir = words[0]
        elif keyword == "CMD":
            cmd = value
        elif keyword == "USER":
            user = words[0]
        elif keyword == "VOLUME":
            volumes.update(_exec_form(path, "VOLUME", value) if value.startswith("[") else words)
        elif keyword == "EXPOSE":
            ports.extend(_port(path, word) for word in words)
        elif keyword == "HEALTHCHECK":
            healthcheck = value
        elif keyword == "COPY":
            copies.append(tuple(words))
    return Image(
        path=path,
        workdir=workdir,
        cmd=cmd,
        user=user,
        envs=dict(envs),
        volumes=frozenset(v.rstrip("/") or "/" for v in volumes),
        exposed_ports=tuple(ports),
        healthcheck=healthcheck,
        copies=tuple(copies),
        layers=tuple(layers),
    )


def runtime_user(path: Path) -> str:
    """The numeric `uid[:gid]` the image runs as, refused when root or missing.

    A name cannot be checked for root without the image, hence the numeric id.
    """
    user = read(path).user
    if user is None:
        raise DockerfileError(f"{path}: the final stage has no USER, so it runs as root")
    numeric = _NUMERIC_USER.fullmatch(user)
    if numeric is None:
        raise DockerfileError(f"{path}: USER {user} must be a numeric uid[:gid]")
    if int(numeric.group(1)) == 0:
        raise DockerfileError(f"{path}: USER {user} is root")
    return user


def service_port(path: Path) -> int:
    """The one port the image exposes, which must be the one its SERVICE_BIND binds."""
    image = read(path)
    ports = image.exposed_ports
    if len(ports) != 1:
        raise DockerfileError(
            f"{path}: the final stage must EXPOSE exactly one port (the service's), not {ports}"
        )
    bind = image.envs.get("SERVICE_BIND")
    if bind is not None and bind.rpartition(":")[2] != str(ports[0]):
        raise DockerfileError(
            f"{path}: ENV SERVICE_BIND={bind} but EXPOSE {ports[0]}: the health checks and the "
            "load balancer would probe a port the service does not listen on"
        )
    return ports[0]


def health_command(path: Path) -> list[str]:
    """The image's HEALTHCHECK command, which ECS runs too (it ignores the image's)."""
    return read(path).require_healthcheck()


def default_base_image(path: Path) -> str:
    """The registry image the final stage builds on, followed through stage names (`FROM
    python-base` -> the `python-base` stage -> its image): what Dependabot bumps, and the name
    a local stand-in replaces (`make image OFFLINE_BASE=1`)."""
    parser = _parser(path)
    stages: dict[str, str] = {}
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            if len(words) >= 3 and words[-2].upper() == "AS":
                stages[words[-1]] = words[-3]
    images = parser.parent_images
    if not images:
        raise DockerfileError(f"{path} has no FROM")
    image: str = images[-1]
    seen = set()
    while image in stages and image not in seen:
        seen.add(image)
        image = stages[image]
    return image


if __name__ == "__main__":
    # `make image OFFLINE_BASE=1` asks for the base image's reference, to substitute it.
    print(default_base_image(Path(sys.argv[1])))
