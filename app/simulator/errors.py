"""Error responses shared by the routes and the request gate.

Bodies are `{"error": "..."}`; the hosted API's exact error bodies are unconfirmed (contract 10).
"""

import math

from fastapi.responses import JSONResponse


class ApiError(Exception):
    """A request the simulated API refuses with a 4xx status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def json_error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


def job_not_found() -> JSONResponse:
    return json_error(404, "job not found")


def too_many_requests(retry_after_s: float, *, with_header: bool) -> JSONResponse:
    response = json_error(429, "rate limit exceeded")
    if with_header:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return response
