"""The media store's interface: content-addressed images, kept on a local disk or in S3.

Keys are `<sha256[:2]>/<sha256>.<ext>`, relative to the backend's root (MEDIA_DIR, or the
bucket and S3_PREFIX), so storing the same bytes twice keeps one object, and a key never
names another owner's image by accident. Images arrive as `IncomingMedia`: spooled while
they stream in (in memory up to `SPOOL_MEMORY_BYTES`, then in a temporary file), hashed on
the way, and checked with Pillow before they are stored, so no image is held whole in memory
twice. Resized copies ("variants") live under `variants/<sha256>/`.
"""

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from tempfile import SpooledTemporaryFile
from typing import BinaryIO, Self, cast

from PIL import Image, UnidentifiedImageError

MAX_IMAGE_BYTES = 50 * 1024 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}
MIME_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
# Stored objects never change: a key names its content.
IMMUTABLE = "public, max-age=31536000, immutable"


class MediaError(Exception):
    """The bytes are not an image we keep."""


class StorageUnavailable(Exception):
    """The store did not answer (an outage, not a bad image): try again later."""


@dataclass(frozen=True)
class StoredMedia:
    key: str
    sha256: str
    size_bytes: int
    mime_type: str
    width: int
    height: int


@dataclass(frozen=True)
class Delivery:
    """How to hand a stored object to a client: a local file to send, or a URL to go to."""

    path: Path | None = None
    redirect_url: str | None = None


class IncomingMedia:
    """Image bytes on their way into the store; `write` chunks, then `finish` once."""

    def __init__(self, limit: int = MAX_IMAGE_BYTES) -> None:
        self.file: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)
        self._digest = hashlib.sha256()
        self._limit = limit
        self.size = 0
        self.media: StoredMedia | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        incoming = cls()
        try:
            incoming.write(data)
            incoming.finish()
        except MediaError:
            incoming.close()
            raise
        return incoming

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise MediaError(f"image larger than {self._limit} bytes")
        self._digest.update(chunk)
        self.file.write(chunk)

    def finish(self) -> StoredMedia:
        """Check the bytes are an image we keep and name them; raises `MediaError`."""
        self.file.seek(0)
        try:
            with Image.open(self.file) as image:
                image_format, (width, height) = image.format, image.size
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise MediaError(f"not a readable image ({type(error).__name__})") from None
        extension = EXTENSIONS.get(image_format or "")
        if extension is None:
            raise MediaError(f"unsupported image format {image_format!r}")
        digest = self._digest.hexdigest()
        self.file.seek(0)
        self.media = StoredMedia(
            key=f"{digest[:2]}/{digest}.{extension}",
            sha256=digest,
            size_bytes=self.size,
            mime_type=MIME_TYPES[extension],
            width=width,
            height=height,
        )
        return self.media

    def checked(self) -> StoredMedia:
        if self.media is None:
            raise RuntimeError("IncomingMedia.finish() was not called")
        self.file.seek(0)
        return self.media

    def close(self) -> None:
        self.file.close()


def variant_prefix(sha256: str) -> str:
    return f"variants/{sha256}/"


class MediaStore(ABC):
    """One backend of the media store. Every method may raise `StorageUnavailable`."""

    backend: str

    def put(self, incoming: IncomingMedia) -> StoredMedia:
        """Store a finished `IncomingMedia` at its content key (idempotent)."""
        media = incoming.checked()
        self.write(media.key, cast(BinaryIO, incoming.file), media.mime_type)
        return media

    def put_bytes(self, data: bytes) -> StoredMedia:
        """Check and store whole image bytes; raises `MediaError` for non-images."""
        incoming = IncomingMedia.from_bytes(data)
        try:
            return self.put(incoming)
        finally:
            incoming.close()

    @abstractmethod
    def write(self, key: str, source: BinaryIO, mime_type: str) -> None:
        """Stream `source` to `key`, replacing nothing a reader could see half-written."""

    @abstractmethod
    def read(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Remove these objects; missing ones are no error."""

    @abstractmethod
    def keys_under(self, prefix: str) -> list[str]: ...

    @abstractmethod
    def delivery(self, key: str, *, mime_type: str, expires_in: int) -> Delivery:
        """How a client gets the object: the file (local) or a presigned or CDN URL (s3)."""

    @property
    def redirect_origin(self) -> str | None:
        """Where `delivery` sends browsers, if not to the API (for a page's CSP)."""
        return None

    def delete_with_variants(self, key: str, sha256: str) -> None:
        self.delete([key, *self.keys_under(variant_prefix(sha256))])
