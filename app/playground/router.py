"""Serve the playground page at `/` and its two assets, from this package's `static/` folder.

The files are read once at import; they ship as package data (see pyproject's package-data).
The page talks only to this origin, so a strict Content-Security-Policy costs nothing and
stops any markup that slipped through from running script.
"""

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

from app.core.errors import NotFound

_STATIC = files(__package__) / "static"
_MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_FILES = {name: (_STATIC / name).read_bytes() for name in _MEDIA_TYPES}
# blob: for images, which the page fetches with the API key header and shows from memory.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _serve(name: str) -> Response:
    return Response(_FILES[name], media_type=_MEDIA_TYPES[name], headers=_HEADERS)


@router.get("/")
async def page() -> Response:
    return _serve("index.html")


@router.get("/playground/{name}")
async def asset(name: str) -> Response:
    if name == "index.html" or name not in _FILES:
        raise NotFound("no such playground file", code="not_found")
    return _serve(name)
