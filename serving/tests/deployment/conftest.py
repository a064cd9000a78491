"""Shared fixtures: each variant of the stack is synthesized once per session (jsii is slow).

The stack is built by the same `build()` that `app.py` runs, with the context of cdk.json (its
defaults and feature flags) plus each variant's overrides, exactly as `cdk synth -c ...` would.
"""

from __future__ import annotations

import os

# jsii prints a banner about Node 20's end of life at every start; it says nothing about us.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from container import dockerfile
from deployment.stack.application import SERVICE_DIRECTORY, build
from deployment.stack.service_stack import ServiceStack

DEPLOYMENT_DIR = Path(__file__).resolve().parents[2] / "deployment"
MODEL_METADATA = DEPLOYMENT_DIR.parent / "app" / "data" / "model_metadata.json"
CDK_JSON: dict[str, Any] = json.loads((DEPLOYMENT_DIR / "cdk.json").read_text(encoding="utf-8"))
# What a test exercises is set by the test, whatever a fork's cdk.json switches on or off: a
# domain (or none), API keys (and their secret), which paths are public.
NO_DOMAIN = {"domainName": "", "hostedZoneId": "", "hostedZoneName": "", "certificateArn": ""}
# API keys in a secret the stack generates, operational paths private (cdk.json as shipped).
STACK_KEYS = {"apiKeys": "true", "apiKeysSecretName": "", "publicOperationalEndpoints": "false"}
# Keys over plain HTTP, which synthesis refuses unless acknowledged.
KEYS_OVER_HTTP = {**NO_DOMAIN, **STACK_KEYS, "allowPlainHttp": "false"}
# cdk.json's context as a trial without a domain passes it: plain HTTP accepted.
TRIAL_CONTEXT: dict[str, Any] = {**CDK_JSON["context"], **NO_DOMAIN, "allowPlainHttp": True}
# Any concrete region works: the access-log bucket policy needs one, and nothing is looked up.
REGION = "eu-west-1"
GIT_REVISION = "0123456789ab"

ZONE_ID = "Z0123456789ABCDEFGHIJ"
CERTIFICATE_ARN = (
    "arn:aws:acm:eu-west-1:111122223333:certificate/12345678-1234-1234-1234-123456789012"
)

EXISTING_SECRET = "prod/prediction-api-keys"

VARIANTS: dict[str, dict[str, Any]] = {
    # cdk.json's other values, HTTP only: API keys on, plain HTTP explicitly accepted.
    "http": {"gitRevision": GIT_REVISION, **KEYS_OVER_HTTP, "allowPlainHttp": "true"},
    # Authentication off (then plain HTTP needs no acknowledgement), operational paths open.
    "open": {
        "gitRevision": GIT_REVISION,
        **NO_DOMAIN,
        "apiKeys": "false",
        "publicOperationalEndpoints": "true",
    },
    # A hosted zone: the stack requests the certificate and creates the DNS record. Also every
    # sizing value changed (as strings, the way `-c key=value` passes them).
    "hosted-zone": {
        "gitRevision": GIT_REVISION,
        **STACK_KEYS,
        "certificateArn": "",
        "domainName": "api.example.com",
        "hostedZoneId": ZONE_ID,
        "hostedZoneName": "example.com",
        "desiredCount": "3",
        "minCapacity": "2",
        "maxCapacity": "6",
        "cpu": "1024",
        "memoryMiB": "2048",
        "natGateways": "2",
        "logRetentionDays": "90",
        "cpuTargetPercent": "50",
        "requestsPerTarget": "1200",
        "healthCheckIntervalSeconds": "15",
        "healthCheckTimeoutSeconds": "4",
        "healthyThresholdCount": "3",
        "unhealthyThresholdCount": "4",
        "deregistrationDelaySeconds": "20",
        "alarmPeriodSeconds": "300",
        "alarmEvaluationPeriods": "2",
        "target5xxRatePercent": "2.5",
        "loadBalancer5xxCount": "25",
        "latencyP99Milliseconds": "750",
        "outOfRangeRatePercent": "20",
        "outOfRangeMinRecords": "500",
        "serviceName": "penguins-api",
        "metricsNamespace": "Penguins/Prod",
        "alarmEmail": "oncall@example.com",
        "rateLimitPerClient": "1200",
        "rateLimitWindowSeconds": "60",
        # The API keys in a secret that already exists.
        "apiKeysSecretName": EXISTING_SECRET,
    },
    # An existing certificate, DNS managed elsewhere; no alarm e-mail, whatever cdk.json says.
    "certificate": {
        "gitRevision": GIT_REVISION,
        **STACK_KEYS,
        "hostedZoneId": "",
        "hostedZoneName": "",
        "domainName": "api.example.org",
        "certificateArn": CERTIFICATE_ARN,
        "alarmEmail": "",
    },
}


