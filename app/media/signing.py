"""Signed image URLs: `<path>?expires=<unix time>&sig=<HMAC>`, usable in `<img src>`.

The HMAC-SHA256 (key MEDIA_URL_SECRET) covers the image id and the expiry, so a URL cannot be
moved to another image or kept past its time. Image ids are random, and an owner only learns
the ids of their own images, so no one can make or guess a URL for another owner's image.
Expiry is rounded up to the minute: the URLs of one image rendered within a minute are the
same, and a browser's cache keeps working.
"""

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from app.core.config import Settings

MEDIA_PATH = "/api/v1/runpod/media"
ROUND_S = 60


class InvalidSignature(Exception):
    """The URL's signature does not match, or it has expired; `code` says which."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _mac(secret: str, image_id: str, expires: int) -> str:
    digest = hmac.new(secret.encode(), f"{image_id}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def expiry(ttl_s: int, *, now: float | None = None) -> int:
    moment = int(time.time() if now is None else now) + ttl_s
    return -(-moment // ROUND_S) * ROUND_S


def sign(secret: str, image_id: str, expires: int) -> str:
    return _mac(secret, image_id, expires)


def check(
    secret: str, image_id: str, expires: int | None, sig: str | None, *, now: float | None = None
) -> int:
    """Raise `InvalidSignature` unless `sig` signs `image_id` until `expires`, still ahead;
    returns the seconds left."""
    if expires is None or not sig:
        raise InvalidSignature("signature_missing", "the URL has no expires or sig parameter")
    if not hmac.compare_digest(_mac(secret, image_id, expires).encode(), sig.encode()):
        raise InvalidSignature("signature_invalid", "the URL's signature does not match")
    left = expires - int(time.time() if now is None else now)
    if left <= 0:
        raise InvalidSignature("signature_expired", "the URL has expired; fetch a fresh one")
    return left


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires_at: datetime


def signed_url(settings: Settings, image_id: str, *, now: float | None = None) -> SignedUrl:
    """The image's signed URL on the API: a path, like every link the API gives."""
    expires = expiry(settings.media_url_ttl, now=now)
    sig = sign(settings.media_url_secret.get_secret_value(), image_id, expires)
    return SignedUrl(
        url=f"{MEDIA_PATH}/{image_id}?expires={expires}&sig={sig}",
        expires_at=datetime.fromtimestamp(expires, UTC),
    )
