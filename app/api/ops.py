"""Operations: `/readyz` (readiness), `/metrics` (Prometheus) and the middleware behind them.

`/healthz` (liveness: the process answers) stays in `app.main`. `/readyz` answers 200 only when
the database, the Celery broker and RunPod all answer, and 503 otherwise, naming what failed.
RunPod is part of it because without it no job can run; mind that an outage at RunPod then
takes every API replica out of a load balancer that follows this probe. Its RunPod answer is
reused for `RUNPOD_CHECK_TTL_S`, so frequent probes do not spend RunPod's /health allowance.

Neither endpoint needs an API key; serve them on a network the public cannot reach (the
metrics reveal traffic and job volumes, never keys, tokens or job ids). In production, give
`/metrics` a token (METRICS_TOKEN: scrapers send `Authorization: Bearer <token>`) or a port of
its own (METRICS_PORT, which the API's port then no longer answers on; with several uvicorn
workers, the first to start serves it).
"""

import asyncio
import hmac
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal

import httpx
import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from loguru import logger
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict
from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import examples
from app.api.deps import EngineDep
from app.api.limits import (
    RUNPOD_WEBHOOK_MAX_BYTES,
    RUNPOD_WEBHOOK_PREFIX,
    BodyLimitMiddleware,
    BodyLimits,
)
from app.api.openapi_docs import json_example
from app.api.ratelimit import RateLimitHeadersMiddleware
from app.api.route_metrics import route_metrics
from app.core.config import Environment, Settings
from app.core.db import Database
from app.core.errors import NotFound, Unauthorized
from app.core.metrics import observe_http_request, observe_runpod_attempt
from app.jobs.models import Job
from app.jobs.status import JobStatus
from app.runpod import AuthenticationError, RateLimitError, RunPodClient, RunPodError
from app.scheduler.overview import route_overviews

CHECK_TIMEOUT_S = 3.0
RUNPOD_CHECK_TTL_S = 5.0
UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

router = APIRouter(tags=["operations"])


class Check(BaseModel):
    ok: bool
    detail: str | None = None


class Readiness(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.READY, examples.NOT_READY]})

    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]


def install_operations(application: FastAPI, settings: Settings) -> BodyLimits:
    """Mount `/readyz` and `/metrics` and the body limits, rate-limit headers and metrics
    middleware. The order matters: metrics (outermost) see every answer, 413s included.
    Returns the body limits, for a middleware added outside these."""
    application.include_router(router)
    limits = BodyLimits(
        max_bytes=settings.max_request_bytes,
        timeout_s=settings.request_body_timeout,
        overrides=[
            (RUNPOD_WEBHOOK_PREFIX, max(settings.max_request_bytes, RUNPOD_WEBHOOK_MAX_BYTES))
        ],
    )
    application.add_middleware(BodyLimitMiddleware, limits=limits)
    application.add_middleware(RateLimitHeadersMiddleware)
    application.add_middleware(HttpMetricsMiddleware)
    return limits


# --- Readiness ---------------------------------------------------------------------------


@router.get(
    "/readyz",
    summary="Readiness probe",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={
        503: {
            "model": Readiness,
            **json_example(examples.NOT_READY, "Not ready; `checks` say why"),
        }
    },
)
async def readyz(request: Request, engine: EngineDep) -> JSONResponse:
    settings = engine.settings
    database, broker, runpod = await asyncio.gather(
        _bounded("database", _check_database(engine.db)),
        _bounded("broker", _check_broker(settings)),
        _bounded("runpod", _check_runpod(request.app, settings)),
    )
    checks = {"database": database, "broker": broker, "runpod": runpod}
    ready = all(check.ok for check in checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )


async def _bounded(name: str, check: Awaitable[Check]) -> Check:
    try:
        return await asyncio.wait_for(check, CHECK_TIMEOUT_S)
    except TimeoutError:
        return Check(ok=False, detail=f"no answer within {CHECK_TIMEOUT_S:g} s")
    except Exception as error:  # noqa: BLE001 - a probe reports failures, it never raises
        logger.opt(exception=True).warning("readiness check {} failed", name)
        return Check(ok=False, detail=f"check failed ({type(error).__name__})")


async def _check_database(db: Database) -> Check:
    def select_one() -> None:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(select_one)
    except SQLAlchemyError as error:
        # The driver's message can name hosts and users; it goes to the log, not the answer.
        logger.warning("readiness: the database did not answer: {}", error)
        return Check(ok=False, detail=f"the database did not answer ({type(error).__name__})")
    return Check(ok=True)


async def _check_broker(settings: Settings) -> Check:
    if settings.redis_url:
        client = aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        try:
            await client.ping()
        except (RedisError, OSError) as error:
            logger.warning("readiness: Redis did not answer PING: {}", error)
            return Check(ok=False, detail=f"Redis did not answer PING ({type(error).__name__})")
        finally:
            await client.aclose()
        return Check(ok=True, detail="redis")
    # The embedded broker's layout, as `app.celery_app.broker_config` creates it.
    folder = settings.data_dir / "broker" / "queue"
    if not folder.is_dir():
        return Check(ok=False, detail="the embedded broker's folder (DATA_DIR/broker) is missing")
    if not os.access(folder, os.W_OK | os.X_OK):
        return Check(ok=False, detail="the embedded broker's folder is not writable")
    return Check(ok=True, detail="embedded")


