"""The client against the simulator over real HTTP: every status path, fault knob and shape."""

import asyncio
from typing import Any

import httpx
import pytest

from app.runpod import (
    AmbiguousSubmissionError,
    AuthenticationError,
    JobCancelledError,
    JobFailedError,
    JobTimedOutError,
    NotFoundError,
    OutputFormatError,
    RunPodClient,
    RunPodStatus,
    RunPodTimeoutError,
    images_of,
)
from app.simulator.server import SimulatorServer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = {"width": 64, "height": 64}


def job_input(prompt: str = "a red fox", **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, **SMALL, **extra}


async def finish(client: RunPodClient, job_id: str, timeout: float = 10.0) -> Any:
    return await client.wait(job_id, timeout=timeout, poll_interval=0.05)


async def test_run_wait_and_download_png(runpod: RunPodClient) -> None:
    submitted = await runpod.run(job_input())
    assert submitted.status is RunPodStatus.IN_QUEUE
    assert submitted.id.endswith("-u1")
    state = await finish(runpod, submitted.id)
    assert state.status is RunPodStatus.COMPLETED
    assert state.delay_time_ms is not None
    assert state.execution_time_ms is not None
    assert state.worker_id
    [image] = images_of(state)
    assert image.url is not None
    async with httpx.AsyncClient() as http:
        response = await http.get(image.url)
    assert response.content.startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("shape", "return_type", "inline"),
    [
        ("worker-sdxl", "url", False),
        ("worker-sdxl", "base64", True),
        ("comfyui", "url", False),
        ("comfyui", "base64", True),
        ("comfyui-legacy", "base64", True),
        ("a1111", "url", True),
        ("sdxl-turbo", "url", True),
        ("public", "url", False),
    ],
)
async def test_every_output_shape_yields_a_png(
    runpod: RunPodClient, simulator: SimulatorServer, shape: str, return_type: str, inline: bool
) -> None:
    simulator.set_faults(output_shape=shape)
    state = await finish(runpod, (await runpod.run(job_input(return_type=return_type))).id)
    images = images_of(state)
    assert len(images) == 1
    if inline:
        assert images[0].data is not None
        assert images[0].data.startswith(PNG_MAGIC)
        assert images[0].mime_type == "image/png"
    else:
        assert images[0].url is not None
        assert images[0].url.startswith(simulator.url)


async def test_progress_while_in_progress_is_not_a_result(
    runpod: RunPodClient, simulator: SimulatorServer
) -> None:
    simulator.set_faults(job_duration_ms=1500, job_duration_jitter_ms=0)
    job_id = (await runpod.run(job_input())).id
    for _ in range(100):
        state = await runpod.status(job_id)
        if state.status is RunPodStatus.IN_PROGRESS and state.progress is not None:
            break
        await asyncio.sleep(0.05)
    assert state.status is RunPodStatus.IN_PROGRESS
    assert state.output is None
    assert not state.has_output
    await runpod.cancel(job_id)


async def test_failed_job_gives_a_readable_error(
    runpod: RunPodClient, simulator: SimulatorServer
) -> None:
    simulator.set_faults(fail_rate=1.0, fail_style="json")
    state = await finish(runpod, (await runpod.run(job_input())).id)
    assert state.status is RunPodStatus.FAILED
    with pytest.raises(JobFailedError) as caught:
        images_of(state)
    assert "Traceback" not in caught.value.message
    assert caught.value.details is not None
    assert "Traceback" in caught.value.details


async def test_plain_failure_and_retry_endpoint(
    runpod: RunPodClient, simulator: SimulatorServer
) -> None:
    simulator.set_faults(fail_rate=1.0, fail_style="plain")
    job_id = (await runpod.run(job_input())).id
    failed = await finish(runpod, job_id)
    assert failed.status is RunPodStatus.FAILED
    simulator.set_faults(fail_rate=0.0)
    requeued = await runpod.retry(job_id)
    assert requeued.id == job_id
    assert requeued.status is RunPodStatus.IN_QUEUE
    assert (await finish(runpod, job_id)).status is RunPodStatus.COMPLETED


async def test_completed_without_output(runpod: RunPodClient, simulator: SimulatorServer) -> None:
    simulator.set_faults(empty_output_rate=1.0)
    state = await finish(runpod, (await runpod.run(job_input())).id)
    assert state.status is RunPodStatus.COMPLETED
    with pytest.raises(OutputFormatError, match="without output"):
        images_of(state)


async def test_cancel_queued_job(runpod: RunPodClient, simulator: SimulatorServer) -> None:
    simulator.set_faults(workers=0)
    job_id = (await runpod.run(job_input())).id
    cancelled = await runpod.cancel(job_id)
    assert cancelled.status is RunPodStatus.CANCELLED
    state = await finish(runpod, job_id)
    with pytest.raises(JobCancelledError):
        images_of(state)


async def test_unknown_job_is_not_found(runpod: RunPodClient) -> None:
    with pytest.raises(NotFoundError):
        await runpod.status("00000000-0000-0000-0000-000000000000-u1")


