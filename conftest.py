"""Hooks and fixtures for every test: the tools from outside Python a test may need (a missing
one skips it, listed at the end of `make test`; under CI=true it fails), the grouping of tests
for pytest-xdist, the Makefile as make itself reads it, and a regression model
(`regression_model_dir`) for the service's tests and the smoke test's, independent of the
committed example model.

Test modules get these as fixtures rather than imports: pytest runs with
--import-mode=importlib, where test directories are not importable packages. This file sits
at the root rather than in tests/: a conftest there would claim the package name `tests`,
which the service's tests use for serving/tests (their root is serving/, as in the image)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parent

# Every skip for want of a tool starts with this, so the summary below finds them all.
NOT_RUN = "not run here:"
# Where `make test` collects what each of its parts could not run, to print it last.
NOT_RUN_DIR = ROOT / "build" / "not-run"
# How to get each tool that `@pytest.mark.needs("tool")` may name.
GET = {
    "terraform": "install Terraform >= 1.9: https://developer.hashicorp.com/terraform/install",
    "wrk": "make system-packages (Debian/Ubuntu, as root or with sudo; macOS: brew install wrk)",
    "haproxy": "make system-packages (Debian/Ubuntu, as root or with sudo; macOS: brew install "
    "haproxy)",
}
# Test modules that share what a session fixture builds (the synthesized stacks): one group.
SHARED_SESSION = ("serving/tests/deployment/",)


def not_run(reason: str) -> NoReturn:
    """Skip for want of something this machine lacks, except under CI=true: CI runs everything."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(f"{NOT_RUN} {reason}")


@pytest.fixture(scope="session")
def not_run_here() -> Callable[[str], NoReturn]:
    """`not_run`, for a fixture that finds out for itself what this machine lacks."""
    return not_run


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("needs"):
        for tool in marker.args:
            # Debian puts daemons such as haproxy in /usr/sbin, outside a user's PATH.
            if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")):
                not_run(f"{tool} is not installed; {GET[tool]}")


# The groups `make test` starts first: the Terraform applies are minutes of the provider
# waiting, which everything else overlaps.
LONGEST_FIRST = (
    "infrastructure/tests/test_apply.py",
    "infrastructure/tests/test_terraform.py",
    "training/tests/test_pipeline.py",
    "serving/tests/container/",
    "serving/tests/deployment/",
)
# Modules whose parameters (here the Terraform modes) each get their own worker.
SPLIT_BY_PARAMETER = ("infrastructure/tests/test_apply.py",)


