"""Tests for app.runpod.outputs: every worker output shape from runpod-contract.md section 7."""

import base64
import io

import pytest
from PIL import Image

from app.runpod.errors import OutputFormatError
from app.runpod.outputs import GeneratedImage, extract_cost, extract_images


def _image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 90)).save(buf, format=fmt)
    return buf.getvalue()


PNG = _image_bytes("PNG")
JPEG = _image_bytes("JPEG")
WEBP = _image_bytes("WEBP")
GIF = _image_bytes("GIF")
PNG_B64 = base64.b64encode(PNG).decode()
JPEG_B64 = base64.b64encode(JPEG).decode()
PNG_URI = f"data:image/png;base64,{PNG_B64}"
S3_URL = "https://bucket.s3.amazonaws.com/job-1/0.png?X-Amz-Signature=abc&X-Amz-Expires=604800"


# worker-sdxl


def test_sdxl_data_uris_with_top_level_seed_and_no_duplicate_image_url() -> None:
    jpeg_uri = f"data:image/jpeg;base64,{JPEG_B64}"
    output = {"images": [PNG_URI, jpeg_uri], "image_url": PNG_URI, "seed": 42}
    images = extract_images(output)
    assert images == [
        GeneratedImage(url=None, data=PNG, mime_type="image/png", seed=42),
        GeneratedImage(url=None, data=JPEG, mime_type="image/jpeg", seed=42),
    ]
    assert Image.open(io.BytesIO(images[0].data or b"")).size == (4, 3)


def test_sdxl_s3_presigned_urls() -> None:
    output = {"images": [S3_URL], "image_url": S3_URL, "seed": 7}
    assert extract_images(output) == [
        GeneratedImage(url=S3_URL, data=None, mime_type="image/png", seed=7)
    ]


def test_sdxl_non_integer_seed_is_ignored() -> None:
    assert extract_images({"images": [PNG_URI], "seed": True})[0].seed is None
    assert extract_images({"images": [PNG_URI], "seed": "42"})[0].seed is None


# worker-comfyui >= 5


def test_comfyui_base64_and_s3_url() -> None:
    output = {
        "images": [
            {"filename": "ComfyUI_00001_.png", "type": "base64", "data": PNG_B64},
            {"filename": "ComfyUI_00002_.jpg", "type": "s3_url", "data": S3_URL},
        ],
        "errors": ["Warning: node 9 produced no output"],
    }
    assert extract_images(output) == [
        GeneratedImage(None, PNG, "image/png", filename="ComfyUI_00001_.png"),
        GeneratedImage(S3_URL, None, "image/png", filename="ComfyUI_00002_.jpg"),
    ]


def test_comfyui_success_no_images_is_empty() -> None:
    assert extract_images({"status": "success_no_images", "images": []}) == []


def test_comfyui_element_without_type_is_auto_detected() -> None:
    images = extract_images({"images": [{"data": JPEG_B64}]})
    assert images == [GeneratedImage(None, JPEG, "image/jpeg")]


@pytest.mark.parametrize(
    ("element", "match"),
    [
        ({"filename": "a.png", "type": "s3_url", "data": PNG_B64}, "should be an http"),
        ({"filename": "a.png", "type": "base64", "data": S3_URL}, "should be base64"),
        ({"filename": "a.png", "type": "gcs", "data": PNG_B64}, "not base64 or s3_url"),
        ({"filename": "a.png", "type": "base64", "data": None}, "expected a string"),
    ],
)
def test_comfyui_bad_elements(element: dict[str, object], match: str) -> None:
    with pytest.raises(OutputFormatError, match=match):
        extract_images({"images": [element]})


# worker-comfyui < 5


def test_comfyui_legacy_message_base64_and_url() -> None:
    assert extract_images({"message": PNG_B64, "status": "success"}) == [
        GeneratedImage(None, PNG, "image/png")
    ]
    assert extract_images({"message": S3_URL, "status": "success"}) == [
        GeneratedImage(S3_URL, None, "image/png")
    ]


def test_comfyui_legacy_message_without_success_is_unknown() -> None:
    with pytest.raises(OutputFormatError, match=r"keys \['message', 'status'\]"):
        extract_images({"message": "workflow failed", "status": "error"})


# worker-a1111


def test_a1111_raw_base64_list() -> None:
    output = {"images": [PNG_B64, JPEG_B64], "parameters": {"steps": 20}, "info": "{}"}
    assert extract_images(output) == [
        GeneratedImage(None, PNG, "image/png"),
        GeneratedImage(None, JPEG, "image/jpeg"),
    ]


# worker-sdxl-turbo


def test_sdxl_turbo_per_image_seed() -> None:
    output = {
        "images": [{"image": PNG_B64, "seed": 1}, {"image": JPEG_B64, "seed": 2}],
        "generation_time": 0.4,
        "parameters": {"num_images": 2},
    }
    assert extract_images(output) == [
        GeneratedImage(None, PNG, "image/png", seed=1),
        GeneratedImage(None, JPEG, "image/jpeg", seed=2),
    ]


# RunPod public endpoints


def test_public_endpoint_image_url_and_cost() -> None:
    output = {"image_url": "https://image.runpod.ai/abc/def.jpeg", "cost": 0.0024}
    assert extract_images(output) == [
        GeneratedImage("https://image.runpod.ai/abc/def.jpeg", None, "image/jpeg")
    ]
    assert extract_cost(output) == pytest.approx(0.0024)


def test_public_endpoint_image_url_must_be_a_url() -> None:
    with pytest.raises(OutputFormatError, match="should be an http"):
        extract_images({"image_url": PNG_B64, "cost": 0.01})


