"""The remote scoring job in the CDK app: absent unless asked for, then an AWS Batch array job
on Fargate running `app.score` in the service's image, allowed to read its input prefix and
write its output prefix and nothing else, clean under cdk-nag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from deployment.stack.application import build
from deployment.stack.scoring_job import DEFINITION_OUTPUT, QUEUE_OUTPUT
from deployment.stack.settings import ContextError

from .conftest import TRIAL_CONTEXT, image_context

INPUT, OUTPUT = "s3://input-bucket/customers/", "s3://output-bucket/scored/"
JOB = {"scoringJob": "true", "scoringInput": INPUT, "scoringOutput": OUTPUT}


def synth(overrides: dict[str, Any], outdir: Path, image_directory: Path) -> Template:
    context = {**TRIAL_CONTEXT, **overrides}
    app = cdk.App(context=context, outdir=str(outdir))
    stack = build(app, region="us-east-1", image_directory=image_directory)
    return Template.from_stack(stack)  # raises when cdk-nag reports an unacknowledged finding


@pytest.fixture(scope="module")
def with_job(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """With byte-compiled files in the build context, as in a developer's checkout: the job
    must still run the service's image, built and pushed once."""
    directory = image_context(tmp_path_factory.mktemp("service-image"))
    (directory / "__pycache__").mkdir()
    (directory / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"compiled")
    return synth(JOB, tmp_path_factory.mktemp("cdk.out-scoring"), directory)


def test_there_is_no_scoring_job_unless_the_context_asks_for_it(
    tmp_path: Path, image_directory: Path
) -> None:
    template = synth({}, tmp_path, image_directory)
    assert not template.find_resources("AWS::Batch::JobDefinition")


def test_the_job_runs_the_scorer_sharded_in_the_service_image(with_job: Template) -> None:
    (definition,) = with_job.find_resources("AWS::Batch::JobDefinition").values()
    properties = definition["Properties"]
    assert properties["PlatformCapabilities"] == ["FARGATE"]
    command = properties["ContainerProperties"]["Command"]
    assert command[:3] == ["python", "-m", "app.score"]
    assert command[command.index("--shards") + 1] == "Ref::shards"
    assert properties["Parameters"]["input"] == INPUT
    assert properties["RetryStrategy"]["Attempts"] == 3
    (service_task,) = with_job.find_resources("AWS::ECS::TaskDefinition").values()
    image = properties["ContainerProperties"]["Image"]
    assert image == service_task["Properties"]["ContainerDefinitions"][0]["Image"]
    outputs = with_job.to_json()["Outputs"]
    assert {QUEUE_OUTPUT, DEFINITION_OUTPUT} <= set(outputs)


def test_the_job_may_read_its_input_and_write_its_output_prefix_only(with_job: Template) -> None:
    job_role = next(
        name
        for name, role in with_job.find_resources("AWS::IAM::Role").items()
        if "ScoringJobJobRole" in name
    )
    statements = [
        statement
        for policy in with_job.find_resources("AWS::IAM::Policy").values()
        if {"Ref": job_role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    text = json.dumps(statements)
    assert '"s3:*"' not in text
    assert '"*"' not in text
    writes = [s for s in statements if "s3:PutObject" in json.dumps(s["Action"])]
    assert all("output-bucket/scored/*" in json.dumps(s["Resource"]) for s in writes)
    reads = [s for s in statements if s["Action"] == "s3:GetObject"]
    assert all("input-bucket/customers/*" in json.dumps(s["Resource"]) for s in reads)
    lists = [s for s in statements if s["Action"] == "s3:ListBucket"]
    prefixes = sorted(s["Condition"]["StringLike"]["s3:prefix"][0] for s in lists)
    assert prefixes == ["customers/*", "scored/*"]


@pytest.mark.parametrize(
    "bad",
    [{"scoringInput": "customers/"}, {"scoringOutput": "s3://Bad_Bucket/x/"}, {"scoringVcpus": 64}],
)
def test_a_bad_scoring_context_value_stops_synthesis_naming_it(
    bad: dict[str, Any], tmp_path: Path, image_directory: Path
) -> None:
    with pytest.raises(ContextError, match=next(iter(bad))):
        synth({**JOB, **bad}, tmp_path, image_directory)
