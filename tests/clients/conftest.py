"""A real Podrelay stack for the SDKs' tests: the API and a worker as processes, PostgreSQL, a
private Redis, the simulator standing in for RunPod (webhook mode), and API keys."""

from collections.abc import Iterator

import pytest

from app.accounts.service import create_key
from app.simulator.config import SimulatorConfig
from tests.clients.sdk import SdkStack
from tests.stack.factory import stack_factory

SIMULATOR = SimulatorConfig(
    workers=8, job_duration_ms=150, job_duration_jitter_ms=50, random_seed=3
)


@pytest.fixture(scope="session")
def sdk_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkStack]:
    with stack_factory(tmp_path_factory.mktemp("sdk-stack")) as factory:
        stack = factory.build(
            ledger="postgresql",
            broker="redis",
            simulator=factory.simulator(SIMULATOR.model_copy()),
            webhooks=True,
            requests_per_minute=600,
            poll_sweep_interval=0.2,
        )
        stack.start_worker(concurrency=4)
        url = stack.start_api()
        with stack.db.session() as session:
            key, plaintext = create_key(session, name="sdk-tests")
            secret = key.webhook_secret
        yield SdkStack(stack=stack, url=url, key=plaintext, webhook_secret=secret)
