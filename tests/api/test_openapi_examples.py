"""The examples Swagger UI (`/docs`) and ReDoc (`/redoc`) show: every operation has one for its
success answer and its request body, and each is what the API really sends or accepts.

JSON examples round-trip through their models unchanged (so a renamed, added or dropped field
fails here); job and batch examples are exactly what `app.api.views` renders for such rows; the
event stream, metrics and RunPod webhook examples are checked against the live stream, the live
`/metrics` and the parsers RunPod's bodies go through.
"""

import json
import re
from datetime import datetime
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, TypeAdapter

from app.api import examples
from app.api.errors import PROBLEM_JSON, Problem
from app.api.views import API_PREFIX, batch_out, image_url, job_out
from app.jobs.models import Batch, Job, JobImage
from app.jobs.status import JobStatus
from app.runpod import JobState
from app.runpod.outputs import extract_images
from app.scheduler.fair import Priority
from app.services.generation_defaults import GenerationParams, build_runpod_input
from tests.stack.inprocess_api import RunningApi

Json = dict[str, Any]
_REF = "#/components/schemas/"
_NEW_ID = re.compile(r"(job|batch|img|msg)_[0-9a-f]{24}")
_FRAME = re.compile(r"event: (\w+)\ndata: (\{.*\})\nid: (\d+)")


async def _document(api: RunningApi) -> Json:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document: Json = response.json()
    return document


def _examples(document: Json, media: Json) -> list[Any]:
    """Every example a reader can reach from a media type: its own, or its schema's."""
    found = [media["example"]] if "example" in media else []
    found += [named["value"] for named in media.get("examples", {}).values()]
    schema = media.get("schema", {})
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].removeprefix(_REF)]
    return found + list(schema.get("examples", []))


