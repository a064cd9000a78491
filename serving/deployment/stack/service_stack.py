"""The one stack of the app, composed of its parts, each configured by keyword from the one
validated settings object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from constructs import Construct

from deployment.stack.compliance import skip_checkov
from deployment.stack.firewall import Firewall
from deployment.stack.model_signals import ModelSignals
from deployment.stack.monitoring import Monitoring
from deployment.stack.network import Network
from deployment.stack.observability import Observability
from deployment.stack.scoring_job import ScoringJob, ScoringJobSettings
from deployment.stack.service import Service
from deployment.stack.settings import DeploymentSettings

# CloudWatch Logs retention in days -> the enum CDK expects.
RETENTION: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}

# The stable name of the output the deploy workflow's smoke test reads.
SERVICE_URL_OUTPUT = "ServiceUrl"
LOAD_BALANCER_OUTPUT = "LoadBalancerDnsName"
DASHBOARD_OUTPUT = "DashboardUrl"
ALARM_TOPIC_OUTPUT = "AlarmTopicArn"
# The secret holding the API keys (the smoke test reads a key from it), and what the
# one-command forced deployment names (docs/security.md, "Rotating a key").
API_KEYS_SECRET_OUTPUT = "ApiKeysSecretArn"  # noqa: S105 - an output name
CLUSTER_OUTPUT = "ClusterName"
ECS_SERVICE_OUTPUT = "EcsServiceName"


class ServiceStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploymentSettings,
        image_directory: Path,
        container_user: str,
        model: ModelSignals,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        retention = RETENTION[settings.log_retention_days]

        network = Network(
            self, "Network", nat_gateways=settings.nat_gateways, log_retention=retention
        )
        observability = Observability(
            self,
            "Observability",
            log_retention=retention,
            log_retention_days=settings.log_retention_days,
        )
        service = Service(
            self,
            "Service",
            vpc=network.vpc,
            log_group=observability.service_log_group,
            access_logs_bucket=observability.access_logs_bucket,
            settings=settings,
            image_directory=image_directory,
            container_user=container_user,
        )
        firewall = Firewall(
            self,
            "Firewall",
            load_balancer=service.load_balancer,
            settings=settings,
            log_retention=retention,
        )
        monitoring = Monitoring(
            self,
            "Monitoring",
            service=service.fargate.service,
            load_balancer=service.load_balancer,
            target_group=service.fargate.target_group,
            firewall=firewall.metrics,
            settings=settings,
            model=model,
        )
        service.roll_back_on(monitoring.deployment_alarms)

        outputs = {
            SERVICE_URL_OUTPUT: (
                service.url,
                "Base URL of the prediction service (GET /health, POST /predict)",
            ),
            # Where a CNAME for your domain points when certificateArn is used without a zone.
            LOAD_BALANCER_OUTPUT: (
                service.load_balancer.load_balancer_dns_name,
                "DNS name of the load balancer",
            ),
            DASHBOARD_OUTPUT: (
                monitoring.dashboard_url,
                "CloudWatch dashboard of the service: traffic, errors, latency, predictions, "
                "drift, CPU and memory",
            ),
            ALARM_TOPIC_OUTPUT: (
                monitoring.topic.topic_arn,
                "SNS topic the alarms notify (subscribe with alarmEmail or any endpoint)",
            ),
            CLUSTER_OUTPUT: (service.fargate.cluster.cluster_name, "ECS cluster of the service"),
            ECS_SERVICE_OUTPUT: (
                service.fargate.service.service_name,
                "ECS service (a forced deployment makes new tasks read the API keys)",
            ),
        }
        if service.api_keys is not None:
            outputs[API_KEYS_SECRET_OUTPUT] = (
                service.api_keys.secret_arn,
                "Secrets Manager secret holding the API keys {name: key}",
            )
        for output_id, (value, description) in outputs.items():
            cdk.CfnOutput(self, output_id, value=value, description=description)
        scoring = ScoringJobSettings.from_context(self.node.try_get_context)
        if scoring is not None:
            ScoringJob(
                self,
                "ScoringJob",
                vpc=network.vpc,
                image_directory=image_directory,
                settings=scoring,
                log_retention=retention,
            )
        self._accept_cdk_internal_findings()

    def _accept_cdk_internal_findings(self) -> None:
        """Findings on resources CDK adds itself, which exist once the stack is composed."""
        # CDK's handler that removes the rules of the VPC's default security group
        # (feature flag @aws-cdk/aws-ec2:restrictDefaultSecurityGroup in cdk.json).
        provider = self.node.try_find_child("Custom::VpcRestrictDefaultSGCustomResourceProvider")
        handler = provider.node.try_find_child("Handler") if provider is not None else None
        if isinstance(handler, cdk.CfnResource):
            self._accept_custom_resource_handler(handler)

    def _accept_custom_resource_handler(self, handler: cdk.CfnResource) -> None:
        reasons = {
            "CKV_AWS_115": "CDK's custom-resource handler runs once per deployment; reserved "
            "concurrency would only take capacity from the account's other functions.",
            "CKV_AWS_116": "CDK's custom-resource handler is invoked synchronously by "
            "CloudFormation, which reports its failure; a dead-letter queue would stay empty.",
            "CKV_AWS_117": "CDK's custom-resource handler only calls the EC2 API; running it in "
            "the VPC would need NAT or endpoints for no isolation gain.",
            "CKV_AWS_173": "CDK's custom-resource handler has no environment variables to encrypt.",
        }
        for check_id, reason in reasons.items():
            skip_checkov(handler, check_id, reason)
