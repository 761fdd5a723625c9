"""Deterministic placeholder PNGs: the same prompt, seed and size give byte-identical files.

A load test completes thousands of jobs, and drawing and encoding a PNG for each costs the
simulator ~20 ms of CPU: on a small machine that delays its webhooks and so inflates the lag it
is there to measure. So a picture is drawn once per style and size (`STYLES` styles, picked by
the spec's digest), and each image's bytes are made its own by an `iTXt` chunk that carries the
prompt and seed (any PNG reader shows it as the image's description).
"""

import hashlib
import io
import json
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

_TRANSPOSES = list(Image.Transpose)
STYLES = 16
_PNG_SIGNATURE_AND_IHDR = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, data, CRC


@dataclass(frozen=True)
class ImageSpec:
    prompt: str
    seed: int
    width: int
    height: int

    @property
    def digest(self) -> bytes:
        key = json.dumps([self.prompt, self.seed, self.width, self.height], ensure_ascii=False)
        return hashlib.sha256(key.encode()).digest()

    @property
    def image_id(self) -> str:
        return self.digest.hex()[:32]

    @property
    def style(self) -> int:
        return self.digest[0] % STYLES


def _color(digest: bytes, offset: int) -> tuple[int, int, int]:
    return digest[offset], digest[offset + 1], digest[offset + 2]


def _draw(style: int, width: int, height: int) -> Image.Image:
    d = hashlib.sha256(b"podrelay-simulator-style-%d" % style).digest()
    linear = Image.linear_gradient("L").transpose(_TRANSPOSES[d[0] % len(_TRANSPOSES)])
    gray = Image.blend(linear, Image.radial_gradient("L"), 0.2 + d[1] / 400)
    base = ImageOps.colorize(gray, black=_color(d, 2), white=_color(d, 5), mid=_color(d, 8))
    img = base.resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    side = min(width, height)
    for i in range(4):
        cx, cy = d[11 + i] / 255 * width, d[15 + i] / 255 * height
        radius = (0.05 + d[19 + i] / 255 * 0.25) * side
        draw.ellipse(
            (cx - radius, cy - radius, cx + radius, cy + radius),
            outline=_color(d, 23 + i),
            width=max(1, side // 64),
        )
    size = max(6, side // 9)
    draw.text(
        (size // 3, size // 3),
        "SIMULATED",
        fill="white",
        font=ImageFont.load_default(size=size),
        stroke_width=max(1, size // 12),
        stroke_fill="black",
    )
    return img


@lru_cache(maxsize=4 * STYLES)  # four sizes in use at once
def _style_png(style: int, width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    _draw(style, width, height).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def render_png(spec: ImageSpec) -> bytes:
    """The PNG for a spec: its style's picture, with the prompt and seed as its description."""
    picture = _style_png(spec.style, spec.width, spec.height)
    text = f"{spec.prompt}\nseed {spec.seed}".encode()
    # iTXt: keyword, NUL, uncompressed (0, 0), no language tag, no translated keyword, UTF-8 text.
    description = _chunk(b"iTXt", b"Description\x00\x00\x00\x00\x00" + text)
    head = _PNG_SIGNATURE_AND_IHDR
    return picture[:head] + description + picture[head:]


class ImageRegistry:
    """Map image ids in URLs back to specs, forgetting the oldest beyond a bound."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._capacity = capacity
        self._specs: OrderedDict[str, ImageSpec] = OrderedDict()

    def add(self, spec: ImageSpec) -> str:
        image_id = spec.image_id
        self._specs[image_id] = spec
        self._specs.move_to_end(image_id)
        while len(self._specs) > self._capacity:
            self._specs.popitem(last=False)
        return image_id

    def get(self, image_id: str) -> ImageSpec | None:
        return self._specs.get(image_id)
