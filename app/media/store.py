"""A content-addressed image store on the local file system.

Images are kept under `<root>/<sha256[:2]>/<sha256>.<ext>`; storing the same bytes twice
writes once. Each stored image is checked with Pillow, which also gives its size.
"""

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}
_MIME_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}


class MediaError(Exception):
    """The bytes are not an image we keep."""


@dataclass(frozen=True)
class StoredMedia:
    key: str
    sha256: str
    size_bytes: int
    mime_type: str
    width: int
    height: int


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes) -> StoredMedia:
        """Store image bytes (idempotent) and describe them; raises `MediaError` for non-images."""
        try:
            with Image.open(io.BytesIO(data)) as image:
                image_format, (width, height) = image.format, image.size
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise MediaError(f"not a readable image ({type(error).__name__})") from None
        extension = _EXTENSIONS.get(image_format or "")
        if extension is None:
            raise MediaError(f"unsupported image format {image_format!r}")
        digest = hashlib.sha256(data).hexdigest()
        key = f"{digest[:2]}/{digest}.{extension}"
        path = self.path(key)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader never sees half a file.
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
                handle.write(data)
            os.replace(handle.name, path)
        return StoredMedia(
            key=key,
            sha256=digest,
            size_bytes=len(data),
            mime_type=_MIME_TYPES[extension],
            width=width,
            height=height,
        )

    def path(self, key: str) -> Path:
        """The file of a stored key; keys never leave the store's root."""
        candidate = (self.root / key).resolve()
        if not candidate.is_relative_to(self.root.resolve()):
            raise MediaError("invalid media key")
        return candidate

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()
