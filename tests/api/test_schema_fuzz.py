"""Property-based fuzzing of every operation in the API's own `/openapi.json` (Schemathesis).

The app runs in-process with its real lifespan (`api_factory`), on SQLite and on PostgreSQL
(whose text columns refuse what SQLite stores, NUL bytes for one). Each operation gets:

- positive (schema-valid) requests with every input generated;
- the same with each path parameter pinned to an id that exists (pending, cancelled and
  completed jobs, a batch, a stored image, a webhook token), so handlers run past their 404s;
- negative (schema-violating) requests, for operations with an input that can be invalid.

Every response must pass `not_a_server_error` (no 5xx, whatever the input),
`status_code_conformance`, `content_type_conformance` and `response_schema_conformance`
(the status, media type and body are the documented ones).

`PODRELAY_FUZZ_EXAMPLES` sets the examples per operation and variant: 15 by default, which keeps
this file well under a minute in `make test`; a deeper run (for `make chaos`) sets a few hundred:
`PODRELAY_FUZZ_EXAMPLES=300 pytest tests/api/test_schema_fuzz.py` takes about 7 minutes.
Generation is derandomized, so a run is reproducible.

Hypothesis is synchronous: it runs in a worker thread and hands each request to the event loop
that owns the app and its lifespan, where the test itself waits.
"""

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.endpoints import history
from app.api.errors import PROBLEM_JSON
from app.jobs.models import Submission
from app.jobs.options import NO_NUL
from tests.stack.http_api import API, complete
from tests.stack.inprocess_api import ApiFactory, RunningApi

EXAMPLES = int(os.environ.get("PODRELAY_FUZZ_EXAMPLES", "15"))
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
BASE_URL = "http://podrelay.test"
# A stuck handler is a finding too; no request here needs more than a fraction of this.
CALL_TIMEOUT_S = 20.0
# Keywords that make a parameter's value invalidatable.
_CONSTRAINTS = frozenset(
    {"enum", "const", "format", "pattern", "minLength", "maxLength", "minimum", "maximum"}
    | {"exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems"}
)
# Error answers documented with another body than a Problem, by design.
NOT_PROBLEMS = {("GET", "/readyz", "503")}  # the readiness report says which check failed

Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Any]
Pinned = dict[str, str] | None
Send = Callable[[AnyCase], httpx.Response]


@pytest.fixture
async def fuzz_api(
    api_factory: ApiFactory,
    ledger_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[RunningApi]:
    # `app.celery_app` is built once per process, so it created the embedded broker's folders
    # in the first test's DATA_DIR only; /readyz checks this one's, which must exist.
    (tmp_path / "data" / "broker" / "queue").mkdir(parents=True)
    # A finished job's event stream ends one ledger poll after its last event: poll at once.
    monkeypatch.setattr(history, "SSE_POLL_S", 0.01)
    # The rate limit would answer most examples with 429 (documented, but not what is tested).
    limits = {"REQUESTS_PER_MINUTE": "1000000", "CREATES_PER_MINUTE": "1000000"}
    async with api_factory(**limits, **ledger_env) as running:
        yield running


async def _accepted(api: RunningApi, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post(f"{API}{path}", json=body)
    assert response.status_code == 202, response.text
    payload: dict[str, Any] = response.json()
    return payload


async def seed(api: RunningApi) -> dict[str, list[str]]:
    """Existing ids by path parameter name."""
    small = {"width": 256, "height": 256}
    pending = await _accepted(api, "/generate", {"prompt": "pending", **small})
    cancelled = await _accepted(api, "/generate", {"prompt": "cancelled", **small})
    assert (await api.client.delete(f"{API}/cancel/{cancelled['id']}")).status_code == 200
    created = await _accepted(api, "/generate", {"prompt": "completed", **small})
    completed = await complete(api, created["id"])
    batch = await _accepted(api, "/generate/batch", {"prompts": ["a", "b"], **small})
    with api.engine.db.session() as session:
        token = session.query(Submission.token).filter_by(job_id=completed["id"]).scalar()
    assert token is not None
    return {
        "task_id": [pending["id"], cancelled["id"], completed["id"]],
        # Only finished jobs: the event stream of an unfinished one lasts until it ends.
        "job_id": [cancelled["id"], completed["id"]],
        "batch_id": [batch["id"]],
        "image_id": [completed["images"][0]["id"]],
        "token": [token],
    }


def negatable(document: dict[str, Any], operation: Operation) -> bool:
    """Whether some input can violate the schema: Hypothesis needs seconds per operation to
    prove that unconstrained strings (ids in paths, free headers) cannot, so those are skipped.
    When this is wrong the other way, `fuzz` takes the Unsatisfiable as nothing to negate."""
    definition = document["paths"][operation.path][operation.method.lower()]
    if "requestBody" in definition:
        return True
    for parameter in definition.get("parameters", []):
        schema = parameter.get("schema", {})
        options = schema.get("anyOf", [schema])
        for option in options:
            # "No NUL byte" is not one: Schemathesis puts no NUL in a URL or a header (so
            # `test_values_postgresql_cannot_store_are_refused` does).
            keywords = set(option) - ({"pattern"} if option.get("pattern") == NO_NUL else set())
            if keywords & _CONSTRAINTS or option.get("type") not in ("string", "null"):
                return True
    return False


def to_request(case: AnyCase) -> httpx.Request:
    """The exact request Schemathesis would send (prepared by `requests`), as an httpx one."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    kwargs.pop("timeout", None)
    prepared = requests.Request(**kwargs).prepare()
    assert prepared.method is not None
    assert prepared.url is not None
    headers = [
        (name.encode("latin-1"), value.encode("latin-1") if isinstance(value, str) else value)
        for name, value in prepared.headers.items()
    ]
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    assert body is None or isinstance(body, bytes)
    return httpx.Request(prepared.method, prepared.url, headers=headers, content=body)


def fuzz(operation: Operation, mode: GenerationMode, pinned: Pinned, send: Send) -> str | None:
    """Run one operation's examples: None when every check passed, else the failure report."""

    @hypothesis.settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode, path_parameters=pinned))
    def run(case: AnyCase) -> None:
        try:
            response = send(case)
        except Exception as error:  # the app raised instead of answering: a 500 when served
            error.add_note(f"Reproduce with: {case.as_curl_command(base_url=BASE_URL)}")
            raise
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        return None  # nothing could be made invalid after all (see `negatable`)
    except Exception as error:  # noqa: BLE001 - every failure is collected, then reported
        report = "\n".join([str(error), *getattr(error, "__notes__", [])])
        if isinstance(error, ExceptionGroup):
            report += "".join(f"\n  - {failure}" for failure in error.exceptions)
        where = f"{operation.label} [{mode.value}{f', {pinned}' if pinned else ''}]"
        return f"{where}: {report}"
    return None


