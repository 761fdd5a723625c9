"""Budgets: an unfinished job counts its estimate, a finished one what it really cost; a
monthly budget resets on the first of the next month; a JWT's own budget applies to its user."""

from datetime import UTC, datetime

from app.accounts.service import KeyOptions, create_key
from tests.security.identity import SECRET, bearer, hs256
from tests.stack.http_api import API, assert_problem, complete
from tests.stack.inprocess_api import ApiFactory

SETTINGS = {
    "ENVIRONMENT": "production",
    "GPU_PRICE_PER_SECOND": "0.001",
    "JOB_ESTIMATE_SECONDS": "10",  # $0.01 a job until it has run
    "JWT_SECRET": SECRET,
}
SMALL = {"prompt": "a lighthouse", "width": 256, "height": 256}


async def test_a_finished_job_counts_what_it_cost_instead_of_its_estimate(
    api_factory: ApiFactory,
) -> None:
    async with api_factory(**SETTINGS) as api:
        with api.engine.db.session() as session:
            _, plaintext = create_key(
                session, name="monthly", options=KeyOptions(monthly_budget_usd=0.015)
            )
        headers = bearer(plaintext)
        generate = f"{API}/generate"
        first = await api.client.post(generate, json=SMALL, headers=headers)
        assert first.status_code == 202, first.text
        refused = await api.client.post(generate, json=SMALL, headers=headers)
        problem = assert_problem(refused, 402, "budget_exceeded")
        now = datetime.now(UTC)
        next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1)
        assert "the monthly budget of $0.015" in problem["detail"]
        assert f"resets at {next_month.date().isoformat()}T00:00:00Z" in problem["detail"]
        [monthly] = (await api.client.get(f"{API}/usage", headers=headers)).json()["budgets"]
        assert (monthly["spent_usd"], monthly["remaining_usd"]) == (0.01, 0.005)

        job = await complete(api, first.json()["id"], headers)
        [monthly] = (await api.client.get(f"{API}/usage", headers=headers)).json()["budgets"]
        assert monthly["spent_usd"] == round(job["cost"]["estimated_usd"], 6)
        assert monthly["spent_usd"] < 0.005  # tens of milliseconds of the simulator's GPU
        again = await api.client.post(generate, json=SMALL, headers=headers)
        assert again.status_code == 202, again.text


async def test_a_jwt_carries_its_users_budget(api_factory: ApiFactory) -> None:
    async with api_factory(**SETTINGS, BUDGET_DAILY_USD="5") as api:
        broke = bearer(
            hs256({"sub": "broke", "exp": 4102444800, "podrelay": {"daily_budget_usd": 0}})
        )
        assert_problem(
            await api.client.post(f"{API}/generate", json=SMALL, headers=broke),
            402,
            "budget_exceeded",
        )
        rich = bearer(hs256({"sub": "rich", "exp": 4102444800}))
        assert (
            await api.client.post(f"{API}/generate", json=SMALL, headers=rich)
        ).status_code == 202
        [daily] = (await api.client.get(f"{API}/usage", headers=rich)).json()["budgets"]
        assert (daily["period"], daily["budget_usd"], daily["spent_usd"]) == ("daily", 5, 0.01)
        bad = bearer(hs256({"sub": "x", "exp": 4102444800, "podrelay": {"daily_budget_usd": -1}}))
        problem = assert_problem(
            await api.client.get(f"{API}/jobs", headers=bad), 401, "invalid_token"
        )
        assert "podrelay.daily_budget_usd" in problem["detail"]
