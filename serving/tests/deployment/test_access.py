"""Who reaches what through the load balancer: only the public paths are forwarded, and the
API keys come from Secrets Manager into the container, never through plain HTTP unless that
is explicitly accepted."""

from __future__ import annotations

from typing import Any

import pytest

from app.factory import create_app
from app.settings import Settings
from deployment.stack.service import INITIAL_KEY_NAME
from deployment.stack.settings import (
    CLEAR_TEXT_KEYS,
    PUBLIC_PATHS,
    ContextError,
    DeploymentSettings,
)

from .conftest import CDK_JSON, EXISTING_SECRET, KEYS_OVER_HTTP, Synthesized

pytestmark = pytest.mark.slow

LISTENER = "AWS::ElasticLoadBalancingV2::Listener"
RULE = "AWS::ElasticLoadBalancingV2::ListenerRule"
NOT_FOUND = {
    "Type": "fixed-response",
    "FixedResponseConfig": {
        "StatusCode": "404",
        "ContentType": "application/json",
        "MessageBody": '{"detail":"Not Found"}',
    },
}


def serving_listener(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    """The listener that serves the API (443 with HTTPS, else 80)."""
    listeners = synth.resources(LISTENER)
    serving = [
        (logical_id, body["Properties"])
        for logical_id, body in listeners.items()
        if body["Properties"]["Port"] == (443 if len(listeners) == 2 else 80)
    ]
    assert len(serving) == 1, listeners
    return serving[0]


@pytest.mark.parametrize("variant", ["http", "hosted_zone", "certificate"])
def test_the_listener_forwards_only_the_exact_public_paths_and_answers_the_rest_404(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    listener_id, listener = serving_listener(synth)
    assert listener["DefaultActions"] == [NOT_FOUND]
    (rule,) = synth.resources(RULE).values()
    properties = rule["Properties"]
    assert properties["ListenerArn"] == {"Ref": listener_id}
    assert properties["Conditions"] == [
        {"Field": "path-pattern", "PathPatternConfig": {"Values": list(PUBLIC_PATHS)}}
    ]
    (target_group,) = synth.resources("AWS::ElasticLoadBalancingV2::TargetGroup")
    assert properties["Actions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": target_group}}]
    # Exact paths: no wildcard lets a variant of a private path through.
    assert not any(set("*?") & set(path) for path in PUBLIC_PATHS)
    # ECS registers tasks only once the target group is in use by the rule.
    (service,) = synth.resources("AWS::ECS::Service").values()
    assert (next(iter(synth.resources(RULE)))) in service["DependsOn"]


def test_public_paths_are_the_prediction_routes_and_liveness_and_no_operational_one() -> None:
    document = create_app(Settings()).openapi()
    predictions = {
        path
        for path, operations in document["paths"].items()
        if any("predictions" in op.get("tags", ()) for op in operations.values())
    }
    assert set(PUBLIC_PATHS) == predictions | {"/health"}
    for private in ("/metrics", "/model", "/openapi.json", "/docs", "/redoc", "/ready"):
        assert private not in PUBLIC_PATHS


def test_public_operational_endpoints_forward_everything(open_stack: Synthesized) -> None:
    _, listener = serving_listener(open_stack)
    (target_group,) = open_stack.resources("AWS::ElasticLoadBalancingV2::TargetGroup")
    assert listener["DefaultActions"] == [
        {"Type": "forward", "TargetGroupArn": {"Ref": target_group}}
    ]
    assert open_stack.resources(RULE) == {}


def test_the_stacks_secret_holds_a_generated_key_injected_as_an_ecs_secret(
    http: Synthesized,
) -> None:
    (secret_id, secret), *others = http.resources("AWS::SecretsManager::Secret").items()
    assert others == []
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["GenerateStringKey"] == INITIAL_KEY_NAME
    assert generated["SecretStringTemplate"] == "{}"
    # 64 letters and digits: about 380 bits, over the service's 32-byte minimum.
    assert generated["PasswordLength"] >= 64
    web = http.container()
    assert web["Secrets"] == [{"Name": "SERVICE_API_KEYS", "ValueFrom": {"Ref": secret_id}}]
    assert all(variable["Name"] != "SERVICE_API_KEYS" for variable in web["Environment"])
    # Only the execution role (which starts the task) may read it.
    readers = [
        policy["Properties"]
        for policy in http.resources("AWS::IAM::Policy").values()
        if any(
            statement["Resource"] == {"Ref": secret_id}
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    assert len(readers) == 1
    (role,) = readers[0]["Roles"]
    assert "ExecutionRole" in role["Ref"]


def test_an_existing_secret_named_by_context_is_used_and_none_created(
    hosted_zone: Synthesized,
) -> None:
    assert hosted_zone.resources("AWS::SecretsManager::Secret") == {}
    (secret,) = hosted_zone.container()["Secrets"]
    assert secret["Name"] == "SERVICE_API_KEYS"
    assert f":secret:{EXISTING_SECRET}" in str(secret["ValueFrom"])


def test_with_keys_off_there_is_no_secret_and_nothing_injected(open_stack: Synthesized) -> None:
    assert open_stack.resources("AWS::SecretsManager::Secret") == {}
    assert "Secrets" not in open_stack.container()


def test_keys_over_plain_http_fail_synthesis_with_one_line_unless_accepted() -> None:
    defaults: dict[str, Any] = {**CDK_JSON["context"], **KEYS_OVER_HTTP}
    with pytest.raises(ContextError) as caught:
        DeploymentSettings.from_context(defaults.get)
    assert str(caught.value) == CLEAR_TEXT_KEYS
    assert "\n" not in CLEAR_TEXT_KEYS
    assert "clear text" in CLEAR_TEXT_KEYS
    accepted = {**defaults, "allowPlainHttp": "true"}
    assert DeploymentSettings.from_context(accepted.get).allow_plain_http
    keyless = {**defaults, "apiKeys": "false"}
    assert not DeploymentSettings.from_context(keyless.get).api_keys
