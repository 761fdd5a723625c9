"""Oversized and malformed bodies: always a 4xx problem with a stable code, never a 500.

tests/api/test_limits_ops.py covers the size limit on /generate (declared and streamed) and
the upload time limit; tests/api/test_endpoints.py a truncated JSON body and an unknown field.
Here: the other body routes, and each kind of malformed body on every route that takes one.
"""

import json

import pytest

from app.jobs.models import Job
from tests.security.helpers import submitted_job
from tests.stack.http_api import API, PROBLEM_JSON, assert_problem
from tests.stack.inprocess_api import ApiFactory, RunningApi

JSON = "application/json"
NESTED = b"[" * 20_000 + b"]" * 20_000  # 40 kB, within the 64 KiB limit
DIGITS = b"9" * 5_000  # more digits than Python converts to an int


def prompt_body(extra: bytes = b"") -> bytes:
    return b'{"prompt": "a red fox"' + extra + b"}"


# (case, raw body, content type, status, code) for POST /generate; /generate/batch gets the
# same bodies with `prompts`.
INVALID, MALFORMED_BODY = "validation_error", "malformed_body"
MALFORMED = [
    ("truncated", b'{"prompt": "a', JSON, 422, INVALID),
    ("trailing-garbage", prompt_body() + b" x", JSON, 422, INVALID),
    ("single-quotes", b"{'prompt': 'a'}", JSON, 422, INVALID),
    ("comment", b'{"prompt": "a" /* hi */}', JSON, 422, INVALID),
    ("empty", b"", JSON, 422, INVALID),
    ("null", b"null", JSON, 422, INVALID),
    ("array", b"[]", JSON, 422, INVALID),
    ("string", b'"a red fox"', JSON, 422, INVALID),
    ("nested-deep", NESTED, JSON, 400, MALFORMED_BODY),
    ("nested-in-field", prompt_body(b', "seed": ' + NESTED), JSON, 400, MALFORMED_BODY),
    ("int-5000-digits", prompt_body(b', "seed": ' + DIGITS), JSON, 400, MALFORMED_BODY),
    ("int-400-digits", prompt_body(b', "seed": ' + b"9" * 400), JSON, 422, INVALID),
    ("float-overflow", prompt_body(b', "seed": 1e400'), JSON, 422, INVALID),
    ("nan", prompt_body(b', "guidance_scale": NaN'), JSON, 422, INVALID),
    ("minus-infinity", prompt_body(b', "guidance_scale": -Infinity'), JSON, 422, INVALID),
    ("timeout-nan", prompt_body(b', "timeout": NaN'), JSON, 422, INVALID),
    ("timeout-infinity", prompt_body(b', "timeout": Infinity'), JSON, 400, "timeout_too_long"),
    ("timeout-1e308", prompt_body(b', "timeout": 1e308'), JSON, 400, "timeout_too_long"),
    ("width-float", prompt_body(b', "width": 512.5'), JSON, 422, INVALID),
    ("invalid-utf8", b'{"prompt": "\xff\xfe\xfd"}', JSON, 400, MALFORMED_BODY),
    ("lone-surrogate", b'{"prompt": "\\ud800"}', JSON, 422, INVALID),
    ("nul", b'{"prompt": "a\\u0000b"}', JSON, 422, INVALID),
    ("unknown-field", prompt_body(b', "__proto__": {"admin": true}'), JSON, 422, INVALID),
    ("owner-field", prompt_body(b', "owner": "key_other"'), JSON, 422, INVALID),
    ("text-plain", prompt_body(), "text/plain", 422, INVALID),
    ("form", b"prompt=a+red+fox", "application/x-www-form-urlencoded", 422, INVALID),
    ("multipart", b"--b\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b", 422, INVALID),
    ("no-content-type", prompt_body(), None, 422, INVALID),
]


def as_batch(body: bytes) -> bytes:
    return body.replace(b'"prompt": "a red fox"', b'"prompts": ["a red fox"]').replace(
        b'{"prompt": "a', b'{"prompts": ["a'
    )


