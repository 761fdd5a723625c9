"""From a terminal RunPod job state to images, or to the error that explains why not."""

from typing import NoReturn

from app.runpod.errors import (
    JobCancelledError,
    JobFailedError,
    JobTimedOutError,
    OutputFormatError,
)
from app.runpod.models import JobState, RunPodStatus, describe_job_error
from app.runpod.outputs import GeneratedImage, extract_images


def images_of(state: JobState) -> list[GeneratedImage]:
    """Return the images of a COMPLETED job.

    Raises:
        JobFailedError, JobCancelledError, JobTimedOutError: the job did not complete.
        OutputFormatError: it completed without output, or with a shape we do not know.
    """
    if state.status is not RunPodStatus.COMPLETED:
        raise_for_unfinished(state)
    if not state.has_output:
        raise OutputFormatError(
            f"RunPod job {state.id} completed without output "
            "(the worker's result may have been too large to deliver)"
        )
    return extract_images(state.output)


def raise_for_unfinished(state: JobState) -> NoReturn:
    """Raise the job error matching a state that is not COMPLETED."""
    if state.status is RunPodStatus.FAILED:
        message = describe_job_error(state.error)
        raise JobFailedError(
            f"RunPod job {state.id} failed: {message}", job_id=state.id, details=state.error
        )
    if state.status is RunPodStatus.CANCELLED:
        raise JobCancelledError(f"RunPod job {state.id} was cancelled", job_id=state.id)
    if state.status is RunPodStatus.TIMED_OUT:
        raise JobTimedOutError(f"RunPod job {state.id} timed out at RunPod", job_id=state.id)
    raise OutputFormatError(f"RunPod job {state.id} is not finished (status {state.raw_status!r})")
