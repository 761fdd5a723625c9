"""Per-caller request budgets per fixed window: one for creating jobs (`creates_per_minute`,
600 by default) and one for reads and every other call (`requests_per_minute`, 3,000), as
Replicate's are; so a client polling a job's status never spends what it needs to submit, and a
burst of submissions never stops it from reading. A Server-Sent Events stream counts once, when
it opens, not per event.

A caller is its owner (an API key's id, an end user's or a JWT user's owner), or for anonymous
requests `anonymous:<client IP>`. A window opens with the caller's first request and lasts
60 s; every request in it counts, and past the budget the answer is 429 `rate_limited` with
`Retry-After` until it closes.
Fixed windows can let up to twice the budget through around a window's end; they are exact,
cheap, and tell the client precisely when to come back.

With `REDIS_URL` the counters live in Redis (one atomic script per caller for each group of
concurrent requests), shared by every API process. Without it they live in this process's
memory, so each API process (`uvicorn --workers N`, replicas) grants the full budget on its
own. When Redis fails, the process falls back to its memory counters rather than refusing or
waving requests through.

The API counts requests and sends the state of the window as headers
(`app.api.ratelimit`).
"""

import asyncio
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum
from threading import Lock
from typing import Protocol

import redis.asyncio as aioredis
from loguru import logger
from redis.exceptions import RedisError

from app.core.batching import GroupRunner
from app.core.config import Settings
from app.core.errors import RateLimited

WINDOW_S = 60
REDIS_PREFIX = "podrelay:ratelimit:"
HEADER_NAMES = ("RateLimit", "RateLimit-Policy")
_REDIS_TIMEOUT_S = 1.0
_WARN_EVERY_S = 60.0

# INCRBY the requests counted at once, and set the window's expiry when the counter is new
# (or somehow lost its expiry).
_HIT_SCRIPT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


class Budget(StrEnum):
    """Which per-minute budget a request counts against (its `RateLimit-Policy` name)."""

    CREATE = "create"
    READ = "read"


@dataclass(frozen=True)
class Hit:
    """The state of a caller's window after counting one request."""

    limit: int
    count: int
    reset_s: int  # whole seconds until the window closes (at least 1)

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    def headers(self, budget: Budget) -> dict[str, str]:
        """The draft's structured fields (draft-ietf-httpapi-ratelimit-headers)."""
        return {
            "RateLimit": f'"{budget}";r={self.remaining};t={self.reset_s}',
            "RateLimit-Policy": f'"{budget}";q={self.limit};w={WINDOW_S}',
        }


class RateLimiter(Protocol):
    async def hit(self, caller_key: str, limit: int) -> Hit: ...

    async def hits(self, requests: list[tuple[str, int]]) -> list[Hit]:
        """`hit` for many (caller key, limit) requests at once, in order."""
        ...

    async def aclose(self) -> None: ...


class MemoryRateLimiter:
    """Counters in this process's memory (the event loop thread; a lock for thread safety)."""

    def __init__(self, *, window_s: float = WINDOW_S, max_callers: int = 100_000) -> None:
        self._window_s = window_s
        self._max_callers = max_callers
        self._windows: dict[str, tuple[float, int]] = {}  # caller -> (closes at, count)
        self._lock = Lock()
        self._next_sweep = 0.0

    async def hit(self, caller_key: str, limit: int) -> Hit:
        now = time.monotonic()
        with self._lock:
            if now >= self._next_sweep or len(self._windows) >= self._max_callers:
                self._sweep(now)
            closes_at, count = self._windows.get(caller_key, (0.0, 0))
            if closes_at <= now:
                closes_at, count = now + self._window_s, 0
            count += 1
            self._windows[caller_key] = (closes_at, count)
        return Hit(limit=limit, count=count, reset_s=max(1, math.ceil(closes_at - now)))

    async def hits(self, requests: list[tuple[str, int]]) -> list[Hit]:
        return [await self.hit(caller_key, limit) for caller_key, limit in requests]

    def _sweep(self, now: float) -> None:
        self._windows = {key: value for key, value in self._windows.items() if value[0] > now}
        self._next_sweep = now + self._window_s

    async def aclose(self) -> None:
        self._windows.clear()


class RedisRateLimiter:
    """Counters in Redis, shared by all API processes; memory counters while Redis fails.

    The requests of one caller that arrive while a count is on its way to Redis are counted
    together by the next script call, each still getting its own place in the window."""

    def __init__(self, redis_url: str, *, window_s: int = WINDOW_S) -> None:
        self._redis = aioredis.Redis.from_url(
            redis_url,
            socket_timeout=_REDIS_TIMEOUT_S,
            socket_connect_timeout=_REDIS_TIMEOUT_S,
        )
        self._script = self._redis.register_script(_HIT_SCRIPT)
        self._window_ms = window_s * 1000
        self._fallback = MemoryRateLimiter(window_s=window_s)
        self._warned_at = -math.inf
        self._groups: GroupRunner[tuple[str, int], Hit] = GroupRunner(self.hits)

    async def hit(self, caller_key: str, limit: int) -> Hit:
        return await self._groups.run((caller_key, limit))

    async def hits(self, requests: list[tuple[str, int]]) -> list[Hit]:
        positions: dict[str, list[int]] = defaultdict(list)
        for position, (caller_key, _) in enumerate(requests):
            positions[caller_key].append(position)
        hits: dict[int, Hit] = {}

        async def count_caller(caller_key: str, at: list[int]) -> None:
            try:
                total, ttl_ms = await self._script(
                    keys=[REDIS_PREFIX + caller_key], args=[self._window_ms, len(at)]
                )
            except (RedisError, OSError) as error:
                self._warn(error)
                for position in at:
                    hits[position] = await self._fallback.hit(caller_key, requests[position][1])
                return
            reset_s = max(1, math.ceil(int(ttl_ms) / 1000))
            first = int(total) - len(at) + 1
            for offset, position in enumerate(at):
                hits[position] = Hit(requests[position][1], first + offset, reset_s)

        await asyncio.gather(*(count_caller(key, at) for key, at in positions.items()))
        return [hits[position] for position in range(len(requests))]

    def _warn(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            logger.warning("rate limits fall back to this process's memory: {}", error)

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self._fallback.aclose()


def rate_limiter_from_settings(settings: Settings) -> RateLimiter:
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url)
    return MemoryRateLimiter()


def counter_key(budget: Budget, caller_key: str) -> str:
    return f"{budget}:{caller_key}"


def over_limit(hit: Hit, budget: Budget) -> RateLimited | None:
    """The refusal of a request its count put over the caller's limit."""
    if hit.allowed:
        return None
    what = "job submissions" if budget is Budget.CREATE else "requests"
    return RateLimited(
        f"over {hit.limit} {what} per minute; retry in {hit.reset_s} s",
        retry_after=hit.reset_s,
        headers={**hit.headers(budget), "Retry-After": str(hit.reset_s)},
    )
