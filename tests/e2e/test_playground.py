"""The playground page at `/`, driven in headless Chromium against the real stack: the
simulator, a Celery worker process (embedded broker, SQLite ledger, as `podrelay run` has them)
and the API under uvicorn, with RunPod's webhooks coming back to it."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Request,
    Route,
    expect,
    sync_playwright,
)

from app.accounts.service import create_key
from app.simulator.server import SimulatorServer
from tests.stack.factory import stack_factory
from tests.stack.http_api import API, bearer
from tests.stack.waiting import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOT = Path(__file__).resolve().parents[2] / "data" / "screenshots" / "playground.png"
WAIT_MS = 20_000


@dataclass(frozen=True)
class Playground:
    url: str
    api_key: str

    def jobs_of(self, api_key: str | None) -> list[dict[str, object]]:
        """The caller's jobs as the API lists them (anonymous without a key)."""
        headers = bearer(api_key) if api_key else {}
        response = httpx.get(f"{self.url}{API}/jobs", headers=headers, timeout=10)
        response.raise_for_status()
        items: list[dict[str, object]] = response.json()["items"]
        return items


@pytest.fixture(scope="module")
def playground(
    simulator_server: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Playground]:
    with running_playground(tmp_path_factory.mktemp("playground"), simulator_server) as served:
        yield served


@contextmanager
def running_playground(
    folder: Path, simulator: SimulatorServer, *, concurrency: int = 4, **settings: Any
) -> Iterator[Playground]:
    """A stack (SQLite, embedded broker, webhooks) whose API serves the page, and its key."""
    with stack_factory(folder) as factory:
        stack = factory.build(
            ledger="sqlite",
            broker="embedded",
            simulator=simulator,
            webhooks=True,
            allow_anonymous=True,
            **settings,
        )
        url = stack.start_api()
        stack.start_worker(concurrency=concurrency)
        with stack.db.session() as session:
            _, api_key = create_key(session, name="playground")
        yield Playground(url=url, api_key=api_key)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class PageWatch:
    """What the page reported: uncaught script errors and console warnings."""

    errors: list[str]
    warnings: list[str]


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def watch(page: Page) -> Iterator[PageWatch]:
    seen = PageWatch(errors=[], warnings=[])

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "warning":
            seen.warnings.append(message.text)

    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.on("console", on_console)
    yield seen
    assert seen.errors == [], f"script errors in the page: {seen.errors}"


def job_card(page: Page, prompt: str) -> Locator:
    return page.locator("li.job", has=page.get_by_role("heading", name=prompt, exact=True))


def wait_for_image(page: Page, job_id: str) -> tuple[int, int]:
    """Wait until the job's first image is a loaded <img> in the page; its natural size."""
    handle = page.wait_for_function(
        """(id) => {
            const img = document.querySelector(`li[data-job-id="${id}"] img.result`);
            return img && img.complete && img.naturalWidth > 0
                && [img.naturalWidth, img.naturalHeight];
        }""",
        arg=job_id,
        timeout=WAIT_MS,
    )
    width, height = handle.json_value()
    return int(width), int(height)


def draft_to_image(page: Page, prompt: str) -> tuple[Locator, str]:
    """Generate `prompt` with the Fast draft preset; its card and job id once its image shows."""
    page.get_by_role("button", name="Fast draft").click()
    expect(page.locator("#steps")).to_have_value("8")
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_role("button", name="Generate").click()
    card = job_card(page, prompt)
    expect(card).to_have_count(1)
    job_id = card.get_attribute("data-job-id")
    assert job_id
    assert wait_for_image(page, job_id) == (512, 512)
    expect(card).to_have_attribute("data-status", "completed")
    return card, job_id


def save_screenshot(page: Page, tmp_path: Path) -> None:
    shot = tmp_path / "playground.png"
    page.screenshot(path=shot, full_page=True)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
    print(f"screenshot: {SCREENSHOT} (and {shot})")


