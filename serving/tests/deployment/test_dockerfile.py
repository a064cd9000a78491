"""The task definition pins the user the service's Dockerfile declares, and only a safe one."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployment.stack.application import SERVICE_DIRECTORY
from deployment.stack.dockerfile import DockerfileError, declares_volume, runtime_user


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
    assert declares_volume(write(tmp_path, text), "/tmp") is declared
