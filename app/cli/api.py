"""The Python SDK's client for the commands that talk to a running Podrelay API.

Every failure becomes a `CliError` whose message is one line: unreachable API, bad URL, or
the API's problem `detail` for a 4xx/5xx answer.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from app.cli.errors import CliError
from podrelay_client import ApiConnectionError, ApiError, InvalidApiUrl, Podrelay

DEFAULT_API_URL = "http://127.0.0.1:8000"
_HINTS = {
    401: "unauthorized: {detail} (pass --api-key or set PODRELAY_API_KEY)",
    403: "forbidden: {detail}",
    404: "not found: {detail}",
    409: "conflict: {detail}",
    422: "invalid request: {detail}",
    429: "rate limited: {detail}",
}


class ApiFailure(CliError):
    """A failed API call; `error` is the SDK's."""

    def __init__(self, message: str, error: ApiError) -> None:
        super().__init__(message)
        self.error = error


@contextmanager
def podrelay_api(api_url: str, api_key: str | None) -> Iterator[Podrelay]:
    """`with podrelay_api(url, key) as api: api.status("job_...")`; SDK errors become one line."""
    try:
        with Podrelay(api_url, api_key) as api:
            yield api
    except InvalidApiUrl as error:
        raise CliError(f"invalid API URL {api_url!r}: {error}") from None
    except ApiConnectionError as error:
        raise CliError(
            f"cannot reach the Podrelay API at {api_url.rstrip('/')} ({error.reason}); "
            "is it running (`podrelay dev`)? Or pass --api-url / PODRELAY_API_URL"
        ) from None
    except ApiError as error:
        detail = " ".join(error.detail.split())
        template = _HINTS.get(error.status, "the API answered {status}: {detail}")
        message = template.format(status=error.status, detail=detail)
        raise ApiFailure(message, error) from None


def absolute(api: Podrelay, path: str) -> str:
    """The full URL of a path the API returned (links and image URLs are relative)."""
    return path if "://" in path else f"{api.base_url}{path}"
