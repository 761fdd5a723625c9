"""docs/RUNPOD_API_INTEGRATION.md and docs/clients/: the TypeScript client calls only routes
the API has, its types are the API's schemas, the doc shows the client files as they are, and
both webhook signature checks accept Podrelay's signatures and nothing else."""

import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from app.core.config import get_settings
from app.notify.signing import signed_headers
from tests.docs.helpers import DOCS, block_after
from tests.stack.http_api import API
from tests.stack.inprocess_api import RunningApi

CLIENT = DOCS / "clients" / "podrelay.ts"
HOOK = DOCS / "clients" / "usePodrelayJob.ts"
INTEGRATION = DOCS / "RUNPOD_API_INTEGRATION.md"

_INTERFACE = re.compile(
    r"^(?:/\*\* @schema (\w+) \*/\n)?export interface (\w+)(?: extends (\w+))? \{\n(.*?)^\}",
    re.DOTALL | re.MULTILINE,
)
_FIELD = re.compile(r"^  (\w+)(\??): (.+);$")
_CALL = re.compile(r'this\.(?:request<\w+>|send)\(\s*"(GET|POST|DELETE)",\s*`([^`]+)`')


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The schema of the API as `app.main.create_app()` builds it now."""
    folder = tmp_path_factory.mktemp("openapi")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("RUNPOD_URL", "RUNPOD_API_KEY", "RUNPOD_ENDPOINT_ID", "REDIS_URL"):
            patch.delenv(name, raising=False)
        patch.setenv("DATABASE_URL", f"sqlite:///{folder / 'ledger.db'}")
        patch.setenv("DATA_DIR", str(folder / "data"))
        patch.setenv("LOG_FILE", str(folder / "app.log"))
        get_settings.cache_clear()
        from app.main import create_app

        schema: dict[str, Any] = create_app().openapi()
    get_settings.cache_clear()
    return schema


def interfaces(source: str) -> dict[str, tuple[str, dict[str, tuple[bool, str]]]]:
    """TS interface tagged `@schema` -> (schema name, {field: (optional, type)}), the fields
    of the interface it extends included."""
    declared = {
        name: (schema, parent, body) for schema, name, parent, body in _INTERFACE.findall(source)
    }

    def fields_of(name: str) -> dict[str, tuple[bool, str]]:
        _, parent, body = declared[name]
        fields = fields_of(parent) if parent else {}
        for line in body.splitlines():
            match = _FIELD.match(line)
            if match:
                fields[match.group(1)] = (match.group(2) == "?", match.group(3))
        return fields

    return {name: (schema, fields_of(name)) for name, (schema, _, _) in declared.items() if schema}


def called_routes(source: str) -> set[tuple[str, str]]:
    """(method, path template with `{}` for each parameter) of every call the client makes."""
    routes = set()
    for method, template in _CALL.findall(source):
        path = re.sub(r"/\$\{[^}]*\}", "/{}", template)
        routes.add((method, re.sub(r"\$\{[^}]*\}", "", path)))  # the query-string suffix
    return routes


def api_routes(openapi: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path)): operation
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
    }


def ts_type_fits(schema: dict[str, Any], ts_type: str) -> bool:
    """`unknown` for a field of any type; `| null` exactly when the field may be null."""
    if not schema.keys() & {"type", "anyOf", "$ref", "enum", "const"}:
        return ts_type == "unknown"
    nullable = any(option.get("type") == "null" for option in schema.get("anyOf", []))
    while "<" in ts_type:  # only the outer type says whether the field may be null
        ts_type = re.sub(r"<[^<>]*>", "", ts_type)
    return nullable == ("| null" in ts_type)


def test_client_calls_only_routes_the_api_has(openapi: dict[str, Any]) -> None:
    routes = api_routes(openapi)
    calls = called_routes(CLIENT.read_text())
    assert len(calls) >= 10, calls
    missing = sorted(call for call in calls if call not in routes)
    assert not missing, f"the TS client calls routes the API does not have: {missing}"
    # Every route under the job API is reachable from the client.
    public = {route for route in routes if route[1].startswith(API)} - {
        ("GET", f"{API}/images/{{}}"),  # fetched through `Image.url` as the API returns it
        ("GET", f"{API}/media/{{}}"),  # `Image.signed_url`, for `<img src>`
    }
    assert public <= calls, f"the client misses {sorted(public - calls)}"


def test_client_parameters_exist(openapi: dict[str, Any]) -> None:
    source = CLIENT.read_text()
    routes = api_routes(openapi)
    parameters = {
        (parameter["in"], parameter["name"].lower())
        for operation in routes.values()
        for parameter in operation.get("parameters", [])
    }
    listed = {p["name"] for p in routes[("GET", f"{API}/jobs")]["parameters"]}
    for name in re.findall(r'query\.set\("(\w+)"', source):
        assert name in listed, f"GET /jobs has no query parameter {name}"
    headers = set(re.findall(r'headers\["([\w-]+)"\]', source)) - {"Authorization", "Content-Type"}
    assert headers >= {"Idempotency-Key", "Prefer", "Last-Event-ID"}
    for header in headers:
        assert ("header", header.lower()) in parameters, f"no operation reads header {header}"


def test_client_types_are_the_api_schemas(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    found = interfaces(CLIENT.read_text())
    assert len(found) >= 15
    for name, (schema_name, fields) in found.items():
        schema = schemas[schema_name]
        properties = schema["properties"]
        assert set(fields) == set(properties), (
            f"{name} vs {schema_name}: only in TS {sorted(set(fields) - set(properties))}, "
            f"only in the API {sorted(set(properties) - set(fields))}"
        )
        is_request = schema_name.endswith("Request")
        for field, (optional, ts_type) in fields.items():
            assert ts_type_fits(properties[field], ts_type), (
                f"{name}.{field}: {ts_type} does not fit {schema_name}'s {properties[field]}"
            )
            if is_request:
                required = field in schema.get("required", [])
                assert optional != required, f"{name}.{field}: optional must be {not required}"


def test_job_status_values_are_the_apis(openapi: dict[str, Any]) -> None:
    source = CLIENT.read_text()
    union = re.search(r"export type JobStatus =(.*?);", source, re.DOTALL)
    assert union is not None
    assert set(re.findall(r'"(\w+)"', union.group(1))) == set(
        openapi["components"]["schemas"]["JobStatus"]["enum"]
    )


async def test_job_event_type_is_what_the_stream_sends(api: RunningApi) -> None:
    job = (await api.client.post(f"{API}/generate", json={"prompt": "docs"})).json()
    assert (await api.client.delete(f"{API}/cancel/{job['id']}")).status_code == 200
    events = []
    async with api.client.stream("GET", f"{API}/jobs/{job['id']}/events") as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
    assert events
    assert events[-1]["status"] == "cancelled"
    declared = re.search(r"export interface JobEvent \{\n(.*?)^\}", CLIENT.read_text(), re.S | re.M)
    assert declared is not None
    fields = {m.group(1) for m in map(_FIELD.match, declared.group(1).splitlines()) if m}
    assert all(set(event) == fields for event in events), (events, fields)


def test_doc_shows_the_client_files_as_they_are() -> None:
    text = INTEGRATION.read_text()
    for path in (CLIENT, HOOK):
        block = block_after(text, f"include: clients/{path.name}")
        assert block == path.read_text(), f"{INTEGRATION.name} shows an old {path.name}"
    assert "/api/v1/runpod/jobs/${encodeURIComponent(jobId)}/events" in CLIENT.read_text()
    assert "client.events(" in HOOK.read_text()
    assert "client.status(" in HOOK.read_text()


# --- webhook signatures --------------------------------------------------------------------

SECRET = "whsec_Qk3x-podrelay-docs-test"
BODY = json.dumps({"type": "job.completed", "data": {"id": "job_1", "prompt": "ünïcode"}}).encode()


def signature_cases() -> list[tuple[str, dict[str, str], bytes, bool]]:
    """(name, headers, body, valid): signed by app.notify.signing, then tampered with."""
    now = int(time.time())
    good = signed_headers(SECRET, "msg_docs1", now, BODY)
    other = signed_headers("whsec_someone_else", "msg_docs1", now, BODY)
    stale = signed_headers(SECRET, "msg_docs1", now - 600, BODY)
    rotated = {
        **good,
        "webhook-signature": f"{other['webhook-signature']} {good['webhook-signature']}",
    }
    return [
        ("valid", good, BODY, True),
        ("valid, several signatures", rotated, BODY, True),
        ("body changed", good, BODY.replace(b"job_1", b"job_2"), False),
        ("another secret", other, BODY, False),
        ("id changed", {**good, "webhook-id": "msg_docs2"}, BODY, False),
        ("ten minutes old", stale, BODY, False),
        ("no signature", {k: v for k, v in good.items() if k != "webhook-signature"}, BODY, False),
        (
            "not v1",
            {**good, "webhook-signature": good["webhook-signature"].replace("v1,", "v2,")},
            BODY,
            False,
        ),
    ]


def test_python_snippet_verifies_podrelay_signatures() -> None:
    code = block_after(INTEGRATION.read_text(), "test: webhook-verify-python")
    namespace: dict[str, Any] = {}
    exec(compile(code, "RUNPOD_API_INTEGRATION.md", "exec"), namespace)
    verify, invalid = namespace["verify_podrelay_webhook"], namespace["InvalidWebhook"]
    for _, headers, body, valid in signature_cases():
        if valid:
            verify(SECRET, headers, body)
            verify(SECRET, {k.title(): v for k, v in headers.items()}, body)  # header case
        else:
            with pytest.raises(invalid):
                verify(SECRET, headers, body)


_NODE_HARNESS = """
const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const results = cases.map(([name, headers, body]) => {
  try {
    verifyPodrelayWebhook(SECRET, headers, Buffer.from(body, "base64"));
    return [name, true];
  } catch (error) {
    return [name, false];
  }
});
console.log(JSON.stringify(results));
"""


def test_node_snippet_verifies_podrelay_signatures(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    code = block_after(INTEGRATION.read_text(), "test: webhook-verify-node")
    script = tmp_path / "verify.js"
    script.write_text(f"{code}\nconst SECRET = {json.dumps(SECRET)};\n{_NODE_HARNESS}")
    cases = [
        (name, headers, base64.b64encode(body).decode(), valid)
        for name, headers, body, valid in signature_cases()
    ]
    result = subprocess.run(
        [node, str(script)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcomes = dict(json.loads(result.stdout))
    assert outcomes == {name: valid for name, _, _, valid in cases}
