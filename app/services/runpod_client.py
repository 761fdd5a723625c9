"""The seed's RunPod functions, on one long-lived `RunPodClient` per process and event loop.

    job_id = await start_generation("a lighthouse at dusk")
    state = await check_status(job_id)
    result = await generate_image_async("a lighthouse at dusk")   # submit, then poll
    print(result.image_url)

Prompts get the default quality and negative tags (`default_prompts`), parameters come from
`generation_defaults`. The settings say where RunPod is; with none, the built-in simulator.
Errors are the `app.runpod` error tree; nothing here imports FastAPI, Celery or the database.
"""

import asyncio
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.core.config import ConfigError, Settings, get_settings
from app.core.logging import configure_logging
from app.runpod import (
    GeneratedImage,
    HealthReport,
    JobState,
    RunPodClient,
    RunPodConnectionError,
    RunPodError,
    images_of,
)
from app.runpod.client import deadline_policy
from app.scheduler.routes import Endpoint
from app.services.generation_defaults import DEFAULT_PARAMS, GenerationParams, build_runpod_input

DEMO_PROMPT = "beautiful anime girl, detailed eyes"

# httpx connection pools belong to the loop that opened them: one client per running loop.
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RunPodClient]" = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class GenerationResult:
    """A finished generation: the RunPod job id, its images and its final state."""

    job_id: str
    images: list[GeneratedImage]
    state: JobState = field(repr=False)

    @property
    def image_url(self) -> str | None:
        """The first image's URL, when the worker returned URLs."""
        return next((image.url for image in self.images if image.url), None)


def client_from_settings(settings: Settings) -> RunPodClient:
    """Build a client for the configured endpoint (or the simulator)."""
    target = settings.runpod_target
    return _client(settings, target.base_url, target.endpoint_id, target.api_key.get_secret_value())


def endpoint_client(settings: Settings, endpoint: Endpoint) -> RunPodClient:
    """Build a client for one endpoint of the routes catalogue."""
    return _client(settings, endpoint.base_url, endpoint.id, endpoint.api_key)


def _client(settings: Settings, base_url: str, endpoint_id: str, api_key: str) -> RunPodClient:
    return RunPodClient(
        api_key=api_key,
        endpoint_id=endpoint_id,
        base_url=base_url,
        timeout=httpx.Timeout(
            settings.runpod_read_timeout, connect=settings.runpod_connect_timeout
        ),
        max_retries=settings.runpod_max_retries,
    )


def get_client() -> RunPodClient:
    """The process's client for the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = client_from_settings(get_settings())
    return client


async def close_client() -> None:
    """Close the running loop's client, if one was opened."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


async def start_generation(
    prompt: str,
    negative_prompt: str | None = None,
    params: GenerationParams = DEFAULT_PARAMS,
    *,
    webhook: str | None = None,
    timeout: float | None = None,
) -> str:
    """Queue a generation at RunPod and return the RunPod job id.

    Raises:
        AmbiguousSubmissionError: the job may or may not exist at RunPod.
        RunPodError: any other failure from the `app.runpod` error tree.
    """
    policy = deadline_policy(timeout) if timeout is not None else None
    job_input = build_runpod_input(prompt, negative_prompt, params)
    state = await get_client().run(job_input, webhook=webhook, policy=policy)
    return state.id


async def check_status(job_id: str) -> JobState:
    """Read a RunPod job's current state. Raises `NotFoundError` once RunPod forgot it."""
    return await get_client().status(job_id)


async def cancel_job(job_id: str) -> JobState:
    """Cancel a RunPod job so it stops running and billing."""
    return await get_client().cancel(job_id)


async def health() -> HealthReport:
    """The endpoint's job and worker counts."""
    return await get_client().health()


async def purge_queue() -> int:
    """Drop every queued job of the endpoint; returns how many were removed."""
    return await get_client().purge_queue()


async def run_sync(
    prompt: str,
    negative_prompt: str | None = None,
    params: GenerationParams = DEFAULT_PARAMS,
    *,
    wait_ms: int | None = None,
) -> JobState:
    """Generate with /runsync; a non-terminal answer means the job is still running."""
    return await get_client().run_sync(
        build_runpod_input(prompt, negative_prompt, params), wait_ms=wait_ms
    )


async def generate_image_async(
    prompt: str,
    negative_prompt: str | None = None,
    params: GenerationParams = DEFAULT_PARAMS,
    *,
    timeout: float | None = None,
    poll_interval: float | None = None,
) -> GenerationResult:
    """Submit a generation, poll until it ends, and return its images.

    `timeout` (default `RUNPOD_JOB_TIMEOUT`, 300 s) bounds the whole wait; when it passes, the
    RunPod job is cancelled so it stops billing. `poll_interval` (default 5 s) caps the gap
    between status checks.

    Raises:
        JobFailedError, JobCancelledError, JobTimedOutError: the job did not complete.
        OutputFormatError: it completed without images we can read.
        RunPodError: submission or polling failed for good.
    """
    settings = get_settings()
    timeout = settings.runpod_job_timeout if timeout is None else timeout
    poll_interval = settings.runpod_poll_interval if poll_interval is None else poll_interval
    job_id = await start_generation(prompt, negative_prompt, params, timeout=timeout)
    state = await get_client().wait(job_id, timeout=timeout, poll_interval=poll_interval)
    return GenerationResult(job_id=job_id, images=images_of(state), state=state)


async def main() -> None:
    """Demo from the seed: generate one image and print where it is."""
    try:
        settings = get_settings()
        configure_logging(settings, to_file=False)
        result = await generate_image_async(DEMO_PROMPT)
    except ConfigError as error:
        _fail(str(error))
    except RunPodConnectionError as error:
        target = get_settings().runpod_target
        hint = " (start it with: podrelay simulator --port 8001)" if target.is_simulator else ""
        where = "the RunPod simulator" if target.is_simulator else "RunPod"
        _fail(f"cannot reach {where} at {target.base_url}{hint}: {error.message}")
    except RunPodError as error:
        _fail(f"generation failed: {error.message}")
    finally:
        await close_client()
    print(f"RunPod job {result.job_id} completed")
    for number, image in enumerate(result.images, start=1):
        print(image.url or _save_demo_image(settings.data_dir, result.job_id, number, image))


def _save_demo_image(data_dir: Path, job_id: str, number: int, image: GeneratedImage) -> str:
    extension = (image.mime_type or "image/png").rsplit("/", 1)[-1]
    path = data_dir / "demo" / f"{job_id}-{number}.{extension}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image.data or b"")
    return str(path)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)
