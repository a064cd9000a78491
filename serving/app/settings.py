"""The service's settings: one typed object, read from the environment once.

Every variable carries the `SERVICE_` prefix (`SERVICE_WORKERS=4`), except the deployment
facts the platform injects under their conventional names (`GIT_REVISION`).
`gunicorn.conf.py` reads the same object, so the server and the app agree on every value.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app import auth

# The artifacts training writes: `serving/app/data/` in a checkout, `app/data/` in the image.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "data"
# The exit code of a refusal to start (sysexits.h EX_CONFIG: a model that must not be served,
# invalid settings), distinct from gunicorn's own (1, 3, 4) in an ECS task's stopped reason.
EXIT_REFUSED = 78


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVICE_", extra="ignore", frozen=True)

    model_dir: Path = Field(
        default=DEFAULT_MODEL_DIR,
        description="Directory holding model.joblib, model_metadata.json and metrics.json.",
    )
    bind: str = Field(
        default="0.0.0.0:8000",
        description="Address gunicorn listens on (HOST:PORT).",
    )
    # Two keep one worker answering health checks while the other predicts a large batch or
    # is being replaced after a crash. The deployment sets it from the task's CPU (one per
    # vCPU, at least two: serving/deployment/stack/settings.py, workers_for); this default is
    # what it gives cdk.json's task of 512 units (half a vCPU), and a test keeps them equal.
    workers: int = Field(default=2, ge=1, le=64)
    # Seconds a worker gets to finish in-flight requests after SIGTERM. The ECS container
    # stop timeout (set by the deployment) must be longer.
    graceful_timeout_seconds: int = Field(default=20, ge=1, le=110)
    # Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: a comma-separated
    # list of IPs or CIDRs (the deployment passes the VPC's CIDR, where the load balancer
    # lives). The logged client is the rightmost X-Forwarded-For address outside this set,
    # so a client cannot choose its own by sending the header. "*" trusts every peer.
    forwarded_allow_ips: str = "127.0.0.1,::1"
    # "auto" serves through the compiled fast path when it applies to this model and falls
    # back to the joblib Pipeline otherwise; "sklearn" forces the Pipeline; "onnx" refuses
    # to start without the fast path.
    backend: Literal["auto", "sklearn", "onnx"] = "auto"
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # 1,000 records with every field set take about 150 KB of JSON; 1 MiB leaves room for
    # indentation while refusing bodies no legitimate client sends.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_batch_records: int = Field(default=1000, ge=1)
    # Records in one Arrow body of /predict/batch: a column of 10,000 numbers is 80 KB, so
    # ten times JSON's count fits the same byte limit, which both share.
    max_arrow_records: int = Field(default=10_000, ge=1)
    # Prediction bodies up to this size are answered on the event loop, larger ones on the
    # model thread (ModelService.answer). 16 KiB holds about 115 records, a twentieth of the
    # 5 ms the loop may wait for the GIL (docs/performance.md). 0 sends all to the thread.
    inline_max_bytes: int = Field(default=16 * 1024, ge=0)
    # The request line and headers together, and the header count: the ALB's own caps are
    # 64 KiB and 100 fields, so nothing larger comes through it legitimately. Over either,
    # the connection gets 431 and is closed.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_header_fields: int = Field(default=100, ge=10)
    # A connection whose request line and headers are not complete this long after its
    # first byte (or, for a new connection, after it opened) is closed, with 408 when a
    # request had begun; likewise a request whose body is not complete this long after its
    # headers. Bodies are at most max_body_bytes and come from a load balancer on the same
    # network, so seconds are generous; a slow client cannot hold a connection open.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # /docs and /redoc load Swagger UI and ReDoc from a CDN (jsDelivr) into the browser:
    # third-party code, off in the image. `make serve` turns them on for local use.
    # /openapi.json is always served.
    api_docs: bool = False
    # CloudWatch Embedded Metric Format in each request's log line (app.metrics): the
    # namespace the metrics land in and the value of their `Service` dimension. The
    # deployment passes the same values its alarms and dashboard read.
    metrics_namespace: str = Field(
        default="PredictionService",
        min_length=1,
        max_length=255,
        # The characters CloudWatch allows in a namespace.
        pattern=r"^[A-Za-z0-9.\-_/#: ]+$",
    )
    name: str = Field(
        default="prediction-service",
        min_length=1,
        max_length=255,
        description="The service's name (SERVICE_NAME): the EMF `Service` dimension.",
    )
    # The revision the running image was deployed from, passed in by the deployment (CDK).
    deployed_revision: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SERVICE_DEPLOYED_REVISION", "GIT_REVISION"),
    )

    # API keys (app.auth): `name:key,name:key` or a JSON object {"name": "key"}; unset or
    # empty, no key is asked for. Held from here on as SHA-256 digests by name: the keys
    # themselves are not kept.
    api_keys: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict, repr=False)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _digests(cls, value: Any) -> dict[str, str]:
        if value is None or (isinstance(value, str) and not value.strip()):
            return {}
        return {name: auth.digest(key) for name, key in auth.parse(value).items()}

    @field_validator("metrics_namespace")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith("AWS/"):
            raise ValueError("namespaces starting with AWS/ are reserved for AWS services")
        return value


def describe_invalid(error: ValidationError) -> str:
    """One line naming each invalid variable, never quoting a value (a key must not reach
    a log)."""
    return "; ".join(
        f"SERVICE_{'_'.join(str(part) for part in detail['loc']).upper()}: "
        + detail["msg"].removeprefix("Value error, ")
        for detail in error.errors(include_url=False, include_input=False, include_context=False)
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
