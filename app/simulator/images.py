"""Deterministic placeholder PNGs: the same prompt, seed and size give byte-identical files.

Rendering is lazy (on first download or when a base64 output is built) and cached, because a
load test can complete thousands of jobs whose images nobody fetches.
"""

import hashlib
import io
import json
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

_TRANSPOSES = list(Image.Transpose)


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


def _color(digest: bytes, offset: int) -> tuple[int, int, int]:
    return digest[offset], digest[offset + 1], digest[offset + 2]


def _draw(spec: ImageSpec) -> Image.Image:
    d = spec.digest
    linear = Image.linear_gradient("L").transpose(_TRANSPOSES[d[0] % len(_TRANSPOSES)])
    gray = Image.blend(linear, Image.radial_gradient("L"), 0.2 + d[1] / 400)
    base = ImageOps.colorize(gray, black=_color(d, 2), white=_color(d, 5), mid=_color(d, 8))
    img = base.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    side = min(spec.width, spec.height)
    for i in range(4):
        cx, cy = d[11 + i] / 255 * spec.width, d[15 + i] / 255 * spec.height
        radius = (0.05 + d[19 + i] / 255 * 0.25) * side
        draw.ellipse(
            (cx - radius, cy - radius, cx + radius, cy + radius),
            outline=_color(d, 23 + i),
            width=max(1, side // 64),
        )
    size = max(6, side // 9)
    stroke = max(1, size // 12)
    draw.text(
        (size // 3, size // 3),
        "SIMULATED",
        fill="white",
        font=ImageFont.load_default(size=size),
        stroke_width=stroke,
        stroke_fill="black",
    )
    excerpt = spec.prompt if len(spec.prompt) <= 40 else spec.prompt[:39] + "…"
    draw.text(
        (size // 3, size * 3 // 2),
        excerpt,
        fill="white",
        font=ImageFont.load_default(size=max(5, size // 2)),
        stroke_width=max(1, stroke // 2),
        stroke_fill="black",
    )
    return img


@lru_cache(maxsize=64)
def render_png(spec: ImageSpec) -> bytes:
    """Render the PNG for a spec (cached; Pillow writes no timestamps, so bytes are stable)."""
    buffer = io.BytesIO()
    _draw(spec).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


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
