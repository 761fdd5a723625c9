"""Resized copies of stored images (`?w=256&format=webp`), made with Pillow and kept in the
store beside the original.

Bounded so that no one can fill the store with them: a width from `WIDTHS` (never wider than
the original: a wider ask gets the original's width), and WebP or JPEG, so an image has at
most `MAX_VARIANTS` variants, each smaller than a 1024-pixel-wide copy.
"""

import io
from dataclasses import dataclass

from PIL import Image

from app.media.store import variant_prefix

WIDTHS = (64, 128, 256, 512, 1024)
FORMATS = {"webp": ("WEBP", "webp", "image/webp"), "jpeg": ("JPEG", "jpg", "image/jpeg")}
MAX_VARIANTS = (len(WIDTHS) + 1) * len(FORMATS)  # each width, or the original's, per format
QUALITY = 85


class InvalidVariant(ValueError):
    """The asked size or format is not one we make."""


@dataclass(frozen=True)
class Variant:
    width: int | None  # None: the original's width
    format: str

    @property
    def mime_type(self) -> str:
        return FORMATS[self.format][2]

    def key(self, sha256: str) -> str:
        size = "full" if self.width is None else f"w{self.width}"
        return f"{variant_prefix(sha256)}{size}.{FORMATS[self.format][1]}"


def variant_of(width: int | None, image_format: str | None, *, original_width: int) -> Variant:
    """The variant `?w=&format=` asks for; raises `InvalidVariant`."""
    if width is not None and width not in WIDTHS:
        raise InvalidVariant(f"w must be one of {', '.join(map(str, WIDTHS))}")
    chosen = (image_format or "webp").lower()
    if chosen not in FORMATS:
        raise InvalidVariant(f"format must be one of {', '.join(FORMATS)}")
    if width is not None and width >= original_width:
        width = None  # never upscaled
    return Variant(width=width, format=chosen)


def render(original: bytes, variant: Variant) -> bytes:
    with Image.open(io.BytesIO(original)) as image:
        image.load()
        picture: Image.Image = image
        if variant.width is not None:
            height = max(1, round(image.height * variant.width / image.width))
            picture = image.resize((variant.width, height), Image.Resampling.LANCZOS)
        if variant.format == "jpeg" and picture.mode not in ("RGB", "L"):
            picture = picture.convert("RGB")
        buffer = io.BytesIO()
        picture.save(buffer, FORMATS[variant.format][0], quality=QUALITY)
        return buffer.getvalue()
