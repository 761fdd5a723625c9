"""`podrelay generate|status|cancel`: jobs through a running API, over HTTP."""

import json
import mimetypes
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.api import API_PREFIX, DEFAULT_API_URL, ApiError, PodrelayApi
from app.cli.errors import CliError
from app.cli.watch import watch_jobs

ApiUrl = Annotated[
    str, typer.Option(envvar="PODRELAY_API_URL", help="The Podrelay API.", show_envvar=True)
]
ApiKey = Annotated[
    str | None,
    typer.Option(envvar="PODRELAY_API_KEY", help="Sent as a Bearer token.", show_envvar=True),
]


def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
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
    options = {
        "negative_prompt": negative,
        "width": width,
        "height": height,
        "num_inference_steps": steps,
        "seed": seed,
    }
    body: dict[str, Any] = {name: value for name, value in options.items() if value is not None}
    with PodrelayApi(api_url, api_key) as api:
        if count == 1:
            created = [api.call("POST", "/generate", json={"prompt": prompt, **body})]
        else:
            batch = api.call("POST", "/generate/batch", json={"prompts": [prompt] * count, **body})
            link = api.absolute(f"{API_PREFIX}/batches/{batch['id']}")
            typer.echo(f"batch {batch['id']}  {link}")
            created = batch["jobs"]
        if not (wait or out):
            for job in created:
                typer.echo(f"{job['id']}  {job['status']}  {api.absolute(job['links']['status'])}")
            return
        finished = watch_jobs(api, [job["id"] for job in created])
        failures = [_report(api, job, out) for job in finished]
    failed = [failure for failure in failures if failure]
    for failure in failed[:-1]:
        typer.echo(f"error: {failure}", err=True)
    if failed:
        raise CliError(failed[-1])


def _report(api: PodrelayApi, job: dict[str, Any], out: Path | None) -> str | None:
    """Print a finished job's image URLs (or downloaded paths); returns its failure, if any."""
    if job["status"] != "completed":
        error = job.get("error") or {}
        reason = ": ".join(str(part) for part in (error.get("code"), error.get("message")) if part)
        return f"job {job['id']} ended {job['status']}" + (f" ({reason})" if reason else "")
    lost = [image["id"] for image in job["images"] if image["state"] != "stored"]
    for index, image in enumerate(job["images"]):
        if image["state"] != "stored":
            continue
        if out is None:
            typer.echo(api.absolute(image["url"]))
            continue
        out.mkdir(parents=True, exist_ok=True)
        extension = mimetypes.guess_extension(image.get("mime_type") or "") or ".bin"
        path = out / f"{job['id']}-{index}{extension}"
        path.write_bytes(api.fetch("GET", image["url"]).content)
        typer.echo(str(path))
    return f"job {job['id']}: images not stored: {', '.join(lost)}" if lost else None


def status(
    job_id: Annotated[str, typer.Argument(help="A job id, or the seed task's Celery task id.")],
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unchanged.")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """A job's status, timings, cost, error and images."""
    with PodrelayApi(api_url, api_key) as api:
        job = api.call("GET", f"/status/{job_id}")
        if as_json:
            typer.echo(json.dumps(job, indent=2))
            return
        for label, value in _summary(api, job):
            typer.echo(f"{label:<10}{value}")


def _summary(api: PodrelayApi, job: dict[str, Any]) -> list[tuple[str, str]]:
    timings, cost, error = job["timings"], job["cost"], job.get("error")
    rows = [("job", job["id"]), ("status", job["status"]), ("prompt", job["prompt"])]
    if job.get("batch_id"):
        rows.append(("batch", job["batch_id"]))
    if job.get("queue_position") is not None:
        rows.append(("queue", f"{job['queue_position']} jobs ahead"))
    rows += [("attempts", str(job["attempts"])), ("created", timings["created_at"])]
    if timings.get("finished_at"):
        took = _seconds_between(timings["created_at"], timings["finished_at"])
        rows.append(("finished", f"{timings['finished_at']}  ({took:.1f} s)"))
    if timings.get("execution_ms") is not None:
        rows.append(
            ("runpod", f"queued {timings['delay_ms']} ms, ran {timings['execution_ms']} ms")
        )
    if cost.get("gpu_seconds") is not None:
        rows.append(
            ("cost", f"{cost['gpu_seconds']:.2f} GPU s, ~${cost['estimated_usd'] or 0:.6f}")
        )
    if error:
        rows.append(("error", f"{error['code']}: {error.get('message') or ''}".rstrip(": ")))
    for image in job["images"]:
        size = f"{image['width']}x{image['height']}" if image.get("width") else "size unknown"
        rows.append(("image", f"{api.absolute(image['url'])}  ({image['state']}, {size})"))
    return rows


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def cancel(
    job_id: Annotated[str, typer.Argument(help="A job id, or the seed task's Celery task id.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Cancel a job (at RunPod too); fails when it already finished."""
    with PodrelayApi(api_url, api_key) as api:
        try:
            job = api.call("DELETE", f"/cancel/{job_id}")
        except ApiError as error:
            if error.status == 409:
                raise CliError(f"{job_id} already finished ({error.detail})") from None
            raise
    typer.echo(f"{job['id']}  {job['status']}")