@dataclass
class Synthesized:
    stack: ServiceStack
    template: Template
    # Set when cdk-nag (or another validation) failed synthesis; the template is still read.
    validation_failure: str | None
    validation_report: dict[str, Any]
    assets: dict[str, Any]

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        found = self.template.find_resources(resource_type)
        return {logical_id: dict(body) for logical_id, body in found.items()}

    def only(self, resource_type: str) -> dict[str, Any]:
        """The properties of the one resource of this type."""
        found = self.resources(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        properties: dict[str, Any] = next(iter(found.values())).get("Properties", {})
        return properties

    def container(self) -> dict[str, Any]:
        """The task's one container definition."""
        (definition,) = self.only("AWS::ECS::TaskDefinition")["ContainerDefinitions"]
        return dict(definition)


# The port the service's Dockerfile declares, which the task must use.
SERVICE_PORT = dockerfile.service_port(SERVICE_DIRECTORY / "Dockerfile")


def with_port(dockerfile_text: str, port: int) -> str:
    """The Dockerfile with its port changed where it is written: SERVICE_BIND and EXPOSE."""
    changed, binds = re.subn(
        r"^ENV SERVICE_BIND=(\S+):\d+$",
        rf"ENV SERVICE_BIND=\g<1>:{port}",
        dockerfile_text,
        flags=re.M,
    )
    changed, exposes = re.subn(r"^EXPOSE \d+$", f"EXPOSE {port}", changed, flags=re.M)
    assert (binds, exposes) == (1, 1), "the Dockerfile's ENV SERVICE_BIND or EXPOSE moved"
    return changed


def image_context(directory: Path, port: int = SERVICE_PORT) -> Path:
    """A stand-in for serving/app holding only its Dockerfile, with the port set to `port`, and
    the model metadata: synthesis only copies the build context, and reads the facts the task
    needs from there (the dashboard charts the model's classes and features)."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (SERVICE_DIRECTORY / "Dockerfile").read_text(encoding="utf-8")
    changed = with_port(text, port)
    (directory / "Dockerfile").write_text(changed, encoding="utf-8")
    (directory / "data").mkdir(exist_ok=True)
    shutil.copyfile(MODEL_METADATA, directory / "data" / "model_metadata.json")
    return directory


@pytest.fixture(scope="session")
def image_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_context(tmp_path_factory.mktemp("service-image"))


def synthesize(overrides: dict[str, Any], outdir: Path, image_directory: Path) -> Synthesized:
    app = cdk.App(context={**CDK_JSON["context"], **overrides}, outdir=str(outdir))
    stack = build(app, region=REGION, image_directory=image_directory)
    failure: str | None = None
    try:
        template = Template.from_stack(stack)
    except RuntimeError as error:  # jsii's form of the ValidationFailed error
        if "ValidationFailed" not in str(error):
            raise
        failure = str(error)
        template = Template.from_json(
            json.loads((outdir / stack.template_file).read_text(encoding="utf-8"))
        )
    return Synthesized(
        stack=stack,
        template=template,
        validation_failure=failure,
        validation_report=json.loads((outdir / "validation-report.json").read_text("utf-8")),
        assets=json.loads((outdir / f"{stack.artifact_id}.assets.json").read_text("utf-8")),
    )


@pytest.fixture(scope="session")
def synthesized(
    tmp_path_factory: pytest.TempPathFactory, image_directory: Path
) -> Callable[[str], Synthesized]:
    """`synthesized("http")`: that variant, synthesized on first use and then reused."""
    cache: dict[str, Synthesized] = {}

    def get(variant: str) -> Synthesized:
        if variant not in cache:
            outdir = tmp_path_factory.mktemp(f"cdk.out-{variant}")
            cache[variant] = synthesize(VARIANTS[variant], outdir, image_directory)
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def http(synthesized: Callable[[str], Synthesized]) -> Synthesized:
    return synthesized("http")


@pytest.fixture(scope="session")
def hosted_zone(synthesized: Callable[[str], Synthesized]) -> Synthesized:
    return synthesized("hosted-zone")


@pytest.fixture(scope="session")
def open_stack(synthesized: Callable[[str], Synthesized]) -> Synthesized:
    return synthesized("open")


@pytest.fixture(scope="session")
def certificate(synthesized: Callable[[str], Synthesized]) -> Synthesized:
    return synthesized("certificate")
