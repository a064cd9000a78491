"""The deployment's settings: a pydantic model of the CDK context, validated once, before any
construct.

Defaults live in `cdk.json` (`context`); `cdk deploy -c desiredCount=4` overrides one. Every
problem is reported at once, naming the context key, so a typo fails `cdk synth` with a clear
message instead of a CloudFormation rollback twenty minutes later; a misspelt key fails too
(`refuse_unknown_keys`), rather than leave the default it meant to change. This module imports
no CDK, so `make rollout-test` reads the same health-check values without starting jsii.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

# Fargate accepts only these CPU units and, for each, these memory sizes (MiB).
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html
FARGATE_MEMORY_BY_CPU: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
CPU_UNITS_PER_VCPU = 1024

# The retention periods CloudWatch Logs accepts, in days.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip

# The evaluation windows AWS WAF's rate-based rules accept, in seconds.
RATE_LIMIT_WINDOWS = (60, 120, 300, 600)

# The VPC spans two availability zones: more NAT gateways than that would sit unused.
AVAILABILITY_ZONES = 2

# After SIGTERM, ECS waits this long for the container to exit before SIGKILL: longer than
# the service's graceful timeout (SERVICE_GRACEFUL_TIMEOUT_SECONDS, 20 s), so in-flight
# requests are never cut. `make rollout-test` stops its instances the same way.
STOP_TIMEOUT_SECONDS: Final = 30

# The load balancer's target health check asks for readiness (a worker that has made its
# warm-up prediction), not liveness: the container health check keeps `/health`.
READINESS_PATH: Final = "/ready"

# The paths the load balancer forwards; every other path (the operational endpoints /metrics,
# /model, /openapi.json, /docs, /redoc, /ready) it answers 404 itself, unless
# publicOperationalEndpoints opens them. An allowlist of exact paths rather than a list of
# refused ones: ALB path patterns are compared case-sensitively on the path as sent, while
# the service decodes percent-escapes, so only an exact match of what the service routes is
# safe (`/%6Dodel` or `/Model` match no allowed path). A test keeps it equal to the service's
# prediction routes plus liveness; `make rollout-test`'s HAProxy applies the same list.
PUBLIC_PATHS: Final = ("/predict", "/predict/batch", "/health")

ContextLookup = Callable[[str], object]


# Context keys CDK sets itself, beside the app's settings: feature flags (cdk.json's
# "@aws-cdk/..."), the CLI's switches ("aws:cdk:enable-path-metadata", ...), lookups cached in
# cdk.context.json ("availability-zones:account=...:region=...") and `cdk acknowledge`'s list.
CDK_OWN_KEY = re.compile(r"@|aws:cdk:|[\w-]+:account=|acknowledged-issue-numbers$")


class ContextError(ValueError):
    """One or more CDK context values are missing or invalid."""

    @classmethod
    def listing(cls, problems: list[str]) -> ContextError:
        return cls(
            "invalid CDK context (cdk.json or -c key=value):\n  - " + "\n  - ".join(problems)
        )


def context_keys(model: type[BaseModel]) -> list[str]:
    """`model`'s context keys: its field aliases."""
    return [field.alias for field in model.model_fields.values() if field.alias is not None]


def context_values(model: type[BaseModel], lookup: ContextLookup) -> dict[str, object]:
    """The context values set for `model`'s keys. Values from cdk.json arrive as JSON values,
    values from `-c key=value` as strings; cdk.json lists an unset optional key as ""."""
    values: dict[str, object] = {}
    for key in context_keys(model):
        raw = lookup(key)
        if isinstance(raw, str):
            raw = raw.strip()
        if raw is not None and raw != "":
            values[key] = raw
    return values


def refuse_unknown_keys(context: Mapping[str, object], known: Collection[str]) -> None:
    """Fail on a context key that is neither in `known` nor CDK's own: nothing would read a
    misspelt key, and the stack would deploy the default it meant to change."""
    by_lower = {key.lower(): key for key in known}
    problems = []
    for key in sorted(context):
        if key in known or CDK_OWN_KEY.match(key):
            continue
        close = difflib.get_close_matches(key.lower(), by_lower, n=1)
        hint = (
            f"; did you mean {by_lower[close[0]]}?" if close else " (docs/deployment.md lists them)"
        )
        problems.append(f"{key}: not a setting{hint}")
    if problems:
        raise ContextError.listing(problems)


CLEAR_TEXT_KEYS: Final = (
    "apiKeys is on but there is no domainName/certificate: API keys would travel in clear "
    "text over plain HTTP; configure HTTPS (docs/deployment.md) or pass -c allowPlainHttp=true "
    "to accept that for a trial"
)


