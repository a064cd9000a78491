"""The remote scoring job: `python -m app.score` in the service's own image, fanned out over an
S3 prefix by an AWS Batch array job on Fargate (docs/scoring.md).

Why AWS Batch rather than a Step Functions Distributed Map of ECS tasks: an array job is
the fan-out itself (child i gets AWS_BATCH_JOB_ARRAY_INDEX, which `app.score --shards N`
reads as its shard), with per-child retries, a queue that caps concurrent vCPUs, and
nothing to pay beyond the Fargate seconds; a Distributed Map adds a state machine, its
state transitions and an ECS RunTask integration to do the same. Each child scores a
contiguous share of the input files and publishes its part, then its completion marker, so
retries and re-runs skip finished shards and never duplicate rows.

Created only when the context value `scoringJob` is true; `scoringInput` and
`scoringOutput` are the only S3 prefixes the job's role may read and write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployment.stack.compliance import acknowledge_nag, cfn_resource, skip_checkov
from deployment.stack.service import IMAGE_EXCLUDES
from deployment.stack.settings import ContextError, ContextLookup, context_keys, context_values

# The context switch that creates the job; its settings are ScoringJobSettings's aliases.
SWITCH: Final = "scoringJob"
S3_PREFIX = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([^*?]+/)?$"
QUEUE_OUTPUT = "ScoringJobQueue"
DEFINITION_OUTPUT = "ScoringJobDefinition"


class ScoringJobSettings(BaseModel):
    """The context values of the scoring job (cdk.json or `-c key=value`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    input: Annotated[str, Field(alias="scoringInput", pattern=S3_PREFIX)]
    output: Annotated[str, Field(alias="scoringOutput", pattern=S3_PREFIX)]
    # Fargate sizes for Batch: 1 vCPU with 2-8 GiB; `app.score` streams, so memory does not
    # grow with the input (docs/scoring.md gives the measured peak).
    vcpus: Annotated[float, Field(alias="scoringVcpus", ge=0.25, le=16)] = 1
    memory_mib: Annotated[int, Field(alias="scoringMemoryMiB", ge=512, le=122880)] = 2048
    max_vcpus: Annotated[int, Field(alias="scoringMaxVcpus", ge=1, le=4096)] = 16
    timeout_minutes: Annotated[int, Field(alias="scoringTimeoutMinutes", ge=1, le=1440)] = 120
    spot: Annotated[bool, Field(alias="scoringSpot")] = False

    @classmethod
    def from_context(cls, lookup: ContextLookup) -> ScoringJobSettings | None:
        """None unless `scoringJob` is true."""
        if str(lookup(SWITCH)).strip().lower() != "true":
            return None
        try:
            return cls.model_validate(context_values(cls, lookup))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
            )
            raise ContextError(f"invalid scoring job context: {problems}") from None


SCORING_JOB_KEYS: Final = (SWITCH, *context_keys(ScoringJobSettings))


def _bucket_and_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


class ScoringJob(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        image_directory: Path,
        settings: ScoringJobSettings,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        compute = batch.FargateComputeEnvironment(
            self,
            "Compute",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            maxv_cpus=settings.max_vcpus,
            spot=settings.spot,
        )
        self.queue = batch.JobQueue(self, "Queue")
        self.queue.add_compute_environment(compute, 1)

        role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="The scoring job: reads the input prefix, writes the output prefix",
        )
        partition = cdk.Aws.PARTITION
        in_bucket, in_prefix = _bucket_and_prefix(settings.input)
        out_bucket, out_prefix = _bucket_and_prefix(settings.output)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[f"arn:{partition}:s3:::{in_bucket}/{in_prefix}*"],
            )
        )
        # Markers are read back, finished parts moved from their staging names, and a
        # killed shard's staging file or upload removed.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                ],
                resources=[f"arn:{partition}:s3:::{out_bucket}/{out_prefix}*"],
            )
        )
        for bucket, prefix in ((in_bucket, in_prefix), (out_bucket, out_prefix)):
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[f"arn:{partition}:s3:::{bucket}"],
                    conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
                )
            )

        log_group = logs.LogGroup(self, "Logs", retention=log_retention)
        skip_checkov(
            cfn_resource(log_group),
            "CKV_AWS_158",
            "CloudWatch Logs encrypts every log group at rest with AWS-owned keys; the job logs "
            "progress and counts, never rows, and a customer managed key would add cost only.",
        )
        container = batch.EcsFargateContainerDefinition(
            self,
            "Container",
            # The service's image asset: the same build context, platform and exclusions (a
            # __pycache__ would otherwise change the hash), so CDK builds and pushes it once.
            image=ecs.ContainerImage.from_asset(
                str(image_directory),
                platform=ecr_assets.Platform.LINUX_AMD64,
                exclude=IMAGE_EXCLUDES,
            ),
            cpu=settings.vcpus,
            memory=cdk.Size.mebibytes(settings.memory_mib),
            command=[
                *("python", "-m", "app.score", "--input", "Ref::input"),
                *("--output", "Ref::output", "--shards", "Ref::shards"),
                *("--keep", "Ref::keep", "--max-reject-fraction", "Ref::maxRejectFraction"),
            ],
            job_role=role,
            logging=ecs.LogDriver.aws_logs(stream_prefix="scoring", log_group=log_group),
            fargate_cpu_architecture=ecs.CpuArchitecture.X86_64,
        )
        self.definition = batch.EcsJobDefinition(
            self,
            "Definition",
            container=container,
            # Defaults for `make score-remote`, which passes its own values.
            parameters={
                "input": settings.input,
                "output": settings.output,
                "shards": "1",
                "keep": "",
                "maxRejectFraction": "0.01",
            },
            retry_attempts=3,
            timeout=cdk.Duration.minutes(settings.timeout_minutes),
            propagate_tags=True,
        )
        for prefix in (f"{in_bucket}/{in_prefix}*", f"{out_bucket}/{out_prefix}*"):
            acknowledge_nag(
                role,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{prefix}]",
                "The job reads every object under its input prefix and writes its parts and "
                "markers under its output prefix; the prefix is the narrowest scope there is.",
            )
        acknowledge_nag(
            container.execution_role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken, which pulls the image, cannot be scoped to a resource; "
            "the other pull and log permissions are scoped to the repository and log group.",
        )
        cdk.CfnOutput(
            scope, QUEUE_OUTPUT, value=self.queue.job_queue_arn, description="Scoring job queue"
        )
        cdk.CfnOutput(
            scope,
            DEFINITION_OUTPUT,
            value=self.definition.job_definition_arn,
            description="Scoring job definition (make score-remote submits it)",
        )
