"""Fixtures for the documentation tests: the in-process API of tests/api, and helpers."""

from tests.api.conftest import api, api_factory

__all__ = ["api", "api_factory"]
