import json

import pytest

from app.runpod import (
    JobCancelledError,
    JobFailedError,
    JobState,
    JobTimedOutError,
    OutputFormatError,
    describe_job_error,
    images_of,
)

RUNPOD_PYTHON_ERROR = json.dumps(
    {
        "error_type": "<class 'ValueError'>",
        "error_message": "boom requested",
        "error_traceback": "Traceback (most recent call last): ...",
        "hostname": "unknown",
        "worker_id": "unknown",
        "runpod_version": "1.12.0",
    }
)


@pytest.mark.parametrize(
    ("raw", "readable"),
    [
        (RUNPOD_PYTHON_ERROR, "ValueError: boom requested"),
        ("soft error returned by handler", "soft error returned by handler"),
        ('["not", "a report"]', '["not", "a report"]'),
        (json.dumps({"error_message": "no type"}), "no type"),
        (None, "the worker reported FAILED without an error message"),
        ("", "the worker reported FAILED without an error message"),
    ],
)
def test_describe_job_error(raw: str | None, readable: str) -> None:
    assert describe_job_error(raw) == readable


def test_failed_job_raises_with_readable_message_and_raw_details() -> None:
    state = JobState.from_payload({"id": "j", "status": "FAILED", "error": RUNPOD_PYTHON_ERROR})
    with pytest.raises(JobFailedError) as caught:
        images_of(state)
    assert caught.value.message == "RunPod job j failed: ValueError: boom requested"
    assert caught.value.details == RUNPOD_PYTHON_ERROR


def test_dict_error_is_kept_as_json_text() -> None:
    state = JobState.from_payload({"id": "j", "status": "FAILED", "error": {"code": 7}})
    assert state.error == '{"code": 7}'


@pytest.mark.parametrize(
    ("status", "error_type"), [("CANCELLED", JobCancelledError), ("TIMED_OUT", JobTimedOutError)]
)
def test_other_terminal_states_raise(status: str, error_type: type[Exception]) -> None:
    with pytest.raises(error_type):
        images_of(JobState.from_payload({"id": "j", "status": status}))


def test_completed_without_output_is_an_output_error() -> None:
    with pytest.raises(OutputFormatError, match="without output"):
        images_of(JobState.from_payload({"id": "j", "status": "COMPLETED"}))


def test_unfinished_state_is_not_a_result() -> None:
    with pytest.raises(OutputFormatError, match="not finished"):
        images_of(JobState.from_payload({"id": "j", "status": "IN_PROGRESS", "output": {"p": 1}}))


def test_completed_with_url_output() -> None:
    state = JobState.from_payload(
        {
            "id": "j",
            "status": "COMPLETED",
            "output": {"image_url": "https://img.test/a.png", "cost": 0.1},
        }
    )
    [image] = images_of(state)
    assert image.url == "https://img.test/a.png"
