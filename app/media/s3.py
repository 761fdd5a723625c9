"""The `s3` media backend: one bucket on AWS S3 or an S3-compatible service (R2, MinIO, B2).

Built on boto3: its credential chain is the standard AWS one (environment, shared config and
profiles, SSO, instance and container roles), it presigns GETs locally, copies objects
server-side, and streams uploads from a file in parts (s3transfer). Its client is
thread-safe, and the store is called from worker threads.

Timeouts are short and, after a failure, every call fails at once for `BREAKER_S`: during an
outage a tracker tick then reschedules its images instead of waiting on each in turn.
"""

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.core.config import Settings
from app.media.store import IMMUTABLE, Delivery, IncomingMedia, MediaStore, StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BREAKER_S = 5.0
_CHUNK = 256 * 1024
_TRANSFER = TransferConfig(multipart_threshold=8 * 1024 * 1024, max_concurrency=4)


class S3Store(MediaStore):
    backend = "s3"

    def __init__(self, settings: Settings) -> None:
        assert settings.s3_bucket is not None  # checked by Settings
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.endpoint_url = settings.s3_endpoint_url
        self.region = settings.s3_region
        self.public_base_url = (settings.media_public_base_url or "").rstrip("/") or None
        self._client: S3Client | None = None
        self._lock = threading.Lock()
        self._down_until = 0.0

    @property
    def client(self) -> "S3Client":
        with self._lock:
            if self._client is None:
                config = Config(
                    signature_version="s3v4",
                    connect_timeout=3,
                    read_timeout=10,
                    retries={"max_attempts": 2, "mode": "standard"},
                    # Path-style on custom endpoints: MinIO and loopback hosts have no bucket DNS.
                    s3={"addressing_style": "path" if self.endpoint_url else "auto"},
                )
                self._client = boto3.session.Session().client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
                )
            return self._client

    def _call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() < self._down_until:
            raise StorageUnavailable(f"S3 failed less than {BREAKER_S:g} s ago")
        try:
            return getattr(self.client, operation)(*args, **kwargs)
        except ClientError as error:
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            code = error.response.get("Error", {}).get("Code", "")
            if status == 404 or code in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"no object {args or kwargs.get('Key')}") from None
            self._down_until = time.monotonic() + BREAKER_S
            raise StorageUnavailable(f"S3 {operation} answered {status} {code}") from None
        except BotoCoreError as error:
            self._down_until = time.monotonic() + BREAKER_S
            raise StorageUnavailable(f"S3 {operation} failed: {type(error).__name__}") from None

    def object_key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def write(self, key: str, source: BinaryIO, mime_type: str) -> None:
        extra = {"ContentType": mime_type, "CacheControl": IMMUTABLE}
        self._call(
            "upload_fileobj",
            source,
            self.bucket,
            self.object_key(key),
            ExtraArgs=extra,
            Config=_TRANSFER,
        )

    def read(self, key: str) -> bytes:
        body = self._call("get_object", Bucket=self.bucket, Key=self.object_key(key))["Body"]
        with body:
            data: bytes = body.read()
        return data

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", Bucket=self.bucket, Key=self.object_key(key))
        except FileNotFoundError:
            return False
        return True

    def delete(self, keys: Iterable[str]) -> None:
        objects = [{"Key": self.object_key(key)} for key in keys]
        for start in range(0, len(objects), 1000):  # S3's limit per request
            batch = {"Objects": objects[start : start + 1000], "Quiet": True}
            self._call("delete_objects", Bucket=self.bucket, Delete=batch)

    def keys_under(self, prefix: str) -> list[str]:
        listed = self._call("list_objects_v2", Bucket=self.bucket, Prefix=self.object_key(prefix))
        return sorted(item["Key"][len(self.prefix) :] for item in listed.get("Contents", []))

    def delivery(self, key: str, *, mime_type: str, expires_in: int) -> Delivery:
        if self.public_base_url:
            return Delivery(redirect_url=f"{self.public_base_url}/{self.object_key(key)}")
        params = {"Bucket": self.bucket, "Key": self.object_key(key)}
        params["ResponseContentType"] = mime_type
        url = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)
        return Delivery(redirect_url=url)

    @property
    def redirect_origin(self) -> str:
        base = self.public_base_url or self.endpoint_url
        if base is None:
            return "https://*.amazonaws.com"
        parts = urlsplit(base)
        return f"{parts.scheme}://{parts.netloc}"

    # Objects a RunPod worker uploaded to this bucket (its BUCKET_ENDPOINT_URL).

    def object_at(self, url: str) -> str | None:
        """The key of the object in our bucket that `url` points at, or None if it is not ours.

        Path-style (`<endpoint>/<bucket>/<key>`, what rp_upload makes with BUCKET_ENDPOINT_URL
        set to `<endpoint>/<bucket>`) or virtual-hosted (`<bucket>.<host>/<key>`)."""
        parts = urlsplit(url)
        host = (parts.netloc or "").lower()
        path = unquote(parts.path)
        ours = urlsplit(self.endpoint_url or "https://s3.amazonaws.com").netloc.lower()
        aws = not self.endpoint_url and host.endswith(".amazonaws.com")
        if host == ours or (aws and host.startswith("s3.")):
            bucket, _, key = path.lstrip("/").partition("/")
            return key if bucket == self.bucket and key else None
        if host.startswith(f"{self.bucket}.") and (aws or host == f"{self.bucket}.{ours}"):
            return path.lstrip("/") or None
        return None

    def fetch_object(self, bucket_key: str) -> IncomingMedia:
        """Read an object of the bucket (by its full key) into a spool, hashing it."""
        incoming = IncomingMedia()
        try:
            body = self._call("get_object", Bucket=self.bucket, Key=bucket_key)["Body"]
            with body:
                for chunk in body.iter_chunks(_CHUNK):
                    incoming.write(chunk)
            incoming.finish()
        except BaseException:
            incoming.close()
            raise
        return incoming

    def copy_within(self, bucket_key: str, incoming: IncomingMedia) -> None:
        """Copy an object of the bucket to the content key of `incoming`, server-side."""
        media = incoming.checked()
        self._call(
            "copy_object",
            Bucket=self.bucket,
            Key=self.object_key(media.key),
            CopySource={"Bucket": self.bucket, "Key": bucket_key},
            ContentType=media.mime_type,
            CacheControl=IMMUTABLE,
            MetadataDirective="REPLACE",
        )

    def delete_object(self, bucket_key: str) -> None:
        self._call("delete_object", Bucket=self.bucket, Key=bucket_key)
