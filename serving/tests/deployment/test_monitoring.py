"""The service watching itself: alarms on their metrics with the context's thresholds, the
deployment alarms that roll a bad release back, the encrypted topic they notify, and the
dashboard. Each test names what a deployed service would lose if it failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deployment.stack.model_signals import ModelMetadataError, ModelSignals
from deployment.stack.service_stack import DASHBOARD_OUTPUT

from .conftest import (
    MODEL_METADATA,
    REGION,
    TRIAL_CONTEXT,
    VARIANTS,
    Synthesized,
    image_context,
    synthesize,
)

pytestmark = pytest.mark.slow

DEFAULTS: dict[str, Any] = TRIAL_CONTEXT
PERIOD = DEFAULTS["alarmPeriodSeconds"]
METADATA: dict[str, Any] = json.loads(MODEL_METADATA.read_text(encoding="utf-8"))


def alarm_resource(synth: Synthesized, name: str) -> tuple[str, dict[str, Any]]:
    """The logical id and properties of the alarm construct `name` (Monitoring<name>...)."""
    found = [
        (logical_id, body["Properties"])
        for logical_id, body in synth.resources("AWS::CloudWatch::Alarm").items()
        if logical_id.startswith(f"Monitoring{name}")
    ]
    assert len(found) == 1, f"expected one alarm {name}"
    logical_id, properties = found[0]
    return logical_id, dict(properties)


def alarm(synth: Synthesized, name: str) -> dict[str, Any]:
    return alarm_resource(synth, name)[1]


def queries(properties: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The alarm's metric-math inputs by id (expressions and metric stats)."""
    return {query["Id"]: query for query in properties["Metrics"]}


def stat_of(query: dict[str, Any]) -> tuple[str, str, str, int]:
    stat = query["MetricStat"]
    metric = stat["Metric"]
    return metric["Namespace"], metric["MetricName"], stat["Stat"], stat["Period"]


def service_dimension(query: dict[str, Any]) -> list[dict[str, Any]]:
    dimensions: list[dict[str, Any]] = query["MetricStat"]["Metric"]["Dimensions"]
    return dimensions


def topic_id(synth: Synthesized) -> str:
    (logical_id,) = synth.resources("AWS::SNS::Topic")
    return logical_id


ALARMS = [
    "Target5xxRate",
    "LoadBalancer5xx",
    "LatencyP99",
    "UnhealthyTargets",
    "TasksBelowDesired",
    "OutOfRangeRate",
]


def test_exactly_the_six_alarms_exist(http: Synthesized) -> None:
    assert len(http.resources("AWS::CloudWatch::Alarm")) == len(ALARMS)
    for name in ALARMS:
        alarm(http, name)


@pytest.mark.parametrize("name", ALARMS)
def test_every_alarm_notifies_the_topic_on_alarm_and_on_recovery(
    http: Synthesized, name: str
) -> None:
    properties = alarm(http, name)
    topic = {"Ref": topic_id(http)}
    assert properties["AlarmActions"] == [topic]
    assert properties["OKActions"] == [topic]
    # No traffic is not an incident: missing data never fires an alarm.
    assert properties["TreatMissingData"] == "notBreaching"
    assert properties["EvaluationPeriods"] == DEFAULTS["alarmEvaluationPeriods"]
    assert properties["DatapointsToAlarm"] == DEFAULTS["alarmEvaluationPeriods"]


def test_target_5xx_alarm_is_a_rate_of_requests_not_a_count(http: Synthesized) -> None:
    properties = alarm(http, "Target5xxRate")
    by_id = queries(properties)
    (expression,) = [q for q in by_id.values() if "Expression" in q]
    assert expression["Expression"] == "IF(requests > 0, 100 * FILL(errors, 0) / requests, 0)"
    assert expression["ReturnData"] is True
    assert stat_of(by_id["requests"]) == ("AWS/ApplicationELB", "RequestCount", "Sum", PERIOD)
    assert stat_of(by_id["errors"]) == (
        "AWS/ApplicationELB",
        "HTTPCode_Target_5XX_Count",
        "Sum",
        PERIOD,
    )
    assert properties["Threshold"] == DEFAULTS["target5xxRatePercent"]
    assert properties["ComparisonOperator"] == "GreaterThanThreshold"