@pytest.mark.parametrize(
    "output",
    [
        None,
        3,
        "x",
        [],
        {"images": []},
        {"cost": "0.1"},
        {"cost": True},
        {"cost": -1.0},
        {"cost": float("nan")},
        {"cost": float("inf")},
    ],
)
def test_extract_cost_none_when_absent_or_invalid(output: object) -> None:
    assert extract_cost(output) is None


def test_extract_cost_accepts_int() -> None:
    assert extract_cost({"image_url": S3_URL, "cost": 1}) == 1.0


# Bare strings and lists from custom workers


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (S3_URL, GeneratedImage(S3_URL, None, "image/png")),
        (
            "http://127.0.0.1:8000/files/img",
            GeneratedImage("http://127.0.0.1:8000/files/img", None, None),
        ),
        (
            "HTTPS://cdn.example.com/a/b.WEBP",
            GeneratedImage("HTTPS://cdn.example.com/a/b.WEBP", None, "image/webp"),
        ),
        (
            "https://example.com/x.png/download",
            GeneratedImage("https://example.com/x.png/download", None, None),
        ),
        (PNG_URI, GeneratedImage(None, PNG, "image/png")),
        (JPEG_B64, GeneratedImage(None, JPEG, "image/jpeg")),
    ],
)
def test_bare_string(output: str, expected: GeneratedImage) -> None:
    assert extract_images(output) == [expected]


def test_bare_list() -> None:
    assert extract_images([PNG_URI, S3_URL, JPEG_B64]) == [
        GeneratedImage(None, PNG, "image/png"),
        GeneratedImage(S3_URL, None, "image/png"),
        GeneratedImage(None, JPEG, "image/jpeg"),
    ]


# base64 and data URI rules


@pytest.mark.parametrize(
    ("raw", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp"), (GIF, "image/gif")],
)
def test_mime_sniffed_from_magic_bytes(raw: bytes, mime: str) -> None:
    [image] = extract_images({"images": [base64.b64encode(raw).decode()]})
    assert image.data == raw
    assert image.mime_type == mime


def test_base64_missing_padding_and_whitespace_tolerated() -> None:
    unpadded = PNG_B64.rstrip("=")
    assert unpadded != PNG_B64  # the fixture must actually need padding
    wrapped = "\n".join(unpadded[i : i + 76] for i in range(0, len(unpadded), 76))
    assert extract_images(f"  {wrapped}\n") == [GeneratedImage(None, PNG, "image/png")]


def test_data_uri_mime_is_kept() -> None:
    [image] = extract_images(f"data:image/x-custom;name=a.png;base64,{PNG_B64}")
    assert (image.data, image.mime_type) == (PNG, "image/x-custom")


def test_data_uri_generic_mime_falls_back_to_sniffed() -> None:
    [image] = extract_images(f"data:application/octet-stream;base64,{JPEG_B64}")
    assert image.mime_type == "image/jpeg"


def test_repr_does_not_dump_bytes() -> None:
    assert "data=" not in repr(GeneratedImage(None, PNG, "image/png"))


# Junk: only OutputFormatError may escape


@pytest.mark.parametrize(
    ("output", "match"),
    [
        (None, "got None"),
        (42, "got a int"),
        (1.5, "got a float"),
        (True, "got a bool"),
        ([], "empty list"),
        ({}, r"keys \[\]"),
        ({"error": "CUDA out of memory"}, "worker error: 'CUDA out of memory'"),
        ({"error": {"type": "OOM"}}, "worker error"),
        ({"foo": 1, "bar": 2}, r"keys \['bar', 'foo'\]"),
        ({1: "x"}, r"keys \['1'\]"),
        ({"images": "abc"}, "output.images is a str, expected a list"),
        ({"images": None}, "output.images is None"),
        ({"images": [PNG_URI, 5]}, r"output.images\[1\] has no known image shape: got a int"),
        ({"images": [{"url": S3_URL}]}, r"images\[0\] has no known image shape.*\['url'\]"),
        ({"images": [{"image": 123}]}, "expected a string"),
        ({"images": [None]}, "got None"),
        ({"images": [[PNG_B64]]}, "got a list"),
        ({"image_url": None}, "output.image_url is None"),
        ({"image_url": "ftp://example.com/a.png"}, "not an http"),
        ({"message": 12, "status": "success"}, "output.message is a int"),
        ([PNG_URI, {"image": PNG_B64}], r"output\[1\] is a dict"),
        ("", "empty string"),
        ("   ", "empty string"),
        ("file:///etc/passwd", "not an http"),
        ("javascript:alert(1)", "not an http"),
        ("https://", "not an http"),
        ("http://[::1/a.png", "not a valid URL"),
        ("https://example.com/a b.png", "not an http"),
        ("not base64 at all!", "not valid base64"),
        ("abcde", "not valid base64"),
        ("ünïcödé", "not valid base64"),
        (base64.b64encode(b"GIF8 nope, just text").decode(), "not PNG, JPEG, WebP or GIF"),
        (base64.b64encode(b"<html>hello</html>").decode(), r"starts with b'<html>he'"),
        ("data:image/png;base64,", "not PNG"),
        ("data:image/png;base64,@@@@", "not valid base64"),
        ("data:image/png,rawbytes", "without ';base64,'"),
        ("data:image/png;base64", "without ';base64,'"),
        ("data:text/plain;base64," + base64.b64encode(b"hello").decode(), "not PNG"),
    ],
)
def test_junk_raises_only_output_format_error(output: object, match: str) -> None:
    with pytest.raises(OutputFormatError, match=match):
        extract_images(output)


def test_long_error_is_truncated_in_message() -> None:
    with pytest.raises(OutputFormatError) as info:
        extract_images({"error": "x" * 10_000})
    assert len(info.value.message) < 400
