"""ASGI gate in front of the `/v2/{endpoint_id}/...` routes.

In order: count the call, add injected latency, check the API key, check the endpoint id,
inject 429/5xx faults, apply the rate limit; then record the status code of whatever answered.
Calls are counted per endpoint id, and latency and faults follow that endpoint's knobs.
"""

import hmac
import time

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.simulator.config import JOB_OPS, OPS, rate_limit_key
from app.simulator.errors import json_error, too_many_requests
from app.simulator.state import Simulator

_JOB_OPS = frozenset(JOB_OPS)
_PLAIN_OPS = frozenset(OPS) - _JOB_OPS


def route_of(path: str) -> tuple[str, str] | None:
    """Return (endpoint_id, operation) for an API path, or None for anything else."""
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "v2" or not parts[2]:
        return None
    op = parts[3]
    if (len(parts) == 4 and op in _PLAIN_OPS) or (len(parts) == 5 and op in _JOB_OPS and parts[4]):
        return parts[2], op
    return None


def api_key_of(scope: Scope) -> str | None:
    """Accept `Authorization: Bearer <key>` as well as the bare key the docs' curl sends."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, rest = value.decode("latin-1").strip().partition(" ")
            key = rest.strip() if scheme.lower() == "bearer" else f"{scheme} {rest}".strip()
            return key or None
    return None


class Gate:
    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = route_of(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        endpoint_id, op = route
        counters = self.sim.counters.of(endpoint_id)
        counters.calls[op] += 1

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counters.responses[op][message["status"]] += 1
            await send(message)

        refusal = await self._screen(scope, endpoint_id, op)
        await (refusal or self.app)(scope, receive, recording_send)

    async def _screen(self, scope: Scope, endpoint_id: str, op: str) -> Response | None:
        sim, config, knobs = self.sim, self.sim.config, self.sim.knobs(endpoint_id)
        await sim.faults.delay(op, knobs)
        key = api_key_of(scope)
        expected = config.api_key
        if key is None or (
            expected is not None and not hmac.compare_digest(key.encode(), expected.encode())
        ):
            return json_error(401, "unauthorized: missing or invalid API key")
        if config.endpoint_ids is not None and endpoint_id not in config.endpoint_ids:
            return json_error(404, "endpoint not found")
        injected = sim.faults.rejection(op, knobs)
        if injected is not None:
            return injected
        bucket = rate_limit_key(op)
        retry_after = sim.limiter.hit(
            f"{endpoint_id}/{bucket}",
            limit=config.rate_limits.get(bucket, 0),
            window_s=config.rate_limit_window_s,
            now=time.monotonic(),
        )
        if retry_after is not None:
            return too_many_requests(retry_after, with_header=config.retry_after_header)
        return None
