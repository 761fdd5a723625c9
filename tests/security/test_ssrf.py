"""Client webhook URLs aimed at private networks (SSRF), outside development.

tests/api/test_endpoints.py covers 127.0.0.1, localhost, 169.254.169.254 and [::1] at
submission; tests/notify covers a stored private URL refused at send time and a redirect not
followed. Here: every other spelling of a private address, names that resolve privately,
a name that changes its answer between submission and delivery, and a public URL that
redirects inward. No request leaves the machine: private addresses are only ever checked,
made-up names are answered by `FakeDns`, and `PublicHost` answers, at the HTTP edge, every
request for a host that is not loopback.
"""

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.jobs.models import Job
from app.notify.deliveries import deliver_due
from app.notify.models import WebhookDelivery
from tests.security.helpers import FakeDns
from tests.stack.http_api import API, assert_problem, bearer, new_key
from tests.stack.inprocess_api import RunningApi
from tests.stack.receiver import Receiver

PUBLIC = "93.184.216.34"  # a global address: the check passes; nothing connects to it

PRIVATE_URLS = [
    "http://10.0.0.1/hook",
    "http://10.255.255.254:8443/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://0.0.0.0:8000/hook",
    "http://0/hook",
    "http://127.1/hook",
    "http://2130706433/hook",  # 127.0.0.1 as one decimal number
    "http://0x7f000001/hook",
    "http://0177.0.0.1/hook",  # octal
    "http://0xA9.0xFE.0xA9.0xFE/latest/meta-data/",  # 169.254.169.254 in hex
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
    "http://[::ffff:10.0.0.1]/hook",
    "http://[::]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://[::127.0.0.1]/hook",  # IPv4-compatible IPv6
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 of 169.254.169.254
    "http://[64:ff9b::10.0.0.1]/hook",
    "http://[2002:a9fe:a9fe::1]/latest/meta-data/",  # 6to4 of 169.254.169.254
    "http://LOCALHOST:8000/hook",
]


async def submit(
    api: RunningApi, url: str, *, batch: bool = False
) -> tuple[httpx.Response, dict[str, str]]:
    """Submit with a webhook URL as a fresh key; returns the answer and the key's headers."""
    headers = bearer(new_key(api, "ssrf")[1])
    if batch:
        body: dict[str, object] = {"prompts": ["a", "b"], "webhook_url": url}
        response = await api.client.post(f"{API}/generate/batch", json=body, headers=headers)
    else:
        body = {"prompt": "x", "webhook_url": url}
        response = await api.client.post(f"{API}/generate", json=body, headers=headers)
    return response, headers


def job_count(api: RunningApi) -> int:
    with api.engine.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


async def test_private_address_spellings_are_refused(api_strict: RunningApi) -> None:
    accepted = []
    for url in PRIVATE_URLS:
        for batch in (False, True):
            response, _ = await submit(api_strict, url, batch=batch)
            body = response.json()
            refused = (response.status_code, body.get("code")) == (400, "webhook_url_refused")
            # Refused for its address, not because it "does not resolve".
            if not refused or "resolves to a non-public address" not in body["detail"]:
                accepted.append((url, batch, response.status_code, body.get("detail")))
    assert accepted == []
    assert job_count(api_strict) == 0


@pytest.mark.parametrize(
    "url",
    [
        f"http://{PUBLIC}/hook",
        f"https://[64:ff9b::{PUBLIC}]/hook",  # NAT64 of a public address
        "http://[2606:4700:4700::1111]:8443/hook",
    ],
)
async def test_public_addresses_are_accepted(api_strict: RunningApi, url: str) -> None:
    """The control: the refusals above are about the addresses, not any literal IP."""
    response, _ = await submit(api_strict, url)
    assert response.status_code == 202, response.text
    assert job_count(api_strict) == 1


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        # Refused before its host is looked up.
        ("http://user:secret@hooks.example.com/hook", 400, "webhook_url_refused"),
        ("file:///etc/passwd", 422, "validation_error"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", 422, "validation_error"),
        ("ftp://10.0.0.1/", 422, "validation_error"),
    ],
)
async def test_credentials_and_other_schemes_are_refused(
    api_strict: RunningApi, url: str, status: int, code: str
) -> None:
    response, _ = await submit(api_strict, url)
    assert_problem(response, status, code)
    assert "secret" not in response.text
    assert job_count(api_strict) == 0


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["10.1.2.3"], ["::1"], [PUBLIC, "127.0.0.1"], ["169.254.169.254"]],
    ids=["loopback", "private", "ipv6-loopback", "public-and-loopback", "metadata"],
)
async def test_a_name_resolving_to_a_private_address_is_refused(
    api_strict: RunningApi, fake_dns: FakeDns, addresses: list[str]
) -> None:
    fake_dns.names["hooks.rebind.podrelay.test"] = addresses
    response, _ = await submit(api_strict, "https://hooks.rebind.podrelay.test/hook")
    body = assert_problem(response, 400, "webhook_url_refused")
    assert "non-public" in body["detail"]
    assert fake_dns.lookups == ["hooks.rebind.podrelay.test"]


