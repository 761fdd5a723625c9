"""clients/openapi.json is the API's OpenAPI document, and the Python SDK's models are its
schemas: the same fields, each required and nullable exactly when the document says so."""

import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest

from app.api.openapi_file import api_document, document_text
from app.core.config import get_settings
from podrelay_client.models import SCHEMAS, GenerationOptions, JobStatus
from tests.clients.sdk import CLIENTS

DOCUMENT = CLIENTS / "openapi.json"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document of the API as `app.main.create_app()` builds it now."""
    folder = tmp_path_factory.mktemp("openapi")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("RUNPOD_URL", "RUNPOD_API_KEY", "RUNPOD_ENDPOINT_ID", "REDIS_URL"):
            patch.delenv(name, raising=False)
        patch.setenv("DATABASE_URL", f"sqlite:///{folder / 'ledger.db'}")
        patch.setenv("DATA_DIR", str(folder / "data"))
        patch.setenv("LOG_FILE", str(folder / "app.log"))
        get_settings.cache_clear()
        built = api_document()
    get_settings.cache_clear()
    return built


def test_the_committed_document_is_the_apis(document: dict[str, Any]) -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == document_text(document), (
        "clients/openapi.json is stale: run `python -m app.api.openapi_file --write "
        "clients/openapi.json`, then `npm run generate` in clients/typescript"
    )


def test_the_document_names_auth_operations_and_tags(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <API key>`, a session token (`prs_...`) or a JWT "
        "of the host app",
    }
    assert (schemes["ApiKeyAuth"]["in"], schemes["ApiKeyAuth"]["name"]) == ("header", "X-API-Key")
    operations = {
        (method, path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    ids = [operation["operationId"] for operation in operations.values()]
    assert len(ids) == len(set(ids))
    assert operations[("post", "/api/v1/runpod/generate")]["operationId"] == "generate"
    assert operations[("get", "/api/v1/runpod/jobs")]["operationId"] == "list_jobs"
    signed = "/api/v1/runpod/media/{image_id}"  # the signed URL is the credential: no key
    assert "security" not in operations[("get", signed)]
    for (_, path), operation in operations.items():
        if path.startswith("/api/v1/") and path != signed:
            assert operation["security"] == [{"BearerAuth": []}, {"ApiKeyAuth": []}], path
            assert operation["tags"][0] in {"jobs", "batches", "account", "admin"}, path
    stream = operations[("get", "/api/v1/runpod/jobs/{job_id}/events")]["responses"]["200"]
    data = stream["content"]["text/event-stream"]["itemSchema"]["properties"]["data"]
    assert data["contentSchema"] == {"$ref": "#/components/schemas/JobEventOut"}


def _nullable(schema: dict[str, Any]) -> bool:
    return any(option.get("type") == "null" for option in schema.get("anyOf", []))


def _allows_none(annotation: Any) -> bool:
    if annotation is Any:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return type(None) in get_args(annotation)
    return False


def _enum(schema: dict[str, Any], schemas: dict[str, Any]) -> set[str] | None:
    for option in [schema, *schema.get("anyOf", [])]:
        if "$ref" in option:
            option = schemas[option["$ref"].rsplit("/", 1)[1]]
        if "enum" in option:
            return set(option["enum"])
        if "const" in option:
            return {option["const"]}
    return None


def _literal_values(annotation: Any) -> set[str] | None:
    for candidate in [annotation, *get_args(annotation)]:
        if get_origin(candidate) is Literal:
            return set(get_args(candidate))
        if candidate is JobStatus:
            return {status.value for status in JobStatus}
    return None


@pytest.mark.parametrize("schema_name", sorted(SCHEMAS))
def test_python_models_are_the_documents_schemas(
    schema_name: str, document: dict[str, Any]
) -> None:
    schemas = document["components"]["schemas"]
    schema, model = schemas[schema_name], SCHEMAS[schema_name]
    properties, required = schema["properties"], set(schema.get("required", []))
    assert set(model.model_fields) == set(properties), (
        f"{model.__name__} vs {schema_name}: only in the SDK "
        f"{sorted(set(model.model_fields) - set(properties))}, only in the API "
        f"{sorted(set(properties) - set(model.model_fields))}"
    )
    for name, field in model.model_fields.items():
        assert field.is_required() == (name in required), f"{schema_name}.{name} required"
        if properties[name].keys() & {"type", "anyOf", "$ref", "enum", "const"}:  # else: any
            nullable = _nullable(properties[name])
            assert _allows_none(field.annotation) == nullable, f"{schema_name}.{name} null"
        assert _literal_values(field.annotation) == _enum(properties[name], schemas), name


def test_generation_options_are_the_requests(document: dict[str, Any]) -> None:
    request = document["components"]["schemas"]["GenerateRequest"]["properties"]
    assert set(GenerationOptions.__annotations__) == set(request) - {"prompt"}


def test_the_sdk_is_its_own_distribution() -> None:
    """Installed on its own (`pip install ./clients/python`): it imports nothing of the server."""
    package = CLIENTS / "python" / "podrelay_client"
    for source in package.glob("*.py"):
        text = source.read_text()
        assert "from app" not in text, source
        assert "import app" not in text, source
    assert (package / "py.typed").exists()
    assert Path(CLIENTS / "python" / "pyproject.toml").read_text().count("dependencies") == 1
