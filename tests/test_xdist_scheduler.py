"""`make test`'s pytest-xdist scheduler (pytest_xdist_make_scheduler in the root conftest.py)
overrides LoadScopeScheduling._split_scope, which pytest-xdist does not publish as an API (its
own loadfile and loadgroup schedulers are built the same way). These tests make the next
pytest-xdist upgrade stop and ask for it to be re-read, and prove the grouping on a real run:
a group scattered over workers would build its module fixtures (a Terraform apply, a trained
workspace) once per worker, and two workers would apply the same Terraform names at once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import defaultdict
from importlib import metadata
from pathlib import Path

from xdist.scheduler import LoadScopeScheduling

ROOT = Path(__file__).resolve().parents[1]
# The pytest-xdist release the scheduler was last read against (Pipfile.lock pins it).
VERIFIED_XDIST = "3.8.0"


def test_the_scheduler_was_verified_against_the_installed_pytest_xdist() -> None:
    assert metadata.version("pytest-xdist") == VERIFIED_XDIST, (
        f"pytest-xdist {metadata.version('pytest-xdist')} is installed; the root conftest.py's "
        f"scheduler overrides LoadScopeScheduling._split_scope as read in {VERIFIED_XDIST}. "
        "Re-read xdist/scheduler/loadscope.py (and whether --dist loadgroup works again under "
        "pytest 9), run this module, then set VERIFIED_XDIST here."
    )
    assert callable(vars(LoadScopeScheduling).get("_split_scope"))


MODULES = {
    # Two modules sharing session fixtures, as the deployment tests do: one group.
    "serving/tests/deployment/test_one.py": "def test_a(): pass\ndef test_b(): pass\n",
    "serving/tests/deployment/test_two.py": "def test_c(): pass\ndef test_d(): pass\n",
    # A module split by its parameter, as the Terraform modes are: one group per mode.
    "infrastructure/tests/test_apply.py": (
        "import pytest\n"
        "@pytest.fixture(scope='module', params=['oidc', 'access_key'])\n"
        "def mode(request): return request.param\n"
        "def test_e(mode): pass\ndef test_f(mode): pass\n"
    ),
    "tests/test_plain.py": "".join(f"def test_{n}(): pass\n" for n in "ghij"),
}


def test_each_group_runs_whole_on_one_worker(tmp_path: Path) -> None:
    shutil.copyfile(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n", encoding="utf-8")
    for path, text in MODULES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    argv = [sys.executable, "-m", "pytest", "-n", "3", "-v", "-p", "no:cacheprovider"]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    workers: dict[str, set[str]] = defaultdict(set)
    for line in result.stdout.splitlines():
        if "PASSED" in line and line.startswith("[gw"):
            worker, nodeid = line.split()[0], line.split()[-1]
            module, _, test = nodeid.partition("::")
            group = "deployment" if "/deployment/" in module else module
            if "[" in test:
                group += test[test.index("[") :]
            workers[group].add(worker)
    assert set(workers) == {
        "deployment",
        "infrastructure/tests/test_apply.py[oidc]",
        "infrastructure/tests/test_apply.py[access_key]",
        "tests/test_plain.py",
    }
    assert {group: len(found) for group, found in workers.items()} == dict.fromkeys(workers, 1)
