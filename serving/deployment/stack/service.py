"""The service: Fargate tasks behind an Application Load Balancer, deployed so a bad release
rolls itself back instead of hanging, and scaled on CPU and on requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as ecs_patterns
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from container import dockerfile
from deployment.stack.compliance import acknowledge_nag, cfn_resource, skip_checkov
from deployment.stack.monitoring import NamedAlarm
from deployment.stack.settings import (
    PUBLIC_PATHS,
    READINESS_PATH,
    STOP_TIMEOUT_SECONDS,
    DeploymentSettings,
)

CONTAINER_NAME = "web"
# The container's port and health command are the image's, read from its Dockerfile: one
# definition, so changing the port there moves the task, the target group and the checks.
# The only writable path in the container (task storage; the root filesystem is read-only).
TMP_PATH = "/tmp"  # noqa: S108 - a volume of the task's own, not a shared host directory

# gunicorn lets in-flight requests finish for this long after SIGTERM (the service's
# SERVICE_GRACEFUL_TIMEOUT_SECONDS, set below so both sides read one number)...
GRACEFUL_TIMEOUT = cdk.Duration.seconds(20)
# ...and ECS waits this long after SIGTERM before SIGKILL: longer, so requests are never cut.
STOP_TIMEOUT = cdk.Duration.seconds(STOP_TIMEOUT_SECONDS)
# Cold start (load and verify the model, warm it up) takes a few seconds; health checks that
# fail before this are ignored, so a slow start is not mistaken for a broken task.
STARTUP_ALLOWANCE = cdk.Duration.seconds(60)
# The target-group health check's interval, timeout and thresholds and the deregistration delay
# are context values (DeploymentSettings): `make rollout-test` rehearses them.

# The name of the key the stack's own secret is created with ({"initial": "<64 characters>"}).
INITIAL_KEY_NAME = "initial"
# Listener rule priority of the forwarded public paths (any free number; there is one rule).
PUBLIC_PATHS_PRIORITY = 10

# Never part of the image, whatever serving/app/.dockerignore says: caches from local runs.
IMAGE_EXCLUDES = ["**/__pycache__", "**/*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache"]


class Service(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        log_group: logs.ILogGroup,
        access_logs_bucket: s3.IBucket,
        settings: DeploymentSettings,
        image_directory: Path,
        container_user: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self.api_keys = self._api_keys_secret() if settings.api_keys else None

        cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )

        task_definition = self._task_definition(
            image_directory=image_directory,
            container_user=container_user,
            log_group=log_group,
            # The load balancer's addresses: inside the VPC.
            trusted_proxies=vpc.vpc_cidr_block,
        )

        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            # Requests with malformed header names are dropped, not forwarded to the app
            # (request smuggling, header injection).
            drop_invalid_header_fields=True,
            desync_mitigation_mode=elbv2.DesyncMitigationMode.DEFENSIVE,
        )
        self.load_balancer.log_access_logs(access_logs_bucket, prefix="alb")
        skip_checkov(
            cfn_resource(self.load_balancer),
            "CKV_AWS_150",
            "Deletion protection would make `make destroy` fail; the stack is recreated from "
            "code and keeps no state in the load balancer.",
        )

        self.fargate = ecs_patterns.ApplicationLoadBalancedFargateService(
            self,
            "Fargate",
            cluster=cluster,
            task_definition=task_definition,
            load_balancer=self.load_balancer,
            public_load_balancer=True,
            # With an explicit load balancer the pattern no longer opens the listener itself.
            open_listener=True,
            task_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            desired_count=settings.desired_count,
            # A deployment starts the new tasks before stopping any old one (100 %/200 %), so
            # capacity never drops; if the new tasks keep failing, the circuit breaker stops
            # the deployment and rolls back to the last version that was healthy.
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=STARTUP_ALLOWANCE,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
            enable_ecs_managed_tags=True,
            **self._listener_options(),
        )

        target_group = self.fargate.target_group
        # Readiness, not liveness: a task takes traffic once a worker has made a real
        # prediction, and leaves the rotation when it cannot.
        target_group.configure_health_check(
            path=READINESS_PATH,
            healthy_http_codes="200",
            interval=cdk.Duration.seconds(settings.health_check_interval_seconds),
            timeout=cdk.Duration.seconds(settings.health_check_timeout_seconds),
            healthy_threshold_count=settings.healthy_threshold_count,
            unhealthy_threshold_count=settings.unhealthy_threshold_count,
        )
        # The load balancer stops sending new requests to a leaving task and waits this long
        # for open ones before ECS sends SIGTERM. Its default, 300 s, makes every deployment
        # five minutes slower.
        target_group.set_attribute(
            "deregistration_delay.timeout_seconds", str(settings.deregistration_delay_seconds)
        )

        scaling = self.fargate.service.auto_scale_task_count(
            min_capacity=settings.min_capacity, max_capacity=settings.max_capacity
        )
        scaling.scale_on_cpu_utilization(
            "CpuScaling",
            target_utilization_percent=settings.cpu_target_percent,
            scale_out_cooldown=cdk.Duration.seconds(60),
            scale_in_cooldown=cdk.Duration.seconds(300),
        )
        scaling.scale_on_request_count(
            "RequestScaling",
            requests_per_target=settings.requests_per_target,
            target_group=target_group,
            scale_out_cooldown=cdk.Duration.seconds(60),
            scale_in_cooldown=cdk.Duration.seconds(300),
        )

        if not settings.public_operational_endpoints:
            self._forward_only_public_paths()

        # The pattern adds its own URL output, which would name the load balancer's address even
        # when the certificate is for your domain; the stack's ServiceUrl output replaces it.
        self.fargate.node.try_remove_child("ServiceURL")
        self.fargate.node.try_remove_child("LoadBalancerDNS")

        self._accept_findings()

        if settings.serves_https:
            self.url = f"https://{settings.domain_name}"
        else:
            self.url = f"http://{self.load_balancer.load_balancer_dns_name}"

    def _task_definition(
        self,
        *,
        image_directory: Path,
        container_user: str,
        log_group: logs.ILogGroup,
        trusted_proxies: str,
    ) -> ecs.FargateTaskDefinition:
        settings = self._settings
        image = image_directory / "Dockerfile"
        task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=settings.cpu,
            memory_limit_mib=settings.memory_mib,
            # The image is built for linux/amd64 below, so the tasks must run on x86.
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            # Task storage, mounted at /tmp: the only writable path in the container.
            volumes=[ecs.Volume(name="tmp")],
        )
        container = task_definition.add_container(
            CONTAINER_NAME,
            # Built for linux/amd64 whatever machine runs `cdk deploy`: an image built on an
            # ARM laptop would otherwise fail on x86 Fargate with "exec format error".
            image=ecs.ContainerImage.from_asset(
                str(image_directory),
                platform=ecr_assets.Platform.LINUX_AMD64,
                exclude=IMAGE_EXCLUDES,
            ),
            port_mappings=[ecs.PortMapping(container_port=dockerfile.service_port(image))],
            # Plain settings only. A secret belongs in `secrets=` (below), which ECS injects
            # at start without writing it into the task definition.
            environment={
                "GIT_REVISION": settings.git_revision,
                "SERVICE_GRACEFUL_TIMEOUT_SECONDS": str(int(GRACEFUL_TIMEOUT.to_seconds())),
                # Sized from the task's CPU (settings.workers_for), so resizing the task
                # resizes gunicorn with it.
                "SERVICE_WORKERS": str(settings.workers),
                # Where the service's Embedded Metric Format lines land; the alarms and the
                # dashboard read the same namespace and Service dimension.
                "SERVICE_METRICS_NAMESPACE": settings.metrics_namespace,
                "SERVICE_NAME": settings.service_name,
                # The load balancer connects from inside the VPC: X-Forwarded-For is
                # believed from those addresses only, so the logs show the real client.
                "SERVICE_FORWARDED_ALLOW_IPS": trusted_proxies,
            },
            # The API keys, read by ECS from Secrets Manager when a task starts (so a changed
            # secret reaches the tasks with the next deployment: docs/security.md).
            secrets=(
                {"SERVICE_API_KEYS": ecs.Secret.from_secrets_manager(self.api_keys)}
                if self.api_keys is not None
                else None
            ),
            # ECS ignores the Dockerfile's HEALTHCHECK, so the task repeats its command (it
            # exits non-zero on a refused connection, a timeout or a status other than 200);
            # it replaces a hung container.
            health_check=ecs.HealthCheck(
                command=["CMD", *dockerfile.health_command(image)],
                interval=cdk.Duration.seconds(settings.health_check_interval_seconds),
                timeout=cdk.Duration.seconds(settings.health_check_timeout_seconds),
                retries=settings.unhealthy_threshold_count,
                start_period=STARTUP_ALLOWANCE,
            ),
            stop_timeout=STOP_TIMEOUT,
            readonly_root_filesystem=True,
            user=container_user,
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=CONTAINER_NAME,
                log_group=log_group,
                # A slow CloudWatch must never block the service's stdout (and so its
                # requests); lines beyond the buffer are dropped instead.
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                max_buffer_size=cdk.Size.mebibytes(25),
            ),
        )
        container.add_mount_points(
            ecs.MountPoint(container_path=TMP_PATH, source_volume="tmp", read_only=False)
        )
        return task_definition

    def _api_keys_secret(self) -> secretsmanager.ISecret:
        """The secret holding the API keys: an existing one by name, or the stack's own, a
        JSON object with one generated key (64 letters and digits, 380 bits)."""
        settings = self._settings
        if settings.api_keys_secret_name is not None:
            return secretsmanager.Secret.from_secret_name_v2(
                self, "ApiKeys", settings.api_keys_secret_name
            )
        secret = secretsmanager.Secret(
            self,
            "ApiKeys",
            secret_name=f"{settings.stack_name}/api-keys",
            description='API keys of the prediction service, {"client name": "key", ...} '
            "(docs/security.md says how to add and remove one)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template="{}",  # noqa: S106 - an empty JSON object
                generate_string_key=INITIAL_KEY_NAME,
                password_length=64,
                exclude_punctuation=True,
            ),
        )
        acknowledge_nag(
            secret,
            "AwsSolutions-SMG4",
            "The keys are client credentials handed out of band: a scheduled rotation would cut "
            "every client off. They rotate by adding a key, moving clients and removing the old "
            "one, each step a forced deployment (docs/security.md).",
        )
        skip_checkov(
            cfn_resource(secret),
            "CKV_AWS_149",
            "Encrypted with the account's AWS-managed Secrets Manager key; only the task's "
            "execution role and the deploy identity may read it, which IAM enforces, not a "
            "key policy.",
        )
        return secret

    def _forward_only_public_paths(self) -> None:
        """The listener forwards the exact public paths to the tasks and answers anything
        else 404 itself, so the operational endpoints stay inside the VPC. Health checks go
        from the load balancer to the targets directly, not through listener rules."""
        listener = self.fargate.listener
        listener.add_action(
            "PublicPaths",
            priority=PUBLIC_PATHS_PRIORITY,
            conditions=[elbv2.ListenerCondition.path_patterns(list(PUBLIC_PATHS))],
            action=elbv2.ListenerAction.forward([self.fargate.target_group]),
        )
        # ECS registers tasks only in a target group a listener uses: that is now the rule.
        self.fargate.service.node.add_dependency(listener.node.find_child("PublicPathsRule"))
        # The pattern made forwarding the default action; replaced on the CloudFormation
        # resource, as a listener has exactly one. The body is the service's own 404.
        listener_resource = listener.node.default_child
        assert isinstance(listener_resource, elbv2.CfnListener)
        listener_resource.default_actions = [
            elbv2.CfnListener.ActionProperty(
                type="fixed-response",
                fixed_response_config=elbv2.CfnListener.FixedResponseConfigProperty(
                    status_code="404",
                    content_type="application/json",
                    message_body='{"detail":"Not Found"}',
                ),
            )
        ]

    def roll_back_on(self, alarms: list[NamedAlarm]) -> None:
        """Deployment alarms: while a deployment runs, and for a bake time after it that ECS
        derives from the alarms' periods, any of these firing rolls the service back to the
        last completed deployment (alongside the circuit breaker, which acts on tasks that
        fail to start or to become healthy)."""
        self.fargate.service.enable_deployment_alarms(
            [named.name for named in alarms],
            behavior=ecs.AlarmBehavior.ROLLBACK_ON_ALARM,
        )
        # The names are plain strings: the alarms must exist before the service names them.
        for named in alarms:
            self.fargate.service.node.add_dependency(named.alarm)

    def _listener_options(self) -> dict[str, Any]:
        """The listener arguments of the Fargate pattern: HTTP on port 80 without a domain."""
        settings = self._settings
        if not settings.serves_https:
            return {"protocol": elbv2.ApplicationProtocol.HTTP, "listener_port": 80}
        certificate = None
        if settings.certificate_arn is not None:
            certificate = acm.Certificate.from_certificate_arn(
                self, "Certificate", settings.certificate_arn
            )
        zone = None
        if settings.hosted_zone_id is not None and settings.hosted_zone_name is not None:
            # From attributes, not `from_lookup`: synthesis needs no AWS access.
            zone = route53.HostedZone.from_hosted_zone_attributes(
                self,
                "HostedZone",
                hosted_zone_id=settings.hosted_zone_id,
                zone_name=settings.hosted_zone_name,
            )
        return {
            "protocol": elbv2.ApplicationProtocol.HTTPS,
            "listener_port": 443,
            "redirect_http": True,
            # TLS 1.3 and 1.2 only (ELBSecurityPolicy-TLS13-1-2-2021-06), the policy AWS
            # recommends: no TLS 1.0/1.1, forward-secret ciphers.
            "ssl_policy": elbv2.SslPolicy.RECOMMENDED_TLS,
            "certificate": certificate,
            # With a zone the pattern creates the alias record and, without a certificate ARN,
            # a certificate validated through the zone. Without a zone, you point the name at
            # the load balancer yourself.
            "domain_zone": zone,
            "domain_name": settings.domain_name if zone is not None else None,
        }

    def _accept_findings(self) -> None:
        load_balancer_group = self.load_balancer.connections.security_groups[0]
        acknowledge_nag(
            load_balancer_group,
            "AwsSolutions-EC23",
            "The load balancer is the public entry point of an HTTP API: its listeners must "
            "accept any client address. The tasks accept traffic only from the load balancer.",
        )
        skip_checkov(
            cfn_resource(load_balancer_group),
            "CKV_AWS_260",
            "The public load balancer must accept port 80 from anywhere: it serves the API over "
            "HTTP without a domain, and only redirects to HTTPS with one.",
        )
        if not self._settings.serves_https:
            http_only = (
                "HTTP only because no domainName/certificate is configured; set them in the "
                "CDK context to serve HTTPS and redirect this port to it."
            )
            listener = cfn_resource(self.fargate.listener)
            skip_checkov(listener, "CKV_AWS_2", http_only)
            skip_checkov(listener, "CKV_AWS_103", http_only)
        task_definition = self.fargate.task_definition
        acknowledge_nag(
            task_definition,
            "AwsSolutions-ECS2",
            "The environment holds only plain settings (the deployed git revision, a timeout, "
            "the worker count, the metric namespace and service name, the VPC's CIDR), no "
            "secrets; the API keys go through the container's `secrets` (Secrets Manager).",
        )
        execution_role = task_definition.obtain_execution_role()
        acknowledge_nag(
            execution_role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken, which pulls the image, cannot be scoped to a resource; "
            "the other pull and log permissions are scoped to the repository and log group.",
        )
