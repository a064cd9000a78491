"""cdk-nag's AwsSolutions pack and the acknowledgments and skips the stack carries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Annotations, Match
from cdk_nag import AwsSolutionsChecks

from deployment.stack.application import build
from deployment.stack.compliance import MINIMUM_REASON_LENGTH, acknowledge_nag, skip_checkov

from .conftest import MODEL_METADATA, REGION, TRIAL_CONTEXT, Synthesized

pytestmark = pytest.mark.slow

VARIANTS = ["http", "hosted_zone", "certificate", "open_stack"]


def violations(report: dict[str, Any]) -> list[str]:
    return [
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_synthesis_has_no_cdk_warning_or_error_and_no_unacknowledged_cdk_nag_finding(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    assert violations(synth.validation_report) == []
    assert synth.validation_failure is None
    annotations = Annotations.from_stack(synth.stack)
    assert annotations.find_error("*", Match.any_value()) == []
    assert annotations.find_warning("*", Match.any_value()) == []


def test_cdk_nag_fails_synthesis_on_an_unacknowledged_finding(tmp_path: Path) -> None:
    """The control: the plugin is live, so the test above can fail."""
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Control")
    s3.Bucket(stack, "Bucket")  # no TLS-only policy, no access logs
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text(encoding="utf-8"))
    assert "AwsSolutions-S10 at Control/Bucket/Resource" in violations(report)


def resources_metadata(synth: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    resources = synth.template.to_json()["Resources"]
    return [(logical_id, body.get("Metadata", {})) for logical_id, body in resources.items()]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_acknowledgment_and_skip_carries_its_reason(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    nag_rules: set[str] = set()
    checkov_skips = 0
    for logical_id, metadata in resources_metadata(synth):
        for rule in metadata.get("cdk_nag", {}).get("rules_to_suppress", []):
            if rule["id"].startswith("AwsSolutions"):
                nag_rules.add(rule["id"])
                assert len(rule["reason"]) >= MINIMUM_REASON_LENGTH, (logical_id, rule)
        for skip in metadata.get("checkov", {}).get("skip", []):
            checkov_skips += 1
            assert len(skip["comment"]) >= MINIMUM_REASON_LENGTH, (logical_id, skip)
    # What this stack accepts, and nothing more: a new acknowledgment is a reviewed change.
    # The secret rotation finding exists where the stack creates the API keys' secret.
    own_secret = bool(synth.resources("AWS::SecretsManager::Secret"))
    assert nag_rules == {
        "AwsSolutions-S1",
        "AwsSolutions-EC23",
        "AwsSolutions-ECS2",
        "AwsSolutions-IAM5[Resource::*]",
        *(["AwsSolutions-SMG4"] if own_secret else []),
    }
    assert checkov_skips > 0


def test_acknowledgment_without_a_real_reason_is_refused() -> None:
    stack = cdk.Stack(cdk.App(), "Reasons")
    bucket = s3.Bucket(stack, "Bucket")
    with pytest.raises(ValueError, match="reason"):
        acknowledge_nag(bucket, "AwsSolutions-S1", "n/a")
    with pytest.raises(ValueError, match="reason"):
        skip_checkov(bucket.node.default_child, "CKV_AWS_18", "ok")  # type: ignore[arg-type]


def test_synthesis_warns_when_the_image_does_not_declare_tmp_a_volume(tmp_path: Path) -> None:
    image = tmp_path / "image"
    image.mkdir()
    (image / "Dockerfile").write_text(
        'FROM python:3.11-slim\nUSER 10001\nEXPOSE 8000\nHEALTHCHECK CMD ["true"]\n',
        encoding="utf-8",
    )
    (image / "data").mkdir()
    shutil.copyfile(MODEL_METADATA, image / "data" / "model_metadata.json")
    app = cdk.App(context={**TRIAL_CONTEXT, "gitRevision": "unknown"}, outdir=str(tmp_path / "out"))
    stack = build(app, region=REGION, image_directory=image)
    warnings = Annotations.from_stack(stack).find_warning(
        "*", Match.string_like_regexp("does not declare VOLUME /tmp")
    )
    assert len(warnings) == 1
