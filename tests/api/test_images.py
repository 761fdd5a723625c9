"""Images a browser can use: signed, expiring URLs with no key in them; variants; deletion by
the owner (410 from then on) and by the retention sweep, with the clock moved forward."""

import json
from datetime import timedelta
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from app.core.db import utcnow
from app.jobs import retention
from app.media import signing
from app.media.local import LocalStore
from tests.api.test_endpoints import SMALL
from tests.stack.http_api import API, finish, key_headers
from tests.stack.inprocess_api import ApiFactory, RunningApi

SECRET = "mediasec_test"  # tests/api/conftest.py's MEDIA_URL_SECRET


async def completed(api: RunningApi, headers: dict[str, str] | None = None, **body: Any) -> Any:
    request = {"prompt": "a lighthouse", **SMALL, **body}
    job = (await api.client.post(f"{API}/generate", json=request, headers=headers)).json()
    done = await finish(api, job["id"], headers)
    assert done["status"] == "completed"
    return done


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


async def test_a_signed_url_serves_the_image_without_a_key(api_strict: RunningApi) -> None:
    api = api_strict
    alice = key_headers(api, "alice")
    done = await completed(api, alice)
    image = done["images"][0]
    signed = image["signed_url"]
    assert signed.startswith(f"{API}/media/{image['id']}?expires=")
    assert alice["Authorization"].split()[1] not in signed
    answer = await api.client.get(signed)  # no Authorization header
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["cache-control"].startswith("private, max-age=")
    owner_copy = await api.client.get(image["url"], headers=alice)
    assert answer.content == owner_copy.content
    assert (await api.client.get(image["url"])).status_code == 401  # the key route stays keyed
    expires = int(query(signed)["expires"])
    assert image["signed_url_expires_at"].startswith(
        utcnow().fromtimestamp(expires).strftime("%Y-%m-%d")
    )


async def test_a_tampered_expired_or_moved_url_is_403(api_strict: RunningApi) -> None:
    api = api_strict
    alice, bob = key_headers(api, "alice"), key_headers(api, "bob")
    mine = (await completed(api, alice))["images"][0]
    theirs = (await completed(api, bob, seed=7))["images"][0]
    params = query(mine["signed_url"])
    path = f"{API}/media"
    cases = {
        "signature_invalid": [
            f"{path}/{theirs['id']}?expires={params['expires']}&sig={params['sig']}",
            f"{path}/{mine['id']}?expires={int(params['expires']) + 60}&sig={params['sig']}",
            f"{path}/{mine['id']}?expires={params['expires']}&sig={params['sig'][:-2]}AA",
        ],
        "signature_expired": [
            f"{path}/{mine['id']}?expires=1000&sig={signing.sign(SECRET, mine['id'], 1000)}"
        ],
        "signature_missing": [f"{path}/{mine['id']}", f"{path}/{mine['id']}?sig=abc"],
    }
    for code, urls in cases.items():
        for url in urls:
            answer = await api.client.get(url)
            assert answer.status_code == 403, url
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == code, url
    # The key route of another owner's image is still a 404 for this owner.
    assert (await api.client.get(theirs["url"], headers=alice)).status_code == 404


async def test_variants_are_resized_cached_and_bounded(api: RunningApi) -> None:
    done = await completed(api, width=512, height=256)
    image = done["images"][0]
    answer = await api.client.get(f"{image['signed_url']}&w=128&format=webp")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/webp"
    assert Image.open(BytesIO(answer.content)).size == (128, 64)
    jpeg = await api.client.get(image["url"], params={"w": 256, "format": "jpeg"})
    assert Image.open(BytesIO(jpeg.content)).format == "JPEG"
    # Wider than the original: the original's width, never upscaled.
    wide = await api.client.get(image["url"], params={"w": 1024})
    assert Image.open(BytesIO(wide.content)).size == (512, 256)
    store = api.engine.store
    assert isinstance(store, LocalStore)
    assert store.keys_under(f"variants/{image['sha256']}/") == [
        f"variants/{image['sha256']}/full.webp",
        f"variants/{image['sha256']}/w128.webp",
        f"variants/{image['sha256']}/w256.jpg",
    ]
    again = await api.client.get(f"{image['signed_url']}&w=128&format=webp")
    assert again.content == answer.content
    for params in ({"w": 100}, {"w": 5000}, {"format": "gif"}, {"w": "x"}):
        refused = await api.client.get(image["url"], params=params)
        assert refused.status_code == 422, params
        assert refused.json()["code"] in ("invalid_variant", "validation_error")


