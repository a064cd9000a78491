"""Fixtures of the infrastructure tests: the terraform binary and the provider it installs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .terraform import Terraform, copy_configuration, find_mirror, write_cli_config


@pytest.fixture(scope="session")
def terraform_binary() -> str:
    """The tests that use it carry `@pytest.mark.needs("terraform")` (the root conftest.py)."""
    binary = shutil.which("terraform")
    assert binary is not None, "a test that runs terraform is missing its needs mark"
    return binary


@pytest.fixture(scope="session")
def cli_config(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The test-only CLI configuration: the AWS provider from this machine's mirror."""
    return write_cli_config(tmp_path_factory.mktemp("terraform-cli"), find_mirror())


@pytest.fixture(scope="session")
def make_terraform(
    terraform_binary: str, cli_config: Path | None, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Terraform]:
    """A fresh scratch copy of infrastructure/, with terraform ready to run in it."""

    def factory(name: str) -> Terraform:
        workdir = copy_configuration(tmp_path_factory.mktemp(name) / "infrastructure")
        return Terraform(binary=terraform_binary, workdir=workdir, cli_config=cli_config)

    return factory