# --- Types of context values ----------------------------------------------------------------


def _not_a_bool(raw: object) -> object:
    # JSON `true` would otherwise pass as the integer 1.
    if isinstance(raw, bool):
        raise PydanticCustomError(
            "bool_for_number", "{value} is not a number", {"value": repr(raw)}
        )
    return raw


def _one_of(allowed: tuple[int, ...], what: str) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value not in allowed:
            raise PydanticCustomError(
                "not_one_of",
                "{value} is not {what}; choose one of {allowed}",
                {"value": value, "what": what, "allowed": ", ".join(map(str, allowed))},
            )
        return value

    return check


def _lower_dns(raw: object) -> object:
    return raw.rstrip(".").lower() if isinstance(raw, str) else raw


Whole = Annotated[int, BeforeValidator(_not_a_bool)]
Number = Annotated[float, BeforeValidator(_not_a_bool)]
DnsName = Annotated[str, BeforeValidator(_lower_dns)]


def _field(alias: str, description: str, **constraints: Any) -> Any:
    return Field(alias=alias, description=description, **constraints)


class DeploymentSettings(BaseModel):
    """Every context value the app reads, by its cdk.json key, with its type and bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid", regex_engine="python-re")

    stack_name: str = _field(
        "stackName",
        "a valid stack name (a letter, then letters, digits, '-')",
        pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$",
    )
    desired_count: Whole = _field("desiredCount", "tasks after each deploy", ge=1)
    min_capacity: Whole = _field("minCapacity", "autoscaling minimum", ge=1)
    max_capacity: Whole = _field("maxCapacity", "autoscaling maximum", ge=1)
    cpu: Annotated[
        Whole,
        AfterValidator(_one_of(tuple(FARGATE_MEMORY_BY_CPU), "a Fargate size")),
    ] = _field("cpu", "Fargate CPU units", ge=256)
    memory_mib: Whole = _field("memoryMiB", "Fargate memory (MiB)", ge=512)
    nat_gateways: Whole = _field("natGateways", "NAT gateways", ge=1, le=AVAILABILITY_ZONES)
    log_retention_days: Annotated[
        Whole,
        AfterValidator(_one_of(LOG_RETENTION_DAYS, "a CloudWatch Logs retention")),
    ] = _field("logRetentionDays", "days", ge=1)
    cpu_target_percent: Whole = _field("cpuTargetPercent", "percent", ge=10, le=90)
    requests_per_target: Whole = _field("requestsPerTarget", "per task per minute", ge=1)
    # What `make deploy` passes: a short or full commit hash, "-dirty" when the working tree
    # has uncommitted changes, or "unknown" outside a git checkout.
    git_revision: str = _field(
        "gitRevision",
        "a valid revision (a commit hash, optionally -dirty, or unknown)",
        pattern=r"^(unknown|[0-9a-f]{7,40}(-dirty)?)$",
    )

    domain_name: DnsName | None = _field(
        "domainName",
        "a DNS name",
        default=None,
        pattern=r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    )
    hosted_zone_id: str | None = _field(
        "hostedZoneId",
        "a Route 53 hosted zone id (Z...)",
        default=None,
        pattern=r"^Z[A-Z0-9]{1,31}$",
    )
    hosted_zone_name: DnsName | None = _field("hostedZoneName", "a DNS name", default=None)
    certificate_arn: str | None = _field(
        "certificateArn",
        "an ACM certificate ARN",
        default=None,
        pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$",
    )

    # The metric namespace and Service dimension the container emits and the alarms read.
    service_name: str = _field(
        "serviceName",
        "a valid service name (letters, digits, '.', '_', '-')",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$",
    )
    metrics_namespace: str = _field(
        "metricsNamespace",
        "a CloudWatch namespace, not starting with AWS/",
        pattern=r"^(?!AWS/)[A-Za-z0-9._/#:-]{1,255}$",
    )

    # Target-group health check and draining. ALB bounds: interval 5-300 s, timeout 2-120 s,
    # thresholds 2-10, deregistration delay 0-3600 s.
    health_check_interval_seconds: Whole = _field(
        "healthCheckIntervalSeconds", "seconds", ge=5, le=300
    )
    health_check_timeout_seconds: Whole = _field(
        "healthCheckTimeoutSeconds", "seconds", ge=2, le=120
    )
    healthy_threshold_count: Whole = _field("healthyThresholdCount", "checks", ge=2, le=10)
    unhealthy_threshold_count: Whole = _field("unhealthyThresholdCount", "checks", ge=2, le=10)
    deregistration_delay_seconds: Whole = _field(
        "deregistrationDelaySeconds", "seconds", ge=0, le=3600
    )

    # Alarms. The load balancer publishes its metrics every 60 s, so shorter periods would
    # evaluate empty data.
    alarm_period_seconds: Whole = _field("alarmPeriodSeconds", "seconds", ge=60, le=86400)
    alarm_evaluation_periods: Whole = _field("alarmEvaluationPeriods", "periods", ge=1, le=20)
    target_5xx_rate_percent: Number = _field("target5xxRatePercent", "percent", gt=0, le=100)
    load_balancer_5xx_count: Whole = _field("loadBalancer5xxCount", "per period", ge=1)
    latency_p99_milliseconds: Whole = _field(
        "latencyP99Milliseconds", "milliseconds", ge=10, le=60000
    )
    out_of_range_rate_percent: Number = _field("outOfRangeRatePercent", "percent", gt=0, le=100)
    out_of_range_min_records: Whole = _field("outOfRangeMinRecords", "records", ge=1)
    alarm_email: str | None = _field(
        "alarmEmail",
        "an e-mail address",
        default=None,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    )

    # The web ACL's rate-based rule (stack/firewall.py): requests one client address may send
    # per window before WAF answers it 429, instead of letting a flood queue on the tasks.
    # The default, 6000 per 300 s, is an average of 20 requests/s over any five minutes: a
    # backend client scores up to 1,000 records per POST /predict/batch and never needs that
    # many, while one address averages at most a fifth of the 100/s the default two tasks take
    # before autoscaling adds one (requestsPerTarget, 3000 a minute each). Clients behind one
    # NAT share an address: raise it for them. WAF accepts 10 to 2,000,000,000.
    rate_limit_per_client: Whole = _field(
        "rateLimitPerClient", "requests per client address per window", ge=10, le=2_000_000_000
    )
    rate_limit_window_seconds: Annotated[
        Whole,
        AfterValidator(_one_of(RATE_LIMIT_WINDOWS, "a WAF rate-limit window")),
    ] = _field("rateLimitWindowSeconds", "seconds", ge=1)

    # Authentication (docs/security.md). On by default: the load balancer is on the internet.
    # The keys live in a Secrets Manager secret, the stack's own (a JSON object holding one
    # generated key) unless apiKeysSecretName names an existing one; ECS injects it into the
    # container as SERVICE_API_KEYS.
    api_keys: bool = _field("apiKeys", "true or false")
    api_keys_secret_name: str | None = _field(
        "apiKeysSecretName",
        "a Secrets Manager secret name (letters, digits, /_+=.@-)",
        default=None,
        pattern=r"^[A-Za-z0-9/_+=.@-]{1,512}$",
    )
    # With keys on, plain HTTP (no domainName) would send every key in clear text: synthesis
    # refuses it unless this says it is accepted (a trial without a domain).
    allow_plain_http: bool = _field("allowPlainHttp", "true or false", default=False)
    # Forward /metrics, /model, /openapi.json, /docs and /redoc through the load balancer too.
    public_operational_endpoints: bool = _field(
        "publicOperationalEndpoints", "true or false", default=False
    )

    @classmethod
    def from_context(cls, lookup: ContextLookup) -> DeploymentSettings:
        """Read and validate every setting; `lookup` is `app.node.try_get_context`."""
        try:
            settings = cls.model_validate(context_values(cls, lookup))
        except ValidationError as error:
            raise ContextError.listing(
                [_describe(cls, detail) for detail in error.errors()]
            ) from None
        if settings.api_keys and not settings.serves_https and not settings.allow_plain_http:
            raise ContextError(CLEAR_TEXT_KEYS)
        return settings

    @model_validator(mode="after")
    def _combinations(self) -> DeploymentSettings:
        problems = [
            *self._capacity_problems(),
            *self._fargate_problems(),
            *self._health_check_problems(),
            *self._https_problems(),
        ]
        if problems:
            raise PydanticCustomError(
                "combination",
                "{problems}",
                {"problems": "\n  - ".join(f"{key}: {message}" for key, message in problems)},
            )
        return self

    def _capacity_problems(self) -> list[tuple[str, str]]:
        if self.min_capacity > self.max_capacity:
            return [
                ("minCapacity", f"{self.min_capacity} is above maxCapacity {self.max_capacity}")
            ]
        if not self.min_capacity <= self.desired_count <= self.max_capacity:
            return [
                (
                    "desiredCount",
                    f"{self.desired_count} is outside minCapacity..maxCapacity "
                    f"({self.min_capacity}..{self.max_capacity})",
                )
            ]
        return []

    def _fargate_problems(self) -> list[tuple[str, str]]:
        allowed = FARGATE_MEMORY_BY_CPU[self.cpu]
        if self.memory_mib not in allowed:
            return [
                (
                    "memoryMiB",
                    f"{self.memory_mib} does not fit cpu {self.cpu}: Fargate accepts "
                    f"{', '.join(map(str, allowed))}",
                )
            ]
        return []

    def _health_check_problems(self) -> list[tuple[str, str]]:
        if self.health_check_timeout_seconds >= self.health_check_interval_seconds:
            return [
                (
                    "healthCheckTimeoutSeconds",
                    f"{self.health_check_timeout_seconds} must be shorter than "
                    f"healthCheckIntervalSeconds {self.health_check_interval_seconds}",
                )
            ]
        return []

    def _https_problems(self) -> list[tuple[str, str]]:
        zone_id, zone_name = self.hosted_zone_id, self.hosted_zone_name
        if self.domain_name is None:
            given = [
                key
                for key, value in (
                    ("hostedZoneId", zone_id),
                    ("hostedZoneName", zone_name),
                    ("certificateArn", self.certificate_arn),
                )
                if value is not None
            ]
            if given:
                return [
                    (
                        "domainName",
                        f"missing while {' and '.join(given)} is set: HTTPS needs the name "
                        "clients use",
                    )
                ]
            return []
        problems = []
        if (zone_id is None) != (zone_name is None):
            problems.append(
                (
                    "hostedZoneId" if zone_id is None else "hostedZoneName",
                    "hostedZoneId and hostedZoneName go together (Route 53 console, "
                    "'Hosted zone details')",
                )
            )
        domain = self.domain_name
        if zone_name is not None and domain != zone_name and not domain.endswith("." + zone_name):
            problems.append(("domainName", f"{domain!r} is not inside hosted zone {zone_name!r}"))
        if zone_id is None and zone_name is None and self.certificate_arn is None:
            problems.append(
                (
                    "domainName",
                    "set hostedZoneId and hostedZoneName (the stack requests a certificate and "
                    "creates the DNS record) or certificateArn (an ACM certificate you already "
                    "have)",
                )
            )
        return problems

    @property
    def serves_https(self) -> bool:
        """HTTPS on the domain name, with a certificate from certificateArn or from ACM
        validated through the hosted zone; plain HTTP on the load balancer's name otherwise."""
        return self.domain_name is not None

    @property
    def workers(self) -> int:
        return workers_for(self.cpu)


