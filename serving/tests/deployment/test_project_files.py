"""The CLI pin, cdk.json, and the environment check that keeps aws-cdk-lib intact."""

from __future__ import annotations

import importlib.util
import json
import re
from importlib import metadata
from types import ModuleType

from .conftest import CDK_JSON, DEPLOYMENT_DIR

REPO_ROOT = DEPLOYMENT_DIR.parents[1]


def load_repair_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "repair_cdk_lib", DEPLOYMENT_DIR / "repair_cdk_lib.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cdk_cli_is_pinned_to_an_exact_2x_release_in_package_and_lock() -> None:
    package = json.loads((DEPLOYMENT_DIR / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((DEPLOYMENT_DIR / "package-lock.json").read_text(encoding="utf-8"))
    pinned = package["devDependencies"]["aws-cdk"]
    assert re.fullmatch(r"2\.\d+\.\d+", pinned), (
        "pin an exact 2.x version (aws-cdk@3 is deprecated)"
    )
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == pinned
    assert lock["packages"][""]["devDependencies"]["aws-cdk"] == pinned


def test_cdk_json_runs_the_app_with_serving_on_the_import_path() -> None:
    assert CDK_JSON["app"] == "PYTHONPATH=.. python3 app.py"
    assert (DEPLOYMENT_DIR / "app.py").is_file()


def test_cdk_json_carries_the_feature_flags_cdk_init_writes() -> None:
    flags = {key: value for key, value in CDK_JSON["context"].items() if key.startswith("@")}
    assert len(flags) > 50
    # The ones this stack relies on.
    assert flags["@aws-cdk/aws-ec2:restrictDefaultSecurityGroup"] is True
    assert flags["@aws-cdk/aws-ecs-patterns:secGroupsDisablesImplicitOpenListener"] is True


def test_aws_cdk_lib_files_are_not_overwritten_by_another_package() -> None:
    assert load_repair_script().overwritten_files() == []


def test_repair_reinstalls_the_exact_version_and_hashes_of_pipfile_lock() -> None:
    requirement: str = load_repair_script().locked_requirement(REPO_ROOT / "Pipfile.lock")
    installed = metadata.version("aws-cdk-lib")
    assert requirement.startswith(f"aws-cdk-lib=={installed} --hash=sha256:")


def test_outputs_file_and_build_output_are_git_ignored() -> None:
    ignored = (DEPLOYMENT_DIR / ".gitignore").read_text(encoding="utf-8").split()
    assert {"cdk.out/", "node_modules/", "cdk-outputs.json"} <= set(ignored)
