"""Checking the signature of Podrelay's webhooks (Standard Webhooks).

Written out here instead of depending on the `standardwebhooks` package: it is twenty lines,
and it also accepts the secrets Podrelay made before it used the standard form.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from podrelay_client.errors import WebhookVerificationError

TOLERANCE_S = 300
_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64 after `whsec_`; for a secret made before Podrelay
    used that form (not valid base64 there), the UTF-8 bytes of the whole string."""
    if not secret:
        raise ValueError("the webhook secret is empty")
    if secret.startswith(_PREFIX):
        try:
            key = base64.b64decode(secret.removeprefix(_PREFIX), validate=True)
        except binascii.Error:
            key = b""
        if key:
            return key
    return secret.encode("utf-8")


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> Any:
    """The webhook's JSON payload, once `headers` sign the raw `body` with `secret` within
    `tolerance_s` of `now`; raises `WebhookVerificationError` otherwise.

    Pass the body exactly as received (before any JSON parsing) and the request's headers
    (any case). The secret is the `webhook secret` shown when the API key was made.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature")
    if not msg_id or not signatures or not timestamp.isdigit():
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        raise WebhookVerificationError("the webhook-timestamp is outside the tolerance")
    digest = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256)
    expected = base64.b64encode(digest.digest())
    matched = False
    for entry in signatures.split():
        version, _, candidate = entry.partition(",")
        # Every entry is compared, so the time taken says nothing about which one matched.
        matched |= version == "v1" and hmac.compare_digest(candidate.encode(), expected)
    if not matched:
        raise WebhookVerificationError("no signature matches")
    return json.loads(raw)
