"""Errors as `application/problem+json` with a stable `code`, `detail`, `retryable` and, when it
applies, `retry_after`. Every failure the API can answer goes through here: a refusal
(`app.core.errors.PodrelayError`, raised wherever the rule lives) is rendered as it says, a
ledger database or broker that does not answer is a retryable 503, and only a bug a 500."""

import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu import exceptions as kombu_errors
from loguru import logger
from pydantic import BaseModel, ConfigDict
from redis import exceptions as redis_errors
from sqlalchemy import exc as sql_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api import examples
from app.api.openapi_docs import add_components, schema_ref
from app.core.errors import PodrelayError

PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """An error answer (RFC 9457 problem details with Podrelay's stable `code`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [*examples.PROBLEMS]})

    type: str = "about:blank"
    title: str
    status: int
    code: str
    detail: str
    retryable: bool = False
    retry_after: float | None = None
    errors: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Unavailable:
    """A dependency whose connection-level errors are answered 503 `code`."""

    code: str
    title: str
    detail: str
    errors: tuple[type[Exception], ...]


# About how long a restart of PostgreSQL or Redis takes.
UNAVAILABLE_RETRY_AFTER_S = 5.0
UNAVAILABLE = (
    Unavailable(
        "database_unavailable",
        "Database unavailable",
        "the job ledger's database does not answer; retry later",
        (
            sql_errors.OperationalError,
            sql_errors.InterfaceError,
            sql_errors.DisconnectionError,
            sql_errors.TimeoutError,  # no pooled connection became free in time
        ),
    ),
    Unavailable(
        "broker_unavailable",
        "Broker unavailable",
        "the task broker does not answer; retry later",
        (redis_errors.ConnectionError, redis_errors.TimeoutError, kombu_errors.OperationalError),
    ),
)


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status answered as an `application/problem+json` Problem.

    FastAPI would document a `model` under `application/json`, so the schema is a reference to
    the `Problem` component that `install_error_handlers` adds to the OpenAPI document.
    """
    return {code: {"content": {PROBLEM_JSON: {"schema": schema_ref(Problem)}}} for code in codes}


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    retryable: bool = False,
    retry_after: float | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        title=title,
        status=status,
        code=code,
        detail=detail,
        retryable=retryable,
        retry_after=retry_after,
        errors=errors,
    )
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers.setdefault("Retry-After", str(max(1, round(retry_after))))
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=all_headers,
    )


def _validation_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    # Only location, message and type: the rejected input is never echoed back.
    return [
        {
            "loc": [str(part) for part in item.get("loc", ())],
            "msg": item.get("msg", ""),
            "type": item.get("type", ""),
        }
        for item in error.errors()
    ]


_HTTP_CODES = {
    # FastAPI's answer to a body it cannot decode at all (bad UTF-8, nesting past the JSON
    # parser's depth, an integer with more digits than Python converts).
    400: ("malformed_body", "Malformed body"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def _driver_message(error: Exception) -> str:
    # SQLAlchemy's own text adds the statement and its parameters (prompts, key hashes).
    cause = error.orig if isinstance(error, sql_errors.DBAPIError) else error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else ""


def _internal_error(request: Request, error: Exception) -> JSONResponse:
    logger.opt(exception=error).error("unhandled error on {} {}", request.method, request.url.path)
    return problem_response(
        500,
        "internal_error",
        "Internal error",
        "an unexpected error occurred",
        retryable=True,
    )


def _is_a_bug(error: Exception) -> bool:
    # SQLite reports a missing table or column as an OperationalError too: no outage, a bug.
    cause = getattr(error, "orig", None)
    return getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_ERROR


def _unavailable_handler(
    dependency: Unavailable,
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        if _is_a_bug(error):
            return _internal_error(request, error)
        # One line, no traceback: an outage would otherwise bury the log in identical ones.
        logger.warning(
            "{} {} answered 503 {} ({}: {})",
            request.method,
            request.url.path,
            dependency.code,
            type(error).__name__,
            _driver_message(error),
        )
        return problem_response(
            503,
            dependency.code,
            dependency.title,
            dependency.detail,
            retryable=True,
            retry_after=UNAVAILABLE_RETRY_AFTER_S,
        )

    return unavailable


def install_error_handlers(application: FastAPI) -> None:
    add_components(application, Problem)
    for dependency in UNAVAILABLE:
        handler = _unavailable_handler(dependency)
        for error_type in dependency.errors:
            application.add_exception_handler(error_type, handler)

    @application.exception_handler(PodrelayError)
    async def refusal(_: Request, error: PodrelayError) -> JSONResponse:
        return problem_response(
            error.status_code,
            error.code,
            error.title,
            error.detail,
            retryable=error.retryable,
            retry_after=error.retry_after,
            headers=error.headers,
        )

    @application.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(error)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        detail = f"{'.'.join(first['loc'][1:]) or 'body'}: {first['msg']}"
        return problem_response(422, "validation_error", "Invalid request", detail, errors=errors)

    @application.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code, title = _HTTP_CODES.get(error.status_code, ("http_error", "HTTP error"))
        return problem_response(
            error.status_code, code, title, str(error.detail), headers=error.headers
        )

    @application.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return _internal_error(request, error)
