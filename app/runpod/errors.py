"""Every error the RunPod client raises. Callers catch these, never `httpx` exceptions.

    RunPodError
    ├── RunPodConfigError          client built without a key or endpoint
    ├── RunPodAPIError             RunPod answered with an HTTP error (status_code, body)
    │   ├── AuthenticationError    401 / 403: the API key is missing, wrong or lacks access
    │   ├── NotFoundError          404: unknown endpoint, or a job unknown or expired at RunPod
    │   ├── RateLimitError         429: carries `retry_after` seconds when RunPod sent one
    │   ├── RequestRejectedError   any other 4xx (bad envelope, body too large, ...)
    │   └── ServerError            5xx
    ├── RunPodConnectionError      no HTTP answer: refused, reset, DNS, protocol error
    │   └── RunPodTimeoutError     the request or the connection timed out
    ├── AmbiguousSubmissionError   POST /run may or may not have created a job at RunPod
    ├── OutputFormatError          a finished job's output has no shape we know
    └── JobError                   the job itself ended badly (job_id, status)
        ├── JobFailedError         RunPod says FAILED; `message` is readable, `details` raw
        ├── JobCancelledError      RunPod says CANCELLED
        └── JobTimedOutError       RunPod says TIMED_OUT, or our own deadline passed

`retryable` says whether the same call may succeed if repeated later.
"""

from typing import Any


class RunPodError(Exception):
    """Base class of every RunPod client error."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RunPodConfigError(RunPodError):
    """The client was built without what it needs (API key, endpoint id, base URL)."""


class RunPodAPIError(RunPodError):
    """RunPod answered with an HTTP error status."""

    def __init__(self, message: str, *, status_code: int, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class AuthenticationError(RunPodAPIError):
    """The API key was refused (401/403)."""


class NotFoundError(RunPodAPIError):
    """The endpoint or job does not exist, or the job's results expired at RunPod."""


class RateLimitError(RunPodAPIError):
    """RunPod rate-limited the call (429)."""

    retryable = True

    def __init__(
        self, message: str, *, status_code: int = 429, body: Any = None, retry_after: float | None
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.retry_after = retry_after


class RequestRejectedError(RunPodAPIError):
    """RunPod refused the request itself (a 4xx other than 401/403/404/429)."""


class ServerError(RunPodAPIError):
    """RunPod or a proxy in front of it failed (5xx)."""

    retryable = True


class RunPodConnectionError(RunPodError):
    """No HTTP answer was received."""

    retryable = True


class RunPodTimeoutError(RunPodConnectionError):
    """The request timed out before an answer arrived."""


class AmbiguousSubmissionError(RunPodError):
    """A POST /run failed after the request was sent: the job may exist at RunPod.

    Resubmitting blindly can start a second billed job; check first (for example by a marker
    in the input or the webhook URL) or cancel the duplicate afterwards.
    """

    retryable = True

    def __init__(self, message: str, *, cause: RunPodError) -> None:
        super().__init__(message)
        self.cause = cause


class OutputFormatError(RunPodError):
    """A completed job's output is missing or has a shape no known worker produces."""


class JobError(RunPodError):
    """The job reached a terminal state other than COMPLETED."""

    def __init__(self, message: str, *, job_id: str, status: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status


class JobFailedError(JobError):
    """The worker reported FAILED."""

    def __init__(self, message: str, *, job_id: str, details: str | None = None) -> None:
        super().__init__(message, job_id=job_id, status="FAILED")
        self.details = details


class JobCancelledError(JobError):
    """The job was cancelled."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message, job_id=job_id, status="CANCELLED")


class JobTimedOutError(JobError):
    """RunPod timed the job out, or it did not finish before our deadline."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message, job_id=job_id, status="TIMED_OUT")
