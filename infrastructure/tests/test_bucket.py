"""The DVC bucket: private, owner-enforced, versioned, encrypted, TLS-only, with lifecycle."""

from __future__ import annotations

from typing import Any

import pytest

from .terraform_model import (
    BUCKET,
    PARTITION,
    TerraformConfig,
    count_of,
    policy_statements,
    render,
)

BUCKET_REF = "${aws_s3_bucket.dvc.id}"
BUCKET_ARN = f"arn:{PARTITION}:s3:::{BUCKET}"


def test_bucket_name_is_generated_from_the_prefix_variable(tf):
    bucket = tf.resource("aws_s3_bucket", "dvc")
    assert bucket["bucket_prefix"] == "${var.bucket_name_prefix}"
    assert "bucket" not in bucket, "a fixed bucket name would collide across forks and accounts"


def test_force_destroy_is_off_by_default(tf):
    assert tf.resource("aws_s3_bucket", "dvc")["force_destroy"] == "${var.force_destroy}"
    assert tf.variables["force_destroy"]["default"] is False


def test_dvc_is_the_only_bucket(tf):
    assert set(tf.resources["aws_s3_bucket"]) == {"dvc"}


def test_every_bucket_setting_applies_to_the_dvc_bucket(tf):
    settings = {
        (type_, name): body["bucket"]
        for type_, name, body in tf.iter_resources()
        if type_.startswith("aws_s3_bucket_")
    }
    assert settings, "no bucket settings found"
    assert set(settings.values()) == {BUCKET_REF}, settings


def test_all_four_public_access_blocks_are_on_unconditionally(tf):
    block = tf.resource("aws_s3_bucket_public_access_block", "dvc")
    for setting in (
        "block_public_acls",
        "ignore_public_acls",
        "block_public_policy",
        "restrict_public_buckets",
    ):
        # The literal `true`, not a variable someone could turn off.
        assert block[setting] is True, setting
    assert "count" not in block


def test_acls_are_disabled_by_bucket_owner_enforced_ownership(tf):
    (rule,) = tf.resource("aws_s3_bucket_ownership_controls", "dvc")["rule"]
    assert rule == {"object_ownership": "BucketOwnerEnforced"}
    assert "aws_s3_bucket_acl" not in tf.resources


def test_versioning_is_enabled(tf):
    versioning = tf.resource("aws_s3_bucket_versioning", "dvc")
    assert versioning["versioning_configuration"] == [{"status": "Enabled"}]
    assert "count" not in versioning


def test_encryption_defaults_to_sse_s3(tf, make_scope):
    (rule,) = tf.resource("aws_s3_bucket_server_side_encryption_configuration", "dvc")["rule"]
    rendered = render(rule, make_scope())
    (default,) = rendered["apply_server_side_encryption_by_default"]
    assert default == {"sse_algorithm": "AES256", "kms_master_key_id": None}
    assert rendered["bucket_key_enabled"] is False


def test_encryption_uses_the_customer_key_with_a_bucket_key_when_one_is_given(tf, make_scope):
    key = "arn:aws:kms:eu-west-1:123456789012:key/0b5e3f5c-1111-2222-3333-444455556666"
    (rule,) = tf.resource("aws_s3_bucket_server_side_encryption_configuration", "dvc")["rule"]
    rendered = render(rule, make_scope(kms_key_arn=key))
    (default,) = rendered["apply_server_side_encryption_by_default"]
    assert default == {"sse_algorithm": "aws:kms", "kms_master_key_id": key}
    assert rendered["bucket_key_enabled"] is True


def test_bucket_policy_is_the_tls_only_document(tf):
    policy = tf.resource("aws_s3_bucket_policy", "dvc")
    assert policy["bucket"] == BUCKET_REF
    assert policy["policy"] == "${data.aws_iam_policy_document.dvc_bucket.json}"


def test_bucket_policy_denies_every_request_without_tls(tf, make_scope):
    statements = policy_statements(tf, "dvc_bucket", make_scope())
    insecure = [s for s in statements if s.condition("Bool", "aws:SecureTransport") == ("false",)]
    assert len(insecure) == 1, statements
    (statement,) = insecure
    assert statement.effect == "Deny"
    assert statement.actions == ("s3:*",)
    assert set(statement.resources) == {BUCKET_ARN, f"{BUCKET_ARN}/*"}
    assert statement.principals == (("*", ("*",)),)
    assert len(statement.conditions) == 1


def test_bucket_policy_denies_tls_older_than_1_2(tf, make_scope):
    statements = policy_statements(tf, "dvc_bucket", make_scope())
    (statement,) = [s for s in statements if s.condition("NumericLessThan", "s3:TlsVersion")]
    assert statement.effect == "Deny"
    assert statement.condition("NumericLessThan", "s3:TlsVersion") == ("1.2",)
    assert set(statement.resources) == {BUCKET_ARN, f"{BUCKET_ARN}/*"}


def test_bucket_policy_grants_nothing(tf, make_scope):
    # Access comes from the CI identities' own policies; an Allow here with a "*" principal
    # would be the classic way to make a bucket public.
    statements = policy_statements(tf, "dvc_bucket", make_scope())
    assert {s.effect for s in statements} == {"Deny"}


def _lifecycle_rule(tf: TerraformConfig, rule_id: str) -> dict[str, Any]:
    lifecycle = tf.resource("aws_s3_bucket_lifecycle_configuration", "dvc")
    assert lifecycle["bucket"] == BUCKET_REF
    rules: list[dict[str, Any]] = [r for r in lifecycle["rule"] if r["id"] == rule_id]
    (rule,) = rules
    assert rule["status"] == "Enabled"
    # An empty filter: the rule covers the whole bucket.
    assert rule["filter"] == [{}]
    return rule


def test_noncurrent_versions_expire_after_the_configured_days(tf):
    rule = _lifecycle_rule(tf, "expire-noncurrent-versions")
    assert rule["noncurrent_version_expiration"] == [
        {"noncurrent_days": "${var.noncurrent_version_expiration_days}"}
    ]
    variable = tf.variables["noncurrent_version_expiration_days"]
    assert variable["type"] == "number"
    assert isinstance(variable["default"], int)
    assert variable["default"] >= 30, "too short a window to notice and undo a bad gc"
    assert variable["validation"], "a zero or negative window must be rejected"


def test_lifecycle_waits_for_versioning(tf):
    lifecycle = tf.resource("aws_s3_bucket_lifecycle_configuration", "dvc")
    assert "${aws_s3_bucket_versioning.dvc}" in lifecycle["depends_on"]


def test_incomplete_multipart_uploads_are_aborted(tf):
    rule = _lifecycle_rule(tf, "abort-incomplete-multipart-uploads")
    assert rule["abort_incomplete_multipart_upload"] == [
        {"days_after_initiation": "${var.abort_incomplete_multipart_upload_days}"}
    ]
    assert tf.variables["abort_incomplete_multipart_upload_days"]["default"] >= 1


@pytest.mark.parametrize(("log_bucket", "expected"), [(None, 0), ("org-access-logs", 1)])
def test_access_logging_exists_only_when_a_log_bucket_is_named(
    tf, make_scope, log_bucket, expected
):
    logging = tf.resource("aws_s3_bucket_logging", "dvc")
    assert count_of(logging, make_scope(access_log_bucket_name=log_bucket)) == expected
    assert logging["target_bucket"] == "${var.access_log_bucket_name}"
