"""The GitHub Actions identity: one variable selects OIDC roles or an IAM user with a key."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from .terraform_model import (
    OIDC_PROVIDER_ARN,
    REPO_ROOT,
    REPOSITORY,
    Scope,
    Statement,
    TerraformConfig,
    count_of,
    policy_statements,
    render,
)

OIDC_RESOURCES = {
    ("aws_iam_openid_connect_provider", "github"),
    ("aws_iam_role", "github_train"),
    ("aws_iam_role_policy", "github_train_dvc"),
    ("aws_iam_role", "github_deploy"),
    ("aws_iam_role_policy", "github_deploy"),
}
ACCESS_KEY_RESOURCES = {
    ("aws_iam_group", "github_actions"),
    ("aws_iam_group_policy", "github_actions"),
    ("aws_iam_user", "github_actions"),
    ("aws_iam_user_group_membership", "github_actions"),
    ("aws_iam_access_key", "github_actions"),
}
EXISTING_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"


def created(tf: TerraformConfig, scope: Scope) -> set[tuple[str, str]]:
    return {(type_, name) for type_, name, body in tf.iter_resources() if count_of(body, scope)}


def identity_resources(tf: TerraformConfig, scope: Scope) -> set[tuple[str, str]]:
    return {(type_, name) for type_, name in created(tf, scope) if type_.startswith("aws_iam_")}


def test_the_mode_variable_accepts_only_the_two_modes_and_defaults_to_oidc(tf):
    variable = tf.variables["github_auth"]
    assert variable["default"] == "oidc"
    (validation,) = variable["validation"]
    assert validation["condition"] == '${contains(["oidc", "access_key"], var.github_auth)}'


def test_oidc_mode_creates_the_provider_and_two_roles_and_no_user_or_key(tf, make_scope):
    assert identity_resources(tf, make_scope(github_auth="oidc")) == OIDC_RESOURCES


def test_oidc_mode_reuses_an_existing_provider_instead_of_creating_a_second(tf, make_scope):
    scope = make_scope(github_auth="oidc", existing_github_oidc_provider_arn=EXISTING_PROVIDER)
    assert identity_resources(tf, scope) == OIDC_RESOURCES - {
        ("aws_iam_openid_connect_provider", "github")
    }
    trust = policy_statements(tf, "github_deploy_trust", scope)
    assert {p for s in trust for p in s.principals} == {("Federated", (EXISTING_PROVIDER,))}


def test_access_key_mode_creates_the_user_and_its_key_and_no_oidc_resource(tf, make_scope):
    scope = make_scope(github_auth="access_key")
    assert identity_resources(tf, scope) == ACCESS_KEY_RESOURCES
    # An existing provider ARN left in the tfvars must not bring OIDC resources back.
    scope = make_scope(
        github_auth="access_key", existing_github_oidc_provider_arn=EXISTING_PROVIDER
    )
    assert identity_resources(tf, scope) == ACCESS_KEY_RESOURCES


@pytest.mark.parametrize("mode", ["oidc", "access_key"])
def test_the_bucket_exists_in_both_modes(tf, make_scope, mode):
    bucket_resources = {
        (type_, name) for type_, name, _ in tf.iter_resources() if type_.startswith("aws_s3_")
    }
    optional = {("aws_s3_bucket_logging", "dvc")}
    assert bucket_resources - optional <= created(tf, make_scope(github_auth=mode))


def test_every_identity_resource_is_counted_by_the_mode_variable(tf):
    # Anything IAM that exists regardless of the mode would be a leftover of the other mode.
    for type_, name, body in tf.iter_resources():
        if type_.startswith("aws_iam_"):
            assert "var.github_auth == " in body.get("count", ""), f"{type_}.{name}"
    for name in ("github_train_trust", "github_deploy_trust"):
        document = tf.policy_document(name)
        assert document["count"] == '${var.github_auth == "oidc" ? 1 : 0}', name


def test_oidc_provider_is_githubs_token_issuer_for_the_sts_audience(tf, make_scope):
    provider = render(tf.resource("aws_iam_openid_connect_provider", "github"), make_scope())
    assert provider["url"] == "https://token.actions.githubusercontent.com"
    assert provider["client_id_list"] == ["sts.amazonaws.com"]


def trust(
    tf: TerraformConfig,
    make_scope: Callable[..., Scope],
    name: str,
    repository: str = REPOSITORY,
) -> Statement:
    (statement,) = policy_statements(tf, name, make_scope(github_repository=repository))
    assert statement.effect == "Allow"
    assert statement.actions == ("sts:AssumeRoleWithWebIdentity",)
    assert statement.principals == (("Federated", (OIDC_PROVIDER_ARN,)),)
    assert statement.condition("StringEquals", "token.actions.githubusercontent.com:aud") == (
        "sts.amazonaws.com",
    )
    # aud and sub only, nothing that could loosen them (e.g. a ForAnyValue operator).
    assert len(statement.conditions) == 2
    return statement


def test_training_role_trusts_pull_requests_and_branches_of_this_repository_only(tf, make_scope):
    statement = trust(tf, make_scope, "github_train_trust")
    assert statement.condition("StringLike", "token.actions.githubusercontent.com:sub") == (
        f"repo:{REPOSITORY}:pull_request",
        f"repo:{REPOSITORY}:ref:refs/heads/*",
    )


def test_deploy_role_trusts_only_main_and_the_production_environment(tf, make_scope):
    statement = trust(tf, make_scope, "github_deploy_trust")
    # StringEquals: no pattern, so no other branch, tag or environment can match.
    assert statement.condition("StringEquals", "token.actions.githubusercontent.com:sub") == (
        f"repo:{REPOSITORY}:ref:refs/heads/main",
        f"repo:{REPOSITORY}:environment:production",
    )


def test_trust_subjects_follow_the_repository_variable(tf, make_scope):
    statement = trust(tf, make_scope, "github_deploy_trust", repository="another-org/fork")
    subjects = statement.condition("StringEquals", "token.actions.githubusercontent.com:sub")
    assert subjects
    assert all(subject.startswith("repo:another-org/fork:") for subject in subjects)


def test_roles_are_bound_to_their_own_trust_documents(tf):
    assert tf.resource("aws_iam_role", "github_train")["assume_role_policy"] == (
        "${data.aws_iam_policy_document.github_train_trust[0].json}"
    )
    assert tf.resource("aws_iam_role", "github_deploy")["assume_role_policy"] == (
        "${data.aws_iam_policy_document.github_deploy_trust[0].json}"
    )


@pytest.mark.parametrize("value", ["octo-org/penguins-mlops", "me/repo.name_2", "a/b"])
def test_repository_variable_accepts_owner_slash_repo(tf, value):
    assert tf.validation_pattern("github_repository").search(value)


@pytest.mark.parametrize(
    "value",
    [
        "octo-org/*",  # a wildcard would trust every repository of the owner
        "*/penguins-mlops",
        "octo-org",
        "octo-org/repo/",
        "https://github.com/octo-org/repo",
        "octo-org/repo:ref:refs/heads/main",  # would splice a subject into the trust
    ],
)
def test_repository_variable_rejects_values_that_widen_the_trust(tf, value):
    assert not tf.validation_pattern("github_repository").search(value)


# --- Outputs --------------------------------------------------------------------------------

# The names the workflows read (.github/workflows) and the README tells users to set.
WORKFLOW_VARIABLES = {"AWS_REGION", "AWS_TRAIN_ROLE_ARN", "AWS_DEPLOY_ROLE_ARN"}
WORKFLOW_SECRETS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


@pytest.mark.parametrize(
    ("output", "value"),
    [
        ("dvc_bucket_name", "${aws_s3_bucket.dvc.id}"),
        ("aws_train_role_arn", "${one(aws_iam_role.github_train[*].arn)}"),
        ("aws_deploy_role_arn", "${one(aws_iam_role.github_deploy[*].arn)}"),
        ("ci_user_name", "${one(aws_iam_user.github_actions[*].name)}"),
        ("aws_access_key_id", "${one(aws_iam_access_key.github_actions[*].id)}"),
        ("aws_secret_access_key", "${one(aws_iam_access_key.github_actions[*].secret)}"),
    ],
)
def test_outputs_expose_each_modes_values(tf, output, value):
    assert tf.outputs[output]["value"] == value


def test_only_the_secret_access_key_is_sensitive(tf):
    sensitive = {name for name, body in tf.outputs.items() if body.get("sensitive")}
    assert sensitive == {"aws_secret_access_key"}


def test_next_steps_name_what_the_workflows_read(tf):
    steps = tf.outputs["next_steps"]["value"]
    for variable in WORKFLOW_VARIABLES:
        assert f"gh variable set {variable} " in steps, variable
    for secret in WORKFLOW_SECRETS:
        assert f"gh secret set {secret} " in steps, secret
    assert "make configure-dvc BUCKET=${aws_s3_bucket.dvc.id}" in steps
    # The secret travels through a pipe: never on a command line or in shell history.
    assert "output -raw aws_secret_access_key | gh secret set AWS_SECRET_ACCESS_KEY" in steps
    for name in re.findall(r"output -raw (\w+)", steps):
        assert name in tf.outputs, name


def test_workflows_read_the_names_the_outputs_are_set_under():
    workflows = REPO_ROOT / ".github" / "workflows"
    if not workflows.is_dir():
        pytest.skip("no .github/workflows in this checkout")
    text = "\n".join(path.read_text(encoding="utf-8") for path in workflows.glob("*.y*ml"))
    for variable in WORKFLOW_VARIABLES:
        assert f"vars.{variable}" in text, variable
    for secret in WORKFLOW_SECRETS:
        assert f"secrets.{secret}" in text, secret
