"""Per-route and per-endpoint gauges for `/metrics`, read from the ledger at scrape time
(`app.scheduler.overview`), so that any API process describes the whole system.

Labels are the catalogue's route names and endpoint ids (a bounded set, from ROUTES_FILE), and
the states RunPod reports; never a URL or a key.
"""

from collections.abc import Iterable

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from app.scheduler.circuit import Circuit
from app.scheduler.overview import RouteOverview

_ENDPOINT = ["route", "endpoint"]


def route_metrics(overviews: Iterable[RouteOverview]) -> list[Metric]:
    waiting = GaugeMetricFamily(
        "podrelay_route_waiting_jobs",
        "Jobs of a route not yet running: pending in Podrelay or queued at its endpoints.",
        labels=["route"],
    )
    pending = GaugeMetricFamily(
        "podrelay_route_pending_jobs",
        "Jobs of a route waiting in Podrelay for one of its endpoints.",
        labels=["route"],
    )
    jobs = GaugeMetricFamily(
        "podrelay_endpoint_jobs",
        "Podrelay's jobs at an endpoint, queued or running at RunPod.",
        labels=[*_ENDPOINT, "status"],
    )
    workers = GaugeMetricFamily(
        "podrelay_endpoint_workers",
        "An endpoint's workers by state, at its last /health (absent until checked).",
        labels=[*_ENDPOINT, "state"],
    )
    runpod_jobs = GaugeMetricFamily(
        "podrelay_endpoint_runpod_jobs",
        "Jobs RunPod reports at an endpoint (in_queue, in_progress), at its last /health.",
        labels=[*_ENDPOINT, "state"],
    )
    capacity = GaugeMetricFamily(
        "podrelay_endpoint_max_in_flight",
        "Jobs an endpoint may hold queued or running at RunPod (absent until checked).",
        labels=_ENDPOINT,
    )
    circuit_open = GaugeMetricFamily(
        "podrelay_endpoint_circuit_open",
        "1 while an endpoint's circuit is open (out of rotation), else 0.",
        labels=_ENDPOINT,
    )
    for route in overviews:
        waiting.add_metric([route.name], route.waiting_jobs)
        pending.add_metric([route.name], route.pending_jobs)
        for endpoint in route.endpoints:
            labels = [route.name, endpoint.id]
            jobs.add_metric([*labels, "queued"], endpoint.queued_jobs)
            jobs.add_metric([*labels, "running"], endpoint.running_jobs)
            circuit_open.add_metric(labels, 1 if endpoint.circuit is Circuit.OPEN else 0)
            if endpoint.max_in_flight is not None:
                capacity.add_metric(labels, endpoint.max_in_flight)
            for state, count in endpoint.workers.items():
                if count is not None:
                    workers.add_metric([*labels, state], count)
            for state, count in endpoint.runpod_jobs.items():
                if count is not None:
                    runpod_jobs.add_metric([*labels, state], count)
    return [waiting, pending, jobs, workers, runpod_jobs, capacity, circuit_open]
