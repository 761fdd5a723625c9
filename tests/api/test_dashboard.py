"""The Grafana dashboard (observability/grafana/dashboards/podrelay.json) and its provisioning:
every query parses as PromQL, every metric it queries is in a real API's `/metrics`, and
docker-compose.yml's `observability` profile hands Prometheus and Grafana what they need to
show it (scrape target, datasource, dashboard folder).

A panel that queries a metric Podrelay does not export fails here; add the metric first.
"""

import importlib
import json
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.stack.inprocess_api import RunningApi
from tests.test_docker import COMPOSE, Compose, command

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "observability"
DASHBOARD = OBSERVABILITY / "grafana/dashboards/podrelay.json"
DATASOURCES = OBSERVABILITY / "grafana/provisioning/datasources/prometheus.yml"
PROVIDERS = OBSERVABILITY / "grafana/provisioning/dashboards/podrelay.yml"
PROMETHEUS = OBSERVABILITY / "prometheus.yml"
# Grafana's own variables, given sample values so that a query parses as plain PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
# The sample names each metric type exposes (counters and histograms without `_created`).
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}


def yaml_file(path: Path) -> dict[str, Any]:
    # PyYAML (a uvicorn[standard] dependency) ships no type stubs.
    yaml: Any = importlib.import_module("yaml")
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) of every query target."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def parse(expression: str) -> promql_parser.Expr:
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    return promql_parser.parse(expression)


def queried_metrics(expression: str) -> set[str]:
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(parse(expression), visit)
    return names


def exposed_metrics(exposition: str) -> set[str]:
    """Every sample name the exposition can carry, including those of labelled metrics that
    have no sample yet (a counter no error has incremented)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))}
    return names


def missing_metrics(dashboard: dict[str, Any], exposition: str) -> dict[str, set[str]]:
    """Panel title -> the metrics it queries that the exposition lacks."""
    exposed = exposed_metrics(exposition)
    missing: dict[str, set[str]] = {}
    for title, expression in queries(dashboard):
        unknown = queried_metrics(expression) - exposed
        if unknown:
            missing.setdefault(title, set()).update(unknown)
    return missing


async def test_every_metric_the_dashboard_queries_is_in_metrics(api: RunningApi) -> None:
    exposition = (await api.client.get("/metrics")).text
    dashboard = load_dashboard()
    assert missing_metrics(dashboard, exposition) == {}
    queried = set().union(*(queried_metrics(expression) for _, expression in queries(dashboard)))
    for family in ("podrelay_queue_depth", "podrelay_jobs", "podrelay_http_requests_total"):
        assert family in queried


async def test_a_panel_querying_an_unknown_metric_fails(api: RunningApi) -> None:
    exposition = (await api.client.get("/metrics")).text
    dashboard = load_dashboard()
    dashboard["panels"][-1].setdefault("panels", []).append(
        {
            "title": "Dispatches",
            "targets": [
                {"expr": "sum(rate(podrelay_dispatches_total[$__rate_interval]))"},
                # A counter queried without its `_total`, as Prometheus never stores it.
                {"expr": "sum(podrelay_http_requests)"},
            ],
        }
    )
    assert missing_metrics(dashboard, exposition) == {
        "Dispatches": {"podrelay_dispatches_total", "podrelay_http_requests"}
    }


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    datasource = yaml_file(DATASOURCES)["datasources"][0]
    assert datasource["type"] == "prometheus"
    expected = {"type": "prometheus", "uid": datasource["uid"]}
    dashboard = load_dashboard()
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
            parse(target["expr"])  # raises on a syntax error
    with pytest.raises(ValueError, match="parenthesis"):
        parse("sum(rate(podrelay_jobs[$__rate_interval])")


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (compose v1 and v2 forms)."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *_ = volume.split(":")
        elif volume.get("type") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        if source.startswith("/"):
            mounts[target] = Path(source)
    return mounts


def test_the_observability_profile_provisions_the_dashboard(tmp_path: Path) -> None:
    services = Compose(tmp_path / "empty.env").services("-f", COMPOSE, "--profile", "observability")
    prometheus, grafana = services["prometheus"], services["grafana"]
    # Prometheus scrapes the API service where its command listens.
    assert bind_mounts(prometheus)["/etc/prometheus/prometheus.yml"] == PROMETHEUS
    (job,) = yaml_file(PROMETHEUS)["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host == "api"
    assert host in services
    assert command(services["api"]).endswith(f"--port {port}")
    # Grafana reads the datasource and the dashboard provider from the provisioning folder...
    mounts = bind_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == OBSERVABILITY / "grafana/provisioning"
    datasource_url = urlsplit(yaml_file(DATASOURCES)["datasources"][0]["url"])
    assert datasource_url.hostname == "prometheus"
    assert datasource_url.hostname in services
    assert datasource_url.port == 9090  # Prometheus's own port in its container
    # ...and the provider's folder is where the dashboard is mounted.
    (provider,) = yaml_file(PROVIDERS)["providers"]
    folder = PurePosixPath(provider["options"]["path"])
    assert mounts[str(folder)] == DASHBOARD.parent
    assert load_dashboard()["uid"]
