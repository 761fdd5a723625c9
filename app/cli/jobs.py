"""`podrelay generate|status|cancel`: jobs through a running API, with the Python SDK."""

import mimetypes
from pathlib import Path
from typing import Annotated

import typer

from app.cli.api import DEFAULT_API_URL, absolute, podrelay_api
from app.cli.errors import CliError
from app.cli.watch import watch_jobs
from podrelay_client import API_PREFIX, ConflictError, GenerationOptions, Job, Podrelay

ApiUrl = Annotated[
    str, typer.Option(envvar="PODRELAY_API_URL", help="The Podrelay API.", show_envvar=True)
]
ApiKey = Annotated[
    str | None,
    typer.Option(envvar="PODRELAY_API_KEY", help="Sent as a Bearer token.", show_envvar=True),
]


def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    model: Annotated[
        str | None, typer.Option(help="The route (model) to run it on; unset: the default.")
    ] = None,
    count: Annotated[
        int, typer.Option("-n", "--count", min=1, help="Jobs for the prompt; >1 is one batch.")
    ] = 1,
    wait: Annotated[bool, typer.Option(help="Show progress until the jobs end.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Download the images here (implies --wait)."),
    ] = None,
    negative: Annotated[str | None, typer.Option(help="The negative prompt.")] = None,
    width: Annotated[int | None, typer.Option(help="Pixels (256-2048, multiple of 8).")] = None,
    height: Annotated[int | None, typer.Option(help="Pixels (256-2048, multiple of 8).")] = None,
    steps: Annotated[int | None, typer.Option(help="Inference steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Fixed seed, for repeatable images.")] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Start a generation; prints the job id(s) and status URL, or with --wait the image URLs."""
    options: GenerationOptions = {}
    if model is not None:
        options["model"] = model
    if negative is not None:
        options["negative_prompt"] = negative
    if width is not None:
        options["width"] = width
    if height is not None:
        options["height"] = height
    if steps is not None:
        options["num_inference_steps"] = steps
    if seed is not None:
        options["seed"] = seed
    with podrelay_api(api_url, api_key) as api:
        if count == 1:
            created = [api.generate(prompt, **options)]
        else:
            batch = api.batch([prompt] * count, **options)
            typer.echo(f"batch {batch.id}  {absolute(api, f'{API_PREFIX}/batches/{batch.id}')}")
            created = batch.jobs
        if not (wait or out):
            for job in created:
                typer.echo(f"{job.id}  {job.status}  {absolute(api, job.links.status)}")
            return
        finished = watch_jobs(api, [job.id for job in created])
        failures = [_report(api, job, out) for job in finished]
    failed = [failure for failure in failures if failure]
    for failure in failed[:-1]:
        typer.echo(f"error: {failure}", err=True)
    if failed:
        raise CliError(failed[-1])


def _report(api: Podrelay, job: Job, out: Path | None) -> str | None:
    """Print a finished job's image URLs (or downloaded paths); returns its failure, if any."""
    if job.status != "completed":
        parts = (job.error.code, job.error.message) if job.error else ()
        reason = ": ".join(part for part in parts if part)
        return f"job {job.id} ended {job.status}" + (f" ({reason})" if reason else "")
    lost = [image.id for image in job.images if image.state != "stored"]
    for index, image in enumerate(job.images):
        if image.state != "stored":
            continue
        if out is None:
            typer.echo(absolute(api, image.url))
            continue
        out.mkdir(parents=True, exist_ok=True)
        extension = mimetypes.guess_extension(image.mime_type or "") or ".bin"
        path = out / f"{job.id}-{index}{extension}"
        api.download(image, path)
        typer.echo(str(path))
    return f"job {job.id}: images not stored: {', '.join(lost)}" if lost else None


def status(
    job_id: Annotated[str, typer.Argument(help="A job id, or the seed task's Celery task id.")],
    as_json: Annotated[bool, typer.Option("--json", help="The job as JSON.")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """A job's status, timings, cost, error and images."""
    with podrelay_api(api_url, api_key) as api:
        job = api.status(job_id)
        if as_json:
            typer.echo(job.model_dump_json(indent=2))
            return
        for label, value in _summary(api, job):
            typer.echo(f"{label:<10}{value}")


def _summary(api: Podrelay, job: Job) -> list[tuple[str, str]]:
    timings, cost, error = job.timings, job.cost, job.error
    rows = [("job", job.id), ("status", str(job.status)), ("prompt", job.prompt)]
    if job.batch_id:
        rows.append(("batch", job.batch_id))
    if job.queue_position is not None:
        rows.append(("queue", f"{job.queue_position} jobs ahead"))
    rows += [("attempts", str(job.attempts)), ("created", timings.created_at.isoformat())]
    if timings.finished_at:
        took = (timings.finished_at - timings.created_at).total_seconds()
        rows.append(("finished", f"{timings.finished_at.isoformat()}  ({took:.1f} s)"))
    if timings.execution_ms is not None:
        rows.append(("runpod", f"queued {timings.delay_ms} ms, ran {timings.execution_ms} ms"))
    if cost.gpu_seconds is not None:
        rows.append(("cost", f"{cost.gpu_seconds:.2f} GPU s, ~${cost.estimated_usd or 0:.6f}"))
    if error:
        rows.append(("error", f"{error.code}: {error.message or ''}".rstrip(": ")))
    for image in job.images:
        size = f"{image.width}x{image.height}" if image.width else "size unknown"
        rows.append(("image", f"{absolute(api, image.url)}  ({image.state}, {size})"))
    return rows


def cancel(
    job_id: Annotated[str, typer.Argument(help="A job id, or the seed task's Celery task id.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Cancel a job (at RunPod too); fails when it already finished."""
    with podrelay_api(api_url, api_key) as api:
        try:
            job = api.cancel(job_id)
        except ConflictError as error:
            raise CliError(f"{job_id} already finished ({error.detail})") from None
    typer.echo(f"{job.id}  {job.status}")