def test_load_balancer_5xx_alarm_counts_errors_the_balancer_generates(http: Synthesized) -> None:
    properties = alarm(http, "LoadBalancer5xx")
    (query,) = properties["Metrics"]
    assert stat_of(query) == ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "Sum", PERIOD)
    assert properties["Threshold"] == DEFAULTS["loadBalancer5xxCount"]
    assert properties["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_latency_alarm_is_the_p99_target_response_time_in_seconds(http: Synthesized) -> None:
    properties = alarm(http, "LatencyP99")
    (query,) = properties["Metrics"]
    assert stat_of(query) == ("AWS/ApplicationELB", "TargetResponseTime", "p99", PERIOD)
    assert properties["Threshold"] == DEFAULTS["latencyP99Milliseconds"] / 1000


def test_unhealthy_target_alarm_fires_on_one_unhealthy_task(http: Synthesized) -> None:
    properties = alarm(http, "UnhealthyTargets")
    (query,) = properties["Metrics"]
    assert stat_of(query) == ("AWS/ApplicationELB", "UnHealthyHostCount", "Maximum", PERIOD)
    assert properties["Threshold"] == 1
    assert properties["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_tasks_alarm_compares_running_with_desired_from_container_insights(
    http: Synthesized,
) -> None:
    properties = alarm(http, "TasksBelowDesired")
    by_id = queries(properties)
    assert by_id["expr_1"]["Expression"] == "desired - running"
    assert stat_of(by_id["running"])[:2] == ("ECS/ContainerInsights", "RunningTaskCount")
    assert stat_of(by_id["desired"])[:2] == ("ECS/ContainerInsights", "DesiredTaskCount")
    (service_id,) = http.resources("AWS::ECS::Service")
    assert {"Name": "ServiceName", "Value": {"Fn::GetAtt": [service_id, "Name"]}} in (
        service_dimension(by_id["running"])
    )
    assert properties["Threshold"] == 1


def test_out_of_range_alarm_is_the_rate_of_records_from_the_services_own_metrics(
    http: Synthesized,
) -> None:
    properties = alarm(http, "OutOfRangeRate")
    by_id = queries(properties)
    assert by_id["expr_1"]["Expression"] == (
        f"IF(FILL(records, 0) >= {DEFAULTS['outOfRangeMinRecords']}, "
        "100 * FILL(outside, 0) / records, 0)"
    )
    namespace = DEFAULTS["metricsNamespace"]
    assert stat_of(by_id["records"]) == (namespace, "RecordsScored", "Sum", PERIOD)
    assert stat_of(by_id["outside"]) == (namespace, "OutOfRangeRecords", "Sum", PERIOD)
    # The Service dimension alone: old and new model versions count together in a rollout.
    service = [{"Name": "Service", "Value": DEFAULTS["serviceName"]}]
    assert service_dimension(by_id["records"]) == service
    assert service_dimension(by_id["outside"]) == service
    assert properties["Threshold"] == DEFAULTS["outOfRangeRatePercent"]


def test_thresholds_and_periods_come_from_context(hosted_zone: Synthesized) -> None:
    assert alarm(hosted_zone, "Target5xxRate")["Threshold"] == 2.5
    assert alarm(hosted_zone, "LoadBalancer5xx")["Threshold"] == 25
    assert alarm(hosted_zone, "LatencyP99")["Threshold"] == 0.75
    assert alarm(hosted_zone, "OutOfRangeRate")["Threshold"] == 20
    for name in ALARMS:
        properties = alarm(hosted_zone, name)
        assert (properties["EvaluationPeriods"], properties["DatapointsToAlarm"]) == (2, 2)
        periods = {
            query["MetricStat"]["Period"]
            for query in properties["Metrics"]
            if "MetricStat" in query
        }
        assert periods == {300}
    by_id = queries(alarm(hosted_zone, "OutOfRangeRate"))
    assert "FILL(records, 0) >= 500" in by_id["expr_1"]["Expression"]
    assert stat_of(by_id["records"])[0] == "Penguins/Prod"
    assert service_dimension(by_id["records"]) == [{"Name": "Service", "Value": "penguins-api"}]


def test_5xx_and_latency_alarms_roll_a_deployment_back_beside_the_circuit_breaker(
    http: Synthesized,
) -> None:
    service = next(iter(http.resources("AWS::ECS::Service").values()))
    configuration = service["Properties"]["DeploymentConfiguration"]
    names = ["Target5xxRate", "LoadBalancer5xx", "LatencyP99"]
    assert configuration["Alarms"] == {
        "AlarmNames": [alarm(http, name)["AlarmName"] for name in names],
        "Enable": True,
        "Rollback": True,
    }
    assert configuration["Alarms"]["AlarmNames"][0] == f"{DEFAULTS['stackName']}-Target5xxRate"
    # The service names the alarms as strings, so it must be created after them.
    assert {alarm_resource(http, name)[0] for name in names} <= set(service["DependsOn"])
    assert configuration["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    # Deployment alarms need the ECS (rolling update) deployment controller, the default.
    controller = service["Properties"].get("DeploymentController", {"Type": "ECS"})
    assert controller == {"Type": "ECS"}


def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(http: Synthesized) -> None:
    topic = http.only("AWS::SNS::Topic")
    (key_id,) = http.resources("AWS::KMS::Key")
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    key = http.only("AWS::KMS::Key")
    cloudwatch = [
        statement
        for statement in key["KeyPolicy"]["Statement"]
        if statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(cloudwatch) == 1
    assert set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_alarm_topic_refuses_publishing_without_tls(http: Synthesized) -> None:
    policy = http.only("AWS::SNS::TopicPolicy")
    statements = policy["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )


def test_no_email_subscription_without_an_address(certificate: Synthesized) -> None:
    assert VARIANTS["certificate"]["alarmEmail"] == ""
    assert not certificate.resources("AWS::SNS::Subscription")


def test_alarm_email_subscribes_that_address_to_the_topic(hosted_zone: Synthesized) -> None:
    subscription = hosted_zone.only("AWS::SNS::Subscription")
    assert subscription["Protocol"] == "email"
    assert subscription["Endpoint"] == "oncall@example.com"
    assert subscription["TopicArn"] == {"Ref": topic_id(hosted_zone)}


def dashboard(synth: Synthesized) -> dict[str, Any]:
    """The dashboard body as JSON, each CloudFormation reference replaced by a placeholder."""
    body = synth.only("AWS::CloudWatch::Dashboard")["DashboardBody"]
    parts = body["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else "TOKEN" for part in parts)
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def widget_metrics(body: dict[str, Any], title_part: str) -> list[tuple[str, str, str]]:
    """(namespace, metric name, stat) of each metric plotted in the widget whose title has
    the text."""
    (widget,) = [w for w in body["widgets"] if title_part in w["properties"].get("title", "")]
    found = []
    for line in widget["properties"]["metrics"]:
        if isinstance(line[-1], dict) and "expression" in line[-1]:
            continue
        options = line[-1] if isinstance(line[-1], dict) else {}
        if options.get("visible") is False:  # an input of a plotted expression
            continue
        found.append((line[0], line[1], options.get("stat", "")))
    return found


def test_dashboard_shows_the_alarms(http: Synthesized) -> None:
    body = dashboard(http)
    (status,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert len(status["properties"]["alarms"]) == len(ALARMS)


def test_dashboard_charts_requests_latency_and_errors(http: Synthesized) -> None:
    body = dashboard(http)
    namespace = DEFAULTS["metricsNamespace"]
    assert (namespace, "Requests", "Sum") in widget_metrics(body, "Requests")
    latency = widget_metrics(body, "Latency")
    assert (namespace, "Latency", "p50") in latency
    assert (namespace, "Latency", "p99") in latency
    errors = {(ns, name) for ns, name, _ in widget_metrics(body, "4xx / 5xx")}
    assert {
        (namespace, "Status4xx"),
        (namespace, "Status5xx"),
        (namespace, "ClientAborts"),
        ("AWS/ApplicationELB", "HTTPCode_Target_4XX_Count"),
        ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count"),
    } <= errors


@pytest.mark.classification_only(
    "test_dashboard_charts_a_regressors_prediction_bins_and_no_classes"
)
def test_dashboard_charts_predictions_for_every_class_of_the_model(http: Synthesized) -> None:
    names = {name for _, name, _ in widget_metrics(dashboard(http), "Predictions by class")}
    assert names == {f"Predicted_{label}" for label in METADATA["classes"]}


def regression_image(directory: Path, bins: dict[str, float] | None) -> Path:
    """An image context whose model is a regressor over the example's features, with a
    reference profile whose training predictions fall in `bins` (none: no profile)."""
    image_context(directory)
    data = directory / "data"
    regressor = {**METADATA, "task": "regression", "classes": []}
    (data / "model_metadata.json").write_text(json.dumps(regressor), encoding="utf-8")
    if bins is not None:
        profile = {"predictions": {"minimum": 0, "maximum": 1, "bins": bins}}
        (data / "reference_profile.json").write_text(json.dumps(profile), encoding="utf-8")
    return directory


BINS = {"p0-p25": 0.25, "p25-p50": 0.25, "p50-p75": 0.25, "p75-p100": 0.25}


def test_dashboard_charts_a_regressors_prediction_bins_and_no_classes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    image = regression_image(tmp_path_factory.mktemp("regression-image"), BINS)
    synth = synthesize(VARIANTS["http"], tmp_path_factory.mktemp("cdk.out-regression"), image)
    body = dashboard(synth)
    names = {name for _, name, _ in widget_metrics(body, "Predictions by bin")}
    assert names == {f"PredictionBin_{b}" for b in ("below", *BINS, "above")}
    assert "Predicted_" not in json.dumps(body)
    assert not [w for w in body["widgets"] if "by class" in w["properties"].get("title", "")]


def test_a_regressor_without_a_profile_has_no_bins_and_a_classifier_needs_classes(
    tmp_path: Path,
) -> None:
    image = regression_image(tmp_path / "image", None)
    signals = ModelSignals.read(image / "data" / "model_metadata.json")
    assert (signals.task, signals.classes, signals.prediction_bins) == ("regression", (), ())
    classless = {**METADATA, "task": "classification", "classes": []}
    (image / "data" / "model_metadata.json").write_text(json.dumps(classless), encoding="utf-8")
    with pytest.raises(ModelMetadataError, match="needs its classes"):
        ModelSignals.read(image / "data" / "model_metadata.json")


def test_dashboard_charts_drift_for_every_feature_of_the_model(http: Synthesized) -> None:
    features = METADATA["input_schema"]["features"]
    body = dashboard(http)
    drift = {name for _, name, _ in widget_metrics(body, "outside the training range")}
    assert drift == {
        f"OutOfRange_{f['name']}" for f in features if f["type"] in ("number", "date")
    } | {f"UnseenCategory_{f['name']}" for f in features if f["type"] == "category"}
    missing = {name for _, name, _ in widget_metrics(body, "missing values")}
    assert missing == {f"Missing_{f['name']}" for f in features}


def test_a_date_feature_is_read_as_a_ranged_feature_like_a_number(tmp_path: Path) -> None:
    """A model with a date column (a fork's data, docs/training.md) is read, not refused, and
    its date is a ranged feature, which the drift chart lists (test above): the service counts
    a date outside its training range as it does a number (app/drift.py)."""
    image = image_context(tmp_path / "image")
    features = [*METADATA["input_schema"]["features"], {"name": "Year", "type": "date"}]
    dated = {**METADATA, "input_schema": {**METADATA["input_schema"], "features": features}}
    (image / "data" / "model_metadata.json").write_text(json.dumps(dated), encoding="utf-8")
    signals = ModelSignals.read(image / "data" / "model_metadata.json")
    assert signals.ranged_features[-1] == signals.features[-1] == "Year"


def test_dashboard_charts_cpu_and_memory_of_the_service(http: Synthesized) -> None:
    names = {(ns, name) for ns, name, _ in widget_metrics(dashboard(http), "CPU and memory")}
    assert names == {("AWS/ECS", "CPUUtilization"), ("AWS/ECS", "MemoryUtilization")}


def test_dashboard_url_is_a_stack_output(http: Synthesized) -> None:
    (dashboard_id,) = http.resources("AWS::CloudWatch::Dashboard")
    output = http.template.to_json()["Outputs"][DASHBOARD_OUTPUT]
    assert output["Value"] == {
        "Fn::Join": [
            "",
            [
                "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
                "#dashboards/dashboard/",
                {"Ref": dashboard_id},
            ],
        ]
    }


def references(value: Any) -> set[str]:
    """Logical ids a template value points at (Ref, Fn::GetAtt), recursively."""
    if isinstance(value, dict):
        found: set[str] = set()
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            else:
                found |= references(inner)
        return found
    if isinstance(value, list):
        return set().union(*(references(item) for item in value)) if value else set()
    return set()


@pytest.mark.parametrize("variant", ["http", "hosted_zone"])
def test_template_has_no_dependency_cycle_cloudformation_would_refuse(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    resources = synth.template.to_json()["Resources"]
    graph = {
        logical_id: (references(body.get("Properties", {})) | set(body.get("DependsOn", [])))
        & set(resources)
        for logical_id, body in resources.items()
    }
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {node for node, needs in graph.items() if node not in done and needs <= done}
        assert ready, f"dependency cycle among {sorted(set(graph) - done)}"
        done |= ready


def test_dashboard_charts_requests_the_firewall_blocked_by_rate_and_by_managed_rules(
    http: Synthesized,
) -> None:
    acl = http.only("AWS::WAFv2::WebACL")
    (widget,) = [w for w in dashboard(http)["widgets"] if "Firewall" in w["properties"]["title"]]
    plotted = []
    for line in widget["properties"]["metrics"]:
        namespace, name, *rest = line
        dimensions = dict(zip(rest[0:-1:2], rest[1:-1:2], strict=True))
        assert (namespace, name, rest[-1]["stat"]) == ("AWS/WAFV2", "BlockedRequests", "Sum")
        # The dimensions the web ACL publishes: its metric names, in the stack's region.
        assert dimensions["WebACL"] == acl["VisibilityConfig"]["MetricName"] == acl["Name"]
        assert dimensions["Region"] == REGION
        plotted.append(dimensions["Rule"])
    assert plotted == [
        "RateLimitPerClient",
        "AWSManagedRulesAmazonIpReputationList",
        "AWSManagedRulesKnownBadInputsRuleSet",
    ]
    assert {rule["VisibilityConfig"]["MetricName"] for rule in acl["Rules"]} == set(plotted)