def test_a_prompt_becomes_an_image_in_the_page(
    playground: Playground, page: Page, watch: PageWatch, tmp_path: Path
) -> None:
    """With an API key: submit, follow over SSE, show and offer the image, keep the key."""
    stream_auth: list[str | None] = []

    image_requests: list[dict[str, str]] = []

    def on_request(request: Request) -> None:
        if request.url.endswith("/events"):
            stream_auth.append(request.headers.get("authorization"))
        if f"{API}/media/" in request.url:
            image_requests.append(request.headers)

    page.on("request", on_request)
    prompt = "a lighthouse at dusk, playground"
    page.goto(playground.url)
    page.locator("#api-key").fill(playground.api_key)
    page.locator("#api-key").press("Tab")
    card, job_id = draft_to_image(page, prompt)
    expect(card.locator(".job-status")).to_have_text("completed")
    expect(card.locator(".job-timings")).to_contain_text("execution")
    expect(card.locator(".job-cancel")).to_have_count(0)
    download = card.get_by_role("link", name=f"Download {job_id}-1.png")
    expect(download).to_have_attribute("download", f"{job_id}-1.png")
    href = download.get_attribute("href") or ""
    assert href.startswith(f"{API}/media/")
    assert "sig=" in href
    src = card.locator("img.result").get_attribute("src") or ""
    assert src == href  # the signed URL itself, with no key in it
    assert playground.api_key not in src
    assert image_requests
    assert all("authorization" not in h for h in image_requests)
    expect(page.locator("#error")).to_be_hidden()
    save_screenshot(page, tmp_path)

    # The job is the key's (the page sent it, on the event stream too), made with the preset.
    [listed] = playground.jobs_of(playground.api_key)
    assert listed["id"] == job_id
    params = listed["params"]
    assert isinstance(params, dict)
    assert (params["width"], params["height"], params["num_inference_steps"]) == (512, 512, 8)
    assert job_id not in {job["id"] for job in playground.jobs_of(None)}
    assert stream_auth, "the page never opened the job's event stream"
    assert set(stream_auth) == {f"Bearer {playground.api_key}"}
    assert not [w for w in watch.warnings if "event stream failed" in w], watch.warnings

    # The key stays in the browser; the gallery shows the job again from the API's history.
    page.reload()
    expect(page.locator("#api-key")).to_have_value(playground.api_key)
    assert wait_for_image(page, job_id) == (512, 512)


def test_a_session_token_from_the_host_app_drives_the_page(
    playground: Playground, page: Page, watch: PageWatch
) -> None:
    """A host app's backend mints a token for its user with its server key and opens the page
    with it (`/#token=...`): the page creates, follows and shows that user's job with it."""
    minted = httpx.post(
        f"{playground.url}/api/v1/tokens",
        json={"user": "browser-user", "ttl_s": 600},
        headers=bearer(playground.api_key),
        timeout=10,
    )
    assert minted.status_code == 201, minted.text
    token = minted.json()["token"]
    sent: list[str | None] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.headers.get("authorization"))
            if f"{API}/" in request.url and "/media/" not in request.url
            else None
        ),
    )
    page.goto(f"{playground.url}/#token={token}")
    expect(page.locator("#api-key")).to_have_value(token)
    assert "#" not in page.url  # the token does not stay in the address bar or history
    _, job_id = draft_to_image(page, "a harbour at dawn, for the host app's user")
    expect(page.locator("#error")).to_be_hidden()
    assert set(sent) == {f"Bearer {token}"}
    assert [job["id"] for job in playground.jobs_of(token)] == [job_id]
    assert job_id not in {job["id"] for job in playground.jobs_of(playground.api_key)}


def test_bad_input_shows_the_apis_error_code(
    playground: Playground, page: Page, watch: PageWatch
) -> None:
    """The API judges the input (the form does not), and the page shows its problem."""
    before = len(playground.jobs_of(None))
    page.goto(playground.url)
    page.get_by_label("Prompt", exact=True).fill("a red fox")
    page.locator("#width").fill("300")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.locator("#error-code")).to_have_text("validation_error")
    expect(page.locator("#error-detail")).to_have_text("width: Input should be a multiple of 8")

    page.locator("#width").fill("512")
    page.get_by_label("Prompt", exact=True).fill("   ")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#error-detail")).to_contain_text("prompt: String should have at least")
    expect(page.locator("#error-code")).to_have_text("validation_error")

    page.locator("#api-key").fill("prk_not-a-key")
    page.locator("#api-key").press("Tab")
    expect(page.locator("#error-code")).to_have_text("invalid_api_key")
    assert len(playground.jobs_of(None)) == before


def test_batch_and_cancel(
    playground: Playground, simulator: SimulatorServer, page: Page, watch: PageWatch
) -> None:
    """Anonymous: a batch of four (more than the page streams at once), one cancelled while
    RunPod has no worker, the others completed. A prompt carries markup: it shows as text."""
    simulator.set_faults(workers=0)
    page.goto(playground.url)
    page.get_by_role("button", name="Square 512").click()
    page.get_by_label("Batch", exact=False).check()
    marked_up = "<img src=x onerror=alert(1)> a blue whale"
    others = [marked_up, "a green owl", "a grey cat"]
    page.get_by_label("Prompt", exact=True).fill("a red fox\n\n" + "\n".join(others) + "\n")
    page.get_by_role("button", name="Generate").click()

    first = job_card(page, "a red fox")
    expect(page.locator("li.job")).to_have_count(4)
    expect(page.locator('li.job[data-status="queued"]')).to_have_count(4)
    first.get_by_role("button", name="Cancel").click()
    expect(first).to_have_attribute("data-status", "cancelled")
    expect(first.locator(".job-cancel")).to_have_count(0)

    simulator.set_faults(workers=4)
    completed = []
    for prompt in others:
        card = job_card(page, prompt)
        job_id = card.get_attribute("data-job-id")
        assert job_id
        assert wait_for_image(page, job_id) == (512, 512)
        expect(card).to_have_attribute("data-status", "completed")
        expect(card.locator("img")).to_have_count(1)  # the result, not the prompt's markup
        completed.append(job_id)
    expect(page.locator("#error")).to_be_hidden()

    first_id = first.get_attribute("data-job-id")
    assert first_id
    statuses = {job["id"]: job["status"] for job in playground.jobs_of(None)}
    assert statuses == {first_id: "cancelled", **dict.fromkeys(completed, "completed")}
    wait_until(
        lambda: simulator.counters()["calls"].get("cancel", 0) == 1,
        timeout=15,
        what="the cancel reached RunPod",
    )


