"""Budgets hold under a race: 100 concurrent submissions through two API processes' intakes
(two applications on one ledger, SQLite and PostgreSQL) accept exactly the jobs whose estimates
fit, refuse the others with 402 `budget_exceeded`, and notify the 80 % and 100 % thresholds
once each."""

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import cycle

from sqlalchemy import select

from app.accounts.service import KeyOptions, create_key
from app.jobs.models import Job
from app.notify.models import WebhookDelivery
from tests.security.identity import bearer
from tests.stack.http_api import API, assert_problem
from tests.stack.inprocess_api import ApiFactory

BUDGET = {
    "ENVIRONMENT": "production",
    "GPU_PRICE_PER_SECOND": "0.001",
    "JOB_ESTIMATE_SECONDS": "10",  # so each job is estimated at $0.01
    "MAX_CONCURRENT_JOBS": "0",
    "CREATES_PER_MINUTE": "1000",
}
HOOK = "https://hooks.example.com/podrelay"


async def test_100_concurrent_submissions_racing_a_budget(
    api_factory: ApiFactory, ledger_env: dict[str, str]
) -> None:
    settings = {**BUDGET, **ledger_env}
    async with api_factory(**settings) as one, api_factory(**settings) as two:
        with one.engine.db.session() as session:
            made, plaintext = create_key(
                session,
                name="racer",
                options=KeyOptions(daily_budget_usd=0.25, webhook_url=HOOK),
            )
            key_id, headers = made.id, bearer(plaintext)
        body = {"prompt": "a race", "width": 256, "height": 256}
        answers = await asyncio.gather(
            *(
                api.client.post(f"{API}/generate", json={**body, "seed": n}, headers=headers)
                for n, api in zip(range(100), cycle([one, two]), strict=False)
            )
        )
        accepted = [answer for answer in answers if answer.status_code == 202]
        refused = [answer for answer in answers if answer.status_code != 202]
        # $0.25 holds exactly 25 estimates of $0.01: no overspend, and none left unused.
        assert len(accepted) == 25, [answer.text for answer in refused[:3]]
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        for answer in refused:
            problem = assert_problem(answer, 402, "budget_exceeded")
            assert f"resets at {tomorrow}T00:00:00Z" in problem["detail"]
            assert 0 < int(answer.headers["Retry-After"]) <= 86400
        with one.engine.db.session() as session:
            owners = session.scalars(select(Job.owner)).all()
            assert owners == [key_id] * 25
            events = session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event == "budget.threshold")
            ).all()
            assert sorted(event.payload["data"]["threshold_percent"] for event in events) == [
                80,
                100,
            ]
            assert {event.url for event in events} == {HOOK}
            assert {event.payload["data"]["period"] for event in events} == {"daily"}

        usage = (await two.client.get(f"{API}/usage", headers=headers)).json()
        [daily] = usage["budgets"]
        assert (daily["period"], daily["budget_usd"], daily["remaining_usd"]) == ("daily", 0.25, 0)
        assert daily["spent_usd"] == 0.25
        assert usage["job_estimate_usd"] == 0.01
