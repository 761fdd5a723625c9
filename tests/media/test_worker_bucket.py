"""Results a RunPod worker already uploaded (worker-sdxl or worker-comfyui with
BUCKET_ENDPOINT_URL, through runpod-python's rp_upload): in our bucket they are copied
server-side and the worker's object removed; anywhere else they are downloaded as before."""

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.migrate import upgrade_database
from app.jobs.engine import JobEngine
from app.jobs.media import store_due_images
from app.jobs.models import Job, JobImage
from app.jobs.results import apply_state
from app.jobs.status import JobStatus
from app.media import open_store
from app.runpod import JobState
from app.services.generation_defaults import GenerationParams
from tests.factories import add_job
from tests.media.s3_server import CREDENTIALS, S3Server
from tests.media.test_store import png


@pytest.fixture
async def engine(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> AsyncIterator[JobEngine]:
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        data_dir=tmp_path / "data",
        log_file=None,
        **s3_server.settings(s3_bucket),
    )
    job_engine = JobEngine.from_settings(settings)
    upgrade_database(job_engine.db)
    yield job_engine
    await job_engine.aclose()
    job_engine.db.dispose()


def upload_like_rp_upload(endpoint_url: str, job_id: str, data: bytes) -> str:
    """What runpod-python's `rp_upload.upload_image` does with BUCKET_ENDPOINT_URL set:
    bucket `MM-YY` under that endpoint, key `<job id>/<8 hex>.png`, a 7-day presigned GET."""
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
        config=Config(signature_version="s3v4"),
    )
    bucket, key = time.strftime("%m-%y"), f"{job_id}/0badcafe.png"
    client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/png")
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=604800
    )


DOWN = "http://127.0.0.1:9"  # the discard port: connections refused at once


def data_uri(data: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(data).decode()}"


def running_job(session: Session) -> Job:
    job = add_job(session, owner="anonymous", prompt="p", params=GenerationParams(), timeout_s=60)
    job.status = JobStatus.RUNNING
    return job


def complete_job(engine: JobEngine, urls: list[str]) -> str:
    output = {"images": urls, "image_url": urls[0], "seed": 1}
    state = JobState.from_payload({"id": "rp-1", "status": "COMPLETED", "output": output})
    with engine.db.session() as session:
        job = running_job(session)
        assert apply_state(session, job, state, store=engine.store, source="poll")
        return job.id


async def test_our_buckets_objects_are_copied_server_side(
    engine: JobEngine, s3_server: S3Server, s3_bucket: str
) -> None:
    ours = upload_like_rp_upload(f"{s3_server.url}/{s3_bucket}", "rp-1", png(color="red"))
    other_bucket = s3_server.new_bucket()
    theirs = upload_like_rp_upload(f"{s3_server.url}/{other_bucket}", "rp-1", png(color="blue"))
    worker_key = f"{time.strftime('%m-%y')}/rp-1/0badcafe.png"
    assert worker_key in s3_server.keys(s3_bucket)

    job_id = complete_job(engine, [ours, theirs])
    assert await store_due_images(engine) == 2

    with engine.db.session() as session:
        images = session.query(JobImage).filter_by(job_id=job_id).order_by(JobImage.index).all()
        assert [image.state for image in images] == ["stored", "stored"]
        keys = [f"podrelay/{image.storage_key}" for image in images]
    listed = s3_server.keys(s3_bucket)
    assert all(key in listed for key in keys)
    assert worker_key not in listed  # ours: moved to its content key
    assert s3_server.keys(other_bucket) == [worker_key]  # not ours: downloaded, left alone
    assert engine.store.read(images[0].storage_key or "") == png(color="red")
    assert engine.store.read(images[1].storage_key or "") == png(color="blue")


async def test_an_outage_delays_storing_but_loses_nothing(
    engine: JobEngine, s3_server: S3Server, s3_bucket: str
) -> None:
    """The store refuses connections: a downloaded image waits without using up its download
    attempts, and a job whose output carries its image inline does not complete until it is
    stored (RunPod keeps the output; the next reading stores it)."""
    other_bucket = s3_server.new_bucket()
    url = upload_like_rp_upload(f"{s3_server.url}/{other_bucket}", "rp-2", png(color="green"))
    inline = JobState.from_payload(
        {"id": "rp-3", "status": "COMPLETED", "output": {"images": [data_uri(png())]}}
    )
    working = engine.store
    down = Settings(_env_file=None, **{**s3_server.settings(s3_bucket), "s3_endpoint_url": DOWN})
    engine.store = open_store(down)
    try:
        job_id = complete_job(engine, [url])
        assert await store_due_images(engine) == 1
        with engine.db.session() as session:
            image = session.query(JobImage).filter_by(job_id=job_id).one()
            assert (image.state, image.download_attempts) == ("pending", 0)
            assert image.error
            assert "S3" in image.error
            image.next_attempt_at = image.created_at  # due again at once
            job = running_job(session)
            assert not apply_state(session, job, inline, store=engine.store, source="poll")
            assert (job.status, job.images) == (JobStatus.RUNNING, [])
            inline_job = job.id
    finally:
        engine.store = working
    assert await store_due_images(engine) == 1
    with engine.db.session() as session:
        assert session.query(JobImage).filter_by(job_id=job_id).one().state == "stored"
        job = session.get_one(Job, inline_job)
        assert apply_state(session, job, inline, store=engine.store, source="poll")
        assert [image.state for image in job.images] == ["stored"]
