"""What the CI identities may do: DVC under the bucket's prefix, and assume the CDK roles."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from .terraform_model import (
    ACCOUNT_ID,
    BUCKET,
    INFRA_DIR,
    REGION,
    REPO_ROOT,
    Scope,
    Statement,
    TerraformConfig,
    document_name,
    grants,
    policy_statements,
    render,
)

BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
DVC_OBJECTS = f"{BUCKET_ARN}/dvc/*"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/0b5e3f5c-1111-2222-3333-444455556666"

DVC_READ = {
    ("s3:ListBucket", BUCKET_ARN),
    ("s3:GetBucketLocation", BUCKET_ARN),
    ("s3:GetObject", DVC_OBJECTS),
}
DVC_WRITE = {
    ("s3:PutObject", DVC_OBJECTS),
    ("s3:DeleteObject", DVC_OBJECTS),
    ("s3:AbortMultipartUpload", DVC_OBJECTS),
    ("s3:ListMultipartUploadParts", DVC_OBJECTS),
}


def cdk_role_arns(
    qualifier: str = "hnb659fds",
    account: str = ACCOUNT_ID,
    region: str = REGION,
    partition: str = "aws",
) -> set[str]:
    return {
        f"arn:{partition}:iam::{account}:role/cdk-{qualifier}-{role}-role-{account}-{region}"
        for role in ("deploy", "file-publishing", "image-publishing", "lookup")
    }


CDK_ASSUME = {("sts:AssumeRole", arn) for arn in cdk_role_arns()}

# Every policy an identity gets, by the resource that attaches it.
ATTACHMENTS = {
    ("aws_iam_role_policy", "github_train_dvc"): DVC_READ | DVC_WRITE,
    ("aws_iam_role_policy", "github_deploy"): DVC_READ | CDK_ASSUME,
    ("aws_iam_group_policy", "github_actions"): DVC_READ | DVC_WRITE | CDK_ASSUME,
}


def attached_document(tf: TerraformConfig, type_: str, name: str) -> str:
    return document_name(tf.resource(type_, name)["policy"])


@pytest.mark.parametrize(("type_", "name"), list(ATTACHMENTS))
def test_each_identity_gets_exactly_its_permissions(tf, make_scope, type_, name):
    statements = policy_statements(tf, attached_document(tf, type_, name), make_scope())
    assert grants(statements) == ATTACHMENTS[(type_, name)]


def test_training_cannot_deploy_and_deploying_cannot_write_dvc(tf, make_scope):
    train = grants(policy_statements(tf, "dvc_read_write", make_scope()))
    deploy = grants(policy_statements(tf, "dvc_read_and_cdk_deploy", make_scope()))
    assert not {action for action, _ in train} & {"sts:AssumeRole"}
    assert not deploy & DVC_WRITE


def test_policies_attach_to_the_identity_of_their_mode(tf):
    assert tf.resource("aws_iam_role_policy", "github_train_dvc")["role"] == (
        "${aws_iam_role.github_train[0].id}"
    )
    assert tf.resource("aws_iam_role_policy", "github_deploy")["role"] == (
        "${aws_iam_role.github_deploy[0].id}"
    )
    assert tf.resource("aws_iam_group_policy", "github_actions")["group"] == (
        "${aws_iam_group.github_actions[0].name}"
    )


def test_the_access_key_user_gets_permissions_only_through_its_group(tf):
    for type_ in ("aws_iam_user_policy", "aws_iam_user_policy_attachment", "aws_iam_policy"):
        assert type_ not in tf.resources, f"{type_}: permissions belong to the group"
    membership = tf.resource("aws_iam_user_group_membership", "github_actions")
    assert membership["user"] == "${aws_iam_user.github_actions[0].name}"
    assert membership["groups"] == ["${aws_iam_group.github_actions[0].name}"]


def test_listing_is_limited_to_the_dvc_prefix(tf, make_scope):
    statements = policy_statements(tf, "dvc_read", make_scope())
    (listing,) = [s for s in statements if "s3:ListBucket" in s.actions]
    assert listing.condition("StringLike", "s3:prefix") == ("dvc", "dvc/*")


def test_dvc_prefix_is_the_one_make_configure_dvc_writes(tf, make_scope):
    # `make configure-dvc BUCKET=...` points DVC at s3://BUCKET/dvc: the grants above must
    # cover exactly that prefix, or every dvc push/pull from CI is denied.
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r'remote modify storage url "s3://\$\(BUCKET\)/([^"]+)"', makefile)
    assert match, "configure-dvc no longer sets the remote URL the way this test expects"
    assert match.group(1) == render(tf.locals["dvc_prefix"], make_scope())
    remote = render(tf.outputs["dvc_remote_url"]["value"], make_scope())
    assert remote == f"s3://{BUCKET}/{match.group(1)}"


def test_deployment_may_assume_exactly_the_four_cdk_bootstrap_roles(tf, make_scope):
    statements = policy_statements(tf, "cdk_deploy", make_scope())
    assert grants(statements) == CDK_ASSUME


def test_cdk_role_arns_follow_partition_account_region_and_qualifier(tf, make_scope):
    scope = make_scope(
        refs={
            "data.aws_partition.current.partition": "aws-cn",
            "data.aws_caller_identity.current.account_id": "210987654321",
            "data.aws_region.current.region": "cn-north-1",
        },
        cdk_qualifier="custom01",
    )
    resources = {r for s in policy_statements(tf, "cdk_deploy", scope) for r in s.resources}
    assert resources == cdk_role_arns("custom01", "210987654321", "cn-north-1", "aws-cn")


def test_cdk_qualifier_defaults_to_the_cdk_default(tf):
    assert tf.variables["cdk_qualifier"]["default"] == "hnb659fds"


def test_no_kms_permission_without_a_customer_key(tf, make_scope):
    for name in tf.data["aws_iam_policy_document"]:
        statements = policy_statements(tf, name, make_scope())
        assert not [a for s in statements for a in s.actions if a.startswith("kms:")], name


def test_kms_permissions_cover_exactly_what_s3_needs_on_the_given_key(tf, make_scope):
    scope = make_scope(kms_key_arn=KMS_KEY)
    via_s3 = (f"s3.{REGION}.amazonaws.com",)
    read = policy_statements(tf, "dvc_read", scope)
    write = policy_statements(tf, "dvc_read_write", scope)
    assert {g for g in grants(read) if g[0].startswith("kms:")} == {("kms:Decrypt", KMS_KEY)}
    assert {g for g in grants(write) if g[0].startswith("kms:")} == {
        ("kms:Decrypt", KMS_KEY),
        ("kms:GenerateDataKey", KMS_KEY),
    }
    for statement in write:
        if any(action.startswith("kms:") for action in statement.actions):
            assert statement.condition("StringEquals", "kms:ViaService") == via_s3


def all_statements(
    tf: TerraformConfig, make_scope: Callable[..., Scope]
) -> Iterator[tuple[str, Statement]]:
    """Every statement of every policy document, with and without a customer key."""
    for scope in (make_scope(), make_scope(kms_key_arn=KMS_KEY)):
        for name in tf.data["aws_iam_policy_document"]:
            for statement in policy_statements(tf, name, scope):
                yield name, statement


def test_no_statement_grants_a_wildcard_action(tf, make_scope):
    for name, statement in all_statements(tf, make_scope):
        assert not statement.not_actions, f"{name}: NotAction grants everything else"
        if statement.effect == "Allow":
            wildcards = [a for a in statement.actions if "*" in a or "?" in a]
            assert not wildcards, f"{name} {statement.sid}: {wildcards}"


def test_wildcard_actions_appear_only_in_the_bucket_policys_denies(tf, make_scope):
    # A Deny over "s3:*" is the strict form: listing actions would leave the rest allowed
    # over plain HTTP. Anywhere else a wildcard action is a grant too wide to review.
    for name, statement in all_statements(tf, make_scope):
        if any("*" in action for action in statement.actions):
            assert (name, statement.effect, statement.actions) == ("dvc_bucket", "Deny", ("s3:*",))


def test_no_statement_grants_on_a_wildcard_resource(tf, make_scope):
    for name, statement in all_statements(tf, make_scope):
        assert not statement.not_resources, f"{name}: NotResource grants everything else"
        if statement.effect != "Allow":
            continue
        for resource in statement.resources:
            # The one wildcard allowed: object keys under the DVC prefix of this bucket.
            assert "*" not in resource or resource == DVC_OBJECTS, f"{name}: {resource}"
            assert resource.startswith("arn:"), f"{name}: {resource}"


def test_every_policy_is_a_policy_document_the_tests_read(tf):
    # Raw JSON or jsonencode() would bypass every structural check in this file.
    for type_, name, body in tf.iter_resources():
        for attribute in ("policy", "assume_role_policy"):
            if attribute in body:
                document_name(body[attribute])
                assert document_name(body[attribute]) in tf.data["aws_iam_policy_document"], (
                    type_,
                    name,
                )
    for path in INFRA_DIR.glob("*.tf"):
        text = path.read_text(encoding="utf-8")
        assert "jsonencode" not in text, path.name
        assert "aws_iam_policy_attachment" not in text, path.name
        # AWS managed policies (arn:aws:iam::aws:policy/...) are far wider than needed.
        assert "iam::aws:policy/" not in text, path.name
