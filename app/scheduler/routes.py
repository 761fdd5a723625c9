"""Routes and their endpoints: a route is what a request asks for by `model`, served by one or
more RunPod endpoints of one worker kind. The catalogue comes from ROUTES_FILE (TOML, see
routes.example.toml); without one, RUNPOD_URL and RUNPOD_API_KEY make the one route, `default`.

    [routes.sdxl]
    kind = "sdxl"                     # sdxl, comfyui, a1111, flux or custom
    default = true                    # the route of a request that names no model
    price_per_second = 0.00044        # USD per GPU second (default: GPU_PRICE_PER_SECOND)
    max_queue_delay = 60              # s a job may wait in an endpoint's queue before failover
    fallbacks = ["flux"]              # routes that take its jobs when none of its endpoints can
    defaults = { width = 1024, height = 1024 }
    bounds = { max_width = 1536, max_steps = 50, max_images = 2 }

    [[routes.sdxl.endpoints]]
    url = "https://api.runpod.ai/v2/abc123"   # or id = "abc123"
    api_key_env = "RUNPOD_API_KEY"            # the variable that holds its API key
    weight = 2
    max_in_flight = 0                         # 0: from its /health (MAX_IN_FLIGHT applies)

A `comfyui` route names its workflow (`workflow = "workflows/sdxl.json"`), a `custom` route its
input template (`template = "inputs/mine.json"`), relative to the routes file; both are JSON
with placeholders (`app.jobs.inputs`). A bad file stops start-up with one line naming the file,
the route and the field.
"""

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.services.generation_defaults import GenerationParams

DEFAULT_ROUTE = "default"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ENDPOINT_URL = re.compile(r"^(?P<base>https?://[^/\s]+(?:/[^\s]*)?/v2)/(?P<ep>[\w-]+)/?$")
RUNPOD_BASE = "https://api.runpod.ai/v2"


class WorkerKind(StrEnum):
    SDXL = "sdxl"  # runpod-workers/worker-sdxl
    COMFYUI = "comfyui"  # runpod-workers/worker-comfyui: a workflow with placeholders
    A1111 = "a1111"  # runpod-workers/worker-a1111: Automatic1111's txt2img parameters
    FLUX = "flux"  # RunPod's FLUX endpoints
    CUSTOM = "custom"  # a JSON input template with placeholders


class Bounds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_width: int = Field(2048, ge=256, le=2048)
    max_height: int = Field(2048, ge=256, le=2048)
    max_steps: int = Field(150, ge=1, le=150)
    max_images: int = Field(4, ge=1, le=4)


class EndpointConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, pattern=r"^[\w-]+$")
    url: str | None = None
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    weight: float = Field(1.0, gt=0, le=100)
    max_in_flight: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_address(self) -> "EndpointConfig":
        if (self.id is None) == (self.url is None):
            raise ValueError("give exactly one of `id` and `url`")
        if self.url is not None and not _ENDPOINT_URL.match(self.url):
            raise ValueError("`url` must look like https://api.runpod.ai/v2/<endpoint id>")
        return self


class RouteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: WorkerKind = WorkerKind.SDXL
    endpoints: list[EndpointConfig] = Field(min_length=1)
    default: bool = False
    workflow: Path | None = None
    template: Path | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    bounds: Bounds = Field(default_factory=Bounds)
    price_per_second: float | None = Field(None, ge=0)
    max_queue_delay: float = Field(60.0, gt=0)
    fallbacks: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _template_for_kind(self) -> "RouteConfig":
        GenerationParams.model_validate(self.defaults)  # known fields with valid values
        if self.kind is WorkerKind.COMFYUI and self.workflow is None:
            raise ValueError("a comfyui route needs `workflow`, a workflow JSON file")
        if self.kind is WorkerKind.CUSTOM and self.template is None:
            raise ValueError("a custom route needs `template`, an input JSON file")
        return self


@dataclass(frozen=True)
class Endpoint:
    """A RunPod endpoint jobs are dispatched to, on behalf of one route."""

    id: str
    route: str
    base_url: str = RUNPOD_BASE
    api_key: str = field(default="", repr=False)
    weight: float = 1.0
    max_in_flight: int = 0  # 0: from its /health


@dataclass(frozen=True)
class Route:
    name: str
    kind: WorkerKind
    endpoints: tuple[Endpoint, ...]
    template: Any = None  # the workflow or input template (parsed JSON), for comfyui/custom
    defaults: Mapping[str, Any] = field(default_factory=dict)
    bounds: Bounds = field(default_factory=Bounds)
    price_per_second: float | None = None
    max_queue_delay_s: float = 60.0
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalogue:
    routes: Mapping[str, Route]
    default: str

    @property
    def endpoints(self) -> list[Endpoint]:
        return [endpoint for route in self.routes.values() for endpoint in route.endpoints]

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.id == endpoint_id), None)

    def fallen_back_from(self, route: str) -> list[str]:
        """The routes that fall back on `route`."""
        return [name for name, other in self.routes.items() if route in other.fallbacks]


