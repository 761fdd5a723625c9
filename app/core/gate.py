"""A gate that lets a named periodic action through at most once per interval, machine-wide
(a file lock) or cluster-wide (Redis), so overlapping schedulers cannot multiply its rate."""

import fcntl
import time
from pathlib import Path

import redis
from loguru import logger


class IntervalGate:
    def __init__(self, *, redis_url: str | None, folder: Path) -> None:
        self._redis = redis.Redis.from_url(redis_url) if redis_url else None
        self._folder = folder

    def try_pass(self, name: str, interval_s: float) -> bool:
        """True for the first caller in each interval, False for everyone else."""
        if self._redis is not None:
            try:
                key = f"podrelay:gate:{name}"
                return bool(self._redis.set(key, b"1", nx=True, px=max(1, int(interval_s * 1000))))
            except redis.RedisError as error:
                logger.warning("gate {} unavailable: {}", name, error)
                return False
        self._folder.mkdir(parents=True, exist_ok=True)
        with (self._folder / f"{name}.gate").open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            try:
                last = float(handle.read() or 0)
            except ValueError:
                last = 0.0
            now = time.time()
            if now - last < interval_s:
                return False
            handle.seek(0)
            handle.truncate()
            handle.write(repr(now))
            return True
