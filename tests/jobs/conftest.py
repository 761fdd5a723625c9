"""The jobs suite's engine: on the test's ledger (SQLite or PostgreSQL), default settings."""

import pytest

from app.jobs.engine import JobEngine
from tests.stack.ledger import EngineFactory


@pytest.fixture
def engine(make_engine: EngineFactory) -> JobEngine:
    return make_engine()
