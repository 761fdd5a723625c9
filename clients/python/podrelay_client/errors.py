"""The client's exceptions. An answer other than 2xx raises an `ApiError` subclass chosen by its
status; its `code` is the API's stable code (`job_not_found`, `rate_limited`, ...)."""

import httpx
from pydantic import ValidationError

from podrelay_client.models import Problem


class PodrelayError(Exception):
    """Every exception the client raises."""


class ApiConnectionError(PodrelayError):
    """No answer from the API (refused, reset, timed out), after the retries."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"no answer from the Podrelay API ({reason})")
        self.reason = reason


class InvalidApiUrl(PodrelayError, ValueError):
    """The API's URL is not an http(s) URL."""


class WaitTimeout(PodrelayError, TimeoutError):
    """The job did not settle within the time `wait` was given."""


class WebhookVerificationError(PodrelayError):
    """A webhook request is not signed with the secret, or is too old or too new."""


class ApiError(PodrelayError):
    """The API answered with an error (`problem` is its `application/problem+json` body)."""

    def __init__(self, problem: Problem, response: httpx.Response) -> None:
        super().__init__(f"{problem.status} {problem.code}: {problem.detail}")
        self.problem = problem
        self.response = response

    @property
    def status(self) -> int:
        return self.problem.status

    @property
    def code(self) -> str:
        return self.problem.code

    @property
    def detail(self) -> str:
        return self.problem.detail

    @property
    def retryable(self) -> bool:
        return self.problem.retryable

    @property
    def retry_after(self) -> float | None:
        return self.problem.retry_after


class BadRequestError(ApiError):
    """400: the request could not be read."""


class AuthenticationError(ApiError):
    """401: no API key, or one the API does not know (or revoked)."""


class PermissionDeniedError(ApiError):
    """403: the key may not do this (admin routes)."""


class NotFoundError(ApiError):
    """404: no such job, batch or image for this key."""


class ConflictError(ApiError):
    """409: the job already ended (cancel), or the Idempotency-Key is in use."""


class UnprocessableError(ApiError):
    """422: the request is invalid (`problem.errors` says where), or its Idempotency-Key was
    used with another body (`idempotency_key_reused`)."""


class RateLimitError(ApiError):
    """429: over the key's requests per minute (`rate_limited`) or unfinished jobs
    (`too_many_active_jobs`); `retry_after` says when to come back."""


class ServerError(ApiError):
    """5xx: `upstream_unavailable`, `database_unavailable`, `broker_unavailable` (503, with
    `retry_after`), or an unexpected error (500)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableError,
    429: RateLimitError,
}


def error_of(response: httpx.Response) -> ApiError:
    """The exception for an answer other than 2xx; a body that is no problem (a proxy's page)
    still gives one, with the code `http_<status>`."""
    try:
        problem = Problem.model_validate_json(response.content)
    except ValidationError:
        text = " ".join(response.text.split())[:200]
        problem = Problem(
            title=response.reason_phrase or "HTTP error",
            status=response.status_code,
            code=f"http_{response.status_code}",
            detail=text or response.reason_phrase or "no details",
        )
    kind = _BY_STATUS.get(response.status_code)
    if kind is None:
        kind = ServerError if response.status_code >= 500 else ApiError
    return kind(problem, response)