class RoutesFileError(ValueError):
    """The routes file cannot be used; the message is one line naming the file and the field."""


def single_route(base_url: str, endpoint_id: str, api_key: str) -> Catalogue:
    """The catalogue without a routes file: RUNPOD_URL's endpoint as the route `default`."""
    endpoint = Endpoint(id=endpoint_id, route=DEFAULT_ROUTE, base_url=base_url, api_key=api_key)
    route = Route(name=DEFAULT_ROUTE, kind=WorkerKind.SDXL, endpoints=(endpoint,))
    return Catalogue(routes={DEFAULT_ROUTE: route}, default=DEFAULT_ROUTE)


def load_catalogue(
    path: Path,
    *,
    environ: Mapping[str, str] | None = None,
    fallback_key: str = "",
    simulator_base: str | None = None,
) -> Catalogue:
    """Read and check a routes file; raises `RoutesFileError`. An endpoint without
    `api_key_env` uses `fallback_key` (RUNPOD_API_KEY, or the simulator's). With
    `simulator_base` (no RunPod configured), the endpoints named by `id` are the local
    simulator's, on the simulator's key."""
    environ = os.environ if environ is None else environ
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise RoutesFileError(f"{path}: {error}") from None
    unknown = set(document) - {"routes"}
    if unknown or not isinstance(document.get("routes"), dict) or not document["routes"]:
        raise RoutesFileError(f"{path}: expected one or more [routes.<name>] tables")
    routes: dict[str, Route] = {}
    for name, table in document["routes"].items():
        if not _NAME.fullmatch(name):
            raise RoutesFileError(f"{path}: route {name!r}: names are a-z, 0-9, '.', '_', '-'")
        try:
            config = RouteConfig.model_validate(table)
        except ValidationError as error:
            raise RoutesFileError(f"{path}: route {name!r}: {_first(error)}") from None
        routes[name] = _route(path, name, config, environ, fallback_key, simulator_base)
    return Catalogue(routes=routes, default=_check_links(path, routes, document["routes"]))


def _route(
    path: Path,
    name: str,
    config: RouteConfig,
    environ: Mapping[str, str],
    fallback_key: str,
    simulator_base: str | None,
) -> Route:
    endpoints = []
    for index, item in enumerate(config.endpoints):
        if item.url is not None:
            match = _ENDPOINT_URL.match(item.url)
            assert match is not None
            base_url, endpoint_id = match["base"], match["ep"]
        else:
            base_url, endpoint_id = simulator_base or RUNPOD_BASE, str(item.id)
        key = fallback_key
        if item.api_key_env is not None and not (simulator_base and item.url is None):
            key = environ.get(item.api_key_env, "")
            if not key:
                where = f"endpoints.{index}.api_key_env: {item.api_key_env}"
                raise RoutesFileError(f"{path}: route {name!r}: {where} is not set")
        endpoints.append(
            Endpoint(
                id=endpoint_id,
                route=name,
                base_url=base_url,
                api_key=key,
                weight=item.weight,
                max_in_flight=item.max_in_flight,
            )
        )
    source = config.workflow or config.template
    return Route(
        name=name,
        kind=config.kind,
        endpoints=tuple(endpoints),
        template=_template(path, name, source) if source else None,
        defaults=config.defaults,
        bounds=config.bounds,
        price_per_second=config.price_per_second,
        max_queue_delay_s=config.max_queue_delay,
        fallbacks=tuple(config.fallbacks),
    )


def _template(path: Path, name: str, source: Path) -> Any:
    file = source if source.is_absolute() else path.parent / source
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise RoutesFileError(f"{path}: route {name!r}: {source}: {error}") from None


def _check_links(path: Path, routes: Mapping[str, Route], tables: Mapping[str, Any]) -> str:
    """Fallbacks name routes; endpoint ids are unique; returns the default route."""
    seen: dict[str, str] = {}
    for name, route in routes.items():
        for other in route.fallbacks:
            if other not in routes or other == name:
                raise RoutesFileError(f"{path}: route {name!r}: fallbacks: no route {other!r}")
        for endpoint in route.endpoints:
            if endpoint.id in seen:
                raise RoutesFileError(
                    f"{path}: route {name!r}: endpoints: {endpoint.id} is also in "
                    f"route {seen[endpoint.id]!r}"
                )
            seen[endpoint.id] = name
    defaults = [name for name, table in tables.items() if table.get("default")]
    if len(defaults) > 1:
        raise RoutesFileError(f"{path}: route {defaults[1]!r}: default: only one route may be")
    return defaults[0] if defaults else next(iter(routes))


def _first(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