async def test_deleting_a_job_makes_its_image_urls_answer_410(api_strict: RunningApi) -> None:
    api = api_strict
    alice, bob = key_headers(api, "alice"), key_headers(api, "bob")
    done = await completed(api, alice, negative_prompt="blurry", seed=42)
    twin = await completed(api, bob, seed=42)  # the same prompt, size and seed: same bytes
    image = done["images"][0]
    assert twin["images"][0]["sha256"] == image["sha256"]
    usage_before = (await api.client.get(f"{API}/usage", headers=alice)).json()
    assert (await api.client.delete(f"{API}/jobs/{done['id']}", headers=bob)).status_code == 404

    answer = await api.client.delete(
        f"{API}/jobs/{done['id']}", params={"purge": "prompt"}, headers=alice
    )
    assert answer.status_code == 200
    job = answer.json()
    assert (job["prompt"], job["negative_prompt"]) == ("", None)
    assert [i["state"] for i in job["images"]] == ["deleted"]
    for url, headers in ((image["signed_url"], None), (image["url"], alice)):
        gone = await api.client.get(url, headers=headers)
        assert gone.status_code == 410
        assert gone.json()["code"] == "image_deleted"
    # Bob's image shares the object, so it stays; usage and cost records stay too.
    assert (await api.client.get(twin["images"][0]["signed_url"])).status_code == 200
    assert (await api.client.get(f"{API}/usage", headers=alice)).json() == usage_before
    status = (await api.client.get(f"{API}/status/{done['id']}", headers=alice)).json()
    assert status["cost"] == done["cost"]
    store = api.engine.store
    assert store.exists(f"{image['sha256'][:2]}/{image['sha256']}.png")

    await api.client.delete(f"{API}/jobs/{twin['id']}", headers=bob)
    assert not store.exists(f"{image['sha256'][:2]}/{image['sha256']}.png")
    running = (
        await api.client.post(f"{API}/generate", json={"prompt": "x", **SMALL}, headers=alice)
    ).json()
    refused = await api.client.delete(f"{API}/jobs/{running['id']}", headers=alice)
    assert refused.status_code == 409
    assert refused.json()["code"] == "job_not_finished"


@pytest.mark.parametrize("days", ["30"])
async def test_the_retention_sweep_deletes_old_images(api_factory: ApiFactory, days: str) -> None:
    async with api_factory(MEDIA_RETENTION_DAYS=days) as api:
        done = await completed(api)
        image = done["images"][0]
        key = f"{image['sha256'][:2]}/{image['sha256']}.png"
        await api.client.get(image["url"], params={"w": 64})  # a variant, to go with it
        now = utcnow()
        kept = retention.sweep(api.engine, now=now + timedelta(days=29))
        assert (kept.expired_jobs, kept.collected) == (0, 0)
        assert (await api.client.get(image["signed_url"])).status_code == 200

        swept = retention.sweep(api.engine, now=now + timedelta(days=30, minutes=1))
        assert (swept.expired_jobs, swept.collected) == (1, 1)
        gone = await api.client.get(image["signed_url"])
        assert (gone.status_code, gone.json()["code"]) == (410, "image_deleted")
        assert not api.engine.store.exists(key)
        assert api.engine.store.keys_under(f"variants/{image['sha256']}/") == []
        job = (await api.client.get(f"{API}/status/{done['id']}")).json()
        assert job["prompt"] == "a lighthouse"  # retention takes images, not prompts
        again = retention.sweep(api.engine, now=now + timedelta(days=60))
        assert (again.expired_jobs, again.collected) == (0, 0)


async def test_the_completed_event_carries_signed_urls(api: RunningApi) -> None:
    done = await completed(api)
    stream = await api.client.get(done["links"]["events"])
    events = [
        json.loads(line.removeprefix("data: "))
        for line in stream.text.splitlines()
        if line.startswith("data: ")
    ]
    final = [event for event in events if event["status"] == "completed"]
    assert len(final) == 1
    [image] = final[0]["images"]
    assert image["id"] == done["images"][0]["id"]
    assert image["signed_url"].startswith(f"{API}/media/{image['id']}?expires=")
    assert (await api.client.get(image["signed_url"])).status_code == 200
