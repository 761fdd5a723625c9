"""The TypeScript SDK (clients/typescript): its node tests against the real stack, its generated
types and built files checked against their sources, and its installation into a new project."""

import base64
import json
import re
import sys
import time
import zipfile
from pathlib import Path

import pytest

from app.notify.signing import new_secret, signed_headers
from tests.clients.sdk import CLIENTS, TYPESCRIPT, SdkStack, installed_npm, run

pytestmark = pytest.mark.timeout(300)

NODE_TESTS = 11


@pytest.fixture(scope="module")
def npm() -> str:
    return installed_npm()


def signature_cases() -> list[tuple[str, dict[str, str], str, str, bool]]:
    """(name, headers, body in base64, secret, valid): signed by app.notify.signing."""
    body = json.dumps({"type": "job.completed", "data": {"id": "job_1", "prompt": "ünï"}}).encode()
    now = int(time.time())
    cases = []
    for form, secret in (("standard", new_secret()), ("older", "whsec_" + "Qk3x-older_" * 4)):
        good = signed_headers(secret, "msg_1", now, body)
        other = signed_headers(new_secret(), "msg_1", now, body)
        rotated = f"{other['webhook-signature']} {good['webhook-signature']}"
        for name, headers, signed_body, valid in (
            ("valid", good, body, True),
            ("several signatures", {**good, "webhook-signature": rotated}, body, True),
            ("body changed", good, body.replace(b"job_1", b"job_2"), False),
            ("another secret", other, body, False),
            ("id changed", {**good, "webhook-id": "msg_2"}, body, False),
            ("ten minutes old", signed_headers(secret, "msg_1", now - 600, body), body, False),
            ("no signature", {"webhook-id": "msg_1", "webhook-timestamp": str(now)}, body, False),
        ):
            encoded = base64.b64encode(signed_body).decode()
            cases.append((f"{form}: {name}", headers, encoded, secret, valid))
    return cases


def test_node_tests_pass_against_the_real_stack(
    npm: str, sdk_stack: SdkStack, tmp_path: Path
) -> None:
    cases = tmp_path / "webhook-cases.json"
    cases.write_text(json.dumps(signature_cases()))
    done = run(
        [npm, "test"],
        TYPESCRIPT,
        PODRELAY_API_URL=sdk_stack.url,
        PODRELAY_API_KEY=sdk_stack.key,
        PODRELAY_SIMULATOR_URL=sdk_stack.stack.simulator.url,
        PODRELAY_WEBHOOK_CASES=str(cases),
    )
    summary = dict(re.findall(r"^# (pass|fail|skipped|cancelled) (\d+)$", done.stdout, re.M))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert summary == {"pass": str(NODE_TESTS), "fail": "0", "skipped": "0", "cancelled": "0"}


def test_the_package_installs_into_a_new_project(npm: str, tmp_path: Path) -> None:
    """`npm install --install-links ./clients/typescript`: its one dependency comes along, and
    the built files are there without a build."""
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text('{"name": "app", "version": "1.0.0", "type": "module"}')
    done = run(
        [npm, "install", "--no-audit", "--no-fund", "--install-links", str(TYPESCRIPT)], project
    )
    assert done.returncode == 0, done.stderr[-3000:]
    script = (
        'import { Podrelay, isSettled } from "@podrelay/client";'
        'import { verifyWebhook } from "@podrelay/client/webhooks";'
        'const client = new Podrelay({ baseUrl: "http://127.0.0.1:1" });'
        "console.log(typeof client.generate, typeof verifyWebhook, typeof isSettled);"
    )
    used = run(["node", "--input-type=module", "-e", script], project)
    assert used.returncode == 0, used.stderr
    assert used.stdout.split() == ["function", "function", "function"]
    assert not (project / "node_modules" / "@podrelay" / "client" / "node_modules").exists()


def test_the_python_package_builds_on_its_own(tmp_path: Path) -> None:
    """`pip install ./clients/python` builds a wheel of the SDK alone, typed."""
    done = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        CLIENTS / "python",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [wheel] = tmp_path.glob("podrelay_client-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"podrelay_client/__init__.py", "podrelay_client/py.typed"} <= names
    assert not any(name.startswith("app/") for name in names)
    metadata = next(name for name in names if name.endswith("METADATA"))
    requires = re.findall(
        r"^Requires-Dist: (\S+)", zipfile.ZipFile(wheel).read(metadata).decode(), re.M
    )
    assert sorted(requires) == ["httpx<1,>=0.27", "pydantic<3,>=2.7"]
