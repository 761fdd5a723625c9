"""Errors as `application/problem+json` with a stable `code`, `detail`, `retryable` and, when it
applies, `retry_after`. Every failure the API can answer goes through here; none is a 500."""

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api import examples

PROBLEM_JSON = "application/problem+json"
_PROBLEM_REF = "#/components/schemas/Problem"


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


class ApiError(Exception):
    status_code = 400
    code = "bad_request"
    title = "Bad request"
    retryable = False

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.code
        self.retry_after = retry_after
        self.headers = headers or {}


class Unauthorized(ApiError):
    status_code, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(ApiError):
    status_code, code, title = 403, "forbidden", "Forbidden"


class NotFound(ApiError):
    status_code, code, title = 404, "not_found", "Not found"


class Conflict(ApiError):
    status_code, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(ApiError):
    status_code, code, title = 413, "payload_too_large", "Payload too large"


class RateLimited(ApiError):
    status_code, code, title, retryable = 429, "rate_limited", "Too many requests", True


class UpstreamUnavailable(ApiError):
    status_code, code, title, retryable = 503, "upstream_unavailable", "Upstream unavailable", True


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status answered as an `application/problem+json` Problem.

    FastAPI would document a `model` under `application/json`, so the schema is a reference to
    the `Problem` component that `install_error_handlers` adds to the OpenAPI document.
    """
    return {code: {"content": {PROBLEM_JSON: {"schema": {"$ref": _PROBLEM_REF}}}} for code in codes}


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


def install_error_handlers(application: FastAPI) -> None:
    _document_problems(application)

    @application.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
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
    async def unexpected(request: Request, _: Exception) -> JSONResponse:
        logger.exception("unhandled error on {} {}", request.method, request.url.path)
        return problem_response(
            500,
            "internal_error",
            "Internal error",
            "an unexpected error occurred",
            retryable=True,
        )


def _document_problems(application: FastAPI) -> None:
    """Add the `Problem` component that `problem_responses` refers to to the OpenAPI document."""
    build = application.openapi

    def openapi() -> dict[str, Any]:
        fresh = application.openapi_schema is None
        document = build()  # FastAPI caches it on the application
        if fresh:
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(mode="serialization")
        return document

    application.openapi = openapi  # type: ignore[method-assign]
