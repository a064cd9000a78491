"""What no Terraform command checks: the configuration's documentation and declared defaults.

`terraform test` runs with a user's terraform.tfvars in place, which overrides every
default, so the defaults themselves (what a user who sets nothing gets) are read here from
the parsed files, with the descriptions, the example tfvars and the version constraints.
Everything about what the configuration creates and grants is checked by Terraform itself
(bootstrap.tftest.hcl) and by the apply against moto (test_apply.py).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from .terraform import INFRA_DIR, REPO_ROOT

_OPTIONS = SerializationOptions(
    with_comments=False, strip_string_quotes=True, explicit_blocks=False
)


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = hcl2.load(handle, serialization_options=_OPTIONS)
    return parsed


@cache
def blocks(kind: str) -> dict[str, Any]:
    """Every top-level block of one kind (variable, output, terraform) by name."""
    found: dict[str, Any] = {}
    for path in sorted(INFRA_DIR.glob("*.tf")):
        for block in load(path).get(kind, []):
            found.update(block if kind != "terraform" else {path.name: block})
    return found


def test_terraform_and_provider_versions_have_a_floor_and_a_ceiling():
    (terraform,) = blocks("terraform").values()
    required = terraform["required_version"]
    assert re.fullmatch(r">= \d+\.\d+\.\d+, < \d+\.\d+\.\d+", required), required
    (providers,) = terraform["required_providers"]
    aws = providers["aws"]
    assert aws["source"] == "hashicorp/aws"
    # The floor is the provider the tests run (5.100, the mirror's); the ceiling admits 6.x
    # and stops at the next major, adopted only once tried.
    floor, ceiling = re.fullmatch(r">= (\d+\.\d+), < (\d+)\.0", aws["version"]).groups()  # type: ignore[union-attr]
    assert floor == "5.100"
    assert ceiling == "7"


def test_every_variable_is_typed_and_described():
    for name, body in blocks("variable").items():
        assert body.get("type"), f"var.{name} has no type"
        assert len(body.get("description", "")) >= 20, f"var.{name} has no real description"


def test_every_output_is_described():
    for name, body in blocks("output").items():
        assert len(body.get("description", "")) >= 20, f"output {name} has no description"


def test_only_region_and_repository_must_be_set():
    required = {name for name, body in blocks("variable").items() if "default" not in body}
    assert required == {"aws_region", "github_repository"}


@pytest.mark.parametrize(
    ("variable", "default"),
    [
        ("github_auth", "oidc"),  # no long-lived key unless asked for
        ("existing_github_oidc_provider_arn", None),
        ("force_destroy", False),  # destroy refuses until the teardown opts in
        ("kms_key_arn", None),  # SSE-S3, see s3.tf
        ("access_log_bucket_name", None),
        ("cdk_qualifier", "hnb659fds"),  # `cdk bootstrap`'s own default
        ("noncurrent_version_expiration_days", 90),
        ("abort_incomplete_multipart_upload_days", 7),
    ],
)
def test_defaults_are_the_safe_documented_ones(variable, default):
    assert blocks("variable")[variable]["default"] == default


def test_the_readable_secret_is_the_one_the_stack_creates_from_cdk_json():
    """One name on both sides: the deploy identity may read the secret the stack creates."""
    context = json.loads((REPO_ROOT / "serving" / "deployment" / "cdk.json").read_text("utf-8"))
    created = context["context"]["apiKeysSecretName"] or (
        f"{context['context']['stackName']}/api-keys"
    )
    assert blocks("variable")["api_keys_secret_name"]["default"] == created


def test_tfvars_example_sets_the_required_variables_and_mentions_every_other():
    example = INFRA_DIR / "terraform.tfvars.example"
    values = load(example)
    variables = blocks("variable")
    assert set(values) == {"aws_region", "github_repository"}
    text = example.read_text(encoding="utf-8")
    for name in variables:
        assert re.search(rf"^#? ?{name}\s*=", text, re.MULTILINE), f"{name} missing"


def test_no_account_id_or_bucket_name_is_hard_coded():
    for path in INFRA_DIR.glob("*.tf"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\b\d{12}\b", text), f"{path.name}: an account id"
        assert not re.search(r'\bbucket\s*=\s*"', text), f"{path.name}: a literal bucket name"


def test_every_checkov_skip_gives_a_reason():
    skip = re.compile(r"checkov:skip=(?P<check>[A-Z0-9_]+)(?::(?P<reason>.*))?")
    found = 0
    for path in [*INFRA_DIR.glob("*.tf"), *INFRA_DIR.glob("tests/*.hcl")]:
        for line in path.read_text(encoding="utf-8").splitlines():
            if match := skip.search(line):
                found += 1
                reason = (match.group("reason") or "").strip()
                assert len(reason) >= 40, f"{path.name}: {match.group('check')} without a reason"
    assert found, "no skips found: the pattern above no longer matches the files"


# The names the workflows read and next_steps (checked in bootstrap.tftest.hcl) sets.
WORKFLOW_VARIABLES = {
    "AWS_REGION",
    "AWS_TRAIN_ROLE_ARN",
    "AWS_DATA_ROLE_ARN",
    "AWS_DEPLOY_ROLE_ARN",
}
WORKFLOW_SECRETS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_workflows_read_the_names_next_steps_sets():
    workflows = REPO_ROOT / ".github" / "workflows"
    text = "\n".join(path.read_text(encoding="utf-8") for path in workflows.glob("*.y*ml"))
    for variable in WORKFLOW_VARIABLES:
        assert f"vars.{variable}" in text, variable
    for secret in WORKFLOW_SECRETS:
        assert f"secrets.{secret}" in text, secret


def test_the_destroy_guard_depends_on_every_other_resource():
    """A plain destroy reaches the guard first only from what depends_on names
    (destroy_guard.tf): a resource left out would be deleted before the guard refuses."""
    resources: dict[str, Any] = {}
    for path in sorted(INFRA_DIR.glob("*.tf")):
        for block in load(path).get("resource", []):
            for kind, named in block.items():
                resources.update({f"{kind}.{name}": body for name, body in named.items()})
    guard = "terraform_data.destroy_guard"
    guarded = {ref.removeprefix("${").removesuffix("}") for ref in resources[guard]["depends_on"]}
    assert guarded == set(resources) - {guard}
