"""Fixtures of the infrastructure tests: the terraform binary and the provider it installs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

from .terraform import (
    Terraform,
    copy_configuration,
    find_mirror,
    registry_unreachable,
    write_cli_config,
)


@pytest.fixture(scope="session")
def terraform_binary() -> str:
    """The tests that use it carry `@pytest.mark.needs("terraform")` (the root conftest.py)."""
    binary = shutil.which("terraform")
    assert binary is not None, "a test that runs terraform is missing its needs mark"
    return binary


@pytest.fixture(scope="session")
def cli_config(
    tmp_path_factory: pytest.TempPathFactory, not_run_here: Callable[[str], NoReturn]
) -> Path | None:
    """The test-only CLI configuration: the AWS provider from this machine's mirror, or from
    the registry when there is none."""
    mirror = find_mirror()
    if mirror is None and (unreachable := registry_unreachable()):
        # A remembered "none found" is stale when the provider has come since.
        mirror = find_mirror(search_again=True)
        if mirror is None:
            not_run_here(
                "the Terraform AWS provider: no filesystem mirror of it on any mount here and "
                f"its registry is unreachable ({unreachable[:200]}); TF_PROVIDER_MIRROR=/path "
                "names a mirror"
            )
    return write_cli_config(tmp_path_factory.mktemp("terraform-cli"), mirror)


@pytest.fixture(scope="session")
def make_terraform(
    terraform_binary: str, cli_config: Path | None, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Terraform]:
    """A fresh scratch copy of infrastructure/, with terraform ready to run in it."""

    def factory(name: str) -> Terraform:
        workdir = copy_configuration(tmp_path_factory.mktemp(name) / "infrastructure")
        return Terraform(binary=terraform_binary, workdir=workdir, cli_config=cli_config)

    return factory
