"""A real S3-compatible server on loopback for the tests: moto's standalone server
(`moto[server]`, a dev dependency), in its own process group on a free port.

It keeps objects in memory, so an outage is played by freezing it (SIGSTOP: connections are
accepted by the kernel and never answered) rather than by killing it, which would lose every
object, as no real S3 outage does.
"""

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
from botocore.config import Config

from app.devstack import start_process, stop_process
from tests.stack.waiting import free_port, wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# moto accepts any credentials; these only have to be there (and never a developer's own).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "podrelay-test",
    "AWS_SECRET_ACCESS_KEY": "podrelay-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables that would point boto3 at a developer's own AWS setup.
AWS_OVERRIDES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_ENDPOINT_URL")


class S3Server:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = start_process(argv, env=dict(os.environ), log_path=self.folder / "moto.log")
        wait_until(self._answers, timeout=60, what="moto's S3 server answers")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"moto exited with {self.process.returncode}")
        try:
            return httpx.get(f"{self.url}/moto-api/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def freeze(self) -> None:
        """Down: every connection hangs until `thaw`."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.process is not None:
            if self.frozen:
                self.thaw()
            stop_process(self.process, kill=True)
            self.process = None

    def client(self) -> "S3Client":
        return boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        ).client(
            "s3",
            endpoint_url=self.url,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def new_bucket(self) -> str:
        name = f"podrelay-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, bucket: str) -> dict[str, Any]:
        """Settings fields of a Podrelay on this server's `bucket`."""
        return {
            "media_backend": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": self.url,
            "s3_region": CREDENTIALS["AWS_DEFAULT_REGION"],
            "s3_prefix": "podrelay/",
        }

    def keys(self, bucket: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))


def with_test_credentials(environ: dict[str, str]) -> dict[str, str]:
    """`environ` for a child process whose boto3 must use moto's credentials."""
    clean = {name: value for name, value in environ.items() if name not in AWS_OVERRIDES}
    return {**clean, **CREDENTIALS}


@contextmanager
def running_s3_server(folder: Path) -> Iterator[S3Server]:
    server = S3Server(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
