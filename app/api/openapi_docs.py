"""The OpenAPI document: operation ids, tags, and examples shown as written (nulls included).

Generated clients (clients/typescript, and whoever generates their own) name their methods
after the operation ids, so each is the route function's name (`generate`, `list_jobs`), not
FastAPI's default of name, path and method.

FastAPI encodes the document with `exclude_none`, which also drops every null inside an
example: a job example would lose `batch_id`, `error` and the other fields that are required
but null, and show an answer the API never sends. `keep_example_nulls` puts the examples back.
"""

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

_JSON = "application/json"

TAGS = [
    {"name": "jobs", "description": "Start, follow, cancel and list generations."},
    {"name": "batches", "description": "Up to 10 generations under one batch."},
    {"name": "account", "description": "The caller's usage."},
    {"name": "admin", "description": "Admin API keys only: RunPod's connection and queues."},
    {"name": "webhooks", "description": "Receivers of RunPod's webhooks."},
    {"name": "operations", "description": "Probes and metrics."},
]


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to `model`'s component (which `add_components` adds to the document)."""
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def add_components(application: FastAPI, *models: type[BaseModel]) -> None:
    """Add `models` to the document's components: answers FastAPI does not see as models, such
    as problem details and the events of a stream, refer to them with `schema_ref`."""
    build = application.openapi

    def openapi() -> dict[str, Any]:
        fresh = application.openapi_schema is None
        document = build()  # FastAPI caches it on the application
        if fresh:
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(
                    mode="serialization", ref_template="#/components/schemas/{model}"
                )
                for name, nested in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, nested)
                schemas[model.__name__] = schema
        return document

    application.openapi = openapi  # type: ignore[method-assign]


def operation_id(route: APIRoute) -> str:
    """The route function's name; FastAPI warns when two operations share one."""
    return route.name


def json_example(value: Any, description: str | None = None) -> dict[str, Any]:
    """A `responses=` entry that shows `value` as the JSON answer."""
    entry: dict[str, Any] = {"content": {_JSON: {"example": value}}}
    if description is not None:
        entry["description"] = description
    return entry


def keep_example_nulls(application: FastAPI) -> None:
    """Rewrite the examples of `application`'s OpenAPI document from their sources: the models'
    `json_schema_extra`, the routes' `responses=` and `openapi_extra`."""
    build = application.openapi

    def openapi() -> dict[str, Any]:
        fresh = application.openapi_schema is None
        document = build()  # FastAPI caches it on the application
        if fresh:
            _restore(document, application)
        return document

    application.openapi = openapi  # type: ignore[method-assign]


def _routes(application: FastAPI) -> Iterator[Any]:
    for context in iter_route_contexts(application.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            yield context


def _restore(document: dict[str, Any], application: FastAPI) -> None:
    schemas = document.get("components", {}).get("schemas", {})
    for route in _routes(application):
        models = [
            route.response_model,
            *(answer.get("model") for answer in route.responses.values()),
        ]
        models += [body.field_info.annotation for body in route.dependant.body_params]
        for model in models:
            if isinstance(model, type) and issubclass(model, BaseModel):
                extra = model.model_config.get("json_schema_extra")
                if isinstance(extra, dict) and "examples" in extra and model.__name__ in schemas:
                    schemas[model.__name__]["examples"] = extra["examples"]
        for method in route.methods:
            operation = document["paths"][route.path_format][method.lower()]
            for code, answer in route.responses.items():
                _copy_examples(answer, operation["responses"][str(code)])
            if "requestBody" in (route.openapi_extra or {}):
                _copy_examples(route.openapi_extra["requestBody"], operation["requestBody"])


def _copy_examples(source: dict[str, Any], target: dict[str, Any]) -> None:
    for media_type, media in source.get("content", {}).items():
        if "example" in media:
            target["content"][media_type]["example"] = media["example"]
