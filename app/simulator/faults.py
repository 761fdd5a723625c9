"""HTTP-level fault injection: injected 5xx/429 answers, added latency and lost responses.

Injected errors and throttles answer before the route runs, so they have no side effects.
A lost response is the opposite: the job is accepted and only the answer goes missing.
Each call reads the knobs of the endpoint it addresses.
"""

import asyncio
import random

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from app.simulator.config import SimulatorConfig
from app.simulator.errors import json_error, too_many_requests

_TEXT_BODIES = {
    500: "Internal Server Error",
    502: "error code: 502",
    503: "upstream connect error or disconnect/reset before headers. reset reason: overflow",
}


class FaultInjector:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def _roll(self, rate: float) -> bool:
        # Zero rates draw nothing, so enabling one fault does not reshuffle the others' rolls.
        return rate > 0 and self._rng.random() < rate

    async def delay(self, op: str, config: SimulatorConfig) -> None:
        latency_ms = config.latency_ms.get(op, 0)
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)

    def rejection(self, op: str, config: SimulatorConfig) -> Response | None:
        """Return an injected 429 or 5xx answer for this call, or None to let it through."""
        burst = config.throttle_burst.get(op, 0)
        if burst > 0:
            config.throttle_burst[op] = burst - 1
            return too_many_requests(1, with_header=config.retry_after_header)
        if self._roll(config.error_rates.get(op, 0.0)):
            status = self._rng.choice([500, 502, 503])
            if self._rng.random() < 0.5:
                return PlainTextResponse(_TEXT_BODIES[status], status_code=status)
            return JSONResponse({"error": _TEXT_BODIES[status]}, status_code=status)
        if self._roll(config.throttle_rates.get(op, 0.0)):
            return too_many_requests(1, with_header=config.retry_after_header)
        return None

    async def lost_response(self, config: SimulatorConfig) -> Response | None:
        """Replace the answer to an accepted submission with a gateway error, if rolled."""
        if not self._roll(config.drop_run_response_rate):
            return None
        if config.drop_mode == "hang":
            await asyncio.sleep(config.hang_s)
            return PlainTextResponse("upstream request timeout", status_code=504)
        return json_error(502, "bad gateway")
