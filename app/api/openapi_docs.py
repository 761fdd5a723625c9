"""Examples in the OpenAPI document, shown as written (nulls included).

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
