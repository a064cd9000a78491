"""Terraform's own checks: fmt, init from the provider constraint, validate, `terraform test`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from .terraform import INFRA_DIR, Terraform

pytestmark = [pytest.mark.slow, pytest.mark.needs("terraform")]

SUITE = INFRA_DIR / "tests" / "bootstrap.tftest.hcl"

# What a user's terraform.tfvars may hold after following docs/infrastructure.md (access-key
# setup, an existing OIDC provider, the teardown's force_destroy, a KMS key, logs, other names).
# `terraform test` reads it too: every run must set what it depends on, or this changes
# the outcome.
USER_TFVARS = {
    "aws_region": "us-east-2",
    "github_repository": "someone-else/their-fork",
    "github_auth": "access_key",
    "existing_github_oidc_provider_arn": (
        "arn:aws:iam::999999999999:oidc-provider/token.actions.githubusercontent.com"
    ),
    "name_prefix": "their-prefix",
    "cdk_qualifier": "theirs",
    "bucket_name_prefix": "their-dvc-",
    "noncurrent_version_expiration_days": 30,
    "abort_incomplete_multipart_upload_days": 2,
    "kms_key_arn": "arn:aws:kms:us-east-2:999999999999:key/11111111-2222-3333-4444-555555555555",
    "access_log_bucket_name": "their-logs",
    "access_log_prefix": "logs/",
    "force_destroy": True,
    "tags": {"CostCenter": "theirs"},
}


@pytest.fixture(scope="module")
def initialised(make_terraform: Callable[[str], Terraform]) -> Terraform:
    """infrastructure/ as committed, plus a user's terraform.tfvars, after `terraform init`."""
    terraform = make_terraform("native")
    # The JSON form of terraform.tfvars, which Terraform and `terraform test` read alike.
    (terraform.workdir / "terraform.tfvars.json").write_text(json.dumps(USER_TFVARS), "utf-8")
    terraform.run("init", "-backend=false", "-input=false")
    return terraform


def test_terraform_files_are_formatted(terraform_binary):
    terraform = Terraform(binary=terraform_binary, workdir=INFRA_DIR, cli_config=None)
    result = terraform.run("fmt", "-check", "-recursive", "-diff", check=False)
    assert result.returncode == 0, (
        f"run `terraform fmt -recursive infrastructure`:\n{result.stdout}{result.stderr}"
    )


def test_init_installs_a_provider_the_constraint_admits_and_the_configuration_validates(
    initialised,
):
    lock = (initialised.workdir / ".terraform.lock.hcl").read_text(encoding="utf-8")
    version = re.search(r'hashicorp/aws" \{\s*version\s*=\s*"([^"]+)"', lock)
    assert version, lock
    assert int(version.group(1).split(".")[0]) in {5, 6}, version.group(1)
    result = initialised.run("validate")
    assert "The configuration is valid" in result.stdout


def test_native_suite_passes_whatever_the_users_tfvars_hold(initialised):
    runs = len(re.findall(r'^run "', SUITE.read_text(encoding="utf-8"), re.MULTILINE))
    result = initialised.run("test", check=False, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    # Every run passed: none skipped, none left out.
    assert f"Success! {runs} passed, 0 failed." in output, output[-8000:]
