"""Limits that fit use: creating jobs and reading have budgets of their own (600 and 3,000 per
minute by default), an event stream counts once however many events it sends, and `/metrics`
can need a token or live on a port of its own."""

import httpx

from tests.security.identity import bearer
from tests.stack.http_api import API, assert_problem, complete, new_key, rate_limit
from tests.stack.inprocess_api import ApiFactory
from tests.stack.waiting import free_port

SMALL = {"prompt": "a lighthouse", "width": 256, "height": 256}


async def test_polling_a_status_twice_a_second_for_five_minutes_is_never_limited(
    api_factory: ApiFactory,
) -> None:
    """At 2 requests/s, five minutes of polling are 600 reads; the default window is a minute,
    so all 600 in one window is the most any window of that polling can hold. None is 429."""
    async with api_factory(ENVIRONMENT="production") as api:
        headers = bearer(new_key(api, "poller")[1])
        created = await api.client.post(f"{API}/generate", json=SMALL, headers=headers)
        assert rate_limit(created, "create") == {"q": 600, "w": 60, "r": 599, "t": 60}
        statuses = [
            await api.client.get(f"{API}/status/{created.json()['id']}", headers=headers)
            for _ in range(600)
        ]
        assert {response.status_code for response in statuses} == {200}
        last = rate_limit(statuses[-1])
        assert (last["q"], last["r"]) == (3000, 2400)
        # The reads spent nothing of the submissions' budget.
        again = await api.client.post(f"{API}/generate", json=SMALL, headers=headers)
        assert rate_limit(again, "create")["r"] == 598


async def test_creates_and_reads_are_limited_apart_and_a_stream_counts_once(
    api_factory: ApiFactory,
) -> None:
    async with api_factory(CREATES_PER_MINUTE="2") as api:
        headers = bearer(new_key(api, "client")[1])
        first, second, third = [
            await api.client.post(f"{API}/generate", json=SMALL, headers=headers) for _ in range(3)
        ]
        assert (first.status_code, second.status_code) == (202, 202)
        problem = assert_problem(third, 429, "rate_limited")
        assert "job submissions" in problem["detail"]
        assert third.headers["RateLimit-Policy"] == '"create";q=2;w=60'
        # Reading goes on while creating waits.
        job = await complete(api, first.json()["id"], headers)  # some reads of its own
        before = rate_limit(await api.client.get(f"{API}/jobs", headers=headers))["r"]
        stream = await api.client.get(f"{API}/jobs/{job['id']}/events", headers=headers)
        assert stream.text.count("event: ") >= 3  # created, queued, ..., completed
        after = rate_limit(await api.client.get(f"{API}/jobs", headers=headers))["r"]
        assert before - after == 2  # the stream, and this request


async def test_metrics_can_need_a_token(api_factory: ApiFactory) -> None:
    async with api_factory(METRICS_TOKEN="scrape-token-1") as api:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-token-1"}):
            refused = await api.client.get("/metrics", headers=headers)
            assert_problem(refused, 401, "metrics_token_required")
            assert "scrape-token-1" not in refused.text
        scraped = await api.client.get("/metrics", headers=bearer("scrape-token-1"))
        assert scraped.status_code == 200
        assert "podrelay_jobs" in scraped.text


async def test_metrics_can_live_on_their_own_port(api_factory: ApiFactory) -> None:
    port = free_port()
    async with api_factory(METRICS_PORT=str(port)) as api:
        assert_problem(await api.client.get("/metrics"), 404, "not_found")
        async with httpx.AsyncClient() as client:
            scraped = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert scraped.status_code == 200
        assert "podrelay_ledger_up 1.0" in scraped.text
    async with httpx.AsyncClient() as client:  # stopped with the API
        try:
            await client.get(f"http://127.0.0.1:{port}/metrics")
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("the metrics port still answers after the API stopped")
