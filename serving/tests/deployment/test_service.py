"""The service as deployed without a domain (cdk.json's defaults): tasks, deployment safety,
health checks, load balancer, autoscaling, logs. Each test names the property it protects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match

from app.settings import Settings
from deployment.stack.service_stack import (
    ALARM_TOPIC_OUTPUT,
    API_KEYS_SECRET_OUTPUT,
    CLUSTER_OUTPUT,
    DASHBOARD_OUTPUT,
    ECS_SERVICE_OUTPUT,
    LOAD_BALANCER_OUTPUT,
    SERVICE_URL_OUTPUT,
)
from deployment.stack.settings import workers_for

from .conftest import (
    GIT_REVISION,
    SERVICE_PORT,
    TRIAL_CONTEXT,
    Synthesized,
    image_context,
    synthesize,
)

pytestmark = pytest.mark.slow

DEFAULTS: dict[str, Any] = TRIAL_CONTEXT


def environment(synth: Synthesized) -> dict[str, str]:
    return {item["Name"]: item["Value"] for item in synth.container()["Environment"]}


def test_image_is_built_for_linux_amd64_so_it_runs_on_x86_fargate_from_any_laptop(
    http: Synthesized,
) -> None:
    images = http.assets["dockerImages"]
    assert len(images) == 1
    assert next(iter(images.values()))["source"]["platform"] == "linux/amd64"
    runtime = http.only("AWS::ECS::TaskDefinition")["RuntimePlatform"]
    assert runtime == {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"}


def test_task_size_comes_from_context(http: Synthesized, hosted_zone: Synthesized) -> None:
    task = http.only("AWS::ECS::TaskDefinition")
    assert (task["Cpu"], task["Memory"]) == (str(DEFAULTS["cpu"]), str(DEFAULTS["memoryMiB"]))
    task = hosted_zone.only("AWS::ECS::TaskDefinition")
    assert (task["Cpu"], task["Memory"]) == ("1024", "2048")
    assert task["RequiresCompatibilities"] == ["FARGATE"]


def test_container_listens_on_the_dockerfiles_port(http: Synthesized) -> None:
    assert http.container()["PortMappings"] == [{"ContainerPort": SERVICE_PORT, "Protocol": "tcp"}]


def test_root_filesystem_is_read_only_with_a_writable_tmp_volume(http: Synthesized) -> None:
    spec = http.container()
    assert spec["ReadonlyRootFilesystem"] is True
    assert spec["MountPoints"] == [
        {"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "tmp"}
    ]
    # Task storage, not a host path: Fargate has none, and it dies with the task.
    assert http.only("AWS::ECS::TaskDefinition")["Volumes"] == [{"Name": "tmp"}]


def test_container_runs_as_the_dockerfiles_non_root_numeric_user(http: Synthesized) -> None:
    assert http.container()["User"] == "10001:10001"


def test_stop_timeout_outlasts_gunicorns_graceful_timeout(http: Synthesized) -> None:
    spec = http.container()
    graceful = int(environment(http)["SERVICE_GRACEFUL_TIMEOUT_SECONDS"])
    assert spec["StopTimeout"] == 30
    # In-flight requests get the whole graceful period before SIGKILL, with slack.
    assert spec["StopTimeout"] >= graceful + 5


def test_container_health_check_is_the_images_healthcheck_command(http: Synthesized) -> None:
    """The command names no port: app.healthcheck probes the one SERVICE_BIND names."""
    check = http.container()["HealthCheck"]
    assert check["Command"] == ["CMD", "python", "-m", "app.healthcheck"]
    assert (check["Interval"], check["Timeout"], check["Retries"]) == (
        DEFAULTS["healthCheckIntervalSeconds"],
        DEFAULTS["healthCheckTimeoutSeconds"],
        DEFAULTS["unhealthyThresholdCount"],
    )
    assert check["StartPeriod"] == 60


def test_container_reports_the_git_revision_it_was_deployed_from(http: Synthesized) -> None:
    assert environment(http)["GIT_REVISION"] == GIT_REVISION


def test_forwarded_headers_are_trusted_only_from_the_vpc_where_the_balancer_lives(
    http: Synthesized,
) -> None:
    trusted: Any = environment(http)["SERVICE_FORWARDED_ALLOW_IPS"]
    vpc = http.template.find_resources("AWS::EC2::VPC")
    assert len(vpc) == 1
    assert trusted == {"Fn::GetAtt": [next(iter(vpc)), "CidrBlock"]}


def test_environment_holds_no_secrets(http: Synthesized) -> None:
    assert set(environment(http)) == {
        "GIT_REVISION",
        "SERVICE_GRACEFUL_TIMEOUT_SECONDS",
        "SERVICE_WORKERS",
        "SERVICE_METRICS_NAMESPACE",
        "SERVICE_NAME",
        "SERVICE_FORWARDED_ALLOW_IPS",
    }
    # The one secret, the API keys, reaches the container through ECS `secrets`.
    assert [secret["Name"] for secret in http.container()["Secrets"]] == ["SERVICE_API_KEYS"]
    suspicious = re.compile(r"SECRET|PASSWORD|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
    assert not [name for name in environment(http) if suspicious.search(name)]


def test_container_logs_go_to_the_explicit_log_group_without_blocking_the_app(
    http: Synthesized,
) -> None:
    logging = http.container()["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    options = logging["Options"]
    assert options["mode"] == "non-blocking"
    (log_group_id,) = [
        logical_id
        for logical_id in http.resources("AWS::Logs::LogGroup")
        if logical_id.startswith("ObservabilityServiceLogs")
    ]
    assert options["awslogs-group"] == {"Ref": log_group_id}


def test_deployment_rolls_back_through_the_circuit_breaker_and_keeps_full_capacity(
    http: Synthesized,
) -> None:
    service = http.only("AWS::ECS::Service")
    # The deployment alarms beside the circuit breaker are checked in test_monitoring.py.
    configuration = {
        key: value for key, value in service["DeploymentConfiguration"].items() if key != "Alarms"
    }
    assert configuration == {
        "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
        "MaximumPercent": 200,
        "MinimumHealthyPercent": 100,
    }
    assert service["LaunchType"] == "FARGATE"


def test_health_check_grace_period_outlasts_the_cold_start(http: Synthesized) -> None:
    assert http.only("AWS::ECS::Service")["HealthCheckGracePeriodSeconds"] == 60


def test_desired_count_comes_from_context(http: Synthesized, hosted_zone: Synthesized) -> None:
    assert http.only("AWS::ECS::Service")["DesiredCount"] == DEFAULTS["desiredCount"]
    assert hosted_zone.only("AWS::ECS::Service")["DesiredCount"] == 3


def test_tasks_run_in_private_subnets_without_public_ips(http: Synthesized) -> None:
    network = http.only("AWS::ECS::Service")["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    private = {
        logical_id
        for logical_id in http.resources("AWS::EC2::Subnet")
        if "PrivateSubnet" in logical_id
    }
    assert {subnet["Ref"] for subnet in network["Subnets"]} == private


def test_tasks_accept_traffic_only_from_the_load_balancer_on_the_service_port(
    http: Synthesized,
) -> None:
    ingress = http.resources("AWS::EC2::SecurityGroupIngress")
    assert len(ingress) == 1
    rule = next(iter(ingress.values()))["Properties"]
    assert (rule["FromPort"], rule["ToPort"]) == (SERVICE_PORT, SERVICE_PORT)
    assert "SourceSecurityGroupId" in rule
    assert "CidrIp" not in rule


def test_target_group_checks_readiness_with_the_context_interval_and_thresholds(
    http: Synthesized, hosted_zone: Synthesized
) -> None:
    group = http.only("AWS::ElasticLoadBalancingV2::TargetGroup")
    # Readiness: a task takes traffic once a worker has made its warm-up prediction.
    assert group["HealthCheckPath"] == "/ready"
    assert group["HealthCheckIntervalSeconds"] == DEFAULTS["healthCheckIntervalSeconds"]
    assert group["HealthCheckTimeoutSeconds"] == DEFAULTS["healthCheckTimeoutSeconds"]
    assert group["HealthyThresholdCount"] == DEFAULTS["healthyThresholdCount"]
    assert group["UnhealthyThresholdCount"] == DEFAULTS["unhealthyThresholdCount"]
    changed = hosted_zone.only("AWS::ElasticLoadBalancingV2::TargetGroup")
    assert (
        changed["HealthCheckIntervalSeconds"],
        changed["HealthCheckTimeoutSeconds"],
        changed["HealthyThresholdCount"],
        changed["UnhealthyThresholdCount"],
    ) == (15, 4, 3, 4)
    assert group["Matcher"] == {"HttpCode": "200"}
    assert group["TargetType"] == "ip"
    # ECS registers each task's address on the container port, whatever the group's port.
    (attachment,) = http.only("AWS::ECS::Service")["LoadBalancers"]
    assert (attachment["ContainerName"], attachment["ContainerPort"]) == ("web", SERVICE_PORT)


def test_deregistration_delay_is_the_context_value_not_the_300_second_default(
    http: Synthesized, hosted_zone: Synthesized
) -> None:
    # Without the attribute the load balancer would wait its default, 300 s.
    attributes = http.only("AWS::ElasticLoadBalancingV2::TargetGroup")["TargetGroupAttributes"]
    delay = str(DEFAULTS["deregistrationDelaySeconds"])
    assert {"Key": "deregistration_delay.timeout_seconds", "Value": delay} in attributes
    attributes = hosted_zone.only("AWS::ElasticLoadBalancingV2::TargetGroup")[
        "TargetGroupAttributes"
    ]
    assert {"Key": "deregistration_delay.timeout_seconds", "Value": "20"} in attributes


def test_worker_count_follows_the_task_cpu_and_matches_the_services_default(
    http: Synthesized, hosted_zone: Synthesized
) -> None:
    # The service's own default (make serve, tests) is the count the stack gives cdk.json's
    # task, so both sides agree on one number.
    workers = workers_for(DEFAULTS["cpu"])
    assert environment(http)["SERVICE_WORKERS"] == str(workers)
    assert Settings.model_fields["workers"].default == workers, (
        f"cdk.json's cpu {DEFAULTS['cpu']} gives each task {workers} workers: set the default "
        "of `workers` in serving/app/settings.py to that, so local runs match the cloud's"
    )
    # 1024 units (the hosted-zone variant) is one vCPU: still two, never fewer.
    assert environment(hosted_zone)["SERVICE_WORKERS"] == "2"


def test_container_emits_metrics_where_the_alarms_read_them(http: Synthesized) -> None:
    env = environment(http)
    assert env["SERVICE_METRICS_NAMESPACE"] == DEFAULTS["metricsNamespace"]
    assert env["SERVICE_NAME"] == DEFAULTS["serviceName"]


def load_balancer_attributes(synth: Synthesized) -> dict[str, Any]:
    balancer = synth.only("AWS::ElasticLoadBalancingV2::LoadBalancer")
    return {item["Key"]: item["Value"] for item in balancer["LoadBalancerAttributes"]}


def test_load_balancer_is_public_and_defends_against_http_desync(http: Synthesized) -> None:
    assert http.only("AWS::ElasticLoadBalancingV2::LoadBalancer")["Scheme"] == "internet-facing"
    assert load_balancer_attributes(http)["routing.http.desync_mitigation_mode"] == "defensive"


def access_logs_bucket_id(synth: Synthesized) -> str:
    (bucket_id,) = synth.resources("AWS::S3::Bucket")
    return bucket_id


def test_load_balancer_writes_access_logs_to_the_stacks_bucket(http: Synthesized) -> None:
    attributes = load_balancer_attributes(http)
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.bucket"] == {"Ref": access_logs_bucket_id(http)}


def test_access_log_bucket_is_sse_s3_owner_enforced_and_expires_logs(http: Synthesized) -> None:
    bucket = http.only("AWS::S3::Bucket")
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (lifecycle,) = bucket["LifecycleConfiguration"]["Rules"]
    assert lifecycle["ExpirationInDays"] == DEFAULTS["logRetentionDays"]


def test_log_groups_keep_logs_for_the_configured_retention(
    http: Synthesized, hosted_zone: Synthesized
) -> None:
    for synth, days in ((http, DEFAULTS["logRetentionDays"]), (hosted_zone, 90)):
        groups = synth.resources("AWS::Logs::LogGroup")
        assert len(groups) == 3  # the service's, the VPC flow logs' and the firewall's
        assert {group["Properties"]["RetentionInDays"] for group in groups.values()} == {days}


def test_vpc_flow_logs_capture_all_traffic(http: Synthesized) -> None:
    flow_log = http.only("AWS::EC2::FlowLog")
    assert flow_log["ResourceType"] == "VPC"
    assert flow_log["TrafficType"] == "ALL"
    assert flow_log["LogDestinationType"] == "cloud-watch-logs"


def test_nat_gateway_count_comes_from_context(http: Synthesized, hosted_zone: Synthesized) -> None:
    assert len(http.resources("AWS::EC2::NatGateway")) == DEFAULTS["natGateways"]
    assert len(hosted_zone.resources("AWS::EC2::NatGateway")) == 2


def test_public_subnets_do_not_hand_out_public_ips(http: Synthesized) -> None:
    subnets = http.resources("AWS::EC2::Subnet")
    assert len(subnets) == 4  # public and private, in two availability zones
    assert all(subnet["Properties"]["MapPublicIpOnLaunch"] is False for subnet in subnets.values())


def scaling_policies(synth: Synthesized) -> dict[str, dict[str, Any]]:
    policies = {}
    for policy in synth.resources("AWS::ApplicationAutoScaling::ScalingPolicy").values():
        configuration = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        metric = configuration["PredefinedMetricSpecification"]["PredefinedMetricType"]
        policies[metric] = configuration
    return policies


def test_autoscaling_between_min_and_max_on_cpu_and_requests(
    http: Synthesized, hosted_zone: Synthesized
) -> None:
    target = http.only("AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (
        DEFAULTS["minCapacity"],
        DEFAULTS["maxCapacity"],
    )
    policies = scaling_policies(http)
    assert set(policies) == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}
    assert (
        policies["ECSServiceAverageCPUUtilization"]["TargetValue"] == DEFAULTS["cpuTargetPercent"]
    )
    assert policies["ALBRequestCountPerTarget"]["TargetValue"] == DEFAULTS["requestsPerTarget"]

    target = hosted_zone.only("AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 6)
    policies = scaling_policies(hosted_zone)
    assert policies["ECSServiceAverageCPUUtilization"]["TargetValue"] == 50
    assert policies["ALBRequestCountPerTarget"]["TargetValue"] == 1200


def test_without_a_domain_the_service_is_http_only_on_port_80(http: Synthesized) -> None:
    listener = http.only("AWS::ElasticLoadBalancingV2::Listener")
    assert (listener["Protocol"], listener["Port"]) == ("HTTP", 80)
    # What it forwards, and the 404 for the rest: test_access.
    assert listener["DefaultActions"][0]["Type"] == "fixed-response"
    assert not http.resources("AWS::CertificateManager::Certificate")


def test_service_url_output_is_the_load_balancers_http_address(http: Synthesized) -> None:
    (balancer_id,) = http.resources("AWS::ElasticLoadBalancingV2::LoadBalancer")
    http.template.has_output(
        SERVICE_URL_OUTPUT,
        {"Value": {"Fn::Join": ["", ["http://", {"Fn::GetAtt": [balancer_id, "DNSName"]}]]}},
    )


def test_stack_pins_no_account_so_synthesis_needs_no_aws_lookup(http: Synthesized) -> None:
    assert http.stack.region == "eu-west-1"
    # The account stays the deploying credentials': CDK then looks up no availability zones.
    assert cdk.Token.is_unresolved(http.stack.account)
    http.template.has_resource_properties(
        "AWS::EC2::Subnet",
        {
            "AvailabilityZone": {
                "Fn::Select": [0, Match.object_like({"Fn::GetAZs": Match.any_value()})]
            }
        },
    )


def test_outputs_are_the_url_balancer_dashboard_alarm_topic_key_secret_and_ecs_names(
    http: Synthesized,
) -> None:
    (balancer_id,) = http.resources("AWS::ElasticLoadBalancingV2::LoadBalancer")
    outputs = http.template.to_json()["Outputs"]
    assert set(outputs) == {
        SERVICE_URL_OUTPUT,
        LOAD_BALANCER_OUTPUT,
        DASHBOARD_OUTPUT,
        ALARM_TOPIC_OUTPUT,
        API_KEYS_SECRET_OUTPUT,
        CLUSTER_OUTPUT,
        ECS_SERVICE_OUTPUT,
    }
    assert outputs[LOAD_BALANCER_OUTPUT]["Value"] == {"Fn::GetAtt": [balancer_id, "DNSName"]}


def test_another_port_in_the_dockerfile_moves_the_task_group_and_checks_with_it(
    tmp_path: Path,
) -> None:
    """The port is written in the Dockerfile only: changed there, the container port, the
    security group rule and the load balancer's target follow it, and the health check, which
    names no port, stays the image's."""
    port = 9123
    synth = synthesize(
        {"gitRevision": GIT_REVISION, "allowPlainHttp": "true"},
        tmp_path / "cdk.out",
        image_context(tmp_path / "context", port=port),
    )
    assert synth.container()["PortMappings"] == [{"ContainerPort": port, "Protocol": "tcp"}]
    (rule,) = [r["Properties"] for r in synth.resources("AWS::EC2::SecurityGroupIngress").values()]
    assert (rule["FromPort"], rule["ToPort"]) == (port, port)
    (attachment,) = synth.only("AWS::ECS::Service")["LoadBalancers"]
    assert attachment["ContainerPort"] == port
    assert synth.container()["HealthCheck"]["Command"] == ["CMD", "python", "-m", "app.healthcheck"]
