"""Images by signed URL (`GET /api/v1/runpod/media/{id}?expires=&sig=`): no API key, so a
browser's `<img src>` can load them. Mounted outside the keyed routes and their rate limit;
what a URL grants is checked by `app.media.signing`, how it is served by `app.jobs.images`."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.api.deps import EngineDep, SessionDep
from app.api.errors import problem_responses
from app.api.schemas import PathId
from app.core.errors import Forbidden, Gone, NotFound, StoreUnavailable, Unprocessable
from app.jobs.engine import JobEngine
from app.jobs.images import (
    ImageAnswer,
    ImageGone,
    ImageUnavailable,
    answer,
    find_image,
)
from app.jobs.models import JobImage
from app.media import signing
from app.media.store import StorageUnavailable
from app.media.variants import WIDTHS, InvalidVariant, Variant, variant_of

router = APIRouter(prefix="/api/v1/runpod", tags=["runpod"])

Width = Annotated[
    int | None, Query(description=f"Resize to this width: one of {', '.join(map(str, WIDTHS))}.")
]
Format = Annotated[Literal["webp", "jpeg"] | None, Query(description="Re-encode (default webp).")]
IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image's bytes (or its variant's).",
        "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
    },
    307: {"description": "Stored in S3 (a presigned GET or the CDN), or not stored yet."},
}


@router.get(
    "/media/{image_id}",
    summary="A stored result image, by signed URL (no API key)",
    responses={**problem_responses(403, 404, 410, 422, 503), **IMAGE_RESPONSES},
    response_class=FileResponse,
)
def get_signed_image(
    image_id: PathId,
    session: SessionDep,
    engine: EngineDep,
    expires: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    sig: Annotated[str | None, Query(max_length=64)] = None,
    w: Width = None,
    format: Format = None,
) -> Response:
    secret = engine.settings.media_url_secret.get_secret_value()
    try:
        left = signing.check(secret, image_id, expires, sig)
    except signing.InvalidSignature as error:
        raise Forbidden(error.detail, code=error.code) from None
    # Cached no longer than the URL is valid.
    return image_response(
        engine, session, image_id, owner=None, w=w, image_format=format, max_age=left
    )


def image_response(
    engine: JobEngine,
    session: Session,
    image_id: str,
    *,
    owner: str | None,
    w: int | None,
    image_format: str | None,
    max_age: int,
) -> Response:
    """The answer of both image routes, once access is settled."""
    try:
        image = find_image(session, image_id, owner=owner)
        variant = _variant(image, w, image_format)
        found = answer(engine, session, image, variant=variant, max_age=max_age)
    except ImageGone as error:
        raise Gone(error.detail, code=error.code) from None
    except ImageUnavailable as error:
        raise NotFound(error.detail, code=error.code) from None
    except StorageUnavailable:
        raise StoreUnavailable("the media store does not answer; retry later") from None
    return _respond(found)


def _variant(image: JobImage, w: int | None, image_format: str | None) -> Variant | None:
    if w is None and image_format is None:
        return None
    try:
        return variant_of(w, image_format, original_width=image.width or 0)
    except InvalidVariant as error:
        raise Unprocessable(str(error), code="invalid_variant") from None


def _respond(found: ImageAnswer) -> Response:
    delivery = found.delivery
    if delivery.path is not None:
        return FileResponse(delivery.path, media_type=found.mime_type, headers=found.headers)
    assert delivery.redirect_url is not None
    return RedirectResponse(delivery.redirect_url, status_code=307, headers=found.headers)
