"""Per-bucket rolling-window rate limiting, as RunPod counts requests per 10 s."""

from collections import deque


class SlidingWindowLimiter:
    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}

    def clear(self) -> None:
        self._hits.clear()

    def hit(self, key: str, *, limit: int, window_s: float, now: float) -> float | None:
        """Admit and record a call, or return the seconds until the window has room again.

        A limit of 0 means unlimited; refused calls are not recorded.
        """
        if limit <= 0:
            return None
        hits = self._hits.setdefault(key, deque())
        cutoff = now - window_s
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= limit:
            return hits[0] + window_s - now
        hits.append(now)
        return None