def xdist_group(nodeid: str) -> str:
    """The tests that must share a worker: a module's (its module-scoped fixtures, such as a
    trained workspace or a running server, are built once), a directory of SHARED_SESSION's
    (the stacks its session fixtures synthesize), or a split module's parameter."""
    module, _, rest = nodeid.partition("::")
    shared = [d for d in SHARED_SESSION if module.startswith(d)]
    if shared:
        return shared[0]
    if module in SPLIT_BY_PARAMETER and "[" in rest:
        return f"{module}[{rest.partition('[')[2].split('-')[0]}"
    return module


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        starts = [i for i, p in enumerate(LONGEST_FIRST) if item.nodeid.startswith(p)]
        return starts[0] if starts else len(LONGEST_FIRST)

    items.sort(key=rank)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test`'s scheduler: each group of `xdist_group` whole on one worker, started in
    collection order. (pytest-xdist's own `--dist loadgroup` reads `xdist_group` marks
    through an attribute pytest 9 no longer has, so it silently groups nothing.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no types
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    config.option.loadscopereorder = False
    return ByGroup(config, log)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """What did not run for want of a tool, once per reason; also written to build/not-run/
    for `make test`'s closing summary (by the xdist controller only)."""
    if hasattr(config, "workerinput"):
        return
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        message = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        if NOT_RUN in message:
            reasons[message.partition(NOT_RUN)[2].strip()] += 1
    if reasons:
        lines = [f"pytest: {count} test(s): {reason}" for reason, count in sorted(reasons.items())]
        terminalreporter.write_sep("=", "not run here, for want of a tool")
        terminalreporter.write_line("\n".join(lines))
        NOT_RUN_DIR.mkdir(parents=True, exist_ok=True)
        (NOT_RUN_DIR / "pytest.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


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


REGRESSION_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@pytest.fixture(scope="session")
def regression_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regressor fitted on scikit-learn's bundled diabetes data, written as training writes
    its artifacts: the joblib Pipeline, metadata of the contract's shape (`task:
    regression`, no classes) and a reference profile with the training predictions' bins."""
    import json

    import joblib
    import numpy as np
    from sklearn import __version__ as sklearn_version
    from sklearn.datasets import load_diabetes
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    from app.artifacts import METADATA_FILE, PROFILE_FILE, sha256_file

    frame = load_diabetes(as_frame=True).frame
    features, target = frame.drop(columns="target"), frame["target"]
    pipeline = make_pipeline(SimpleImputer(), Ridge(alpha=0.1)).fit(features, target)
    directory = tmp_path_factory.mktemp("regression")
    joblib.dump(pipeline, directory / "model.joblib")
    sha = sha256_file(directory / "model.joblib")
    margin = features.max() - features.min()
    metadata = {
        "schema_version": 1,
        "model_version": sha[:12],
        "model_file": "model.joblib",
        "model_sha256": sha,
        "task": "regression",
        "target": "target",
        "classes": [],
        "input_schema": {
            "features": [
                {
                    "name": name,
                    "type": "number",
                    "nullable": True,
                    "example": float(features[name].median()),
                    "minimum": float(features[name].min() - margin[name]),
                    "maximum": float(features[name].max() + margin[name]),
                }
                for name in features.columns
            ]
        },
        "library_versions": {"scikit-learn": sklearn_version},
    }
    predictions = pipeline.predict(features)
    edges = np.quantile(predictions, REGRESSION_QUANTILES).round(6)
    keys = ["p0", *(f"p{round(q * 100)}" for q in REGRESSION_QUANTILES), "p100"]
    shares = np.bincount(np.searchsorted(edges, predictions, side="right"), minlength=len(keys) - 1)
    profile = {
        "schema_version": 1,
        "model_sha256": sha,
        "target": "target",
        "rows": len(frame),
        "class_priors": {},
        "features": [
            {
                "name": name,
                "type": "number",
                "missing_rate": 0.0,
                "minimum": float(features[name].min()),
                "maximum": float(features[name].max()),
            }
            for name in features.columns
        ],
        "predictions": {
            "minimum": round(float(predictions.min()), 6),
            "maximum": round(float(predictions.max()), 6),
            "quantiles": dict(zip(keys[1:-1], edges.tolist(), strict=True)),
            "bins": {
                f"{low}-{high}": share
                for low, high, share in zip(
                    keys, keys[1:], (shares / len(predictions)).tolist(), strict=False
                )
            },
        },
    }
    (directory / METADATA_FILE).write_text(json.dumps(metadata), encoding="utf-8")
    (directory / PROFILE_FILE).write_text(json.dumps(profile), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def dated_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier with a date feature, trained and exported by the training stages' own
    functions on vega_datasets' cars, whose `Year` is ISO date text as a CSV holds it. Its
    task and estimator are pinned: a fork's (regression, say) cannot fit the cars' `Origin`."""
    import pandas as pd
    import yaml
    from vega_datasets import local_data  # type: ignore[import-untyped]

    from app.artifacts import EXPORT_FILE, PROFILE_FILE
    from training.data import clean
    from training.export import export
    from training.io import write_json
    from training.params import parse
    from training.prepare import split
    from training.profile import build_profile
    from training.train import fit_and_save

    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["prepare"] |= {
        "source": "data/cars.csv",
        "target": "Origin",
        "task": "classification",
        "drop_columns": ["Name"],
        "positive_class": None,
    }
    raw["train"] |= {
        "estimator": "logistic_regression",
        "hyperparameters": {"logistic_regression": {"C": 1.0, "max_iter": 1000, "solver": "sag"}},
    }
    raw["compare"].pop("metrics", None)  # the task's default
    raw["export"] |= {"random_records": 500}
    params = parse(raw)
    frame = local_data.cars()
    frame["Year"] = frame["Year"].dt.strftime("%Y-%m-%d")
    frame = clean(frame, "Origin", ["Name"])
    train, test = split(frame, "Origin", params.prepare.test_size, params.prepare.seed)
    directory = tmp_path_factory.mktemp("dated")
    _, metadata = fit_and_save(train, params, directory)
    profile = build_profile(train, metadata, params.profile.quantiles)
    write_json(directory / PROFILE_FILE, profile)
    export(
        model_path=directory / metadata["model_file"],
        metadata=metadata,
        prepared=pd.concat([train, test], ignore_index=True).drop(columns=["Origin"]),
        params=params.export.model_dump(),
        onnx_dir=directory / "onnx",
        record_path=directory / EXPORT_FILE,
    )
    return directory
