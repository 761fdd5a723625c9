"""Serve the playground page at `/` and its two assets, from this package's `static/` folder.

The files are read once at import; they ship as package data (see pyproject's package-data).
The page talks only to this origin, so a strict Content-Security-Policy costs nothing and
stops any markup that slipped through from running script.
"""

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

from app.api.deps import EngineDep
from app.core.errors import NotFound
from app.media.store import MediaStore

_STATIC = files(__package__) / "static"
_MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_FILES = {name: (_STATIC / name).read_bytes() for name in _MEDIA_TYPES}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:{media}; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


router = APIRouter(include_in_schema=False)


def _serve(name: str, store: MediaStore) -> Response:
    # Images load from their signed URLs: the API's, and where the s3 backend redirects.
    origin = store.redirect_origin
    csp = _CSP.format(media=f" {origin}" if origin else "")
    headers = {**_HEADERS, "Content-Security-Policy": csp}
    return Response(_FILES[name], media_type=_MEDIA_TYPES[name], headers=headers)


@router.get("/")
async def page(engine: EngineDep) -> Response:
    return _serve("index.html", engine.store)


@router.get("/playground/{name}")
async def asset(name: str, engine: EngineDep) -> Response:
    if name == "index.html" or name not in _FILES:
        raise NotFound("no such playground file", code="not_found")
    return _serve(name, engine.store)
