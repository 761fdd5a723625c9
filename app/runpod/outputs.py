"""Turn the `output` of a COMPLETED RunPod job into images, whatever worker template made it.

Known shapes (see runpod-contract.md sections 1.4 and 7):

    worker-sdxl          {"images": [data URI | URL, ...], "image_url": str, "seed": int}
    worker-comfyui >= 5  {"images": [{"filename", "type": "base64"|"s3_url", "data"}], "errors"?}
                         {"status": "success_no_images", "images": []}
    worker-comfyui < 5   {"message": base64 | URL, "status": "success"}
    worker-a1111         {"images": [raw base64, ...], "parameters": {...}, "info": str}
    worker-sdxl-turbo    {"images": [{"image": raw base64, "seed": int}], ...}
    public endpoints     {"image_url": URL, "cost": float}
    custom workers       a bare string (URL, data URI, base64) or a non-empty list of them

Anything else raises `OutputFormatError`; no other exception escapes.
"""

import base64
import binascii
import math
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from app.runpod.errors import OutputFormatError

_Kind = Literal["auto", "url", "base64"]

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_EXT_MIME = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}


@dataclass(frozen=True)
class GeneratedImage:
    """One image from a job's output: a URL to download, or decoded bytes."""

    url: str | None
    # Kept out of repr so logging an image never dumps megabytes of bytes.
    data: bytes | None = field(repr=False)
    mime_type: str | None
    seed: int | None = None
    filename: str | None = None


def extract_images(output: object) -> list[GeneratedImage]:
    """Return every image in a completed job's `output`, in the worker's order.

    Raises `OutputFormatError` if `output` matches no known worker shape, holds an element of
    unknown shape, a non-http(s) URL, invalid base64, or bytes that are not PNG/JPEG/WebP/GIF.
    An `images` list that is empty (comfyui's `success_no_images`) yields `[]`.
    """
    if isinstance(output, str):
        return [_from_string(output, "output")]
    if isinstance(output, list):
        if not output:
            raise OutputFormatError("job output is an empty list: no images")
        return [
            _from_string(_need_str(item, f"output[{i}]"), f"output[{i}]")
            for i, item in enumerate(output)
        ]
    if isinstance(output, dict):
        return _from_dict(output)
    raise OutputFormatError(f"job output has no known image shape: got {_describe(output)}")


def extract_cost(output: object) -> float | None:
    """Return the `cost` a RunPod public endpoint reports in `output`, else None. Never raises."""
    if not isinstance(output, dict):
        return None
    cost = output.get("cost")
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        return None
    value = float(cost)
    return value if math.isfinite(value) and value >= 0 else None


def _from_dict(output: dict[object, object]) -> list[GeneratedImage]:
    if "error" in output:
        raise OutputFormatError(f"job output is a worker error: {str(output['error'])[:300]!r}")
    if "images" in output:
        images = output["images"]
        if not isinstance(images, list):
            raise OutputFormatError(f"output.images is {_describe(images)}, expected a list")
        # sdxl reports one seed for the whole batch; "image_url" there repeats images[0].
        seed = _int_or_none(output.get("seed"))
        return [_from_element(item, f"output.images[{i}]", seed) for i, item in enumerate(images)]
    if "message" in output and output.get("status") == "success":
        return [_from_string(_need_str(output["message"], "output.message"), "output.message")]
    if "image_url" in output:
        url = _need_str(output["image_url"], "output.image_url")
        return [_from_string(url, "output.image_url", kind="url")]
    raise OutputFormatError(f"job output has no known image shape: got {_describe(output)}")


def _from_element(item: object, where: str, seed: int | None) -> GeneratedImage:
    if isinstance(item, str):
        return _from_string(item, where, seed=seed)
    if isinstance(item, dict) and "data" in item:  # worker-comfyui >= 5
        kinds: dict[object, _Kind] = {"base64": "base64", "s3_url": "url", None: "auto"}
        kind = kinds.get(item.get("type"))
        if kind is None:
            raise OutputFormatError(f"{where}.type is {item.get('type')!r}, not base64 or s3_url")
        filename = item.get("filename")
        return _from_string(
            _need_str(item["data"], f"{where}.data"),
            f"{where}.data",
            kind=kind,
            filename=filename if isinstance(filename, str) else None,
        )
    if isinstance(item, dict) and "image" in item:  # worker-sdxl-turbo
        data = _need_str(item["image"], f"{where}.image")
        return _from_string(data, f"{where}.image", seed=_int_or_none(item.get("seed")))
    raise OutputFormatError(f"{where} has no known image shape: got {_describe(item)}")


def _from_string(
    text: str,
    where: str,
    *,
    kind: _Kind = "auto",
    seed: int | None = None,
    filename: str | None = None,
) -> GeneratedImage:
    text = text.strip()
    if not text:
        raise OutputFormatError(f"{where} is an empty string")
    mime: str | None = None
    if text[:5].lower() == "data:":
        header, comma, text = text[5:].partition(",")
        params = [p.strip().lower() for p in header.split(";")]
        if not comma or "base64" not in params[1:]:
            raise OutputFormatError(f"{where} is a data URI without ';base64,' payload")
        # A generic type such as application/octet-stream tells less than the magic bytes.
        mime = params[0] if params[0].startswith("image/") else None
    elif ":" in text:  # base64 never contains ':', so this is meant as a URL
        if kind == "base64":
            raise OutputFormatError(f"{where} should be base64 but looks like a URL")
        return GeneratedImage(_check_url(text, where), None, _url_mime(text), seed, filename)
    if kind == "url":
        raise OutputFormatError(f"{where} should be an http(s) URL, got {text[:40]!r}...")
    data = _decode_base64(text, where)
    sniffed = _sniff(data)
    if sniffed is None:
        raise OutputFormatError(
            f"{where} decodes to {len(data)} bytes that are not PNG, JPEG, WebP or GIF "
            f"(starts with {data[:8]!r})"
        )
    return GeneratedImage(None, data, mime or sniffed, seed, filename)


def _decode_base64(text: str, where: str) -> bytes:
    compact = "".join(text.split())
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII characters
        raise OutputFormatError(f"{where} is not valid base64: {exc}") from None


def _check_url(text: str, where: str) -> str:
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise OutputFormatError(f"{where} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in text):
        raise OutputFormatError(f"{where} is not an http(s) URL: {text[:80]!r}")
    return text


def _url_mime(url: str) -> str | None:
    path = urlsplit(url).path
    ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _EXT_MIME.get(ext)


def _sniff(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _MAGIC if data.startswith(magic)), None)


def _need_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise OutputFormatError(f"{where} is {_describe(value)}, expected a string")
    return value


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _describe(value: object) -> str:
    if isinstance(value, dict):
        keys = sorted(str(k) for k in value)
        more = f" (+{len(keys) - 10} more)" if len(keys) > 10 else ""
        return f"a dict with keys {keys[:10]}{more}"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"
