"""Where the service's evidence goes: its log group and the load balancer's access-log bucket,
and how the stack makes a log group."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from deployment.stack.compliance import acknowledge_nag, cfn_resource, skip_checkov


def log_group(
    scope: Construct,
    construct_id: str,
    *,
    retention: logs.RetentionDays,
    contents: str,
    log_group_name: str | None = None,
) -> logs.LogGroup:
    """A log group deleted with the stack, with the reasons for the two checkov findings every
    one of the stack's log groups has; `contents` says what it holds."""
    group = logs.LogGroup(
        scope,
        construct_id,
        log_group_name=log_group_name,
        retention=retention,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    resource = cfn_resource(group)
    skip_checkov(
        resource,
        "CKV_AWS_158",
        "CloudWatch Logs encrypts every log group at rest with AWS-owned keys; "
        f"{contents}, so a customer managed KMS key would add cost and a key policy without "
        "protecting more here.",
    )
    skip_checkov(
        resource,
        "CKV_AWS_338",
        "Retention is the logRetentionDays context value, chosen for cost; raise it to 365 or "
        "more where an audit requires a year of logs.",
    )
    return group


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_retention: logs.RetentionDays,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)

        # Created explicitly so its retention is set; the awslogs driver's implicit group
        # would keep every line forever.
        self.service_log_group = log_group(
            self,
            "ServiceLogs",
            retention=log_retention,
            contents="the service logs no secrets or personal data",
        )

        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            # Load balancer access logs can only be delivered to SSE-S3 buckets, not SSE-KMS.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=cdk.Duration.days(log_retention_days),
                    noncurrent_version_expiration=cdk.Duration.days(1),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                )
            ],
            # CloudFormation cannot delete a bucket that still holds logs; `cdk destroy`
            # leaves it (docs/deployment.md, "Destroy", says how to empty and delete it).
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        acknowledge_nag(
            self.access_logs_bucket,
            "AwsSolutions-S1",
            "This bucket receives the load balancer's access logs; logging its own access to "
            "itself would loop, and a second log bucket would only move the finding.",
        )
        bucket = cfn_resource(self.access_logs_bucket)
        skip_checkov(
            bucket,
            "CKV_AWS_18",
            "This is the access-log bucket; logging its own access to itself would loop.",
        )
        skip_checkov(
            bucket,
            "CKV_AWS_145",
            "Elastic Load Balancing delivers access logs only to buckets encrypted with SSE-S3 "
            "(AES-256), not SSE-KMS.",
        )
        skip_checkov(
            bucket,
            "CKV_AWS_144",
            "Access logs expire after logRetentionDays; replicating them to another region "
            "would double their cost for data that is not business critical.",
        )
