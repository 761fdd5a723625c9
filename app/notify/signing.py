"""Signatures on Podrelay's webhooks, in the style of Standard Webhooks.

Every delivery carries three headers:

    webhook-id:         the delivery's id (`msg_...`); the same on every retry, so receivers
                        can drop duplicates
    webhook-timestamp:  when this attempt was sent, in whole seconds since the Unix epoch
    webhook-signature:  `v1,<signature>`; receivers accept the request if any space-separated
                        `v1,` entry matches

The signature, exactly:

    key            = UTF-8 bytes of the whole secret string, as shown when the API key was
                     made, `whsec_` prefix included; it is never base64-decoded
    signed_content = UTF-8 bytes of f"{webhook_id}.{webhook_timestamp}." followed by the raw
                     request body bytes, exactly as received (do not re-serialise the JSON)
    signature      = base64 (standard alphabet, with padding) of HMAC-SHA256(key, signed_content)

Receivers should compare in constant time and refuse timestamps more than five minutes from
their own clock. In Python:

    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    ).decode()

and in Node: `createHmac("sha256", secret).update(`${id}.${ts}.`).update(body).digest("base64")`.

This differs from the Standard Webhooks reference libraries in one point: they base64-decode
the part of the secret after `whsec_`. To verify with one of them, give it
`"whsec_" + base64(UTF-8 bytes of the Podrelay secret)`, which decodes to the same key.
"""

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(ValueError):
    """The request is not signed with the secret, or is too old (or too new) to accept."""


def _key(secret: str) -> bytes:
    if not secret:
        raise ValueError("the webhook secret is empty")
    return secret.encode("utf-8")


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The bare base64 signature (without the `v1,` prefix)."""
    signed_content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed_content, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for this delivery attempt."""
    return f"{SIGNATURE_VERSION},{signature(secret, msg_id, timestamp, body)}"


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> None:
    """Raise `WebhookVerificationError` unless `headers` sign `body` with `secret` and the
    timestamp is within `tolerance_s` of `now` (default: the current time)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_timestamp = lowered.get("webhook-timestamp")
    header = lowered.get("webhook-signature")
    if not msg_id or not raw_timestamp or not header:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError("the webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError("the webhook-timestamp is outside the tolerance")
    expected = signature(secret, msg_id, timestamp, body).encode("ascii")
    matched = False
    for entry in header.split():
        version, _, candidate = entry.partition(",")
        if version == SIGNATURE_VERSION:
            # Keep comparing after a match, so the time taken says nothing about the entries.
            matched |= hmac.compare_digest(candidate.encode("utf-8"), expected)
    if not matched:
        raise WebhookVerificationError("no signature matches")
