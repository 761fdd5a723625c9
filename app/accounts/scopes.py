"""What a credential may do: its scopes, and the web origins a publishable one is bound to.

- `jobs:create`: start jobs and batches, cancel them and delete their images;
- `jobs:read`: read jobs, batches, their live events and usage;
- `images:read`: fetch stored images with the credential;
- `admin`: the connection test, queue statistics and key management.

A key made without scopes has every scope but `admin`, plus `admin` when made with `--admin`.
A credential never hands on more than it has: a session token gets at most its key's scopes,
and never `admin`.
"""

from collections.abc import Iterable
from enum import StrEnum

from app.core.errors import Forbidden, Unprocessable


class Scope(StrEnum):
    JOBS_CREATE = "jobs:create"
    JOBS_READ = "jobs:read"
    IMAGES_READ = "images:read"
    ADMIN = "admin"


USER_SCOPES = frozenset({Scope.JOBS_CREATE, Scope.JOBS_READ, Scope.IMAGES_READ})
ALL_SCOPES = USER_SCOPES | {Scope.ADMIN}


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scopes from names (each may hold several, space- or comma-separated); 422 on others."""
    names = {name for value in values for name in value.replace(",", " ").split()}
    unknown = sorted(names - {scope.value for scope in Scope})
    if unknown:
        known = ", ".join(scope.value for scope in Scope)
        raise Unprocessable(f"unknown scope {unknown[0]!r} (known: {known})", code="invalid_scope")
    return frozenset(Scope(name) for name in names)


def key_scopes(stored: str | None, *, is_admin: bool) -> frozenset[Scope]:
    """A key's scopes, as stored (see the module for keys made without)."""
    if stored is None:
        return USER_SCOPES | ({Scope.ADMIN} if is_admin else set())
    return parse_scopes([stored])


def stored_scopes(scopes: Iterable[Scope]) -> str:
    return " ".join(sorted(scope.value for scope in scopes))


def require_scope(held: frozenset[Scope], needed: Scope) -> None:
    if needed not in held:
        if needed is Scope.ADMIN:
            raise Forbidden("this needs an admin API key", code="admin_required")
        raise Forbidden(f"this needs the {needed.value!r} scope", code="insufficient_scope")


def delegable(held: frozenset[Scope], asked: frozenset[Scope]) -> frozenset[Scope]:
    """The scopes a credential holding `held` may give a session token; 403 past them."""
    if Scope.ADMIN in asked:
        raise Forbidden("session tokens cannot carry the admin scope", code="scope_not_allowed")
    beyond = sorted(scope.value for scope in asked - held)
    if beyond:
        raise Forbidden(f"the key does not hold {beyond[0]!r}", code="scope_not_allowed")
    return asked


def parse_origins(values: Iterable[str]) -> frozenset[str]:
    """Web origins (`https://app.example`, `http://localhost:3000`): scheme, host and port,
    nothing else; 422 on anything that is not one."""
    origins = {value.strip().rstrip("/") for value in values if value.strip()}
    for origin in origins:
        scheme, separator, rest = origin.partition("://")
        if (
            scheme not in {"http", "https"}
            or not separator
            or not rest
            or any(mark in rest for mark in "/?#@ ")
        ):
            raise Unprocessable(
                f"not a web origin: {origin!r} (e.g. https://app.example.com)",
                code="invalid_origin",
            )
    return frozenset(origins)


def check_origin(allowed: frozenset[str], origin: str | None) -> None:
    """A credential bound to origins is refused from any other, and without one."""
    if allowed and origin not in allowed:
        raise Forbidden(
            "this credential is for other web origins" if origin else
            "this credential is publishable: it is accepted only from its web origins",
            code="origin_not_allowed",
        )  # fmt: skip
