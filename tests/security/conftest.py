"""The security suite's own fixture: a resolver override at the DNS edge (`FakeDns`).

The in-process API, API keys and the webhook receiver are the shared ones of tests/stack."""

import pytest

from tests.security.helpers import FakeDns


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    return FakeDns(monkeypatch)
