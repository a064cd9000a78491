"""Context values: cdk.json's defaults parse, `-c` strings are accepted, and every invalid value
fails synthesis with a message naming its key."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deployment.stack.application import CONTEXT_KEYS
from deployment.stack.service_stack import RETENTION
from deployment.stack.settings import (
    LOG_RETENTION_DAYS,
    RATE_LIMIT_WINDOWS,
    ContextError,
    DeploymentSettings,
    refuse_unknown_keys,
    workers_for,
)

from .conftest import CDK_JSON, DEPLOYMENT_DIR, TRIAL_CONTEXT

DEFAULTS: dict[str, Any] = TRIAL_CONTEXT
ZONE = {"domainName": "api.example.com", "hostedZoneId": "Z0ABC", "hostedZoneName": "example.com"}
CERTIFICATE_ARN = (
    "arn:aws:acm:us-east-1:111122223333:certificate/12345678-1234-1234-1234-123456789012"
)


def settings(**overrides: Any) -> DeploymentSettings:
    context = {**DEFAULTS, **overrides}
    return DeploymentSettings.from_context(context.get)


def error_for(**overrides: Any) -> str:
    with pytest.raises(ContextError) as caught:
        settings(**overrides)
    return str(caught.value)


def test_cdk_json_values_are_valid_and_each_setting_is_its_value_there() -> None:
    parsed = settings().model_dump(by_alias=True)
    assert parsed == {key: DEFAULTS[key] if DEFAULTS[key] != "" else None for key in parsed}


def test_cdk_json_declares_exactly_the_settings_the_app_reads() -> None:
    read: list[str] = []

    def lookup(key: str) -> object:
        read.append(key)
        return DEFAULTS.get(key)

    DeploymentSettings.from_context(lookup)
    ours = {key for key in DEFAULTS if not key.startswith("@")}
    assert set(read) == ours


def test_values_given_with_dash_c_arrive_as_strings_and_are_accepted() -> None:
    parsed = settings(
        desiredCount="3", minCapacity="1", maxCapacity="5", cpu="1024", memoryMiB="3072"
    )
    assert (
        parsed.desired_count,
        parsed.min_capacity,
        parsed.max_capacity,
        parsed.cpu,
        parsed.memory_mib,
    ) == (3, 1, 5, 1024, 3072)


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        ({"desiredCount": "two"}, "desiredCount", "not a whole number"),
        ({"desiredCount": 0}, "desiredCount", "out of range"),
        ({"desiredCount": True}, "desiredCount", "not a number"),
        ({"desiredCount": None}, "desiredCount", "missing"),
        (
            {"desiredCount": 9, "minCapacity": 2, "maxCapacity": 4},
            "desiredCount",
            "outside minCapacity..maxCapacity (2..4)",
        ),
        ({"minCapacity": 5, "maxCapacity": 3, "desiredCount": 4}, "minCapacity", "above"),
        ({"cpu": 300}, "cpu", "not a Fargate size"),
        ({"cpu": 512, "memoryMiB": 512}, "memoryMiB", "does not fit cpu 512"),
        ({"cpu": 256, "memoryMiB": 1536}, "memoryMiB", "does not fit cpu 256"),
        ({"natGateways": 0}, "natGateways", "out of range"),
        ({"natGateways": 3}, "natGateways", "out of range"),
        ({"logRetentionDays": 10}, "logRetentionDays", "not a CloudWatch Logs retention"),
        ({"cpuTargetPercent": 95}, "cpuTargetPercent", "out of range"),
        ({"requestsPerTarget": 0}, "requestsPerTarget", "out of range"),
        ({"gitRevision": "main; rm -rf /"}, "gitRevision", "not a valid revision"),
        ({"gitRevision": ""}, "gitRevision", "missing"),
        ({"stackName": "1-starts-with-a-digit"}, "stackName", "not a valid stack name"),
        ({"domainName": "api.example.com"}, "domainName", "set hostedZoneId and hostedZoneName"),
        ({"certificateArn": CERTIFICATE_ARN}, "domainName", "missing while certificateArn"),
        ({**ZONE, "hostedZoneName": ""}, "hostedZoneName", "go together"),
        ({**ZONE, "hostedZoneId": "not-a-zone"}, "hostedZoneId", "not a Route 53 hosted zone"),
        ({**ZONE, "domainName": "api.other.org"}, "domainName", "not inside hosted zone"),
        ({**ZONE, "domainName": "notexample.com"}, "domainName", "not inside hosted zone"),
        ({"domainName": "a.example.com", "certificateArn": "arn:x"}, "certificateArn", "ACM"),
        (
            {"domainName": "under_score.example.com", **{"certificateArn": CERTIFICATE_ARN}},
            "domainName",
            "not a DNS name",
        ),
        ({"rateLimitWindowSeconds": 30}, "rateLimitWindowSeconds", "not a WAF rate-limit window"),
        ({"rateLimitWindowSeconds": 3600}, "rateLimitWindowSeconds", "choose one of 60, 120"),
        ({"rateLimitPerClient": 9}, "rateLimitPerClient", "out of range (10..2000000000)"),
        ({"rateLimitPerClient": 2_000_000_001}, "rateLimitPerClient", "out of range"),
        ({"rateLimitPerClient": "many"}, "rateLimitPerClient", "not a whole number"),
        ({"rateLimitPerClient": None}, "rateLimitPerClient", "missing"),
        ({"alarmPeriodSeconds": 30}, "alarmPeriodSeconds", "out of range (60..86400)"),
        ({"alarmEvaluationPeriods": 0}, "alarmEvaluationPeriods", "out of range"),
        ({"target5xxRatePercent": 0}, "target5xxRatePercent", "out of range"),
        ({"target5xxRatePercent": "many"}, "target5xxRatePercent", "not a number"),
        ({"outOfRangeRatePercent": 150}, "outOfRangeRatePercent", "out of range"),
        ({"latencyP99Milliseconds": 5}, "latencyP99Milliseconds", "out of range"),
        ({"loadBalancer5xxCount": 0}, "loadBalancer5xxCount", "out of range"),
        ({"alarmEmail": "not-an-address"}, "alarmEmail", "not an e-mail address"),
        ({"metricsNamespace": "AWS/ECS"}, "metricsNamespace", "not a CloudWatch namespace"),
        ({"serviceName": "has space"}, "serviceName", "not a valid service name"),
        ({"serviceName": ""}, "serviceName", "missing"),
        ({"healthCheckIntervalSeconds": 4}, "healthCheckIntervalSeconds", "out of range"),
        ({"healthyThresholdCount": 1}, "healthyThresholdCount", "out of range (2..10)"),
        ({"deregistrationDelaySeconds": 3601}, "deregistrationDelaySeconds", "out of range"),
        (
            {"healthCheckIntervalSeconds": 5, "healthCheckTimeoutSeconds": 5},
            "healthCheckTimeoutSeconds",
            "must be shorter than healthCheckIntervalSeconds",
        ),
    ],
)
def test_invalid_context_value_fails_with_its_key_named(
    overrides: dict[str, Any], key: str, fragment: str
) -> None:
    message = error_for(**overrides)
    assert f"{key}: " in message
    assert fragment in message


def test_every_problem_is_reported_at_once() -> None:
    message = error_for(desiredCount="x", cpu=300, logRetentionDays=2)
    assert all(key in message for key in ("desiredCount:", "cpu:", "logRetentionDays:"))


@pytest.mark.parametrize("revision", ["unknown", "0123abc", "0123456789ab-dirty", "f" * 40])
def test_git_revisions_make_deploy_passes_are_accepted(revision: str) -> None:
    assert settings(gitRevision=revision).git_revision == revision


def test_hosted_zone_enables_https_with_the_stack_managing_certificate_and_record() -> None:
    parsed = settings(**{**ZONE, "hostedZoneName": "Example.com."})
    assert parsed.serves_https
    assert (
        parsed.domain_name,
        parsed.hosted_zone_id,
        parsed.hosted_zone_name,
        parsed.certificate_arn,
    ) == ("api.example.com", "Z0ABC", "example.com", None)


def test_apex_domain_of_the_zone_is_accepted() -> None:
    parsed = settings(**{**ZONE, "domainName": "example.com"})
    assert (parsed.serves_https, parsed.domain_name) == (True, "example.com")


def test_certificate_arn_enables_https_without_a_hosted_zone() -> None:
    parsed = settings(domainName="api.example.org", certificateArn=CERTIFICATE_ARN)
    assert parsed.serves_https
    assert (parsed.certificate_arn, parsed.hosted_zone_id) == (CERTIFICATE_ARN, None)


def test_every_cloudwatch_retention_maps_to_cdks_enum() -> None:
    assert set(RETENTION) == set(LOG_RETENTION_DAYS)


def test_alarm_email_and_fractional_percentages_given_with_dash_c_are_accepted() -> None:
    parsed = settings(alarmEmail=" oncall@example.com ", target5xxRatePercent="0.5")
    assert parsed.alarm_email == "oncall@example.com"
    assert parsed.target_5xx_rate_percent == 0.5


@pytest.mark.parametrize("window", RATE_LIMIT_WINDOWS)
def test_every_window_waf_accepts_is_accepted_as_a_dash_c_string(window: int) -> None:
    parsed = settings(rateLimitWindowSeconds=str(window), rateLimitPerClient="10")
    assert (parsed.rate_limit_window_seconds, parsed.rate_limit_per_client) == (window, 10)


@pytest.mark.parametrize(("cpu", "workers"), [(256, 2), (512, 2), (1024, 2), (2048, 2), (4096, 4)])
def test_workers_are_one_per_vcpu_and_never_fewer_than_two(cpu: int, workers: int) -> None:
    assert workers_for(cpu) == workers


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("desiredcount", "desiredCount"),
        ("memory", "memoryMiB"),
        ("healthCheckInterval", "healthCheckIntervalSeconds"),
        ("scoringInputs", "scoringInput"),
    ],
)
def test_a_misspelt_key_fails_naming_it_and_the_setting_it_meant(typo: str, meant: str) -> None:
    with pytest.raises(ContextError) as caught:
        refuse_unknown_keys({**DEFAULTS, typo: "4"}, CONTEXT_KEYS)
    assert str(caught.value).splitlines()[1:] == [
        f"  - {typo}: not a setting; did you mean {meant}?"
    ]


def test_a_key_like_no_setting_fails_pointing_at_the_list_of_settings() -> None:
    with pytest.raises(ContextError, match=r"colour: not a setting \(docs/deployment.md"):
        refuse_unknown_keys({**DEFAULTS, "colour": "blue"}, CONTEXT_KEYS)


# What the CDK CLI (2.1148) adds to the context it passes the app: its switches, and from
# cdk.context.json the lookups it cached and the notices `cdk acknowledge` silenced.
CDK_CLI_CONTEXT = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": True,
    "aws:cdk:bundling-stacks": ["**"],
    "availability-zones:account=111122223333:region=eu-west-1": ["eu-west-1a", "eu-west-1b"],
    "acknowledged-issue-numbers": [34892],
}


def test_cdk_json_cdks_own_keys_and_every_key_the_makefile_and_docs_pass_are_accepted() -> None:
    repository = DEPLOYMENT_DIR.parents[1]
    sources = [repository / "Makefile", repository / "README.md", *repository.glob("docs/*.md")]
    passed = {
        key
        for source in sources
        for key in re.findall(r"-c ([A-Za-z]\w*)=", source.read_text(encoding="utf-8"))
    } - {"key"}  # docs/deployment.md's `-c key=value`
    assert {"gitRevision", "allowPlainHttp", "scoringJob", "scoringInput"} <= passed
    context = {**CDK_JSON["context"], **CDK_CLI_CONTEXT, **dict.fromkeys(passed, "")}
    refuse_unknown_keys(context, CONTEXT_KEYS)
