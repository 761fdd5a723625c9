"""Podrelay on two hosts with no shared disk: the API and the worker each have their own
DATA_DIR and MEDIA_DIR, and share only PostgreSQL, Redis and an S3 bucket (moto on
loopback). The worker stores what RunPod made (downloaded, or inline base64); the API serves
it by signed URL (a redirect to a presigned GET) without ever having seen the bytes."""

import hashlib
from pathlib import Path
from typing import Any

import httpx

from app.simulator.config import SimulatorConfig
from tests.media.s3_server import S3Server, with_test_credentials
from tests.stack.deployment import SMALL_PARAMS
from tests.stack.factory import stack_factory

API = "/api/v1/runpod"


def test_api_and_worker_share_only_the_bucket(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    with stack_factory(tmp_path) as stacks:
        simulator = stacks.simulator(SimulatorConfig(workers=4, job_duration_ms=300))
        stack = stacks.build(
            ledger="postgresql",
            broker="redis",
            simulator=simulator,
            allow_anonymous=True,
            **s3_server.settings(s3_bucket),
        )
        stack.env = with_test_credentials(stack.env)
        hosts = {name: tmp_path / name for name in ("worker-host", "api-host")}
        env = {
            name: {"DATA_DIR": str(folder / "data"), "MEDIA_DIR": str(folder / "media")}
            for name, folder in hosts.items()
        }
        stack.start_worker(extra_env=env["worker-host"])
        base = stack.start_api(extra_env=env["api-host"])
        with httpx.Client(base_url=base, timeout=30) as client:
            bodies: list[dict[str, Any]] = [
                {"prompt": "a lighthouse, by URL", **SMALL_PARAMS, "num_images": 2},
                {"prompt": "a lighthouse, inline", **SMALL_PARAMS, "return_type": "base64"},
            ]
            job_ids = [client.post(f"{API}/generate", json=body).json()["id"] for body in bodies]
            stack.wait_settled(len(job_ids), timeout=90)
            jobs = [client.get(f"{API}/status/{job_id}").json() for job_id in job_ids]
            assert [job["status"] for job in jobs] == ["completed", "completed"]
            images = [image for job in jobs for image in job["images"]]
            assert [image["state"] for image in images] == ["stored"] * 3

            for image in images:
                redirect = client.get(image["signed_url"])
                assert redirect.status_code == 307
                location = redirect.headers["location"]
                assert location.startswith(f"{s3_server.url}/{s3_bucket}/podrelay/")
                fetched = httpx.get(location, timeout=10)
                assert fetched.status_code == 200
                assert hashlib.sha256(fetched.content).hexdigest() == image["sha256"]
                variant = client.get(f"{image['signed_url']}&w=128", follow_redirects=True)
                assert variant.headers["content-type"] == "image/webp"

            keys = s3_server.keys(s3_bucket)
            for image in images:
                assert f"podrelay/{image['sha256'][:2]}/{image['sha256']}.png" in keys
            for folder in hosts.values():  # nothing went to either host's disk
                assert not list((folder / "media").rglob("*.png"))

            deleted = client.delete(f"{API}/jobs/{job_ids[1]}")
            assert deleted.status_code == 200
            inline = jobs[1]["images"][0]
            assert client.get(inline["signed_url"]).status_code == 410
            key = f"podrelay/{inline['sha256'][:2]}/{inline['sha256']}.png"
            assert key not in s3_server.keys(s3_bucket)
