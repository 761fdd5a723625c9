"""Both media backends behind one interface: the local folder, and S3 on a real server
(moto on loopback). Content-addressed keys, streamed writes, deletion, presigned delivery,
worker-bucket objects, and an outage seen as `StorageUnavailable`, not as a bad image."""

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.core.config import Settings
from app.media import open_store
from app.media.local import LocalStore
from app.media.s3 import S3Store
from app.media.store import (
    SPOOL_MEMORY_BYTES,
    IncomingMedia,
    MediaError,
    MediaStore,
    StorageUnavailable,
)
from tests.media.s3_server import S3Server


def png(width: int = 64, height: int = 48, color: str = "teal", noise: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), color)
    if noise:  # incompressible, so the file outgrows the in-memory spool
        image = Image.frombytes(
            "RGB", (width, height), bytes(range(256)) * (width * height * 3 // 256)
        )
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=0 if noise else 6)
    return buffer.getvalue()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MediaStore:
    if request.param == "local":
        return open_store(Settings(_env_file=None, media_dir=tmp_path / "media"))
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return open_store(Settings(_env_file=None, **server.settings(bucket)))


def test_the_same_bytes_are_one_object_at_their_content_key(store: MediaStore) -> None:
    data = png()
    first, second = store.put_bytes(data), store.put_bytes(data)
    assert first == second
    assert first.key == f"{first.sha256[:2]}/{first.sha256}.png"
    assert (first.width, first.height, first.mime_type) == (64, 48, "image/png")
    assert store.read(first.key) == data
    assert store.exists(first.key)


def test_a_large_image_streams_through_a_file_not_memory(store: MediaStore) -> None:
    data = png(800, 600, noise=True)
    assert len(data) > SPOOL_MEMORY_BYTES
    incoming = IncomingMedia()
    for start in range(0, len(data), 64 * 1024):
        incoming.write(data[start : start + 64 * 1024])
    incoming.finish()
    assert incoming.file._rolled  # type: ignore[attr-defined]  # spilled to a temporary file
    try:
        stored = store.put(incoming)
    finally:
        incoming.close()
    assert store.read(stored.key) == data


def test_non_images_and_oversized_images_are_refused(store: MediaStore) -> None:
    with pytest.raises(MediaError, match="not a readable image"):
        store.put_bytes(b"<html>not an image</html>")
    incoming = IncomingMedia(limit=100)
    with pytest.raises(MediaError, match="larger than 100 bytes"):
        incoming.write(png())
    incoming.close()


def test_deleting_an_object_takes_its_variants_along(store: MediaStore) -> None:
    stored = store.put_bytes(png())
    other = store.put_bytes(png(color="red"))
    variant = f"variants/{stored.sha256}/w64.webp"
    store.write(variant, io.BytesIO(b"variant bytes"), "image/webp")
    assert store.keys_under(f"variants/{stored.sha256}/") == [variant]
    store.delete_with_variants(stored.key, stored.sha256)
    assert not store.exists(stored.key)
    assert not store.exists(variant)
    assert store.exists(other.key)
    store.delete([stored.key])  # already gone: no error


def test_delivery_is_the_file_or_a_working_presigned_url(store: MediaStore) -> None:
    data = png()
    stored = store.put_bytes(data)
    delivery = store.delivery(stored.key, mime_type=stored.mime_type, expires_in=60)
    if isinstance(store, LocalStore):
        assert delivery.path is not None
        assert delivery.path.read_bytes() == data
        return
    assert delivery.redirect_url is not None
    assert "X-Amz-Signature=" in delivery.redirect_url
    response = httpx.get(delivery.redirect_url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"
    tampered = delivery.redirect_url.replace(stored.sha256, "0" * 64)
    assert httpx.get(tampered).status_code == 403


def test_a_cdn_in_front_of_the_bucket_gets_the_redirects(
    s3_server: S3Server, s3_bucket: str
) -> None:
    settings = Settings(
        _env_file=None,
        **s3_server.settings(s3_bucket),
        media_public_base_url="https://images.example.com/",
    )
    store = open_store(settings)
    delivery = store.delivery("ab/abc.png", mime_type="image/png", expires_in=60)
    assert delivery.redirect_url == "https://images.example.com/podrelay/ab/abc.png"


def test_only_urls_into_our_own_bucket_are_ours(s3_server: S3Server, s3_bucket: str) -> None:
    store = open_store(Settings(_env_file=None, **s3_server.settings(s3_bucket)))
    assert isinstance(store, S3Store)
    base = s3_server.url
    assert store.object_at(f"{base}/{s3_bucket}/12-26/job-1/a1b2.png?X-Amz-Signature=x") == (
        "12-26/job-1/a1b2.png"
    )
    assert store.object_at(f"{base}/{s3_bucket}/12-26/a%20b.png") == "12-26/a b.png"
    assert store.object_at(f"{base}/another-bucket/12-26/job-1/a1b2.png") is None
    assert store.object_at(f"http://127.0.0.1:1/{s3_bucket}/x.png") is None
    assert store.object_at("https://image.runpod.ai/abc.png") is None
    aws = open_store(Settings(_env_file=None, media_backend="s3", s3_bucket="media"))
    assert isinstance(aws, S3Store)
    assert aws.object_at("https://media.s3.us-east-1.amazonaws.com/12-26/j/x.png") == (
        "12-26/j/x.png"
    )
    assert aws.object_at("https://s3.eu-west-1.amazonaws.com/media/j/x.png") == "j/x.png"
    assert aws.object_at("https://other.s3.amazonaws.com/j/x.png") is None


def test_an_unreachable_store_is_unavailable_not_a_bad_image(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        media_backend="s3",
        s3_bucket="podrelay",
        s3_endpoint_url="http://127.0.0.1:9",  # discard: refused at once
        s3_region="us-east-1",
    )
    store = open_store(settings)
    with pytest.raises(StorageUnavailable):
        store.put_bytes(png())
    # Within the breaker's window, calls fail at once without trying.
    with pytest.raises(StorageUnavailable, match="failed less than"):
        store.exists("ab/abc.png")
