"""Run the simulator with uvicorn: in a background thread for tests, or blocking for the CLI."""

import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn

from app.simulator.app import create_app
from app.simulator.config import SimulatorConfig

_START_TIMEOUT_S = 15.0


class SimulatorServer:
    """A simulator on 127.0.0.1 served from a daemon thread; `port=0` picks a free port.

    `endpoints` configures endpoints at startup (id -> overrides, as `create_app` takes them).
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        endpoints: Mapping[str, Mapping[str, Any]] | None = None,
        port: int = 0,
    ) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self._endpoints = endpoints
        self._requested_port = port
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._admin: httpx.Client | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """RunPod-style base: `{base_url}/{endpoint_id}/run` and so on."""
        return f"{self.url}/v2"

    def start(self) -> None:
        """Start serving and return once the server answers HTTP."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        app = create_app(self.config, self._endpoints)  # raises before a socket is bound
        # Binding here, not in uvicorn, makes the port known before the thread starts.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._requested_port))
        self._port = sock.getsockname()[1]
        uv_config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
            backlog=4096,
        )
        self._server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="podrelay-sim", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError("the simulator failed to start")
            time.sleep(0.01)
        # One client for the admin helpers: building an httpx.Client per call costs ~30 ms.
        self._admin = httpx.Client(base_url=f"{self.url}/_sim", timeout=10)
        self._admin.get("/config").raise_for_status()

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _admin_client(self) -> httpx.Client:
        if self._admin is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self._admin

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._admin_client().request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change global knobs through `PATCH /_sim/config`; return the full new config."""
        result: dict[str, Any] = self._call("PATCH", "/config", json=changes)
        return result

    def set_endpoint(self, endpoint_id: str, **knobs: Any) -> dict[str, Any]:
        """Change some of an endpoint's knobs, configuring it if needed (`PATCH
        /_sim/endpoints/{id}`; None drops an override); return its view."""
        result: dict[str, Any] = self._call("PATCH", f"/endpoints/{endpoint_id}", json=knobs)
        return result

    def replace_endpoint(self, endpoint_id: str, **knobs: Any) -> dict[str, Any]:
        """Configure an endpoint with exactly these overrides (`PUT /_sim/endpoints/{id}`)."""
        result: dict[str, Any] = self._call("PUT", f"/endpoints/{endpoint_id}", json=knobs)
        return result

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Drop an endpoint's overrides (`DELETE /_sim/endpoints/{id}`; 404 if not configured)."""
        self._call("DELETE", f"/endpoints/{endpoint_id}")

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """`GET /_sim/endpoints`: each configured endpoint's view, by id."""
        result: dict[str, dict[str, Any]] = self._call("GET", "/endpoints")
        return result

    def counters(self, endpoint: str | None = None) -> dict[str, Any]:
        """`GET /_sim/counters`: every endpoint's counts summed, or one endpoint's."""
        params = {} if endpoint is None else {"endpoint": endpoint}
        result: dict[str, Any] = self._call("GET", "/counters", params=params)
        return result

    def statuses_by_input(self, endpoint: str | None = None) -> dict[str, list[str]]:
        """`GET /_sim/jobs/by-input`: job statuses grouped by input fingerprint."""
        params = {} if endpoint is None else {"endpoint": endpoint}
        result: dict[str, list[str]] = self._call("GET", "/jobs/by-input", params=params)
        return result

    def reset(self) -> None:
        """Forget jobs and counters; restore the startup knobs and endpoints."""
        self._admin_client().post("/reset").raise_for_status()


def serve(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8001,
    *,
    endpoints: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Serve the simulator in the foreground until interrupted (for `podrelay simulator`)."""
    app = create_app(config, endpoints)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
