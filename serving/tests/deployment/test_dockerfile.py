"""What the task definition and `make serve` take from the service's Dockerfile: its final
stage as the builders resolve it, and only a safe user."""

from __future__ import annotations

from pathlib import Path

import pytest

from container.dockerfile import (
    DockerfileError,
    default_base_image,
    health_command,
    read,
    runtime_user,
    service_port,
)
from deployment.stack.application import SERVICE_DIRECTORY


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Dockerfile"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_service_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    user = runtime_user(SERVICE_DIRECTORY / "Dockerfile")
    assert int(user.split(":")[0]) > 0


def test_final_stage_user_wins(tmp_path: Path) -> None:
    dockerfile = write(tmp_path, "FROM a AS build\nUSER 1\nFROM b\nUSER 10001:10001\nCMD x\n")
    assert runtime_user(dockerfile) == "10001:10001"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("FROM a\nUSER 1000\nFROM b\nCMD x\n", "no USER"),
        ("FROM b\nCMD x\n", "no USER"),
        ("FROM b\nUSER 0\n", "is root"),
        ("FROM b\nUSER 0:1000\n", "is root"),
        ("FROM b\nUSER app\n", "numeric"),
        ("ARG UID=0\nFROM b\nARG UID\nUSER ${UID}\n", "is root"),
    ],
)
def test_unsafe_or_unverifiable_user_is_refused(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(DockerfileError, match=fragment):
        runtime_user(write(tmp_path, text))


def test_missing_dockerfile_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DockerfileError, match="not found"):
        runtime_user(tmp_path / "Dockerfile")


@pytest.mark.parametrize(
    ("text", "declared"),
    [
        ("FROM b\nVOLUME /tmp\n", True),
        ('FROM b\nVOLUME ["/data", "/tmp/"]\n', True),
        ("FROM b\nVOLUME /data /tmp\n", True),
        ("FROM a\nVOLUME /tmp\nFROM b\n", False),
        ("FROM b\nVOLUME /tmpfiles\n", False),
        ("FROM b\n", False),
    ],
)
def test_tmp_volume_declaration_is_read_from_the_final_stage(
    tmp_path: Path, text: str, declared: bool
) -> None:
    assert ("/tmp" in read(write(tmp_path, text)).volumes) is declared


def test_port_is_the_final_stages_exposed_port_with_its_arg_substituted(tmp_path: Path) -> None:
    text = "FROM a AS build\nEXPOSE 1\nFROM b\nARG PORT=9000\nEXPOSE ${PORT}\n"
    assert service_port(write(tmp_path, text)) == 9000
    assert read(write(tmp_path, text), build_args={"PORT": "9001"}).exposed_ports == (9001,)


def test_a_port_exposed_but_not_bound_is_refused(tmp_path: Path) -> None:
    """Changing SERVICE_BIND alone must fail loudly, not leave the checks probing 8000."""
    text = "FROM b\nENV SERVICE_BIND=0.0.0.0:9000\nEXPOSE 8000\n"
    with pytest.raises(DockerfileError, match="does not listen on"):
        service_port(write(tmp_path, text))
    assert service_port(write(tmp_path, text.replace("9000", "8000"))) == 8000


@pytest.mark.parametrize("text", ["FROM b\n", "FROM b\nEXPOSE 80 443\n", "FROM b\nEXPOSE 53/udp\n"])
def test_no_single_tcp_port_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(DockerfileError, match="port"):
        service_port(write(tmp_path, text))


def test_health_command_is_the_exec_form_after_the_options(tmp_path: Path) -> None:
    text = 'FROM b\nHEALTHCHECK --interval=5s \\\n    --retries=2 CMD ["probe", "-x"]\n'
    assert health_command(write(tmp_path, text)) == ["probe", "-x"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("FROM b\n", "no HEALTHCHECK"),
        ("FROM b\nHEALTHCHECK NONE\n", "no HEALTHCHECK"),
        ("FROM b\nHEALTHCHECK CMD curl -f http://localhost/\n", "exec"),
    ],
)
def test_missing_or_shell_form_health_check_is_refused(
    tmp_path: Path, text: str, fragment: str
) -> None:
    with pytest.raises(DockerfileError, match=fragment):
        health_command(write(tmp_path, text))


def test_default_base_follows_the_build_argument_through_stage_names(tmp_path: Path) -> None:
    text = "ARG BASE=pinned\nFROM img:1@sha256:abc AS pinned\nFROM ${BASE} AS build\nFROM ${BASE}\n"
    assert default_base_image(write(tmp_path, text)) == "img:1@sha256:abc"
