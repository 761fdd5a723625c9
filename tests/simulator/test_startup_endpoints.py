"""Endpoints configured at startup: from a file or options, through `podrelay simulator` too."""

import json
import re
import tomllib
from pathlib import Path

import httpx
import pytest

from app.devstack import start_process, stop_process, wait_http
from app.simulator.config import ENDPOINT_KNOBS
from app.simulator.endpoints import KnobError
from app.simulator.server import SimulatorServer
from app.simulator.specs import endpoint_option, load_endpoints, merge_endpoints
from tests.cli.helpers import PODRELAY, assert_error_line, run_podrelay
from tests.docs.helpers import ROOT, code_blocks
from tests.simulator.helpers import endpoint_client, fast_config, submit, wait_until
from tests.stack.processes import clean_env
from tests.stack.waiting import free_port

EXAMPLE = ROOT / "app/simulator/endpoints.example.toml"


def test_example_endpoints_serve_three_routes_and_reset_restores_them() -> None:
    with SimulatorServer(fast_config(), endpoints=load_endpoints(EXAMPLE)) as server:
        assert set(server.endpoints()) == {"sdxl", "comfyui", "flux"}
        with endpoint_client(server, "comfyui") as comfyui:
            assert comfyui.get("/health").json()["workers"]["throttled"] == 0
            server.set_endpoint("comfyui", cold_start_ms=0, job_duration_ms=50)
            done = wait_until(comfyui, submit(comfyui))
            assert done["output"]["images"][0]["type"] == "s3_url"
        server.set_endpoint("flux", throttled=True)
        server.set_endpoint("extra", workers=9)
        server.reset()
        endpoints = server.endpoints()
        assert set(endpoints) == {"sdxl", "comfyui", "flux"}
        assert endpoints["flux"]["overrides"] == {
            "output_shape": "worker-sdxl",
            "workers": 1,
            "job_duration_ms": 2500,
        }
        assert endpoints["comfyui"]["knobs"]["cold_start_ms"] == 1500


def test_bad_startup_endpoint_names_its_endpoint() -> None:
    with pytest.raises(KnobError, match=r"flux\.workers"):
        SimulatorServer(endpoints={"sdxl": {}, "flux": {"workers": -2}}).start()


def test_endpoint_options_merge_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"sdxl": {"workers": 2, "fail_rate": 0.5}}))
    option = 'sdxl:workers=5,error_rates={"run":0.1,"status":0.2},drop_mode=hang'
    assert merge_endpoints(path, [option, "flux"]) == {
        "sdxl": {
            "workers": 5,
            "fail_rate": 0.5,
            "error_rates": {"run": 0.1, "status": 0.2},
            "drop_mode": "hang",
        },
        "flux": {},
    }
    for bad in ("", ":workers=1", "sdxl:workers"):
        with pytest.raises(ValueError, match="expected"):
            endpoint_option(bad)
    path.write_text('["sdxl"]')
    with pytest.raises(ValueError, match="a table of knob overrides per endpoint id"):
        load_endpoints(path)


def test_simulator_command_starts_endpoints(tmp_path: Path) -> None:
    port = free_port()
    argv = [*PODRELAY, "simulator", "--port", str(port), "--endpoints", str(EXAMPLE)]
    argv += ["--endpoint", "flux:workers=3,throttled=true"]
    process = start_process(argv, env=clean_env(), log_path=tmp_path / "sim.log", cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/_sim/config")
        endpoints = httpx.get(f"http://127.0.0.1:{port}/_sim/endpoints").json()
    finally:
        stop_process(process)
    assert set(endpoints) == {"sdxl", "comfyui", "flux"}
    assert endpoints["flux"]["knobs"]["workers"] == 3
    assert endpoints["flux"]["knobs"]["throttled"] is True
    assert endpoints["comfyui"]["knobs"]["output_shape"] == "comfyui"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--endpoint", "flux:workers=-1"], "endpoint flux.workers: Input should be greater"),
        (["--endpoints", "missing.toml"], "[Errno 2] No such file or directory"),
    ],
)
def test_bad_endpoint_options_are_one_error_line(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = run_podrelay("simulator", *args, env=clean_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert_error_line(result, expected)


def test_the_docs_show_every_per_endpoint_knob_and_the_example_file() -> None:
    text = (ROOT / "docs/SIMULATOR.md").read_text()
    _, _, table = text.partition("<!-- endpoint-knobs:start -->")
    rows = table.partition("<!-- endpoint-knobs:end -->")[0].splitlines()[3:]
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert documented == ENDPOINT_KNOBS
    [example] = code_blocks(text, "toml")
    assert tomllib.loads(example) == load_endpoints(EXAMPLE)
