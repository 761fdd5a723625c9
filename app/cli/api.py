"""A small HTTP client for the commands that talk to a running Podrelay API.

Every failure becomes an `ApiError` whose message is one line: unreachable API, bad URL,
or the API's problem `detail` for a 4xx/5xx answer.
"""

from types import TracebackType
from typing import Any

import httpx

from app.cli.errors import CliError

DEFAULT_API_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1/runpod"
_HINTS = {
    401: "unauthorized: {detail} (pass --api-key or set PODRELAY_API_KEY)",
    403: "forbidden: {detail}",
    404: "not found: {detail}",
    409: "conflict: {detail}",
    422: "invalid request: {detail}",
    429: "rate limited: {detail}",
}


class ApiError(CliError):
    """A failed API call; `status` is the HTTP status, None when no answer came."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class PodrelayApi:
    """`with PodrelayApi(url, key) as api: api.call("GET", "/status/job_...")`."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            # Images may redirect (to S3, or to the worker's copy while pending); httpx drops
            # the key on a redirect to another host.
            self._http = httpx.Client(
                base_url=self.base_url, headers=headers, timeout=timeout, follow_redirects=True
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
            raise ApiError(f"invalid API URL {base_url!r}: {error}") from None

    def __enter__(self) -> "PodrelayApi":
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._http.close()

    def absolute(self, path: str) -> str:
        """The full URL of a path the API returned (links and image URLs are relative)."""
        return path if "://" in path else f"{self.base_url}{path}"

    def call(self, method: str, path: str, *, json: Any = None) -> Any:
        """The JSON body of a successful answer to `{API_PREFIX}{path}`."""
        return self.fetch(method, f"{API_PREFIX}{path}", json=json).json()

    def fetch(self, method: str, path: str, *, json: Any = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
            raise ApiError(f"invalid API URL {self.base_url!r}: {error}") from None
        except httpx.TransportError as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            raise ApiError(
                f"cannot reach the Podrelay API at {self.base_url} ({reason}); "
                "is it running (`podrelay dev`)? Or pass --api-url / PODRELAY_API_URL"
            ) from None
        if response.is_success:
            return response
        detail = _detail(response)
        template = _HINTS.get(response.status_code, "the API answered {status}: {detail}")
        message = template.format(status=response.status_code, detail=detail)
        raise ApiError(message, status=response.status_code, detail=detail)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("detail"):
        return " ".join(str(body["detail"]).split())
    text = " ".join(response.text.split())[:200]
    return text or response.reason_phrase or "no details"
