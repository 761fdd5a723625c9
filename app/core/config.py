"""Podrelay's one typed settings object, read from the environment and `.env`.

Variable names follow the seed (`RUNPOD_API_KEY`, `RUNPOD_URL`, `REDIS_URL`) and carry no prefix.
With no RunPod settings at all, Podrelay targets its built-in simulator, so a fresh checkout
runs without an account. A bad or missing value surfaces as one `ConfigError` line that names
the variable, never as a traceback.
"""

import re
import sys
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.runpod.client import RUNPOD_API_BASE

if TYPE_CHECKING:
    from app.scheduler.routes import Catalogue

SIMULATOR_ENDPOINT_ID = "podrelay-sim"
SIMULATOR_API_KEY = "simulator"
DEVELOPMENT_MEDIA_URL_SECRET = "mediasec_development_only"  # noqa: S105 - refused in production

# `https://api.runpod.ai/v2/<endpoint_id>/run` (seed form), also `/runsync` or no operation.
_ENDPOINT_URL = re.compile(
    r"^(?P<base>https?://[^/\s]+(?:/[^\s]*)?/v2)/(?P<ep>[\w-]+)(?:/(?:run|runsync))?/?$"
)
_BASE_URL = re.compile(r"^https?://[^/\s]+(?:/[^\s]*)?$")


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TESTING = "testing"
    PRODUCTION = "production"


class MediaBackend(StrEnum):
    LOCAL = "local"
    S3 = "s3"