@pytest.fixture(scope="module")
def routed_playground(
    simulator_server: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Playground]:
    """A stack with two routes (models), each on an endpoint of the simulator."""
    folder = tmp_path_factory.mktemp("routed-playground")
    routes = folder / "routes.toml"
    routes.write_text(
        f"""
[routes.sdxl]
default = true
[[routes.sdxl.endpoints]]
url = "{simulator_server.base_url}/pg-sdxl"

[routes.flux]
kind = "flux"
defaults = {{ width = 768, height = 768, num_inference_steps = 28 }}
bounds = {{ max_steps = 50, max_images = 1 }}
[[routes.flux.endpoints]]
url = "{simulator_server.base_url}/pg-flux"
"""
    )
    with running_playground(folder, simulator_server, concurrency=2, routes_file=routes) as served:
        yield served


def test_a_picked_model_runs_the_job_on_its_route(
    routed_playground: Playground, page: Page, watch: PageWatch
) -> None:
    """With two routes the page offers a picker, filled from GET /models: picking one fills in
    its defaults and limits, and the job runs on that route."""
    page.goto(routed_playground.url)
    page.locator("#api-key").fill(routed_playground.api_key)
    page.locator("#api-key").press("Tab")
    picker = page.get_by_label("Model")
    expect(picker).to_be_visible()
    expect(picker.locator("option")).to_have_text(["sdxl (sdxl, default)", "flux (flux)"])
    expect(picker).to_have_value("sdxl")
    picker.select_option("flux")
    expect(page.locator("#steps")).to_have_value("28")
    expect(page.locator("#width")).to_have_value("768")
    expect(page.locator("#steps")).to_have_attribute("max", "50")
    expect(page.locator("#num-images")).to_have_attribute("max", "1")
    _, job_id = draft_to_image(page, "a fox on the flux route")
    [listed] = routed_playground.jobs_of(routed_playground.api_key)
    assert (listed["id"], listed["route"]) == (job_id, "flux")
    assert listed["endpoint"] == "pg-flux"

    # Past the picked model's bounds, the API refuses and the page shows why.
    page.locator("#steps").fill("60")
    page.get_by_label("Prompt", exact=True).fill("too many steps")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#error-code")).to_have_text("out_of_bounds")


def test_one_model_needs_no_picker(playground: Playground, page: Page, watch: PageWatch) -> None:
    models = httpx.get(f"{playground.url}{API}/models", timeout=10).json()["models"]
    assert [model["name"] for model in models] == ["default"]
    page.goto(playground.url)
    expect(page.locator("#model option")).to_have_count(1)
    expect(page.locator("#model-field")).to_be_hidden()


def test_a_late_model_list_keeps_the_settings_the_user_chose(
    playground: Playground, page: Page, watch: PageWatch
) -> None:
    """The model list fills in a route's defaults only while the user has set nothing: one
    that arrives after a preset keeps the preset's size and steps."""
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(f"**{API}/models", hold)
    page.goto(playground.url)
    page.get_by_role("button", name="Fast draft").click()

    def requested() -> bool:
        page.wait_for_timeout(100)  # Playwright hands the request to `held` while it waits
        return bool(held)

    wait_until(requested, timeout=10, what="the page asked for GET /models")
    for route in held:
        route.continue_()
    page.wait_for_function("document.getElementById('model').options.length > 0")
    expect(page.locator("#steps")).to_have_value("8")
    expect(page.locator("#width")).to_have_value("512")


def test_page_is_served_with_its_assets_and_a_strict_policy(playground: Playground) -> None:
    page = httpx.get(f"{playground.url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "default-src 'none';" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for name, media_type in (("app.js", "text/javascript"), ("style.css", "text/css")):
        asset = httpx.get(f"{playground.url}/playground/{name}", timeout=10)
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(media_type)
    for name in ("router.py", "index.html", "..%2Frouter.py"):
        missing = httpx.get(f"{playground.url}/playground/{name}", timeout=10)
        assert missing.status_code == 404, name
        assert missing.json()["code"] == "not_found"
    paths = httpx.get(f"{playground.url}/openapi.json", timeout=10).json()["paths"]
    assert "/" not in paths
    assert not [path for path in paths if path.startswith("/playground")]