async def test_a_name_that_rebinds_to_loopback_after_submission_gets_nothing(
    api_strict: RunningApi, fake_dns: FakeDns, receiver: Receiver
) -> None:
    name = "hooks.rebind.podrelay.test"
    fake_dns.names[name] = [PUBLIC]
    job_id = await submit_and_end(api_strict, receiver.url(host=name))
    # The name now answers with the receiver's address: a sender that trusted the check made
    # at submission would reach it.
    fake_dns.names[name] = ["127.0.0.1"]

    assert await deliver_due(api_strict.engine) == 1
    assert receiver.requests == []
    delivery = only_delivery(api_strict, job_id)
    assert (delivery.state, delivery.attempts, delivery.event) == ("failed", 1, "job.cancelled")
    assert delivery.attempt_log[0]["error"].startswith("refused:")
    assert fake_dns.lookups.count(name) == 2  # at submission and again before sending


class PublicHost:
    """Stands in at the HTTP edge for every host that is not this machine's loopback (the
    public web server at `PUBLIC`, or a made-up name): those requests are recorded and answered
    here, nothing is sent. Requests to 127.0.0.1 or localhost go out as usual, so one that
    slipped through to an internal address reaches the test's receiver."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = httpx.Response(204)
        real = httpx.AsyncHTTPTransport.handle_async_request

        async def handle(transport: httpx.AsyncHTTPTransport, request: httpx.Request) -> Any:
            if request.url.host in ("127.0.0.1", "localhost"):
                return await real(transport, request)
            self.requests.append(request)
            return httpx.Response(self.answer.status_code, headers=self.answer.headers)

        monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", handle)


@pytest.fixture
def public_host(monkeypatch: pytest.MonkeyPatch) -> PublicHost:
    return PublicHost(monkeypatch)


async def submit_and_end(api: RunningApi, url: str) -> str:
    """A job with this webhook URL, cancelled at once: its `job.cancelled` is due."""
    response, headers = await submit(api, url)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    cancelled = await api.client.delete(f"{API}/cancel/{job_id}", headers=headers)
    assert cancelled.json()["status"] == "cancelled"
    return job_id


async def test_a_name_rebinding_between_check_and_connect_reaches_only_the_checked_address(
    api_strict: RunningApi, fake_dns: FakeDns, public_host: PublicHost, receiver: Receiver
) -> None:
    name = "hooks.rebind.podrelay.test"
    fake_dns.names[name] = [PUBLIC]
    url = receiver.url(host=name)
    job_id = await submit_and_end(api_strict, url)
    # The check before sending sees the public address; any lookup after it, loopback.
    fake_dns.then[name] = ["127.0.0.1"]

    assert await deliver_due(api_strict.engine) == 1
    assert receiver.requests == []
    [request] = public_host.requests
    assert request.url.host == PUBLIC  # the checked address, not the name looked up again
    assert request.url.port == httpx.URL(url).port
    assert request.headers["host"] == httpx.URL(url).netloc.decode()
    assert request.extensions["sni_hostname"] == name
    assert request.headers["webhook-signature"].startswith("v1,")
    assert only_delivery(api_strict, job_id).state == "delivered"


async def test_a_public_url_redirecting_inward_is_not_followed(
    api_strict: RunningApi, fake_dns: FakeDns, public_host: PublicHost, receiver: Receiver
) -> None:
    name = "hooks.public.podrelay.test"
    fake_dns.names[name] = [PUBLIC]
    job_id = await submit_and_end(api_strict, f"https://{name}/hook")
    inward = receiver.url("/internal", host="localhost")
    public_host.answer = httpx.Response(307, headers={"location": inward})

    assert await deliver_due(api_strict.engine) == 1
    assert [(r.url.host, r.url.path) for r in public_host.requests] == [(PUBLIC, "/hook")]
    assert receiver.requests == []  # the redirect target was never asked
    delivery = only_delivery(api_strict, job_id)
    assert (delivery.state, delivery.attempts) == ("pending", 1)
    [attempt] = delivery.attempt_log
    assert attempt["status_code"] == 307
    assert "redirects are not followed" in attempt["error"]


def only_delivery(api: RunningApi, job_id: str) -> WebhookDelivery:
    with api.engine.db.session() as session:
        [delivery] = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        )
        return delivery