async def test_malformed_bodies_are_4xx_with_a_stable_code(api: RunningApi) -> None:
    wrong = []
    for case, body, content_type, status, code in MALFORMED:
        headers = {"Content-Type": content_type} if content_type else {}
        for path, raw in ((f"{API}/generate", body), (f"{API}/generate/batch", as_batch(body))):
            response = await api.client.post(path, content=raw, headers=headers)
            problem = response.json() if response.headers["content-type"] == PROBLEM_JSON else {}
            got = (response.status_code, problem.get("code"), problem.get("retryable"))
            if got != (status, code, False):
                wrong.append((case, path, got, response.text[:200]))
    assert wrong == []
    with api.engine.db.session() as session:
        assert session.query(Job).count() == 0


async def test_malformed_bodies_to_a_runpod_webhook_are_4xx(api: RunningApi) -> None:
    job_id, token, _ = await submitted_job(api, "a red fox")
    for body, status, code in [
        (NESTED, 400, "malformed_body"),
        (
            b'{"id": "x", "status": "COMPLETED", "delayTime": ' + DIGITS + b"}",
            400,
            "malformed_body",
        ),
        (b'{"id": "\xff"}', 400, "malformed_body"),
        (b"{not json", 422, "validation_error"),
        (b'{"id": "\\ud800", "status": "COMPLETED"}', 409, "webhook_rejected"),
    ]:
        response = await api.client.post(
            f"/webhooks/runpod/{token}", content=body, headers={"Content-Type": JSON}
        )
        assert_problem(response, status, code)
    view = (await api.client.get(f"{API}/status/{job_id}")).json()
    assert view["status"] == "queued"


@pytest.mark.parametrize(
    "prompt",
    [
        "\u202eevil.exe\u202c \u200b\u200d\ufeff",  # bidi override, zero-width characters
        "e\u0301" * 500 + "\U0001f600" * 1000,  # combining marks, 4-byte characters
        "\U0001f600" * 2000,  # at the limit in characters, 8000 bytes
        "Ω≈ç√ ｆｕｌｌｗｉｄｔｈ ١٢٣ \u0085 \u2028 \u2029",
    ],
    ids=["bidi-zero-width", "combining-astral", "astral-at-limit", "mixed-scripts-separators"],
)
async def test_unicode_prompts_are_kept_exactly(api: RunningApi, prompt: str) -> None:
    response = await api.client.post(f"{API}/generate", json={"prompt": prompt})
    assert response.status_code == 202, response.text
    assert response.json()["prompt"] == prompt.strip()
    status = await api.client.get(f"{API}/status/{response.json()['id']}")
    assert status.json()["prompt"] == prompt.strip()


async def test_a_prompt_over_the_limit_in_characters_is_422(api: RunningApi) -> None:
    response = await api.client.post(f"{API}/generate", json={"prompt": "\U0001f600" * 2001})
    assert_problem(response, 422, "validation_error")


async def test_every_body_route_refuses_bodies_over_the_limit(api_factory: ApiFactory) -> None:
    async with api_factory(MAX_REQUEST_BYTES="2048") as api:
        big = json.dumps({"prompts": ["x" * 1500, "y" * 1500]}).encode()
        batch = await api.client.post(
            f"{API}/generate/batch", content=big, headers={"Content-Type": JSON}
        )
        body = assert_problem(batch, 413, "payload_too_large")
        assert "2048" in body["detail"]
        assert batch.headers["connection"] == "close"
        # Routes without a body refuse one too, before reading it.
        for method, path in [("DELETE", f"{API}/cancel/job_x"), ("GET", f"{API}/jobs")]:
            response = await api.client.request(
                method, path, content=b"x" * 4096, headers={"Content-Type": JSON}
            )
            assert_problem(response, 413, "payload_too_large")
            assert response.headers["content-type"] == PROBLEM_JSON
