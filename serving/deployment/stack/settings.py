"""The deployment's settings: read from CDK context values, validated once, before any construct.

Defaults live in `cdk.json` (`context`); `cdk deploy -c desiredCount=4` overrides one. Every
problem is reported at once, naming the context key, so a typo fails `cdk synth` with a clear
message instead of a CloudFormation rollback twenty minutes later.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

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

# The retention periods CloudWatch Logs accepts, in days.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip

# The VPC spans two availability zones: more NAT gateways than that would sit unused.
AVAILABILITY_ZONES = 2

_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_DOMAIN_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_HOSTED_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")
_CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
# What `make deploy` passes: a short or full commit hash, "-dirty" when the working tree has
# uncommitted changes, or "unknown" outside a git checkout.
_GIT_REVISION = re.compile(r"^(unknown|[0-9a-f]{7,40}(-dirty)?)$")

ContextLookup = Callable[[str], object]


class ContextError(ValueError):
    """One or more CDK context values are missing or invalid."""


@dataclass(frozen=True)
class HttpsSettings:
    """Where the HTTPS listener's certificate and DNS name come from.

    A hosted zone lets the stack create the DNS record (and, without `certificate_arn`, a
    DNS-validated ACM certificate). A certificate ARN alone means you point `domain_name` at the
    load balancer yourself.
    """

    domain_name: str
    hosted_zone_id: str | None
    hosted_zone_name: str | None
    certificate_arn: str | None

    @property
    def has_hosted_zone(self) -> bool:
        return self.hosted_zone_id is not None


@dataclass(frozen=True)
class DeploymentSettings:
    stack_name: str
    desired_count: int
    min_capacity: int
    max_capacity: int
    cpu: int
    memory_mib: int
    nat_gateways: int
    log_retention_days: int
    cpu_target_percent: int
    requests_per_target: int
    git_revision: str
    https: HttpsSettings | None

    @classmethod
    def from_context(cls, lookup: ContextLookup) -> DeploymentSettings:
        """Read and validate every setting; `lookup` is `app.node.try_get_context`."""
        reader = _Reader(lookup)
        stack_name = reader.text("stackName", pattern=_STACK_NAME, hint="letters, digits, '-'")
        desired_count = reader.integer("desiredCount", minimum=1)
        min_capacity = reader.integer("minCapacity", minimum=1)
        max_capacity = reader.integer("maxCapacity", minimum=1)
        cpu = reader.integer("cpu", minimum=256)
        memory_mib = reader.integer("memoryMiB", minimum=512)
        nat_gateways = reader.integer("natGateways", minimum=1, maximum=AVAILABILITY_ZONES)
        log_retention_days = reader.integer("logRetentionDays", minimum=1)
        cpu_target_percent = reader.integer("cpuTargetPercent", minimum=10, maximum=90)
        requests_per_target = reader.integer("requestsPerTarget", minimum=1)
        git_revision = reader.text(
            "gitRevision",
            pattern=_GIT_REVISION,
            hint="a commit hash, optionally -dirty, or unknown",
        )
        https = _https(reader)

        if None not in (min_capacity, max_capacity, desired_count):
            assert min_capacity is not None
            assert max_capacity is not None
            assert desired_count is not None
            if min_capacity > max_capacity:
                reader.fail("minCapacity", f"{min_capacity} is above maxCapacity {max_capacity}")
            elif not min_capacity <= desired_count <= max_capacity:
                reader.fail(
                    "desiredCount",
                    f"{desired_count} is outside minCapacity..maxCapacity "
                    f"({min_capacity}..{max_capacity})",
                )
        if cpu is not None and memory_mib is not None:
            _check_fargate_size(reader, cpu, memory_mib)
        if log_retention_days is not None and log_retention_days not in LOG_RETENTION_DAYS:
            reader.fail(
                "logRetentionDays",
                f"{log_retention_days} is not a CloudWatch Logs retention; choose one of "
                f"{', '.join(map(str, LOG_RETENTION_DAYS))}",
            )

        if reader.errors:
            raise ContextError(
                "invalid CDK context (cdk.json or -c key=value):\n  - "
                + "\n  - ".join(reader.errors)
            )
        # Every value is set once no error was recorded; the asserts tell the type checker.
        assert stack_name is not None
        assert git_revision is not None
        assert desired_count is not None
        assert min_capacity is not None
        assert max_capacity is not None
        assert cpu is not None
        assert memory_mib is not None
        assert nat_gateways is not None
        assert log_retention_days is not None
        assert cpu_target_percent is not None
        assert requests_per_target is not None
        return cls(
            stack_name=stack_name,
            desired_count=desired_count,
            min_capacity=min_capacity,
            max_capacity=max_capacity,
            cpu=cpu,
            memory_mib=memory_mib,
            nat_gateways=nat_gateways,
            log_retention_days=log_retention_days,
            cpu_target_percent=cpu_target_percent,
            requests_per_target=requests_per_target,
            git_revision=git_revision,
            https=https,
        )


class _Reader:
    """Reads context values, recording every problem instead of stopping at the first."""

    def __init__(self, lookup: ContextLookup) -> None:
        self._lookup = lookup
        self.errors: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.errors.append(f"{key}: {message}")

    def integer(self, key: str, *, minimum: int, maximum: int | None = None) -> int | None:
        raw = self._lookup(key)
        # Values from cdk.json arrive as JSON numbers, values from `-c key=value` as strings.
        if isinstance(raw, bool) or raw is None or raw == "":
            self.fail(key, "missing: set it in cdk.json or with -c " + key + "=<integer>")
            return None
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str) and re.fullmatch(r"\d+", raw.strip()):
            value = int(raw.strip())
        else:
            self.fail(key, f"{raw!r} is not a whole number")
            return None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"{minimum}..{maximum}"
            self.fail(key, f"{value} is out of range ({bounds})")
            return None
        return value

    def text(self, key: str, *, pattern: re.Pattern[str], hint: str) -> str | None:
        raw = self.optional_text(key)
        if raw is None:
            self.fail(key, f"missing: set it in cdk.json or with -c {key}=<{hint}>")
            return None
        if not pattern.fullmatch(raw):
            self.fail(key, f"{raw!r} is not valid ({hint})")
            return None
        return raw

    def optional_text(self, key: str) -> str | None:
        """A string value, or None when absent or empty (cdk.json lists unset keys as "")."""
        raw = self._lookup(key)
        if raw is None:
            return None
        if not isinstance(raw, str):
            self.fail(key, f"{raw!r} must be a string")
            return None
        stripped = raw.strip()
        return stripped or None


def _https(reader: _Reader) -> HttpsSettings | None:
    domain_name = reader.optional_text("domainName")
    zone_id = reader.optional_text("hostedZoneId")
    zone_name = reader.optional_text("hostedZoneName")
    certificate_arn = reader.optional_text("certificateArn")
    if domain_name is not None:
        domain_name = domain_name.rstrip(".").lower()
    if zone_name is not None:
        zone_name = zone_name.rstrip(".").lower()

    if domain_name is None:
        given = [
            key
            for key, value in (
                ("hostedZoneId", zone_id),
                ("hostedZoneName", zone_name),
                ("certificateArn", certificate_arn),
            )
            if value is not None
        ]
        if given:
            reader.fail(
                "domainName",
                f"missing while {' and '.join(given)} is set: HTTPS needs the name clients use",
            )
        return None

    errors_before = len(reader.errors)
    if not _DOMAIN_NAME.fullmatch(domain_name):
        reader.fail("domainName", f"{domain_name!r} is not a DNS name")
    if (zone_id is None) != (zone_name is None):
        reader.fail(
            "hostedZoneId" if zone_id is None else "hostedZoneName",
            "hostedZoneId and hostedZoneName go together (Route 53 console, 'Hosted zone details')",
        )
    if zone_id is not None and not _HOSTED_ZONE_ID.fullmatch(zone_id):
        reader.fail("hostedZoneId", f"{zone_id!r} is not a Route 53 hosted zone id (Z...)")
    if (
        zone_name is not None
        and domain_name != zone_name
        and not domain_name.endswith("." + zone_name)
    ):
        reader.fail("domainName", f"{domain_name!r} is not inside hosted zone {zone_name!r}")
    if certificate_arn is not None and not _CERTIFICATE_ARN.fullmatch(certificate_arn):
        reader.fail("certificateArn", f"{certificate_arn!r} is not an ACM certificate ARN")
    if zone_id is None and zone_name is None and certificate_arn is None:
        reader.fail(
            "domainName",
            "set hostedZoneId and hostedZoneName (the stack requests a certificate and creates "
            "the DNS record) or certificateArn (an ACM certificate you already have)",
        )
    if len(reader.errors) > errors_before:
        return None
    return HttpsSettings(
        domain_name=domain_name,
        hosted_zone_id=zone_id,
        hosted_zone_name=zone_name,
        certificate_arn=certificate_arn,
    )


def _check_fargate_size(reader: _Reader, cpu: int, memory_mib: int) -> None:
    if cpu not in FARGATE_MEMORY_BY_CPU:
        reader.fail(
            "cpu",
            f"{cpu} is not a Fargate size; choose one of "
            f"{', '.join(map(str, FARGATE_MEMORY_BY_CPU))}",
        )
        return
    allowed = FARGATE_MEMORY_BY_CPU[cpu]
    if memory_mib not in allowed:
        reader.fail(
            "memoryMiB",
            f"{memory_mib} does not fit cpu {cpu}: Fargate accepts {', '.join(map(str, allowed))}",
        )
