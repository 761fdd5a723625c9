"""Podrelay's errors: each carries the HTTP status, the stable `code` and whether a retry may
succeed, so a domain package raises what it means and `app.api.errors` renders it as
`application/problem+json` without knowing where it came from."""


class PodrelayError(Exception):
    """A refusal the caller can act on; a plain one is a 400 `bad_request`."""

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


class Unauthorized(PodrelayError):
    status_code, code, title = 401, "unauthorized", "Unauthorized"


class PaymentRequired(PodrelayError):
    status_code, code, title = 402, "budget_exceeded", "Budget exceeded"


class Forbidden(PodrelayError):
    status_code, code, title = 403, "forbidden", "Forbidden"


class NotFound(PodrelayError):
    status_code, code, title = 404, "not_found", "Not found"


class RequestTimeout(PodrelayError):
    status_code, code, title, retryable = 408, "request_timeout", "Request timeout", True


class Conflict(PodrelayError):
    status_code, code, title = 409, "conflict", "Conflict"


class Gone(PodrelayError):
    status_code, code, title = 410, "gone", "Gone"


class PayloadTooLarge(PodrelayError):
    status_code, code, title = 413, "payload_too_large", "Payload too large"


class Unprocessable(PodrelayError):
    status_code, code, title = 422, "validation_error", "Invalid request"


class RateLimited(PodrelayError):
    status_code, code, title, retryable = 429, "rate_limited", "Too many requests", True


class UpstreamUnavailable(PodrelayError):
    status_code, code, title, retryable = 503, "upstream_unavailable", "Upstream unavailable", True


class StoreUnavailable(PodrelayError):
    status_code, code, title, retryable = 503, "storage_unavailable", "Storage unavailable", True


def invalid_api_key() -> Unauthorized:
    return Unauthorized("the API key is not valid or was revoked", code="invalid_api_key")
