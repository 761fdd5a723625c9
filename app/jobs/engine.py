"""Everything a process needs to move jobs: settings, database, RunPod client, media store.

One `JobEngine` per process. Its async parts run on one event loop (the worker's background
loop, or the API's), which owns the RunPod client and the download client.
"""

import asyncio
from dataclasses import dataclass, field

import httpx

from app.core.allowance import Allowance
from app.core.batching import GroupRunner
from app.core.config import Settings
from app.core.db import Database
from app.core.gate import IntervalGate
from app.core.metrics import observe_runpod_attempt
from app.core.slots import LatencySizedSlots
from app.media import open_store
from app.media.store import MediaStore
from app.runpod import RunPodClient
from app.runpod.client import DEFAULT_MAX_CONNECTIONS, IDLE_CONNECTION_S
from app.scheduler.routes import Catalogue, Endpoint
from app.services.runpod_client import endpoint_client

# The most RunPod calls in flight per process: as many as the client keeps connections for.
RUNPOD_CONCURRENCY = DEFAULT_MAX_CONNECTIONS
# The most image downloads in flight per process (`app.jobs.media`), each on a kept-alive
# connection.
DOWNLOAD_CONCURRENCY = 16
# Fewest calls in flight whatever their speed (`app.core.slots`).
_SLOTS_FLOOR = 4


@dataclass
class JobEngine:
    settings: Settings
    db: Database
    store: MediaStore
    gate: IntervalGate
    allowance: Allowance
    _clients: dict[str, RunPodClient] = field(default_factory=dict, init=False)
    _http: httpx.AsyncClient | None = field(default=None, init=False)
    _slots: LatencySizedSlots | None = field(default=None, init=False)
    _download_slots: LatencySizedSlots | None = field(default=None, init=False)
    _tick_lock: asyncio.Lock | None = field(default=None, init=False)
    # Passes of `app.jobs.media.store_images_of`, on the engine's loop.
    image_passes: GroupRunner[list[str], None] | None = field(default=None, init=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> "JobEngine":
        return cls(
            settings=settings,
            db=Database(settings.database_url),
            store=open_store(settings),
            gate=IntervalGate(redis_url=settings.redis_url, folder=settings.data_dir / "gates"),
            allowance=Allowance(redis_url=settings.redis_url, folder=settings.data_dir / "gates"),
        )

    @property
    def catalogue(self) -> Catalogue:
        return self.settings.catalogue

    @property
    def endpoint(self) -> Endpoint:
        """The default route's first endpoint: RUNPOD_URL's without a routes file."""
        return self.catalogue.routes[self.catalogue.default].endpoints[0]

    @property
    def runpod(self) -> RunPodClient:
        """The client of `endpoint` (connection tests, queue statistics)."""
        return self.client(self.endpoint.id)

    def client(self, endpoint_id: str | None) -> RunPodClient:
        """The RunPod client of an endpoint of the catalogue (of `endpoint` for an unknown or
        missing id), created on first use inside the engine's event loop."""
        endpoint = self.catalogue.endpoint(endpoint_id or "") or self.endpoint
        client = self._clients.get(endpoint.id)
        if client is None:
            client = self._clients[endpoint.id] = endpoint_client(self.settings, endpoint)
            client.on_attempt = observe_runpod_attempt
        return client

    @property
    def runpod_slots(self) -> LatencySizedSlots:
        """Bounds concurrent RunPod calls to what RunPod's allowances (/run and /status, of
        every endpoint) need at the observed latency, and at most to the client's connection
        pool, so a burst (thousands of polls or cancels) queues here instead of timing out in
        the pool."""
        if self._slots is None:
            settings = self.settings
            self._slots = LatencySizedSlots(
                rate=self._per_second(
                    settings.runpod_run_rate_limit + settings.runpod_status_rate_limit
                ),
                floor=_SLOTS_FLOOR,
                ceiling=RUNPOD_CONCURRENCY,
            )
        return self._slots

    @property
    def download_slots(self) -> LatencySizedSlots:
        """Bounds concurrent image downloads to what results arriving at RunPod's /run
        allowance need at the observed download time."""
        if self._download_slots is None:
            self._download_slots = LatencySizedSlots(
                rate=self._per_second(self.settings.runpod_run_rate_limit),
                floor=_SLOTS_FLOOR,
                ceiling=DOWNLOAD_CONCURRENCY,
            )
        return self._download_slots

    def _per_second(self, allowance: int) -> float:
        """An allowance per RunPod window and endpoint, as calls per second to all endpoints."""
        endpoints = len(self.catalogue.endpoints)
        return allowance / self.settings.runpod_status_rate_window * endpoints

    @property
    def tick_lock(self) -> asyncio.Lock:
        """Held by the tracker's tick, so ticks of one process never overlap."""
        if self._tick_lock is None:
            self._tick_lock = asyncio.Lock()
        return self._tick_lock

    @property
    def http(self) -> httpx.AsyncClient:
        """The client that downloads result images from workers' URLs."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(60.0, connect=10.0),
                follow_redirects=True,
                limits=httpx.Limits(
                    max_connections=DOWNLOAD_CONCURRENCY,
                    max_keepalive_connections=DOWNLOAD_CONCURRENCY,
                    keepalive_expiry=IDLE_CONNECTION_S,
                ),
            )
        return self._http

    def webhook_url(self, token: str) -> str | None:
        base = self.settings.webhook_base_url
        return f"{base}/webhooks/runpod/{token}" if base else None

    def next_check_delay(self, polls: int) -> float:
        """Seconds until a job RunPod holds is read there again, after `polls` reads: a safety
        poll when its webhook will tell, else soon after submission, backing off to the
        configured interval."""
        settings = self.settings
        if settings.webhook_base_url:
            return settings.webhook_safety_poll
        return min(settings.runpod_poll_interval, 1.0 * 1.5 ** min(polls, 20))

    async def aclose(self) -> None:
        """Close its clients and the database's connections (it can be used again)."""
        await self.allowance.aclose()
        await self.db.adispose()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self._slots = self._download_slots = None
        self._tick_lock = self.image_passes = None