# Every operation's examples run in this one test: its time grows with PODRELAY_FUZZ_EXAMPLES.
@pytest.mark.timeout(max(120, EXAMPLES * 3))
async def test_every_operation_conforms_and_never_fails(fuzz_api: RunningApi) -> None:
    api = fuzz_api
    ids = await seed(api)
    document = api.app.openapi()
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(document)))
    loop = asyncio.get_running_loop()

    async def call(request: httpx.Request) -> httpx.Response:
        return await asyncio.wait_for(api.client.send(request), CALL_TIMEOUT_S)

    def send(case: AnyCase) -> httpx.Response:
        future = asyncio.run_coroutine_threadsafe(call(to_request(case)), loop)
        return future.result(CALL_TIMEOUT_S + 5)

    def fuzz_all() -> tuple[int, list[str]]:
        runs, failures = 0, []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            variants: list[tuple[GenerationMode, Pinned]] = [(GenerationMode.POSITIVE, None)]
            for parameter in operation.path_parameters:
                for value in ids.get(parameter.name, []):
                    variants.append((GenerationMode.POSITIVE, {parameter.name: value}))
            if negatable(document, operation):
                variants.append((GenerationMode.NEGATIVE, None))
            for mode, pinned in variants:
                runs += 1
                if (report := fuzz(operation, mode, pinned, send)) is not None:
                    failures.append(report)
        return runs, failures

    runs, failures = await asyncio.to_thread(fuzz_all)
    assert runs > len(document["paths"])
    assert not failures, f"{len(failures)} of {runs} runs failed:\n\n" + "\n\n".join(failures)


async def test_every_error_response_is_documented_as_a_problem(api: RunningApi) -> None:
    """No operation documents an error as FastAPI's default 422 body or as plain JSON."""
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["components"]["schemas"]["Problem"]["required"] == [
        "title",
        "status",
        "code",
        "detail",
    ]
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    wrong = [
        f"{method.upper()} {path} {status}: {answer.get('content')}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, answer in operation["responses"].items()
        if int(status) >= 400
        and (method.upper(), path, status) not in NOT_PROBLEMS
        and answer.get("content") != problem
    ]
    assert not wrong, "\n".join(wrong)


async def test_values_postgresql_cannot_store_are_refused(fuzz_api: RunningApi) -> None:
    """Found by the fuzzer on PostgreSQL: a NUL byte anywhere failed the statement (500)."""
    client = fuzz_api.client
    bodies = [
        ("/generate", {"prompt": "a\x00b"}),
        ("/generate", {"prompt": "ok", "negative_prompt": "\x00"}),
        ("/generate/batch", {"prompts": ["ok", "\x00"]}),
    ]
    for path, body in bodies:
        response = await client.post(f"{API}{path}", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == "validation_error"
    requests_ = [
        ("GET", f"{API}/status/a%00b"),
        ("DELETE", f"{API}/cancel/a%00b"),
        ("GET", f"{API}/jobs?batch_id=%00"),
        ("GET", f"{API}/jobs?cursor=%00"),
        ("GET", f"{API}/batches/%00"),
        ("GET", f"{API}/jobs/%00/events"),
        ("GET", f"{API}/images/%00"),
        ("POST", f"/webhooks/runpod/{'a' * 20}%00"),
    ]
    for method, url in requests_:
        response = await client.request(method, url, json={} if method == "POST" else None)
        assert response.status_code == 422, (method, url, response.text)


@pytest.mark.parametrize("last_event_id", [b"\xb2", b"9" * 30, b"9" * 5000, b"-1", b""])
async def test_events_replay_all_for_a_last_event_id_that_is_not_one(
    api: RunningApi, last_event_id: bytes
) -> None:
    """`"²".isdigit()` is true and `int()` refuses it (500), as it refuses 5000 digits; 30
    digits passed and SQLite refused the bind mid-stream. None of them is an event id."""
    job = await _accepted(api, "/generate", {"prompt": "x", "width": 256, "height": 256})
    await api.client.delete(f"{API}/cancel/{job['id']}")
    response = await api.client.get(
        f"{API}/jobs/{job['id']}/events", headers={b"Last-Event-ID": last_event_id}
    )
    assert response.status_code == 200
    assert "event: status" in response.text  # replayed from the first event
