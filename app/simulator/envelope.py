"""Parsing of the job envelope (`/run`, `/runsync` bodies) and of `?wait=`.

Only `input`, `webhook` and `policy` matter here; `s3Config` belongs to the worker and other
top-level keys are dropped, as the hosted API does (contract 1.3).
"""

import json
from dataclasses import dataclass
from typing import Any

from app.simulator.config import SimulatorConfig
from app.simulator.errors import ApiError


@dataclass(frozen=True)
class Envelope:
    input: Any
    webhook: str | None
    execution_timeout_ms: int
    ttl_ms: int
    low_priority: bool


def _policy_ms(policy: dict[str, Any], name: str, *, default: int, low: int, high: int) -> int:
    value = policy.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"policy.{name} must be a number of milliseconds")
    if not low <= value <= high:
        raise ApiError(400, f"policy.{name} must be between {low} and {high} ms")
    return int(value)


def parse_envelope(body: bytes, *, limit: int, config: SimulatorConfig) -> Envelope:
    """Validate a submission body; raise ApiError (400/413) when it is unacceptable."""
    if len(body) > limit:
        raise ApiError(413, f"request body exceeds the {limit} byte limit")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "request body must be valid JSON") from exc
    if not isinstance(data, dict) or data.get("input") is None:
        raise ApiError(400, "request body must contain 'input'")
    webhook = data.get("webhook")
    if webhook is not None and (
        not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))
    ):
        raise ApiError(400, "webhook must be an http(s) URL")
    policy = data.get("policy") or {}
    if not isinstance(policy, dict):
        raise ApiError(400, "policy must be an object")
    low_priority = policy.get("lowPriority", False)
    if not isinstance(low_priority, bool):
        raise ApiError(400, "policy.lowPriority must be a boolean")
    return Envelope(
        input=data["input"],
        webhook=webhook,
        execution_timeout_ms=_policy_ms(
            policy,
            "executionTimeout",
            default=config.default_execution_timeout_ms,
            low=config.min_execution_timeout_ms,
            high=config.max_policy_ms,
        ),
        ttl_ms=_policy_ms(
            policy,
            "ttl",
            default=config.default_ttl_ms,
            low=config.min_ttl_ms,
            high=config.max_policy_ms,
        ),
        low_priority=low_priority,
    )


def parse_wait(raw: str | None, config: SimulatorConfig) -> float:
    """Turn `?wait=<ms>` into seconds, clamped to the configured range."""
    if raw is None:
        wait_ms = config.default_wait_ms
    else:
        try:
            wait_ms = int(raw)
        except ValueError as exc:
            raise ApiError(400, "wait must be an integer number of milliseconds") from exc
    return min(max(wait_ms, config.min_wait_ms), config.max_wait_ms) / 1000
