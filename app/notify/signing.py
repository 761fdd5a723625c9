"""Signatures on Podrelay's webhooks: Standard Webhooks, signed by the `standardwebhooks` package.

Every delivery carries three headers:

    webhook-id:         the delivery's id (`msg_...`); the same on every retry, so receivers
                        can drop duplicates
    webhook-timestamp:  when this attempt was sent, in whole seconds since the Unix epoch
    webhook-signature:  `v1,<signature>`; receivers accept the request if any space-separated
                        `v1,` entry matches

The signature is base64 (standard, padded) of HMAC-SHA256(key, f"{webhook_id}.{timestamp}." +
the raw body bytes). A secret is `whsec_` + base64 of 32 random bytes, and the key is those
bytes, as the specification says: the `standardwebhooks` (or svix) verifiers take the secret
as it is shown.

Secrets made before (`whsec_` + 43 URL-safe characters, as older `podrelay keys create` printed
them) keep the key they had, the UTF-8 bytes of the whole string, so receivers that hold them
keep verifying. Such a secret is never valid padded base64 after the prefix (43 characters),
which is how it is told apart. A stock verifier takes it as `standard_secret(secret)`:
`"whsec_" + base64(UTF-8 bytes of the old secret)`, which decodes to the same key.
"""

import base64
import binascii
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

PREFIX = "whsec_"
_KEY_BYTES = 32


def new_secret() -> str:
    """A fresh webhook secret in the standard form."""
    return PREFIX + base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode("ascii")


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64 after `whsec_`, or for an older secret (not
    valid base64 there) the UTF-8 bytes of the whole string."""
    if not secret:
        raise ValueError("the webhook secret is empty")
    if secret.startswith(PREFIX):
        try:
            key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
        except binascii.Error:
            key = b""
        if key:
            return key
    return secret.encode("utf-8")


def standard_secret(secret: str) -> str:
    """The secret in the standard form (itself for a secret made in that form)."""
    return PREFIX + base64.b64encode(signing_key(secret)).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for this delivery attempt."""
    return Webhook(signing_key(secret)).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
