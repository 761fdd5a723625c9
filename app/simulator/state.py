"""The simulator's parts wired together, plus live reconfiguration and reset."""

import copy
from collections.abc import Mapping
from typing import Any

from fastapi import Request

from app.simulator.config import SimulatorConfig
from app.simulator.counters import CounterBook
from app.simulator.endpoints import Endpoints
from app.simulator.engine import Engine
from app.simulator.faults import FaultInjector
from app.simulator.images import ImageRegistry
from app.simulator.ratelimit import SlidingWindowLimiter
from app.simulator.webhooks import WebhookSender
from app.simulator.worker import make_rng


class Simulator:
    def __init__(
        self, config: SimulatorConfig, endpoints: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        """Raises `endpoints.KnobError` if an endpoint's startup overrides are invalid."""
        self.config = config
        self._startup = config.model_copy(deep=True)
        self.endpoints = Endpoints(config, endpoints)
        self.counters = CounterBook()
        self.limiter = SlidingWindowLimiter()
        self.registry = ImageRegistry()
        # Separate streams per concern, so e.g. enabling webhooks does not shift fault rolls.
        self._rngs = {name: make_rng(None) for name in ("faults", "webhooks", "pool")}
        self._seed_rngs()
        self.faults = FaultInjector(self._rngs["faults"])
        self.webhooks = WebhookSender(config, self.counters, self._rngs["webhooks"])
        self.engine = Engine(
            self.endpoints,
            counters=self.counters,
            registry=self.registry,
            webhooks=self.webhooks,
            pool_rng=self._rngs["pool"],
        )

    def _seed_rngs(self) -> None:
        seed = self.config.random_seed
        for name, rng in self._rngs.items():
            rng.seed(None if seed is None else f"{seed}:{name}")

    async def start(self) -> None:
        await self.webhooks.start()

    async def stop(self) -> None:
        await self.engine.reset()
        await self.webhooks.aclose()

    def knobs(self, endpoint_id: str) -> SimulatorConfig:
        """The knobs an endpoint runs with: the global ones through its overrides, if any."""
        return self.endpoints.knobs(endpoint_id)

    def update_config(self, changes: dict[str, Any]) -> None:
        """Apply a partial update atomically: validate the merged result, then assign.

        Raises:
            pydantic.ValidationError: a knob is unknown or its value is invalid.
        """
        merged = SimulatorConfig.model_validate({**self.config.model_dump(), **changes})
        for name in changes:
            setattr(self.config, name, getattr(merged, name))
        self.engine.rescale()

    def configure_endpoint(
        self, endpoint_id: str, knobs: Mapping[str, Any], *, replace: bool
    ) -> None:
        """Set an endpoint's overrides (`replace`) or change some (None drops one); an endpoint
        configured for the first time gets its own workers, and its queued jobs move there.

        Raises:
            endpoints.KnobError: a bad endpoint id, a global or unknown knob, or a bad value.
        """
        if replace:
            self.endpoints.put(endpoint_id, knobs)
        else:
            self.endpoints.patch(endpoint_id, knobs)
        self.engine.rehome(endpoint_id)

    def delete_endpoint(self, endpoint_id: str) -> bool:
        """Back to the global knobs and the shared workers; False if it was not configured."""
        deleted = self.endpoints.delete(endpoint_id)
        self.engine.rehome(endpoint_id)
        return deleted

    async def reset(self) -> None:
        """Drop jobs, counters and rate-limit history; restore the startup knobs and endpoints."""
        for name in SimulatorConfig.model_fields:
            setattr(self.config, name, copy.deepcopy(getattr(self._startup, name)))
        self.endpoints.reset()
        self._seed_rngs()
        await self.engine.reset()
        await self.webhooks.cancel_all()
        self.counters.clear()
        self.limiter.clear()

    def public_base(self, request: Request) -> str:
        """Base URL for image links: the knob, else the URL the client reached us on."""
        base = self.config.public_url or str(request.base_url)
        return base.rstrip("/")
