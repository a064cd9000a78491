"""The configuration as a whole: versions, variables, example values, formatting, scanner skips."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .terraform_model import INFRA_DIR, load_hcl

TERRAFORM = shutil.which("terraform")


def test_terraform_and_aws_provider_versions_are_pinned(tf):
    (block,) = tf.terraform
    required = block["required_version"]
    # A floor and a ceiling: a new major Terraform release is adopted deliberately.
    assert ">=" in required, required
    assert re.search(r"<\s*\d", required), required
    (providers,) = block["required_providers"]
    assert providers["aws"]["source"] == "hashicorp/aws"
    # A pessimistic constraint on the major version: minor releases only.
    assert re.fullmatch(r"~> \d+\.\d+", providers["aws"]["version"]), providers["aws"]["version"]


def test_provider_region_comes_from_a_variable(tf):
    assert tf.providers["aws"]["region"] == "${var.aws_region}"


def test_every_variable_is_typed_and_described(tf):
    for name, body in tf.variables.items():
        assert body.get("type"), f"var.{name} has no type"
        assert len(body.get("description", "")) >= 20, f"var.{name} has no real description"


def test_required_variables_are_exactly_region_and_repository(tf):
    required = {name for name, body in tf.variables.items() if "default" not in body}
    assert required == {"aws_region", "github_repository"}


@pytest.mark.parametrize(
    ("variable", "value", "valid"),
    [
        ("aws_region", "eu-west-1", True),
        ("aws_region", "us-gov-west-1", True),
        ("aws_region", "cn-north-1", True),
        ("aws_region", "EU-WEST-1", False),
        ("aws_region", "eu-west", False),
        ("bucket_name_prefix", "mlops-dvc-", True),
        ("bucket_name_prefix", "Mlops-dvc-", False),  # S3 names are lowercase
        ("bucket_name_prefix", "a" * 38, False),  # 38 + S3's 26-character suffix > 63
        ("cdk_qualifier", "hnb659fds", True),
        ("cdk_qualifier", "qualifier-11", False),  # `cdk bootstrap` allows at most 10
        ("name_prefix", "mlops-template", True),
        ("name_prefix", "a" * 41, False),  # with "-github-actions" over IAM's 64
    ],
)
def test_variable_validations_accept_and_reject_as_documented(tf, variable, value, valid):
    assert bool(tf.validation_pattern(variable).search(value)) is valid


def test_every_output_is_described(tf):
    for name, body in tf.outputs.items():
        assert body.get("description"), f"output {name} has no description"


def test_tfvars_example_sets_the_required_variables_and_only_declared_ones(tf):
    example = INFRA_DIR / "terraform.tfvars.example"
    values = load_hcl(example)
    assert {"aws_region", "github_repository"} <= set(values)
    assert set(values) <= set(tf.variables)
    # Every variable is at least mentioned, so the example documents the knobs.
    text = example.read_text(encoding="utf-8")
    for name in tf.variables:
        assert re.search(rf"^#? ?{name}\s*=", text, re.MULTILINE), f"{name} missing"


def test_no_account_id_or_bucket_name_is_hard_coded():
    for path in INFRA_DIR.glob("*.tf"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\b\d{12}\b", text), f"{path.name}: an account id"
        assert not re.search(r'\bbucket\s*=\s*"', text), f"{path.name}: a literal bucket name"


def test_every_checkov_skip_gives_a_reason():
    skip = re.compile(r"checkov:skip=(?P<check>[A-Z0-9_]+)(?::(?P<reason>.*))?")
    found = 0
    for path in INFRA_DIR.glob("*.tf"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if match := skip.search(line):
                found += 1
                reason = (match.group("reason") or "").strip()
                assert len(reason) >= 40, f"{path.name}: {match.group('check')} without a reason"
    assert found, "no skips found: the pattern above no longer matches the files"


@pytest.mark.skipif(TERRAFORM is None, reason="no terraform binary on PATH")
def test_terraform_files_are_formatted():
    assert TERRAFORM is not None
    result = subprocess.run(
        [TERRAFORM, "fmt", "-check", "-recursive", "-diff", "-no-color", str(INFRA_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"run `make infra-fmt`:\n{result.stdout}{result.stderr}"
