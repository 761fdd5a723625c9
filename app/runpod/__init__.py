"""A client for RunPod Serverless endpoints. Imports nothing from the rest of Podrelay."""

from app.runpod.client import RUNPOD_API_BASE, RunPodClient
from app.runpod.errors import (
    AmbiguousSubmissionError,
    AuthenticationError,
    JobCancelledError,
    JobError,
    JobFailedError,
    JobTimedOutError,
    NotFoundError,
    OutputFormatError,
    RateLimitError,
    RequestRejectedError,
    RunPodAPIError,
    RunPodConfigError,
    RunPodConnectionError,
    RunPodError,
    RunPodTimeoutError,
    ServerError,
)
from app.runpod.models import HealthReport, JobState, RunPodStatus, describe_job_error
from app.runpod.outputs import GeneratedImage, extract_images
from app.runpod.results import images_of

__all__ = [
    "RUNPOD_API_BASE",
    "AmbiguousSubmissionError",
    "AuthenticationError",
    "GeneratedImage",
    "HealthReport",
    "JobCancelledError",
    "JobError",
    "JobFailedError",
    "JobState",
    "JobTimedOutError",
    "NotFoundError",
    "OutputFormatError",
    "RateLimitError",
    "RequestRejectedError",
    "RunPodAPIError",
    "RunPodClient",
    "RunPodConfigError",
    "RunPodConnectionError",
    "RunPodError",
    "RunPodStatus",
    "RunPodTimeoutError",
    "ServerError",
    "describe_job_error",
    "extract_images",
    "images_of",
]