@dataclass(frozen=True)
class RunPodTarget:
    """Where RunPod calls go: `{base_url}/{endpoint_id}/{operation}`."""

    base_url: str
    endpoint_id: str
    api_key: SecretStr
    is_simulator: bool


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="`development`, `testing` or `production`. Development allows anonymous "
        "requests (as admin) and private webhook URLs unless the two ALLOW_* settings say no.",
    )

    runpod_api_key: SecretStr | None = Field(
        default=None, description="Your RunPod API key (never logged, never returned by the API)."
    )
    runpod_url: str | None = Field(
        default=None,
        description="`https://api.runpod.ai/v2/<endpoint_id>/run` (also `/runsync` or no "
        "operation), or a base URL with RUNPOD_ENDPOINT_ID. Unset: the built-in simulator.",
    )
    runpod_endpoint_id: str | None = Field(
        default=None, description="The endpoint id, when RUNPOD_URL is a base URL or unset."
    )
    runpod_poll_interval: float = Field(
        default=5.0, gt=0, le=300, description="Longest gap in seconds between status checks."
    )
    runpod_job_timeout: float = Field(
        default=300.0,
        gt=0,
        le=7 * 24 * 3600,
        description="Seconds a job may take in total before it is cancelled and `timed_out`.",
    )
    runpod_connect_timeout: float = Field(
        default=5.0, gt=0, le=120, description="Connect timeout towards RunPod, in seconds."
    )
    runpod_read_timeout: float = Field(
        default=30.0, gt=0, le=600, description="Read timeout towards RunPod, in seconds."
    )
    runpod_max_retries: int = Field(
        default=4,
        ge=0,
        le=20,
        description="Retries of a failed RunPod call (network error, 429, 5xx).",
    )

    simulator_host: str = Field(
        default="127.0.0.1", description="Where the built-in simulator listens (no RUNPOD_URL)."
    )
    simulator_port: int = Field(
        default=8001, ge=1, le=65535, description="The built-in simulator's port."
    )

    # Job engine.
    public_base_url: str | None = Field(
        default=None,
        description="The URL at which RunPod reaches this API; set, jobs end by webhook "
        "(polling is the safety net); unset, by polling.",
    )
    job_max_timeout: float = Field(
        default=3600.0,
        gt=0,
        le=7 * 24 * 3600,
        description="Longest `timeout` a request may ask for, in seconds.",
    )
    submit_max_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Submission attempts on network errors, timeouts, 429 and 5xx.",
    )
    submit_retry_base: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="First backoff between submission attempts in seconds (doubling).",
    )
    runpod_status_rate_limit: int = Field(
        default=2000,
        ge=1,
        description="RunPod's /status allowance per window; polling stays under 90% of it.",
    )
    runpod_status_rate_window: float = Field(
        default=10.0, gt=0, description="The window of the RunPod rate limits, in seconds."
    )
    runpod_run_rate_limit: int = Field(
        default=1000, ge=1, description="RunPod's /run allowance per window (paces submissions)."
    )
    runpod_cancel_rate_limit: int = Field(
        default=100, ge=1, description="RunPod's /cancel allowance per window."
    )
    poll_sweep_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between tracker ticks (polls, deadlines, downloads, webhooks).",
    )
    routes_file: Path | None = Field(
        default=None,
        description="A TOML catalogue of routes (models) and their RunPod endpoints, see "
        "routes.example.toml; unset: one route, `default`, on RUNPOD_URL.",
    )
    max_in_flight: int = Field(
        default=0,
        ge=0,
        description="Jobs an endpoint may hold at once (queued or running at RunPod); 0: "
        "IN_FLIGHT_PER_WORKER times the workers its /health reports, at least IN_FLIGHT_FLOOR.",
    )
    in_flight_per_worker: float = Field(
        default=2.0, gt=0, description="Jobs in flight per ready, running or starting worker."
    )
    in_flight_floor: int = Field(
        default=8, ge=1, description="Jobs in flight at an endpoint with no worker up yet."
    )
    health_check_interval: float = Field(
        default=5.0, gt=0, le=300, description="Seconds between /health checks of an endpoint."
    )
    circuit_failures: int = Field(
        default=3,
        ge=1,
        description="/run failures in a row (RunPod surely never took the job) that take an "
        "endpoint out of rotation.",
    )
    circuit_cooldown: float = Field(
        default=10.0,
        gt=0,
        description="Seconds an endpoint first stays out of rotation; doubled (with jitter) each "
        "time it fails again in a row, up to CIRCUIT_COOLDOWN_MAX.",
    )
    circuit_cooldown_max: float = Field(
        default=300.0, gt=0, description="The longest an endpoint stays out of rotation at once."
    )
    queue_order: Literal["fair", "fifo"] = Field(
        default="fair",
        description="`fair`: within a priority, owners share the endpoints by weight; `fifo`: "
        "first come, first served (one owner's burst delays everyone behind it).",
    )
    default_max_priority: Literal["high", "normal", "low"] = Field(
        default="normal",
        description="The highest `priority` a key may ask for unless the key says otherwise.",
    )
    webhook_safety_poll: float = Field(
        default=60.0,
        gt=0,
        description="In webhook mode, seconds to wait for the webhook before asking RunPod.",
    )
    reconcile_interval: float = Field(
        default=15.0,
        gt=0,
        description="Seconds between reconciler runs (lapsed jobs back on schedule).",
    )
    submit_lease: float = Field(
        default=120.0,
        ge=10,
        description="Seconds a worker holds the jobs it submits; a killed worker's wait this long.",
    )
    poll_lease: float = Field(
        default=60.0,
        ge=5,
        description="Seconds a worker holds the jobs it polls; a killed worker's wait this long.",
    )
    image_download_attempts: int = Field(
        default=5, ge=1, le=50, description="Attempts to download an image from a worker's URL."
    )
    image_download_retry_base: float = Field(
        default=5.0, ge=0, description="First backoff between image downloads in s (doubling)."
    )

    # API.
    allow_anonymous: bool | None = Field(
        default=None,
        description="Accept requests without an API key (default: only in development).",
    )
    allow_private_webhook_urls: bool | None = Field(
        default=None,
        description="Client webhook URLs on loopback/private addresses (default: development).",
    )
    requests_per_minute: int = Field(
        default=3000,
        ge=1,
        description="Reads and other calls per minute per caller (creating jobs has its own "
        "CREATES_PER_MINUTE); counted in Redis when set.",
    )
    max_concurrent_jobs: int = Field(
        default=100, ge=0, description="Unfinished jobs per API key at any one time (0: no cap)."
    )
    max_request_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest request body accepted, in bytes."
    )
    request_body_timeout: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Seconds a client may take to send a body (slower gets 408).",
    )
    cors_origins: str = Field(
        default="",
        description="Comma-separated origins whose web pages may call the API (CORS), e.g. "
        "`https://app.example.com`; `*` for any; unset: none.",
    )
    gpu_price_per_second: float = Field(
        default=0.00044, ge=0, description="USD per GPU second, for the cost estimates."
    )
    client_webhook_attempts: int = Field(
        default=12,
        ge=1,
        le=50,
        description="Delivery attempts of a signed webhook (backoff from 10 s doubling, max 1 h).",
    )
    webhook_signing_secret: SecretStr = Field(
        # The same key as the older default `whsec_development_only`, in the standard form.
        default=SecretStr("whsec_d2hzZWNfZGV2ZWxvcG1lbnRfb25seQ=="),
        description="Signs webhooks of anonymous callers (keys have their own): `whsec_` + "
        "base64 of random bytes; set it outside development.",
    )

    # Identity: the host app's users (JWT/OIDC), session tokens, budgets, limits, metrics.
    creates_per_minute: int = Field(
        default=600,
        ge=1,
        description="Job submissions (`POST /generate`, `/generate/batch`) per minute per caller.",
    )
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="Accept HS256 JWTs from the host app signed with this shared secret (at "
        "least 32 characters); `sub` becomes the job owner.",
    )
    jwt_jwks_url: str | None = Field(
        default=None,
        description="Accept RS256/ES256 JWTs signed by the keys at this JWKS URL.",
    )
    jwt_issuer: str | None = Field(
        default=None,
        description="The `iss` JWTs must carry; without JWT_JWKS_URL, its OIDC discovery "
        "document names the JWKS.",
    )
    jwt_audience: str | None = Field(
        default=None, description="The `aud` JWTs must carry (unset: tokens with any `aud` fail)."
    )
    jwt_leeway: float = Field(
        default=30.0, ge=0, le=600, description="Clock skew allowed on `exp`, `nbf`, `iat` (s)."
    )
    jwt_jwks_cache_ttl: float = Field(
        default=300.0, gt=0, le=86400, description="Seconds JWKS keys are used before a refetch."
    )
    jwt_jwks_max_stale: float = Field(
        default=3600.0,
        ge=0,
        le=7 * 86400,
        description="While the JWKS does not answer, its cached keys serve this much longer; "
        "then JWTs get 503 `jwks_unavailable`.",
    )
    session_token_secret: SecretStr | None = Field(
        default=None,
        description="Signs session tokens (`POST /api/v1/tokens`); unset: a key derived from "
        "MEDIA_URL_SECRET.",
    )
    budget_daily_usd: float | None = Field(
        default=None,
        ge=0,
        description="Each owner's daily USD budget unless its key or token says otherwise "
        "(unset: none); over it, submissions get 402 `budget_exceeded`.",
    )
    budget_monthly_usd: float | None = Field(
        default=None, ge=0, description="The same per calendar month (UTC)."
    )
    job_estimate_seconds: float = Field(
        default=10.0,
        gt=0,
        description="GPU seconds a new job is assumed to take against budgets until its route "
        "has a median of recent executions.",
    )
    budget_webhook_url: str | None = Field(
        default=None,
        description="Where `budget.threshold` webhooks go for callers whose key has no "
        "webhook URL (JWT users, anonymous).",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, `/metrics` needs `Authorization: Bearer <token>`.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="When set, `/metrics` is served on this port only (all interfaces), not on "
        "the API's.",
    )

    redis_url: str | None = Field(
        default=None,
        description="Celery broker (and shared rate-limit counters); unset: an embedded broker "
        "under DATA_DIR, no server needed.",
    )
    database_url: str = Field(
        default="sqlite:///./data/podrelay.db",
        description="The job ledger: SQLite, or `postgresql+psycopg://user@host:5432/db`.",
    )
    data_dir: Path = Field(
        default=Path("data"),
        description="Local state: embedded broker, beat schedule, gates.",
    )
    media_backend: MediaBackend = Field(
        default=MediaBackend.LOCAL,
        description="Where result images are kept: `local` (MEDIA_DIR) or `s3` (S3_BUCKET on "
        "AWS S3, Cloudflare R2, MinIO, Backblaze B2; credentials the standard AWS way).",
    )
    media_dir: Path = Field(
        default=Path("data/media"),
        description="The `local` backend's folder (images by content hash).",
    )
    s3_bucket: str | None = Field(
        default=None, description="The `s3` backend's bucket (required with MEDIA_BACKEND=s3)."
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="An S3-compatible endpoint (R2, MinIO, B2); unset: AWS S3 in S3_REGION.",
    )
    s3_prefix: str = Field(
        default="", description="Prefix of every object key Podrelay writes, e.g. `podrelay/`."
    )
    s3_region: str | None = Field(
        default=None,
        description="The bucket's region (unset: the AWS default chain's, or R2's `auto`).",
    )
    media_public_base_url: str | None = Field(
        default=None,
        description="A CDN or public URL in front of the bucket: images redirect there instead "
        "of to presigned GETs (`s3` only).",
    )
    media_url_ttl: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="Seconds a signed image URL stays valid (and a presigned GET behind it).",
    )
    media_url_secret: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_MEDIA_URL_SECRET),
        description="Signs image URLs (HMAC); refused in production while it has its default.",
    )
    media_retention_days: float | None = Field(
        default=None,
        gt=0,
        description="Days a finished job's images are kept; unset: forever. Swept hourly.",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_file: Path | None = Field(
        default=Path("logs/app.log"), description="Log file, besides stderr (rotated at 20 MB)."
    )

    # Tracing (OpenTelemetry, `app.core.tracing`); the SDK reads the other OTEL_* variables.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        pattern=r"^(https?://[^/\s]+(/\S*)?)?$",
        description="An OTLP/HTTP collector's base URL, e.g. `http://127.0.0.1:4318`: traces "
        "are sent to its `/v1/traces`. Unset: no tracing, nothing sent.",
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf"] = Field(
        default="http/protobuf",
        description="OTLP over HTTP with protobuf, the only protocol built in (no gRPC).",
    )
    otel_service_name: str | None = Field(
        default=None,
        description="The traces' `service.name`; unset: `podrelay-api` or `podrelay-worker`.",
    )

    @property
    def webhook_base_url(self) -> str | None:
        """Where RunPod sends job webhooks; None means completion is learned by polling."""
        return self.public_base_url.rstrip("/") if self.public_base_url else None

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def anonymous_allowed(self) -> bool:
        """Requests without an API key: allowed by default only in development."""
        if self.allow_anonymous is not None:
            return self.allow_anonymous
        return self.environment is Environment.DEVELOPMENT

    @property
    def private_webhook_urls_allowed(self) -> bool:
        """Client webhooks to loopback/private addresses: by default only in development."""
        if self.allow_private_webhook_urls is not None:
            return self.allow_private_webhook_urls
        return self.environment is Environment.DEVELOPMENT

    @model_validator(mode="after")
    def _check_runpod_target(self) -> Self:
        self.runpod_target  # noqa: B018 - resolving the target validates the RunPod settings
        self.catalogue  # noqa: B018 - and the routes file, if there is one
        return self

    @model_validator(mode="after")
    def _check_media(self) -> Self:
        if self.media_backend is MediaBackend.S3 and not self.s3_bucket:
            raise ValueError("S3_BUCKET is not set (MEDIA_BACKEND=s3 needs it)")
        default_secret = self.media_url_secret.get_secret_value() == DEVELOPMENT_MEDIA_URL_SECRET
        if self.environment is Environment.PRODUCTION and default_secret:
            raise ValueError("MEDIA_URL_SECRET must be set in production (it signs image URLs)")
        return self

    @cached_property
    def catalogue(self) -> "Catalogue":
        """The routes and their endpoints: ROUTES_FILE's, or RUNPOD_URL's one route."""
        from app.scheduler.routes import load_catalogue, single_route

        target = self.runpod_target
        key = target.api_key.get_secret_value()
        if self.routes_file is None:
            return single_route(target.base_url, target.endpoint_id, key)
        simulator_base = target.base_url if target.is_simulator else None
        return load_catalogue(self.routes_file, fallback_key=key, simulator_base=simulator_base)

    def price_of(self, route: str) -> float:
        """USD per GPU second on a route: its own price, or GPU_PRICE_PER_SECOND."""
        found = self.catalogue.routes.get(route)
        if found is not None and found.price_per_second is not None:
            return found.price_per_second
        return self.gpu_price_per_second

    @model_validator(mode="after")
    def _check_identity(self) -> Self:
        if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value()) < 32:
            raise ValueError("JWT_SECRET must be at least 32 characters (HS256 needs 256 bits)")
        return self

    @property
    def runpod_target(self) -> RunPodTarget:
        """Resolve the RunPod settings into one target, or the simulator when none are given."""
        key = self.runpod_api_key
        if self.runpod_url is None and self.runpod_endpoint_id is None:
            if key is not None and key.get_secret_value():
                raise ValueError(
                    "RUNPOD_URL is not set (RUNPOD_API_KEY is set without an endpoint)"
                )
            return RunPodTarget(
                base_url=f"http://{self.simulator_host}:{self.simulator_port}/v2",
                endpoint_id=SIMULATOR_ENDPOINT_ID,
                api_key=SecretStr(SIMULATOR_API_KEY),
                is_simulator=True,
            )
        base_url, endpoint_id = _parse_runpod_url(self.runpod_url, self.runpod_endpoint_id)
        if key is None or not key.get_secret_value().strip():
            raise ValueError("RUNPOD_API_KEY is not set")
        return RunPodTarget(
            base_url=base_url, endpoint_id=endpoint_id, api_key=key, is_simulator=False
        )


