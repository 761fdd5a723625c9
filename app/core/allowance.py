"""A rate limit shared by every process that spends it: a token bucket per name.

RunPod limits each endpoint's /run calls per 10 s window, counted across every caller, so the
workers of one deployment must share one allowance. With Redis the bucket lives there (one
script call takes tokens, timed by Redis' own clock); without it, in a file under DATA_DIR
guarded by a lock, which every process on this machine shares.

A bucket refilled at `rate` per second and holding at most `burst` lets through at most
`burst + rate * T` in any span of T seconds; `Bucket.within` picks the two so that no window of
a provider's limit is ever exceeded.
"""

import asyncio
import fcntl
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from loguru import logger
from redis.exceptions import RedisError

_PREFIX = "podrelay:allowance:"
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate, burst, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.max(0, math.min(wanted, math.floor(tokens)))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return granted
"""


@dataclass(frozen=True)
class Bucket:
    rate: float  # tokens per second
    burst: float  # the most held at once

    @classmethod
    def within(cls, limit: int, window_s: float, *, share: float = 0.95) -> "Bucket":
        """A bucket that spends `share` of `limit` per `window_s` and never more than `limit` in
        any window: the rest of the limit is its burst."""
        return cls(rate=limit * share / window_s, burst=max(1.0, limit * (1 - share)))


class Allowance:
    """Shared token buckets; `take` never blocks for more than one Redis call or file lock."""

    def __init__(self, *, redis_url: str | None, folder: Path) -> None:
        self._redis = aioredis.Redis.from_url(redis_url) if redis_url else None
        self._script = self._redis.register_script(_TAKE) if self._redis else None
        self._folder = folder

    async def take(self, name: str, wanted: int, bucket: Bucket) -> int:
        """Up to `wanted` tokens of bucket `name`; returns how many were granted (maybe 0)."""
        if wanted <= 0:
            return 0
        if self._script is None:
            return await asyncio.to_thread(self._take_from_file, name, wanted, bucket)
        try:
            granted = await self._script(
                keys=[_PREFIX + name], args=[bucket.rate, bucket.burst, wanted]
            )
        except (RedisError, OSError) as error:
            # Spending nothing while Redis is away keeps RunPod's limit; the work waits.
            logger.warning("allowance {} unavailable: {}", name, error)
            return 0
        return int(granted)

    async def refund(self, name: str, tokens: int, bucket: Bucket) -> None:
        """Give back tokens taken but not spent."""
        if tokens <= 0:
            return
        if self._redis is None:
            await asyncio.to_thread(self._take_from_file, name, -tokens, bucket)
            return
        try:
            await self._redis.hincrbyfloat(_PREFIX + name, "tokens", tokens)
        except (RedisError, OSError) as error:
            logger.warning("allowance {} unavailable: {}", name, error)

    async def acquire(self, name: str, wanted: int, bucket: Bucket) -> None:
        """Wait until `wanted` tokens were taken, a share at a time."""
        needed = wanted
        while needed > 0:
            needed -= await self.take(name, min(needed, math.floor(bucket.burst)), bucket)
            if needed > 0:
                await asyncio.sleep(min(1.0, needed / bucket.rate))

    def _take_from_file(self, name: str, wanted: int, bucket: Bucket) -> int:
        self._folder.mkdir(parents=True, exist_ok=True)
        with (self._folder / f"{name}.bucket").open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            now = time.time()
            try:
                state = json.loads(handle.read() or "{}")
            except ValueError:
                state = {}
            tokens = float(state.get("tokens", bucket.burst))
            elapsed = max(0.0, now - float(state.get("at", now)))
            tokens = min(bucket.burst, tokens + elapsed * bucket.rate)
            granted = wanted if wanted < 0 else max(0, min(wanted, math.floor(tokens)))
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"tokens": min(bucket.burst, tokens - granted), "at": now}))
            return granted

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
