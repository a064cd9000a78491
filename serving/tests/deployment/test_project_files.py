"""The CLI pin, cdk.json, and aws-cdk-lib installed intact."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib import metadata
from pathlib import Path

from .conftest import CDK_JSON, DEPLOYMENT_DIR


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


def test_aws_cdk_lib_files_are_as_its_record_says_so_no_dependency_overwrote_them() -> None:
    """The Makefile reinstalls aws-cdk-lib after its dependencies because one of them ships a
    file of the same name; this fails when that order is lost."""
    changed = []
    for file in metadata.distribution("aws-cdk-lib").files or ():
        if file.hash is None:  # the RECORD itself, and files written at install time
            continue
        digest = hashlib.sha256(Path(str(file.locate())).read_bytes()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != file.hash.value:
            changed.append(str(file))
    assert changed == []


def test_outputs_file_and_build_output_are_git_ignored() -> None:
    ignored = (DEPLOYMENT_DIR / ".gitignore").read_text(encoding="utf-8").split()
    assert {"cdk.out/", "node_modules/", "cdk-outputs.json"} <= set(ignored)