def _parse_runpod_url(url: str | None, endpoint_id: str | None) -> tuple[str, str]:
    if url is None:
        return RUNPOD_API_BASE, _check_endpoint_id(endpoint_id or "")
    url = url.strip()
    match = _ENDPOINT_URL.match(url)
    if match and not endpoint_id:
        return match["base"], match["ep"]
    if endpoint_id and _BASE_URL.match(url):
        return url.rstrip("/"), _check_endpoint_id(endpoint_id)
    raise ValueError(
        "RUNPOD_URL must look like https://api.runpod.ai/v2/<endpoint_id>/run, "
        "or be a base URL with RUNPOD_ENDPOINT_ID set"
    )


def _check_endpoint_id(endpoint_id: str) -> str:
    if not re.fullmatch(r"[\w-]+", endpoint_id):
        raise ValueError(
            "RUNPOD_ENDPOINT_ID must be a RunPod endpoint id (letters, digits, - and _)"
        )
    return endpoint_id


def describe_validation_error(error: ValidationError) -> str:
    """Turn pydantic's multi-line report into one line that names the environment variable."""
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["loc"]:
        return f"{str(first['loc'][0]).upper()}: {message}"
    return message


def load_settings() -> Settings:
    """Read the settings, raising `ConfigError` with one clear line when they are invalid."""
    try:
        return Settings()
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def settings_or_exit() -> Settings:
    """For entry points: the settings, or one `error: ...` line on stderr and exit status 2."""
    try:
        return get_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201 - the whole point is a bare line
        raise SystemExit(2) from None
