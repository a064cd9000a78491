"""The web ACL in front of the load balancer: floods from one address refused with 429 before
they reach the tasks, the managed rule groups that cannot break a JSON API, the logs of what
it blocked. Each test names what the deployed service would lose if it failed."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Template

from deployment.stack.firewall import LOG_GROUP_PREFIX, MAX_NAME_LENGTH, Firewall
from deployment.stack.settings import DeploymentSettings

from .conftest import TRIAL_CONTEXT, Synthesized

pytestmark = pytest.mark.slow

DEFAULTS: dict[str, Any] = TRIAL_CONTEXT
MANAGED_GROUPS = {"AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesKnownBadInputsRuleSet"}


def web_acl_id(synth: Synthesized) -> str:
    (logical_id,) = synth.resources("AWS::WAFv2::WebACL")
    return logical_id


def rules(synth: Synthesized) -> dict[str, dict[str, Any]]:
    return {rule["Name"]: rule for rule in synth.only("AWS::WAFv2::WebACL")["Rules"]}


def rate_rule(synth: Synthesized) -> dict[str, Any]:
    (rule,) = [rule for rule in rules(synth).values() if "RateBasedStatement" in rule["Statement"]]
    return rule


def firewall_log_group(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (logical_id, body["Properties"])
        for logical_id, body in synth.resources("AWS::Logs::LogGroup").items()
        if body["Properties"].get("LogGroupName", "").startswith(LOG_GROUP_PREFIX)
    ]
    return found


def test_web_acl_is_regional_allows_what_no_rule_blocks_and_records_metrics_and_samples(
    http: Synthesized,
) -> None:
    acl = http.only("AWS::WAFv2::WebACL")
    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    visibility = [acl["VisibilityConfig"], *(rule["VisibilityConfig"] for rule in acl["Rules"])]
    for config in visibility:
        assert config["CloudWatchMetricsEnabled"] is True
        assert config["SampledRequestsEnabled"] is True
    # Metric names are the dimensions the dashboard reads: one per rule, never shared.
    assert len({config["MetricName"] for config in visibility}) == len(visibility)
    assert len({rule["Priority"] for rule in acl["Rules"]}) == len(acl["Rules"])


@pytest.mark.parametrize("variant", ["http", "hosted_zone", "certificate"])
def test_web_acl_guards_the_public_load_balancer_by_its_arn(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    (balancer_id,) = synth.resources("AWS::ElasticLoadBalancingV2::LoadBalancer")
    association = synth.only("AWS::WAFv2::WebACLAssociation")
    assert association["ResourceArn"] == {"Ref": balancer_id}
    assert association["WebACLArn"] == {"Fn::GetAtt": [web_acl_id(synth), "Arn"]}


def test_rate_rule_counts_each_client_address_with_the_context_limit_and_window(
    http: Synthesized, hosted_zone: Synthesized
) -> None:
    for synth, limit, window in (
        (http, DEFAULTS["rateLimitPerClient"], DEFAULTS["rateLimitWindowSeconds"]),
        (hosted_zone, 1200, 60),
    ):
        statement = rate_rule(synth)["Statement"]["RateBasedStatement"]
        # The connecting address, which a client cannot choose (X-Forwarded-For it can).
        assert statement["AggregateKeyType"] == "IP"
        assert "ForwardedIPConfig" not in statement
        assert (statement["Limit"], statement["EvaluationWindowSec"]) == (limit, window)


@pytest.mark.parametrize(
    ("variant", "window"), [("http", DEFAULTS["rateLimitWindowSeconds"]), ("hosted_zone", 60)]
)
def test_flooding_client_gets_429_with_retry_after_and_a_json_error_not_a_5xx(
    variant: str, window: int, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    response = rate_rule(synth)["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    assert response["ResponseHeaders"] == [{"Name": "Retry-After", "Value": str(window)}]
    body = synth.only("AWS::WAFv2::WebACL")["CustomResponseBodies"][
        response["CustomResponseBodyKey"]
    ]
    assert body["ContentType"] == "APPLICATION_JSON"
    # The shape of every error the service answers itself: {"detail": "..."}.
    detail = json.loads(body["Content"])
    assert list(detail) == ["detail"]
    assert f"retry after {window} s" in detail["detail"]


def test_managed_rule_groups_block_bad_addresses_and_exploits_but_not_large_batch_bodies(
    http: Synthesized,
) -> None:
    managed = {
        name: rule
        for name, rule in rules(http).items()
        if "ManagedRuleGroupStatement" in rule["Statement"]
    }
    assert set(managed) == MANAGED_GROUPS
    for name, rule in managed.items():
        statement = rule["Statement"]["ManagedRuleGroupStatement"]
        assert (statement["VendorName"], statement["Name"]) == ("AWS", name)
        # The groups' own block actions, not overridden to counting, none excluded.
        assert rule["OverrideAction"] == {"None": {}}
        assert "ExcludedRules" not in statement
        assert "RuleActionOverrides" not in statement
    # Its SizeRestrictions_BODY would refuse POST /predict/batch bodies over 8 KB.
    assert "AWSManagedRulesCommonRuleSet" not in json.dumps(http.template.to_json())


@pytest.mark.parametrize(
    ("variant", "days"), [("http", DEFAULTS["logRetentionDays"]), ("hosted_zone", 90)]
)
def test_blocked_requests_are_logged_to_an_aws_waf_logs_group_for_the_context_retention(
    variant: str, days: int, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    group_id, group = firewall_log_group(synth)
    assert group["RetentionInDays"] == days
    logging = synth.only("AWS::WAFv2::LoggingConfiguration")
    assert logging["ResourceArn"] == {"Fn::GetAtt": [web_acl_id(synth), "Arn"]}
    (destination,) = logging["LogDestinationConfigs"]
    parts = destination["Fn::Join"][1]
    # The log group's ARN as WAF wants it: no ":*" after the name.
    assert parts[-2:] == [":log-group:", {"Ref": group_id}]
    assert parts[0].startswith("arn:aws:logs:")
    assert logging["LoggingFilter"] == {
        "DefaultBehavior": "DROP",
        "Filters": [
            {
                "Behavior": "KEEP",
                "Requirement": "MEETS_ANY",
                "Conditions": [{"ActionCondition": {"Action": "BLOCK"}}],
            }
        ],
    }


def test_load_balancer_forwards_unfiltered_when_waf_fails_instead_of_answering_500(
    http: Synthesized,
) -> None:
    balancer = http.only("AWS::ElasticLoadBalancingV2::LoadBalancer")
    attributes = {item["Key"]: item["Value"] for item in balancer["LoadBalancerAttributes"]}
    assert attributes["waf.fail_open.enabled"] == "true"


def test_no_alarm_reads_the_firewall_so_a_flood_never_rolls_a_deployment_back(
    http: Synthesized,
) -> None:
    alarms = json.dumps(http.resources("AWS::CloudWatch::Alarm"))
    assert "AWS/WAFV2" not in alarms


def test_longest_stack_name_still_gives_waf_a_name_it_accepts() -> None:
    """WAF refuses web ACL and metric names over 128 characters; stack names may be 128."""
    stack_name = "S" * 128
    settings = DeploymentSettings.from_context({**DEFAULTS, "stackName": stack_name}.get)
    stack = cdk.Stack(cdk.App(), "Longest", stack_name=settings.stack_name)
    balancer = elbv2.ApplicationLoadBalancer(stack, "Balancer", vpc=ec2.Vpc(stack, "Vpc"))
    Firewall(
        stack,
        "Firewall",
        load_balancer=balancer,
        settings=settings,
        log_retention=logs.RetentionDays.ONE_MONTH,
    )
    (acl,) = Template.from_stack(stack).find_resources("AWS::WAFv2::WebACL").values()
    name = acl["Properties"]["Name"]
    assert len(name) == MAX_NAME_LENGTH
    assert name.endswith("-Firewall")
    assert acl["Properties"]["VisibilityConfig"]["MetricName"] == name
