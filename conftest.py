"""Fixtures for every test: the Makefile as make itself reads it.

Test modules get these as fixtures rather than imports: pytest runs with
--import-mode=importlib, where test directories are not importable packages. This file sits
at the root rather than in tests/: a conftest there would claim the package name `tests`,
which the service's tests use for serving/tests (their root is serving/, as in the image)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def clean_make_env() -> dict[str, str]:
    """The environment without what a parent make (`make test`) passes down to sub-makes."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


@pytest.fixture(scope="session")
def make_env() -> dict[str, str]:
    return clean_make_env()


@pytest.fixture(scope="session")
def make_targets() -> set[str]:
    """Every target the Makefile defines, as make itself parses it (no recipe runs)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-pRrq", "-f", "Makefile"],
        cwd=ROOT,
        env=clean_make_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    # -q exits 1 when the default goal is out of date; 2 is a parse error.
    assert result.returncode in (0, 1), result.stderr
    targets: set[str] = set()
    not_a_target = False
    for line in result.stdout.splitlines():
        if line.startswith("# Not a target"):
            not_a_target = True
            continue
        match = re.match(r"^([A-Za-z0-9_.-]+):(?!=)", line)
        if match and not not_a_target:
            targets.add(match.group(1))
        not_a_target = False
    return targets
