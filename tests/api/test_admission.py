"""Honest admission: a request whose jobs the route cannot start before their deadline, behind
the work ahead of them in dispatch order, is refused with 503 `queue_full` and Retry-After (a
batch all or nothing, nothing of it recorded); a request that fits is accepted, and another
key's job, placed ahead of the flood in fair order, still gets in."""

from sqlalchemy import func, select

from app.core.db import utcnow
from app.jobs.models import Job
from app.scheduler.capacity import service_rate
from app.scheduler.models import EndpointState
from tests.stack.http_api import API, assert_problem, key_headers
from tests.stack.inprocess_api import ApiFactory

# One job at a time at the endpoint, each running 10 s: the route starts one job every 10 s, so
# a job with 60 s to live can start only if at most 5 jobs (the 50 s left after its run) are
# ahead of it.
RUNTIME_MS, TIMEOUT_S = 10_000, 60
SMALL = {"width": 256, "height": 256, "timeout": TIMEOUT_S}


async def test_a_request_the_backlog_cannot_start_in_time_gets_queue_full(
    api_factory: ApiFactory, ledger_env: dict[str, str]
) -> None:
    async with api_factory(ENVIRONMENT="production", **ledger_env) as api:
        endpoint = api.engine.endpoint
        state = EndpointState(
            endpoint=endpoint.id,
            route=endpoint.route,
            checked_at=utcnow(),
            workers={},
            jobs={},
            max_in_flight=1,
            queue_delay_p50_ms=0,
            execution_p50_ms=RUNTIME_MS,
        )
        state.service_rate = service_rate(api.engine.settings, state)
        with api.engine.db.session() as session:
            session.add(state)
        flood, other = key_headers(api, "flood"), key_headers(api, "other")
        batch = f"{API}/generate/batch"

        def prompts(count: int) -> dict[str, object]:
            return {"prompts": [f"flood {n}" for n in range(count)], **SMALL}

        accepted = await api.client.post(batch, json=prompts(4), headers=flood)
        assert accepted.status_code == 202, accepted.text
        refused = await api.client.post(batch, json=prompts(2), headers=flood)
        problem = assert_problem(refused, 503, "queue_full")
        assert "4 jobs ahead" in problem["detail"]
        assert float(refused.headers["Retry-After"]) >= 1
        with api.engine.db.session() as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 4  # none of the two

        # One more of the flood's still fits; the other key's job is placed ahead of the flood.
        last = await api.client.post(
            f"{API}/generate", json={"prompt": "a", **SMALL}, headers=flood
        )
        assert last.status_code == 202, last.text
        assert_problem(
            await api.client.post(f"{API}/generate", json={"prompt": "b", **SMALL}, headers=flood),
            503,
            "queue_full",
        )
        fair = await api.client.post(
            f"{API}/generate", json={"prompt": "c", **SMALL}, headers=other
        )
        assert fair.status_code == 202, fair.text
