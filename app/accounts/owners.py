"""Who owns a job, as one string of at most 64 characters, and whose secret signs its webhooks.

- an API key's jobs: the key's id, `key_<16 hex>`;
- an end user's through a session token: `<key id>/<user>`, the key that minted the token;
- a host-app user's through a JWT: `jwt_<8 hex>/<sub>`, the hex naming the issuer (the first
  of SHA-256 of `iss`, or of "" for a token without one), so the same `sub` from two issuers is
  two owners;
- `anonymous` without a credential (development).

A user or `sub` longer than fits is replaced by `#` and 40 hex characters of its SHA-256.
"""

import hashlib

OWNER_MAX = 64
JWT_PREFIX = "jwt_"
_SEPARATOR = "/"
_KEY_PREFIX = "key_"


def _fitted(namespace: str, name: str) -> str:
    room = OWNER_MAX - len(namespace) - len(_SEPARATOR)
    if len(name) > room or name.startswith("#"):
        name = "#" + hashlib.sha256(name.encode()).hexdigest()[:40]
    return f"{namespace}{_SEPARATOR}{name}"


def session_owner(key_id: str, user: str) -> str:
    return _fitted(key_id, user)


def jwt_owner(issuer: str | None, subject: str) -> str:
    tag = hashlib.sha256((issuer or "").encode()).hexdigest()[:8]
    return _fitted(JWT_PREFIX + tag, subject)


def signing_key_id(owner: str) -> str | None:
    """The API key whose webhook secret signs this owner's webhooks; None for the owners the
    WEBHOOK_SIGNING_SECRET setting signs for (JWT users, anonymous)."""
    namespace = owner.partition(_SEPARATOR)[0]
    return namespace if namespace.startswith(_KEY_PREFIX) else None
