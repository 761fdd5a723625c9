"""The notify suite's engine: on the test's ledger (SQLite or PostgreSQL), with private webhook
URLs allowed so that the receiver on 127.0.0.1 can be reached."""

import pytest

from app.jobs.engine import JobEngine
from tests.stack.ledger import EngineFactory


@pytest.fixture
def engine(make_engine: EngineFactory) -> JobEngine:
    return make_engine(allow_private_webhook_urls=True)