def _operations(document: Json) -> list[tuple[str, str, Json]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


async def test_every_operation_shows_an_example_of_its_answer_and_body(api: RunningApi) -> None:
    document = await _document(api)
    missing = []
    operations = _operations(document)
    for method, path, operation in operations:
        shown: list[tuple[str, Json]] = list(operation["responses"].items())
        assert any(code.startswith("2") for code, _ in shown), f"{method} {path}: no success"
        if "requestBody" in operation:
            shown.append(("request body", operation["requestBody"]))
        for what, answer in shown:
            for media_type, media in answer.get("content", {}).items():
                if media_type.startswith("image/"):
                    # Bytes have no meaningful example; the description says what they are.
                    if answer.get("description", "Successful Response") == "Successful Response":
                        missing.append(f"{method} {path} {what} {media_type}: no description")
                elif not _examples(document, media):
                    missing.append(f"{method} {path} {what} {media_type}: no example")
    assert len(operations) >= 15
    assert not missing, "\n".join(missing)
    for page in ("/docs", "/redoc"):  # Swagger UI and ReDoc, both reading this document
        response = await api.client.get(page)
        assert response.status_code == 200
        assert "/openapi.json" in response.text


def _round_trips(model: Any, example: Any, *, exclude_none: bool) -> bool:
    adapter = TypeAdapter(model)
    dumped = adapter.dump_python(
        adapter.validate_python(example), mode="json", exclude_none=exclude_none
    )
    return bool(dumped == example)


def _answer_model(route: APIRoute, code: int) -> Any:
    extra = route.responses.get(code, {})
    if "model" in extra:
        return extra["model"]
    return route.response_model if code == (route.status_code or 200) else None


async def test_every_json_example_is_what_its_model_sends_or_accepts(api: RunningApi) -> None:
    """Answers: validated and dumped as FastAPI would, the example comes back unchanged.
    Request bodies: the request model (which refuses unknown fields) accepts it."""
    document = await _document(api)
    checked, wrong = 0, []
    for context in iter_route_contexts(api.app.routes):
        route: Any = context
        if not isinstance(context.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            operation = document["paths"][route.path_format][method.lower()]
            where = f"{method} {route.path_format}"
            for code, answer in operation["responses"].items():
                for media_type, media in answer.get("content", {}).items():
                    if media_type == PROBLEM_JSON:
                        model, exclude_none = Problem, True  # as `problem_response` sends it
                    elif media_type == "application/json":
                        model = _answer_model(route, int(code))
                        exclude_none = route.response_model_exclude_none
                        assert model is not None, f"{where} {code}: no model to check against"
                    else:
                        continue
                    for example in _examples(document, media):
                        checked += 1
                        if not _round_trips(model, example, exclude_none=exclude_none):
                            wrong.append(f"{where} {code}: {example}")
            for body in route.dependant.body_params:
                model = body.field_info.annotation
                content = operation["requestBody"]["content"]["application/json"]
                if isinstance(model, type) and issubclass(model, BaseModel):
                    for example in _examples(document, content):
                        checked += 1
                        model.model_validate(example)
    assert checked >= 30, checked
    assert not wrong, "\n".join(wrong)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


_IMAGE_URLS = {"url", "signed_url", "signed_url_expires_at"}


def _unsigned(job: Json) -> Json:
    """The job with its images' signed URLs left out: they are signed for a time from now."""
    images = [
        {**image, "signed_url": None, "signed_url_expires_at": None} for image in job["images"]
    ]
    return {**job, "images": images}


def _job_row(example: Json) -> Job:
    """The ledger row that `job_out` should render as `example`."""
    timings, error = example["timings"], example["error"] or {}
    return Job(
        id=example["id"],
        batch_id=example["batch_id"],
        prompt=example["prompt"],
        negative_prompt=example["negative_prompt"],
        params=example["params"],
        status=example["status"],
        attempts=example["attempts"],
        error_code=error.get("code"),
        error_message=error.get("message"),
        progress=example["progress"],
        webhook_url=example["webhook_url"],
        route=example["route"],
        endpoint=example["endpoint"],
        priority=Priority(example["priority"]).rank,
        # The W3C traceparent kept for the job (its span id: any of the request's spans).
        traceparent=f"00-{example['trace_id']}-00f067aa0ba902b7-01"
        if example["trace_id"]
        else None,
        delay_ms=timings["delay_ms"],
        execution_ms=timings["execution_ms"],
        **{key: _when(timings[key]) for key in ("created_at", "submitted_at", "started_at")},
        **{key: _when(timings[key]) for key in ("finished_at", "deadline_at")},
        images=[
            JobImage(index=index, **{k: v for k, v in image.items() if k not in _IMAGE_URLS})
            for index, image in enumerate(example["images"])
        ],
    )


def test_job_and_batch_examples_are_what_the_views_render() -> None:
    """Links, image URLs, cost, error and counts come out of `app.api.views` exactly so.
    (Webhook deliveries are read from the ledger; their shape is checked by the round trip.)"""
    assert examples.API == API_PREFIX
    price = examples.USAGE["gpu_price_per_second"]
    jobs = [examples.PENDING_JOB, examples.COMPLETED_JOB, examples.CANCELLED_JOB]
    for example in [*jobs, *examples.BATCH_JOBS]:
        assert _NEW_ID.fullmatch(example["id"])
        assert all(image["url"] == image_url(image["id"]) for image in example["images"])
        view = job_out(_job_row(example), price_per_second=price, place=None)
        rendered = view.model_dump(mode="json")
        for image in rendered["images"]:
            assert image["signed_url"].startswith(f"{API_PREFIX}/media/{image['id']}?expires=")
        assert _unsigned(rendered) == _unsigned({**example, "webhook_deliveries": []})
        JobStatus(example["status"])
    for batch in (examples.ACCEPTED_BATCH, examples.RUNNING_BATCH):
        row = Batch(
            id=batch["id"],
            created_at=_when(batch["created_at"]),
            size=batch["size"],
            jobs=[_job_row(job) for job in batch["jobs"]],
        )
        rendered = batch_out(row, price_per_second=price).model_dump(mode="json")
        unsigned = {"jobs": [_unsigned(job) for job in rendered["jobs"]]}
        assert {**rendered, **unsigned} == {**batch, "jobs": [_unsigned(j) for j in batch["jobs"]]}
    ids = [examples.BATCH_ID, *examples.IMAGE_IDS, examples.DELIVERY["id"]]
    assert all(_NEW_ID.fullmatch(found) for found in ids), ids
    assert examples.JOB_PAGE["next_cursor"] == examples.JOB_PAGE["items"][-1]["id"]


def _frames(stream: str) -> list[str]:
    assert stream.endswith("\n\n")
    return stream.removesuffix("\n\n").split("\n\n")


async def test_the_event_stream_example_is_framed_as_the_live_stream(api: RunningApi) -> None:
    accepted = await api.client.post(
        f"{API_PREFIX}/generate", json={"prompt": "x", "width": 256, "height": 256}
    )
    job_id = accepted.json()["id"]
    assert (await api.client.delete(f"{API_PREFIX}/cancel/{job_id}")).status_code == 200
    live = await api.client.get(f"{API_PREFIX}/jobs/{job_id}/events")
    assert live.headers["content-type"].startswith("text/event-stream")
    live_frames, shown = _frames(live.text), _frames(examples.EVENT_STREAM)
    assert shown[0] == live_frames[0]  # the `retry:` advice
    keys: set[tuple[str, ...]] = set()
    kinds: dict[str, set[str]] = {"live": set(), "example": set()}
    for source, frames in (("live", live_frames[1:]), ("example", shown[1:])):
        for frame in frames:
            if frame == ": ping":
                continue
            match = _FRAME.fullmatch(frame)
            assert match, f"{source} frame not `event`/`data`/`id`: {frame!r}"
            event = json.loads(match.group(2))
            # Serialized as the stream does.
            assert json.dumps(event, separators=(",", ":")) == match.group(2)
            assert (int(match.group(3)), match.group(1)) == (event["id"], event["kind"])
            JobStatus(event["status"])
            keys.add(tuple(event))
            kinds[source].add(event["kind"])
    assert len(keys) == 1, keys  # the same fields, in the same order
    assert kinds["example"] <= kinds["live"]


async def test_the_metrics_example_is_an_excerpt_of_the_live_metrics(api: RunningApi) -> None:
    await api.client.post(f"{API_PREFIX}/generate", json={"prompt": "x"})
    await api.client.get(f"{API_PREFIX}/status/job_0")
    live = (await api.client.get("/metrics")).text.splitlines()
    names = {line.split("{")[0].split(" ")[0] for line in live if not line.startswith("#")}
    for line in examples.METRICS.splitlines():
        if line.startswith("#"):
            assert line in live, line
        else:
            assert line.split("{")[0].split(" ")[0] in names, line


def test_the_runpod_webhook_example_is_a_completed_job_podrelay_reads() -> None:
    payload = examples.RUNPOD_WEBHOOK
    state = JobState.from_payload(payload)
    assert JobStatus.from_runpod(state.status) is JobStatus.COMPLETED
    assert state.has_output
    assert [image.url for image in extract_images(state.output)] == payload["output"]["images"]
    # The `input` echo is what Podrelay sent for the job's prompt and parameters.
    params = GenerationParams(**examples.PARAMS)
    assert payload["input"] == build_runpod_input(examples.PROMPT, None, params)
    assert re.fullmatch(r"https://[\w.]+/webhooks/runpod/[\w-]{32}", payload["webhook"])


def test_the_problem_examples_carry_code_detail_and_retryable() -> None:
    for example in examples.PROBLEMS:
        assert {"code", "detail", "retryable"} <= example.keys()
        assert _round_trips(Problem, example, exclude_none=True)
    assert {example["retryable"] for example in examples.PROBLEMS} == {True, False}