def workers_for(cpu_units: int) -> int:
    """gunicorn workers for a task of `cpu_units`: one per vCPU, and never fewer than two, so
    one worker keeps answering health checks while the other predicts a large batch or is
    being replaced after a crash (the default task, 512 units, is half a vCPU)."""
    return max(2, cpu_units // CPU_UNITS_PER_VCPU)


# --- Error messages that name the context key -----------------------------------------------

_NUMBER_ERRORS = {"int_parsing", "int_type", "int_from_float", "float_parsing", "float_type"}
_BOUND_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}


def _describe(model: type[BaseModel], detail: ErrorDetails) -> str:
    if detail["type"] == "combination":
        return str(detail["ctx"]["problems"]) if "ctx" in detail else detail["msg"]
    key = str(detail["loc"][0]) if detail["loc"] else "context"
    field = next((f for f in model.model_fields.values() if f.alias == key), None)
    hint = field.description if field is not None else None
    value = detail.get("input")
    kind = detail["type"]
    if kind == "missing":
        message = f"missing: set it in cdk.json or with -c {key}=... ({hint})"
    elif kind in _NUMBER_ERRORS:
        wanted = "whole number" if kind.startswith("int") else "number"
        message = f"{value!r} is not a {wanted}"
    elif kind in _BOUND_ERRORS:
        message = f"{value} is out of range ({_bounds(field.metadata if field else [])})"
    elif kind == "string_pattern_mismatch":
        message = f"{value!r} is not {hint}"
    elif kind == "string_type":
        message = f"{value!r} must be a string"
    else:
        message = detail["msg"]
    return f"{key}: {message}"


def _bounds(metadata: list[Any]) -> str:
    limits: dict[str, object] = {}
    for item in metadata:
        for name in ("ge", "gt", "le", "lt"):
            if getattr(item, name, None) is not None:
                limits[name] = getattr(item, name)
    low = limits.get("ge", limits.get("gt"))
    high = limits.get("le", limits.get("lt"))
    if high is None:
        return f"at least {low}" if "ge" in limits else f"above {low}"
    if low is None:
        return f"at most {high}"
    return f"{low}..{high}"