async def _check_runpod(application: Any, settings: Settings) -> Check:
    cached: tuple[float, Check] | None = getattr(application.state, "readyz_runpod", None)
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return cached[1]
    target = settings.runpod_target
    where = "the simulator" if target.is_simulator else "RunPod"
    async with RunPodClient(
        api_key=target.api_key.get_secret_value(),
        endpoint_id=target.endpoint_id,
        base_url=target.base_url,
        timeout=httpx.Timeout(CHECK_TIMEOUT_S - 0.5, connect=2.0),
        max_retries=0,
        on_attempt=observe_runpod_attempt,
    ) as client:
        try:
            await client.health()
            check = Check(ok=True, detail="simulator" if target.is_simulator else None)
        except AuthenticationError as error:
            check = Check(ok=False, detail=f"{where} refused the API key: {error.message}")
        except RateLimitError:
            check = Check(ok=True, detail=f"{where} answered, rate limited (429)")
        except RunPodError as error:
            check = Check(ok=False, detail=error.message)
    application.state.readyz_runpod = (time.monotonic() + RUNPOD_CHECK_TTL_S, check)
    return check


# --- Metrics -----------------------------------------------------------------------------


@router.get(
    "/metrics",
    summary="Prometheus metrics of this API process",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format (an excerpt below).",
            "content": {"text/plain": {"example": examples.METRICS}},
        }
    },
)
def metrics(request: Request, engine: EngineDep) -> Response:
    """With METRICS_TOKEN, only for `Authorization: Bearer <token>`; with METRICS_PORT, not
    here but on that port."""
    settings = engine.settings
    if settings.metrics_port is not None:
        raise NotFound(f"metrics are served on port {settings.metrics_port}", code="not_found")
    token = settings.metrics_token
    if token is not None:
        presented = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(presented, f"Bearer {token.get_secret_value()}".encode()):
            raise Unauthorized("/metrics needs its token", code="metrics_token_required")
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(_scrape(settings, engine.db)), headers={"Content-Type": content_type})


def _scrape(settings: Settings, db: Database) -> "_Scrape":
    return _Scrape([REGISTRY, LedgerCollector(settings, db)])


def serve_metrics_port(settings: Settings, db: Database) -> Callable[[], None]:
    """Serve the metrics on METRICS_PORT (in a thread), if set; returns what stops it."""
    if settings.metrics_port is None:
        if settings.environment is Environment.PRODUCTION and settings.metrics_token is None:
            logger.warning("/metrics is open: set METRICS_TOKEN or METRICS_PORT in production")
        return lambda: None
    try:
        server, thread = start_http_server(settings.metrics_port, registry=_scrape(settings, db))
    except OSError as error:  # another worker process of this API serves it
        logger.warning("metrics port {} not served here: {}", settings.metrics_port, error)
        return lambda: None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


class _Scrape:
    """The process's registry plus collectors that only make sense per scrape."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterable[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


class LedgerCollector:
    """Jobs by status and the queue depth, from one GROUP BY on the ledger per scrape, and the
    routes' and endpoints' gauges (`app.api.route_metrics`)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("podrelay_ledger_up", "1 when the job ledger answered the scrape.")
        try:
            with self._db.session() as session:
                rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
                routes = route_metrics(route_overviews(session, self._settings))
        except SQLAlchemyError as error:
            logger.warning("metrics: the ledger did not answer: {}", error)
            up.add_metric([], 0)
            yield up
            return
        counts = {status.value: 0 for status in JobStatus}
        counts.update({str(status): int(count) for status, count in rows})
        jobs = GaugeMetricFamily(
            "podrelay_jobs", "Jobs in the ledger, by status.", labels=["status"]
        )
        for status, count in counts.items():
            jobs.add_metric([status], count)
        yield jobs
        yield GaugeMetricFamily(
            "podrelay_queue_depth",
            "Jobs not yet running: pending (not accepted by RunPod yet) plus queued at RunPod.",
            value=counts[JobStatus.PENDING] + counts[JobStatus.QUEUED],
        )
        yield from routes
        up.add_metric([], 1)
        yield up


class HttpMetricsMiddleware:
    """Counts requests and times them, labelled by route template (never the raw path).

    Not prometheus-fastapi-instrumentator: it labels unmatched paths (a 413 on Content-Length,
    a 404) less carefully than `RouteTemplates`, and it would be a second set of request
    metrics beside the series our dashboard and examples name.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._templates: RouteTemplates | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            # Without an answer yet, the server error middleware (outside this) sends a 500.
            self._observe(scope, status or 500, started)
            raise
        self._observe(scope, status or 500, started)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        if self._templates is None:
            # Built on the first request, when every route is registered.
            self._templates = RouteTemplates(getattr(scope.get("app"), "routes", []))
        route = self._templates.template(scope)
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        observe_http_request(route, method, status, time.perf_counter() - started)


class RouteTemplates:
    """Full route templates (`/api/v1/runpod/status/{task_id}`) of an application's routes.

    FastAPI keeps included routers as they are, so the route it leaves in the scope knows only
    its path inside its own router; the full template comes from its route context. A request
    that never reached a route (a 413 on Content-Length, a 404) is matched against the
    templates here, and one that matches none is labelled `<unmatched>`.
    """

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        templates: dict[int, set[str]] = {}
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        # Paths without parameters are their own templates: found without a regex each.
        self._exact: dict[str, str] = {}
        for context in iter_route_contexts(routes):
            path, template = context.path, context.path_format
            if not path or not template:
                continue
            templates.setdefault(id(context.original_route), set()).add(template)
            if "{" not in path and not self._match(path):
                self._exact.setdefault(path, template)
            self._patterns.append((compile_path(path)[0], template))
        # A router included twice gives one route two templates: those are matched instead.
        self._by_route = {key: found.pop() for key, found in templates.items() if len(found) == 1}

    def template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None and (found := self._by_route.get(id(route))) is not None:
            return found
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :] or "/"
        return self._exact.get(path) or self._match(path) or UNMATCHED_ROUTE

    def _match(self, path: str) -> str | None:
        for pattern, template in self._patterns:
            if pattern.match(path):
                return template
        return None
