"""Who gets a stored image, and how: the owner's key, or a signed URL; the original or a
variant; from the API's disk or by a redirect to S3 (a presigned GET, or the CDN).

Image URLs in job resources, SSE events and client webhooks are signed API URLs (see
`app.media.signing`) whatever the backend: so a deleted image answers 410 at once (a presigned
S3 URL would go on working for other images with the same bytes), and `?w=&format=` works on
every URL. Behind them, the `s3` backend redirects to a presigned GET or MEDIA_PUBLIC_BASE_URL.
"""

import io
import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.jobs.engine import JobEngine
from app.jobs.media_locks import hold_media_key
from app.jobs.models import JobImage
from app.media.store import Delivery, MediaError
from app.media.variants import Variant, render

DELETED = "deleted"
# An image never changes: its owner's URL may be cached for a year.
OWNER_MAX_AGE = 365 * 24 * 3600
# Variants are made on request, in the API process: a few at a time, whatever the traffic.
_RENDERING = threading.BoundedSemaphore(2)


class ImageUnavailable(Exception):
    status_code = 404

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class ImageGone(ImageUnavailable):
    status_code = 410


@dataclass(frozen=True)
class ImageAnswer:
    delivery: Delivery
    mime_type: str | None
    headers: dict[str, str]


def find_image(session: Session, image_id: str, *, owner: str | None) -> JobImage:
    """The image, if `owner` owns it (None: a signed URL already proved access)."""
    image = session.get(JobImage, image_id)
    if image is None or (owner is not None and image.job.owner != owner):
        raise ImageUnavailable("image_not_found", "no such image")
    if image.state == DELETED:
        raise ImageGone("image_deleted", "the image was deleted")
    return image


def answer(
    engine: JobEngine,
    session: Session,
    image: JobImage,
    *,
    variant: Variant | None,
    max_age: int,
) -> ImageAnswer:
    """How to serve the image (its variant, when asked), cacheable for up to `max_age`
    seconds; raises `ImageUnavailable`."""
    if image.state == "pending" and image.source_url:
        # Still downloading: its origin (RunPod's or the worker's link) serves it meanwhile.
        no_store = {"Cache-Control": "no-store"}
        return ImageAnswer(Delivery(redirect_url=image.source_url), None, no_store)
    if image.state != "stored" or not image.storage_key or not image.sha256:
        raise ImageUnavailable("image_not_stored", f"the image is {image.state}, not stored")
    store, ttl = engine.store, engine.settings.media_url_ttl
    key, mime_type = image.storage_key, image.mime_type or "application/octet-stream"
    if variant is not None:
        key, mime_type = variant.key(image.sha256), variant.mime_type
        if not store.exists(key):
            hold_media_key(session, image.storage_key)  # not collected while it is made
            with _RENDERING:
                data = render(store.read(image.storage_key), variant)
                store.write(key, io.BytesIO(data), mime_type)
    try:
        delivery = store.delivery(key, mime_type=mime_type, expires_in=ttl)
    except MediaError:
        raise ImageUnavailable("image_not_found", "no such image") from None
    if delivery.redirect_url is not None:
        max_age = min(max_age, ttl // 2)  # the redirect's target expires after `ttl`
    etag = f'"{image.sha256}"' if variant is None else f'"{image.sha256}-{key.rsplit("/")[-1]}"'
    headers = {"Cache-Control": f"private, max-age={max_age}", "ETag": etag}
    return ImageAnswer(delivery, mime_type, headers)


def was_stored(image: JobImage) -> bool:
    """Counts in usage: stored, or stored and deleted since (usage records stay)."""
    return image.state == "stored" or (image.state == DELETED and image.sha256 is not None)
