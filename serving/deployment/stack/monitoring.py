"""The service watching itself: CloudWatch alarms, the topic they notify, and a dashboard.

Load-balancer and ECS metrics come from AWS; the model's own metrics (requests by status,
latency, predictions by class or, for a regressor, by bin of its training predictions, drift
counters) from the Embedded Metric Format lines the
service logs, in the namespace and with the `Service` dimension the stack passes to the
container (docs/serving.md lists them under "Logs" and "Drift and data-quality signals").
The 5xx and latency alarms are also the ECS service's deployment alarms: one of them firing
during a rollout rolls it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from deployment.stack.firewall import FirewallMetrics
from deployment.stack.model_signals import ModelSignals
from deployment.stack.settings import DeploymentSettings


@dataclass(frozen=True)
class NamedAlarm:
    name: str
    alarm: cloudwatch.Alarm


# A widget plots at most this many metrics; drift charts are split per kind, and a model with
# more features than this shows the first ones (the alarm covers every feature).
MAX_METRICS_PER_WIDGET = 50


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        service: ecs.FargateService,
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_group: elbv2.ApplicationTargetGroup,
        firewall: FirewallMetrics,
        settings: DeploymentSettings,
        model: ModelSignals,
    ) -> None:
        super().__init__(scope, construct_id)
        self._period = cdk.Duration.seconds(settings.alarm_period_seconds)
        self._settings = settings

        self.topic = self._topic(settings.alarm_email)

        requests = target_group.metrics.request_count(period=self._period, label="requests")
        target_5xx = target_group.metrics.http_code_target(
            elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=self._period, label="target 5xx"
        )
        rate_5xx = cloudwatch.MathExpression(
            # No requests in a period: no rate, rather than a division by zero.
            expression="IF(requests > 0, 100 * FILL(errors, 0) / requests, 0)",
            using_metrics={"requests": requests, "errors": target_5xx},
            period=self._period,
            label="target 5xx (% of requests)",
        )
        load_balancer_5xx = load_balancer.metrics.http_code_elb(
            elbv2.HttpCodeElb.ELB_5XX_COUNT, period=self._period, label="load balancer 5xx"
        )
        latency_p99 = target_group.metrics.target_response_time(
            period=self._period, statistic="p99", label="target response time p99 (s)"
        )
        unhealthy_hosts = target_group.metrics.unhealthy_host_count(
            period=self._period, statistic="Maximum", label="unhealthy targets"
        )
        running_tasks = self._container_insights(service, "RunningTaskCount", "running tasks")
        desired_tasks = self._container_insights(service, "DesiredTaskCount", "desired tasks")
        tasks_missing = cloudwatch.MathExpression(
            expression="desired - running",
            using_metrics={"desired": desired_tasks, "running": running_tasks},
            period=self._period,
            label="tasks below desired",
        )
        records = self._service_metric("RecordsScored")
        out_of_range_records = self._service_metric("OutOfRangeRecords")
        # The service emits a counter only when it is non-zero: a period without out-of-range
        # records has no datapoint, which FILL makes 0. Below the minimum of records the rate
        # says nothing, and is 0.
        out_of_range_rate = cloudwatch.MathExpression(
            expression=(
                f"IF(FILL(records, 0) >= {settings.out_of_range_min_records}, "
                "100 * FILL(outside, 0) / records, 0)"
            ),
            using_metrics={"records": records, "outside": out_of_range_records},
            period=self._period,
            label="records with a value outside the training range (%)",
        )

        self.target_5xx_alarm = self._alarm(
            "Target5xxRate",
            rate_5xx,
            threshold=settings.target_5xx_rate_percent,
            description=(
                f"More than {settings.target_5xx_rate_percent:g} % of requests answered 5xx by the "
                "service itself. During a deployment this rolls the deployment back."
            ),
        )
        self.load_balancer_5xx_alarm = self._alarm(
            "LoadBalancer5xx",
            load_balancer_5xx,
            threshold=settings.load_balancer_5xx_count,
            description=(
                f"At least {settings.load_balancer_5xx_count} 5xx per period generated by the load "
                "balancer (502/503/504: no healthy target, a target closed the connection or "
                "timed out). During a deployment this rolls the deployment back."
            ),
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )
        self.latency_alarm = self._alarm(
            "LatencyP99",
            latency_p99,
            # TargetResponseTime is in seconds.
            threshold=settings.latency_p99_milliseconds / 1000,
            description=(
                f"p99 target response time above {settings.latency_p99_milliseconds} ms. During a "
                "deployment this rolls the deployment back."
            ),
        )
        self.unhealthy_hosts_alarm = self._alarm(
            "UnhealthyTargets",
            unhealthy_hosts,
            threshold=1,
            description="At least one task fails the load balancer's readiness check.",
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )
        self.tasks_alarm = self._alarm(
            "TasksBelowDesired",
            tasks_missing,
            threshold=1,
            description=(
                "Fewer tasks run than the service wants: tasks crash, fail to start, or "
                "cannot be placed."
            ),
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )
        self.out_of_range_alarm = self._alarm(
            "OutOfRangeRate",
            out_of_range_rate,
            threshold=settings.out_of_range_rate_percent,
            description=(
                f"More than {settings.out_of_range_rate_percent:g} % of scored records have a "
                "numeric value outside the training range: the inputs drift away from what "
                "the model learned; the dashboard's drift charts show which feature."
            ),
        )
        # What rolls a deployment back: the service answering errors or answering slowly.
        self.deployment_alarms = [
            self.target_5xx_alarm,
            self.load_balancer_5xx_alarm,
            self.latency_alarm,
        ]
        self.alarms = [
            *self.deployment_alarms,
            self.unhealthy_hosts_alarm,
            self.tasks_alarm,
            self.out_of_range_alarm,
        ]

        self.dashboard = self._dashboard(
            model=model,
            requests=requests,
            latency_p99=latency_p99,
            target_group=target_group,
            load_balancer_5xx=load_balancer_5xx,
            rate_5xx=rate_5xx,
            service=service,
            running_tasks=running_tasks,
            desired_tasks=desired_tasks,
            out_of_range_rate=out_of_range_rate,
            firewall=firewall,
        )

    def _topic(self, email: str | None) -> sns.Topic:
        # SNS encrypts with this key; CloudWatch must be allowed to use it to publish (the
        # AWS-managed aws/sns key does not let CloudWatch in).
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Encrypts the alarm notifications of the prediction service",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            pending_window=cdk.Duration.days(7),
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToTheEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="Prediction service alarms",
            master_key=key,
            enforce_ssl=True,
        )
        if email is not None:
            # AWS e-mails a confirmation link first; nothing arrives until it is clicked.
            topic.add_subscription(subscriptions.EmailSubscription(email))
        return topic

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        ),
    ) -> NamedAlarm:
        # A fixed name, unique per stack: readable in the console, and the ECS service can
        # name its deployment alarms without a reference back into this construct.
        name = f"{cdk.Stack.of(self).stack_name}-{construct_id}"
        # Every alarm fires on the same count of breaching periods in a row (a context value).
        evaluation_periods = self._settings.alarm_evaluation_periods
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=evaluation_periods,
            comparison_operator=comparison,
            # No traffic, no tasks reporting: nothing is known to be wrong.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        return NamedAlarm(name=name, alarm=alarm)

    def _service_metric(self, name: str, statistic: str = "Sum") -> cloudwatch.Metric:
        """A metric the service emits (EMF), on its `Service` dimension: across model versions,
        so a rollout's old and new tasks count together."""
        return cloudwatch.Metric(
            namespace=self._settings.metrics_namespace,
            metric_name=name,
            dimensions_map={"Service": self._settings.service_name},
            statistic=statistic,
            period=self._period,
        )

    def _blocked_by(self, firewall: FirewallMetrics, rule: str) -> cloudwatch.Metric:
        """Requests the web ACL refused on `rule`: 429 from the rate rule, 403 from a managed
        rule group. Charted, not alarmed: a flood is not a bad release."""
        return cloudwatch.Metric(
            namespace="AWS/WAFV2",
            metric_name="BlockedRequests",
            dimensions_map={
                "WebACL": firewall.web_acl,
                "Rule": rule,
                "Region": cdk.Stack.of(self).region,
            },
            statistic="Sum",
            period=self._period,
            label=rule,
        )

    def _container_insights(
        self, service: ecs.FargateService, name: str, label: str
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="ECS/ContainerInsights",
            metric_name=name,
            dimensions_map={
                "ClusterName": service.cluster.cluster_name,
                "ServiceName": service.service_name,
            },
            statistic="Average",
            period=self._period,
            label=label,
        )

    def _dashboard(
        self,
        *,
        model: ModelSignals,
        requests: cloudwatch.IMetric,
        latency_p99: cloudwatch.IMetric,
        target_group: elbv2.ApplicationTargetGroup,
        load_balancer_5xx: cloudwatch.IMetric,
        rate_5xx: cloudwatch.IMetric,
        service: ecs.FargateService,
        running_tasks: cloudwatch.IMetric,
        desired_tasks: cloudwatch.IMetric,
        out_of_range_rate: cloudwatch.IMetric,
        firewall: FirewallMetrics,
    ) -> cloudwatch.Dashboard:
        def graph(
            title: str,
            left: list[cloudwatch.IMetric],
            right: list[cloudwatch.IMetric] | None = None,
        ) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(
                title=title,
                left=left[:MAX_METRICS_PER_WIDGET],
                right=(right or [])[:MAX_METRICS_PER_WIDGET],
                width=12,
                height=6,
            )

        def counts(names: list[str]) -> list[cloudwatch.IMetric]:
            return [self._service_metric(name) for name in names]

        dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=cdk.Duration.hours(3))
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=[a.alarm for a in self.alarms], width=24, height=3
            )
        )
        dashboard.add_widgets(
            graph("Requests", [requests, *counts(["Requests", "RecordsScored"])]),
            graph(
                "Latency (ms, service)",
                [
                    self._service_metric("Latency", "p50"),
                    self._service_metric("Latency", "p99"),
                ],
                [latency_p99],
            ),
        )
        dashboard.add_widgets(
            graph(
                "4xx / 5xx",
                [
                    *counts(["Status4xx", "Status5xx", "ClientAborts", "ValidationErrors"]),
                    target_group.metrics.http_code_target(
                        elbv2.HttpCodeTarget.TARGET_4XX_COUNT, period=self._period
                    ),
                    load_balancer_5xx,
                ],
                [rate_5xx],
            ),
            self._predictions_graph(model, graph, counts),
        )
        dashboard.add_widgets(
            graph(
                "Firewall: requests blocked (429 rate limit, 403 managed rules)",
                [
                    self._blocked_by(firewall, rule)
                    for rule in (firewall.rate_rule, *firewall.managed_rules)
                ],
            )
        )
        dashboard.add_widgets(
            graph(
                "Drift: values outside the training range, unseen categories",
                counts(
                    [f"OutOfRange_{f}" for f in model.ranged_features]
                    + [f"UnseenCategory_{f}" for f in model.categorical_features]
                ),
                [out_of_range_rate],
            ),
            graph("Drift: missing values", counts([f"Missing_{f}" for f in model.features])),
        )
        dashboard.add_widgets(
            graph(
                "CPU and memory (% of the task)",
                [service.metric_cpu_utilization(), service.metric_memory_utilization()],
            ),
            graph(
                "Tasks",
                [
                    running_tasks,
                    desired_tasks,
                    target_group.metrics.healthy_host_count(statistic="Minimum"),
                ],
            ),
        )
        return dashboard

    @staticmethod
    def _predictions_graph(
        model: ModelSignals,
        graph: Callable[[str, list[cloudwatch.IMetric]], cloudwatch.GraphWidget],
        counts: Callable[[list[str]], list[cloudwatch.IMetric]],
    ) -> cloudwatch.GraphWidget:
        """A classifier's answers by class; a regressor's by bin of its training predictions
        (none charted without a reference profile, when the service counts none)."""
        if model.task == "regression":
            return graph(
                "Predictions by bin of the training predictions (below / above: outside them)",
                counts([f"PredictionBin_{b}" for b in model.prediction_bins]),
            )
        return graph("Predictions by class", counts([f"Predicted_{c}" for c in model.classes]))

    @property
    def dashboard_url(self) -> str:
        region = cdk.Stack.of(self).region
        return (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards/dashboard/{self.dashboard.dashboard_name}"
        )
