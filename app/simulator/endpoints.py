"""Simulated endpoints: per-endpoint overrides of the knobs in `config.ENDPOINT_KNOBS`.

An endpoint id configured here reads the global `SimulatorConfig` through its overrides (a knob
it does not override follows the global one, live) and has its own workers and queue (see
`engine.Fleet`). An id nobody configured reads the global knobs and shares one pool of workers
with every other such id, as the simulator did before endpoints could be configured.
"""

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from app.simulator.config import ENDPOINT_KNOBS, SimulatorConfig

# One path segment, as RunPod's endpoint ids and route names are.
_ENDPOINT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class KnobError(ValueError):
    """Endpoint overrides with a bad endpoint id, a global or unknown knob, or a bad value."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details))
        self.details = details


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    """A validation error as JSON-ready dicts (loc, msg, type, input)."""
    details: list[dict[str, Any]] = json.loads(error.json(include_url=False, include_context=False))
    return details


def _not_per_endpoint(name: str) -> dict[str, Any]:
    if name in SimulatorConfig.model_fields:
        message = "a global knob: set it with PATCH /_sim/config (or --set)"
    else:
        message = f"unknown knob; per-endpoint knobs are {sorted(ENDPOINT_KNOBS)}"
    return {"loc": [name], "msg": message, "type": "endpoint_knob"}


class Endpoints:
    """The configured endpoints' overrides, and each endpoint's effective knobs."""

    def __init__(
        self, base: SimulatorConfig, startup: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        """Raises `KnobError` (its locations starting with the endpoint id) for a bad startup
        endpoint."""
        self.base = base
        self._overrides: dict[str, dict[str, Any]] = {}
        self._views: dict[str, tuple[int, SimulatorConfig]] = {}
        for endpoint_id, knobs in (startup or {}).items():
            try:
                self.put(endpoint_id, knobs)
            except KnobError as error:
                raise KnobError(
                    [{**detail, "loc": [endpoint_id, *detail["loc"]]} for detail in error.details]
                ) from None
        self._startup = copy.deepcopy(self._overrides)

    def ids(self) -> list[str]:
        return list(self._overrides)

    def configured(self, endpoint_id: str) -> bool:
        return endpoint_id in self._overrides

    def knobs(self, endpoint_id: str | None) -> SimulatorConfig:
        """The knobs serving `endpoint_id` (None or an unconfigured id: the global ones)."""
        overrides = self._overrides.get(endpoint_id) if endpoint_id is not None else None
        if not overrides:
            return self.base
        assert endpoint_id is not None
        view = self._views.get(endpoint_id)
        if view is None or view[0] != self.base.revision:
            # Shallow on purpose: a dict knob consumed in place (throttle_burst) stays one dict.
            view = (self.base.revision, self.base.model_copy(update=overrides))
            self._views[endpoint_id] = view
        return view[1]

    def put(self, endpoint_id: str, knobs: Mapping[str, Any]) -> None:
        """Configure an endpoint with exactly these overrides (creating it if needed).

        Raises:
            KnobError: a bad endpoint id, a knob that is global or unknown, or a bad value.
        """
        self._overrides[endpoint_id] = self._validated(endpoint_id, knobs)
        self._views.pop(endpoint_id, None)

    def patch(self, endpoint_id: str, changes: Mapping[str, Any]) -> None:
        """Change some overrides (creating the endpoint if needed); None drops an override.

        Raises:
            KnobError: as `put`.
        """
        merged = {**self._overrides.get(endpoint_id, {}), **changes}
        self.put(endpoint_id, {name: value for name, value in merged.items() if value is not None})

    def delete(self, endpoint_id: str) -> bool:
        """Forget an endpoint's overrides; False if it was not configured."""
        self._views.pop(endpoint_id, None)
        return self._overrides.pop(endpoint_id, None) is not None

    def reset(self) -> None:
        """Back to the endpoints configured at startup, with their startup overrides."""
        self._overrides = copy.deepcopy(self._startup)
        self._views.clear()

    def view(self, endpoint_id: str) -> dict[str, Any]:
        """What `GET /_sim/endpoints/{endpoint_id}` shows: overrides and effective knobs."""
        knobs = self.knobs(endpoint_id)
        return {
            "id": endpoint_id,
            "configured": self.configured(endpoint_id),
            "overrides": knobs.model_dump(
                mode="json", include=set(self._overrides.get(endpoint_id, {}))
            ),
            "knobs": knobs.model_dump(mode="json", include=set(ENDPOINT_KNOBS)),
        }

    def _validated(self, endpoint_id: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
        if not _ENDPOINT_ID.fullmatch(endpoint_id):
            message = "1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
            raise KnobError([{"loc": ["endpoint_id"], "msg": message, "type": "endpoint_id"}])
        misplaced = [_not_per_endpoint(name) for name in knobs if name not in ENDPOINT_KNOBS]
        if misplaced:
            raise KnobError(misplaced)
        try:
            merged = SimulatorConfig.model_validate({**self.base.model_dump(), **knobs})
        except ValidationError as error:
            raise KnobError(validation_details(error)) from None
        return {name: getattr(merged, name) for name in knobs}
