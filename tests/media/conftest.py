"""One moto S3 server for the media tests (a fresh bucket per test), with its credentials."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.media.s3_server import AWS_OVERRIDES, CREDENTIALS, S3Server, running_s3_server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server(Path(tmp_path_factory.mktemp("moto"))) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket; boto3 in this process (and its children) gets moto's credentials."""
    for name in AWS_OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return s3_server.new_bucket()