async def test_wait_timeout_cancels_the_job_at_runpod(
    runpod: RunPodClient, simulator: SimulatorServer
) -> None:
    simulator.set_faults(hang_rate=1.0)
    job_id = (await runpod.run(job_input())).id
    with pytest.raises(JobTimedOutError):
        await runpod.wait(job_id, timeout=0.5, poll_interval=0.1)
    assert (await runpod.status(job_id)).status is RunPodStatus.CANCELLED


async def test_execution_timeout_policy_times_the_job_out(
    runpod: RunPodClient, simulator: SimulatorServer
) -> None:
    simulator.set_faults(hang_rate=1.0, min_execution_timeout_ms=100)
    job_id = (await runpod.run(job_input(), policy={"executionTimeout": 300})).id
    state = await finish(runpod, job_id)
    assert state.status is RunPodStatus.TIMED_OUT
    with pytest.raises(JobTimedOutError):
        images_of(state)


async def test_ttl_expiry_mid_run_is_not_found(
    runpod: RunPodClient, simulator: SimulatorServer
) -> None:
    simulator.set_faults(hang_rate=1.0, min_ttl_ms=100)
    job_id = (await runpod.run(job_input(), policy={"ttl": 300})).id
    with pytest.raises(NotFoundError):
        await finish(runpod, job_id)


async def test_run_sync_finishes_within_wait(runpod: RunPodClient) -> None:
    state = await runpod.run_sync(job_input(), wait_ms=5000)
    assert state.id.startswith("sync-")
    assert state.status is RunPodStatus.COMPLETED
    assert images_of(state)


async def test_run_sync_past_its_wait_returns_the_id_to_poll(
    runpod: RunPodClient, simulator: SimulatorServer
) -> None:
    simulator.set_faults(job_duration_ms=2000, job_duration_jitter_ms=0, min_wait_ms=100)
    state = await runpod.run_sync(job_input(), wait_ms=200)
    assert not state.is_terminal
    polled = await runpod.status(state.id, wait_ms=5000)
    assert polled.status is RunPodStatus.COMPLETED


async def test_health_and_purge_queue(runpod: RunPodClient, simulator: SimulatorServer) -> None:
    simulator.set_faults(workers=0)
    for _ in range(3):
        await runpod.run(job_input())
    report = await runpod.health()
    assert report.job_count("inQueue") == 3
    assert await runpod.purge_queue() == 3
    assert (await runpod.health()).job_count("inQueue") == 0


async def test_wrong_key_is_an_authentication_error(
    runpod: RunPodClient, simulator: SimulatorServer
) -> None:
    simulator.set_faults(api_key="the-right-key")
    with pytest.raises(AuthenticationError):
        await runpod.health()


async def test_status_faults_are_absorbed_by_retries(
    runpod: RunPodClient, simulator: SimulatorServer
) -> None:
    job_id = (await runpod.run(job_input())).id
    simulator.set_faults(error_rates={"status": 0.3}, throttle_rates={"status": 0.2})
    state = await finish(runpod, job_id)
    assert state.status is RunPodStatus.COMPLETED
    responses = simulator.counters()["responses"]["status"]
    assert any(code in responses for code in ("500", "502", "503", "429"))


async def test_run_429_burst_is_retried_into_exactly_one_job(
    runpod: RunPodClient, simulator: SimulatorServer
) -> None:
    simulator.set_faults(throttle_burst={"run": 2})
    await runpod.run(job_input("burst"))
    counters = simulator.counters()
    assert counters["responses"]["run"]["429"] == 2
    assert counters["jobs_created"] == 1


@pytest.mark.parametrize("mode", ["error", "hang"])
async def test_dropped_run_response_is_ambiguous(simulator: SimulatorServer, mode: str) -> None:
    simulator.set_faults(drop_run_response_rate=1.0, drop_mode=mode, hang_s=3.0)
    async with RunPodClient(
        api_key="k", endpoint_id="ep", base_url=simulator.base_url, timeout=0.5
    ) as client:
        with pytest.raises(AmbiguousSubmissionError) as caught:
            await client.run(job_input("dropped"))
    assert "may exist" in caught.value.message
    assert simulator.counters()["jobs_created"] == 1, (
        "the job was accepted: a retry would duplicate it"
    )
    assert simulator.counters()["calls"]["run"] == 1


async def test_5xx_on_run_is_ambiguous_not_retried(
    runpod: RunPodClient, simulator: SimulatorServer
) -> None:
    simulator.set_faults(error_rates={"run": 1.0})
    with pytest.raises(AmbiguousSubmissionError):
        await runpod.run(job_input())
    assert simulator.counters()["calls"]["run"] == 1


async def test_slow_status_times_out(simulator: SimulatorServer) -> None:
    simulator.set_faults(latency_ms={"status": 1000})
    async with RunPodClient(
        api_key="k",
        endpoint_id="ep",
        base_url=simulator.base_url,
        timeout=0.2,
        max_retries=1,
        initial_retry_delay=0.01,
    ) as client:
        job_id = (await client.run(job_input())).id
        with pytest.raises(RunPodTimeoutError):
            await client.status(job_id)
