"""Every command the README and docs/ show is run here, or listed below with why it is not.

Commands come from the documents' `bash` blocks and from inline code that starts with a
program. `podrelay …`, `celery -A app.celery_app …`, `python -m …` and `make …` are checked
by kind (the command or target exists and takes every option shown); the rest must be in
`RUN_HERE` (a test below runs it) or `EXEMPT`. The README's curl example runs against
`podrelay dev` (what `make run` starts) on free ports.
"""

import contextlib
import importlib
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from app.devstack import start_process, stop_process, wait_http
from app.simulator.server import SimulatorServer
from tests.clients.sdk import TYPESCRIPT, installed_npm
from tests.docs.helpers import DOCUMENTS, ROOT, code_blocks, shell_commands
from tests.stack.processes import clean_env
from tests.stack.waiting import free_port
from tests.test_docker import COMPOSE, HOST_VARIABLES, compose_command

PROGRAMS = (
    "podrelay",
    "celery",
    "python",
    "curl",
    "docker",
    "make",
    "uvicorn",
    "redis-cli",
    "tail",
)
PODRELAY = str(Path(sys.executable).with_name("podrelay"))
SEED_WORKER = "celery -A app.celery_app worker --loglevel=info --concurrency=2"
SEED_API = "uvicorn app.main:app --reload"
SEED_DEMO = (
    'python -c "import asyncio; from app.services.runpod_client import main; asyncio.run(main())"'
)
CURL_GENERATE = (
    "curl -X POST http://localhost:8000/api/v1/runpod/generate "
    '-H "Content-Type: application/json" -d \'{"prompt": "beautiful anime girl"}\''
)
CURL_STATUS = "curl http://localhost:8000/api/v1/runpod/status/job_…"
CURL_TEST = (
    'curl -X POST http://localhost:8000/api/v1/runpod/test -H "Authorization: Bearer <api key>"'
)
CURL_READY = "curl http://localhost:8000/readyz"
KEYS_CREATE = "podrelay keys create ops --admin"
COMPOSE_SECRETS = (
    "printf 'POSTGRES_PASSWORD=%s\\nWEBHOOK_SIGNING_SECRET=whsec_%s\\nMEDIA_URL_SECRET=%s\\n' "
    '"$(openssl rand -hex 24)" "$(openssl rand -base64 32)" "$(openssl rand -hex 32)" >> .env'
)

# Run by the tests of this module.
RUN_HERE = {
    CURL_GENERATE: "test_readme_curl_example_against_podrelay_dev",
    CURL_STATUS: "test_readme_curl_example_against_podrelay_dev",
    CURL_TEST: "test_readme_curl_example_against_podrelay_dev",
    CURL_READY: "test_readme_curl_example_against_podrelay_dev",
    SEED_WORKER: "test_seed_worker_and_api_commands_start",
    SEED_API: "test_seed_worker_and_api_commands_start",
    SEED_DEMO: "test_seed_demo_command",
    "redis-cli ping": "test_redis_cli",
    'redis-cli -u "$REDIS_URL" ping': "test_redis_cli",
    COMPOSE_SECRETS: "test_compose_secrets_command",
}
# Run verbatim by tests/test_seed_commands.py::test_the_seed_commands_run_monitor_and_purge, and
# (`make run` being `podrelay dev`) by tests/docs/test_routes_example.py.
ROUTES_RUN = "ROUTES_FILE=routes.example.toml make run"
RUN_ELSEWHERE = {"tail -f logs/app.log | grep RUNPOD", ROUTES_RUN}
# Documented, not run here.
_STACK = "tests/docker/test_stack.py builds the images and runs this file's simulator profile"
_LOCAL = "the same images and commands as docker-compose.yml, which tests/docker runs"
EXEMPT = {
    "docker compose -f docker-compose.local.yml up --build": _LOCAL,
    "docker compose up -d --build": _STACK,
    "docker compose up -d": _STACK,
    "docker compose --profile simulator up -d --build": _STACK,
    "docker compose --profile observability up -d": "pulls Prometheus and Grafana, which no "
    "registry here serves; tests/api/test_dashboard.py checks what it provisions",
    "docker compose ps redis": f"{_STACK} (its Redis has this health check)",
    "docker compose exec api podrelay keys create NAME": f"{_STACK}, this command included",
    "tail -f logs/app.log | grep -i runpod": "follows a log forever; LOG_FILE's default is tested",
    "npm install --install-links ./clients/typescript": "tests/clients/test_typescript_sdk.py "
    "installs the package so into a new project",
    "pip install ./clients/python": "`make` installs it into the venv; tests/clients builds its "
    "wheel alone",
    "cd clients/typescript && npm run generate && npm run build": "clients/typescript's node "
    "tests run both into a scratch folder and compare the output with the committed files",
}

# `make` targets the documents show: each exists; how each is covered or why it is not run.
MAKE_TARGETS = {
    "run": "it runs `podrelay dev`, which test_readme_curl_example_against_podrelay_dev runs",
    "test": "the whole suite, this module among it",
    "lint": "ruff and mypy over the repository; CI runs it",
    "bench": "about 20 minutes; tests/test_bench_smoke.py runs the benchmarks at a tiny scale",
    "bench-quick": "minutes; tests/test_bench_smoke.py runs the benchmarks at a tiny scale",
    "simulator": "`podrelay simulator` on the fixed port 8001; its options are checked here",
    "chaos": "about an hour; tests/chaos runs every scenario at small scale in `make test`",
}


def documented_commands() -> list[tuple[str, str]]:
    """(document name, command) for every bash-block line and inline command."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        found += [(document.name, command) for command in shell_commands(text)]
        prose = text
        for block in code_blocks(text):
            prose = prose.replace(block, "")
        for span in re.findall(r"`([^`\n]+)`", prose):
            if span.split(" ", 1)[0] in PROGRAMS and " " in span:
                found.append((document.name, span.replace("\\|", "|")))
    return found


def kind(command: str) -> str:
    if command.startswith("podrelay"):
        return "podrelay"
    if command.startswith("celery -A "):
        return "celery"
    if command.startswith("python -m "):
        return "python -m"
    if command.startswith("make "):
        return "make"
    return "listed"


def test_every_documented_command_is_run_or_exempt() -> None:
    commands = documented_commands()
    assert len(commands) > 40
    listed = {command for _, command in commands if kind(command) == "listed"}
    unknown = sorted(listed - RUN_HERE.keys() - RUN_ELSEWHERE - EXEMPT.keys())
    assert not unknown, f"documented commands neither run nor exempt here: {unknown}"
    documented = {command for _, command in commands}
    stale = sorted((RUN_HERE.keys() | RUN_ELSEWHERE | EXEMPT.keys()) - documented)
    assert not stale, f"listed here but no longer documented: {stale}"
    assert set(RUN_HERE.values()) <= set(globals()), "RUN_HERE names a test that does not exist"


# --- checked by kind -------------------------------------------------------------------------


@cache
def podrelay_help(*path: str) -> str:
    result = subprocess.run(
        [PODRELAY, *path, "--help"],
        env=clean_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"podrelay {' '.join(path)} --help: {result.stderr}"
    return result.stdout


def options(command: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"(?:^|[\s\[])(--?[a-z][a-z-]*)", command)]


def test_podrelay_commands_exist_with_their_options() -> None:
    commands = sorted({c for _, c in documented_commands() if kind(c) == "podrelay"})
    assert "podrelay --help" in commands
    for command in commands:
        words = command.split()[1:]
        path: list[str] = []
        if words and re.fullmatch(r"[a-z][a-z-]*", words[0]):
            path.append(words[0])
            if "Commands" in podrelay_help(*path) and len(words) > 1:
                path.append(words[1])  # a group, such as `keys`
        text = podrelay_help(*path)
        for option in options(command):
            assert option in text, f"`{command}`: `podrelay {' '.join(path)}` has no {option}"


def test_celery_commands_exist_with_their_options(tmp_path: Path) -> None:
    commands = sorted({c for _, c in documented_commands() if kind(c) == "celery"})
    assert {"celery -A app.celery_app beat", SEED_WORKER} <= set(commands)
    env = clean_env(DATA_DIR=str(tmp_path / "data"), LOG_FILE=str(tmp_path / "app.log"))
    for command in commands:
        argv = command.split()
        assert argv[:3] == ["celery", "-A", "app.celery_app"], command
        result = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "app.celery_app", argv[3], "--help"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
        for option in options(" ".join(argv[4:])):
            if argv[3] == "flower":  # Flower's options are Tornado's, not in its --help
                assert option.lstrip("-") in flower_options(), f"`{command}`: no {option}"
            else:
                assert option in result.stdout, f"`{command}`: no {option}"


def flower_options() -> set[str]:
    from tornado.options import options as tornado_options

    importlib.import_module("flower.options")
    return {name.replace("_", "-") for name in tornado_options}


def test_python_modules_exist() -> None:
    modules = {c.split()[2] for _, c in documented_commands() if kind(c) == "python -m"}
    assert "app.core.settings_doc" in modules  # run in tests/docs/test_readme.py
    for module in modules:
        assert importlib.util.find_spec(module) is not None, f"python -m {module}"


def test_make_targets_exist_and_say_how_they_are_covered() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = {c.split()[1] for _, c in documented_commands() if kind(c) == "make"}
    assert targets == MAKE_TARGETS.keys()
    for target in targets:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE), f"make {target}"
    assert re.search(r"^run:.*\n\t\$\(BIN\)/podrelay dev$", makefile, re.MULTILINE)


def test_exempt_log_command_names_the_default_log_file() -> None:
    assert str(Settings.model_fields["log_file"].default) == "logs/app.log"


# --- run here --------------------------------------------------------------------------------


def sh(command: str, *, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    """Run a documented command line in a shell; returns its stdout."""
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"`{command}` failed: {result.stderr[-2000:]}"
    return result.stdout


def test_compose_secrets_command(tmp_path: Path) -> None:
    """The README's line that writes docker-compose.yml's required secrets into `.env`."""
    subprocess.run(["bash", "-c", COMPOSE_SECRETS], cwd=tmp_path, check=True, timeout=30)
    written = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines())
    assert re.fullmatch(r"[0-9a-f]{48}", written["POSTGRES_PASSWORD"])
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", written["WEBHOOK_SIGNING_SECRET"])
    assert re.fullmatch(r"[0-9a-f]{64}", written["MEDIA_URL_SECRET"])
    accepted = subprocess.run(
        [*compose_command(), "--env-file", str(tmp_path / ".env"), "-f", COMPOSE, "config"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(HOST_VARIABLES)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert accepted.returncode == 0, accepted.stderr
    assert written["WEBHOOK_SIGNING_SECRET"] in accepted.stdout


def test_redis_cli() -> None:
    assert sh("redis-cli ping").strip() == "PONG"
    env = clean_env(REDIS_URL="redis://127.0.0.1:6379/15")
    assert sh('redis-cli -u "$REDIS_URL" ping', env=env).strip() == "PONG"


def test_seed_demo_command(simulator: SimulatorServer, tmp_path: Path) -> None:
    env = clean_env(
        RUNPOD_URL=f"{simulator.base_url}/docs-demo/run",
        RUNPOD_API_KEY="docs-key",
        DATA_DIR=str(tmp_path / "data"),
        LOG_FILE=str(tmp_path / "app.log"),
    )
    out = sh(SEED_DEMO.replace("python", shlex.quote(sys.executable), 1), env=env, cwd=tmp_path)
    assert out.strip(), "the demo printed nothing"


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list["subprocess.Popen[bytes]"]]:
    """Processes a test starts in `tmp_path`; SIGTERM lets `podrelay dev` stop its children
    (each in a session of its own), and any process still working in `tmp_path` is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in reversed(started):
        stop_process(process)
    deadline = time.monotonic() + 10
    while (left := working_in(tmp_path)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def working_in(folder: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cwd").resolve().is_relative_to(folder):
                pids.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to look at
    return pids


def start_in(folder: Path, command: str, *, env: dict[str, str]) -> "subprocess.Popen[bytes]":
    """Start a documented command line in `folder`, so its relative paths (./data) land there."""
    bindir = shlex.quote(str(Path(sys.executable).parent))
    line = f"cd {shlex.quote(str(folder))} && PATH={bindir}:$PATH exec {command}"
    return start_process(["bash", "-c", line], env=env, log_path=folder / "logs" / "out.log")


def test_seed_worker_and_api_commands_start(
    tmp_path: Path, processes: list["subprocess.Popen[bytes]"]
) -> None:
    worker_dir, api_dir = tmp_path / "worker", tmp_path / "api"
    processes.append(start_in(worker_dir, SEED_WORKER, env=clean_env()))
    port = free_port()
    processes.append(start_in(api_dir, f"{SEED_API} --port {port}", env=clean_env()))
    wait_http(f"http://127.0.0.1:{port}/healthz", timeout=90)
    log = worker_dir / "logs" / "out.log"
    deadline = time.monotonic() + 90
    while "ready." not in log.read_text(errors="replace"):
        assert processes[0].poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


def test_readme_curl_example_against_podrelay_dev(
    tmp_path: Path, processes: list["subprocess.Popen[bytes]"]
) -> None:
    api_port, sim_port = free_port(), free_port()
    env = clean_env(SIMULATOR_PORT=str(sim_port))
    processes.append(start_in(tmp_path, f"podrelay dev --port {api_port}", env=env))
    log = tmp_path / "logs" / "out.log"
    base = f"http://localhost:{api_port}"
    try:
        wait_http(f"http://127.0.0.1:{api_port}/healthz", timeout=120)
    except TimeoutError:
        pytest.fail(log.read_text(errors="replace")[-3000:])

    def run(command: str) -> str:
        return sh(command.replace("http://localhost:8000", base), env=env, cwd=tmp_path)

    job = json.loads(run(CURL_GENERATE))
    assert job["status"] == "pending"
    assert job["links"]["status"] == f"/api/v1/runpod/status/{job['id']}"
    deadline = time.monotonic() + 90
    while True:
        status = json.loads(run(CURL_STATUS.replace("job_…", job["id"])))
        if status["status"] == "completed":
            break
        assert status["status"] in ("pending", "queued", "running"), status
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.5)
    # Followed like a browser: until the download is stored the API redirects to its origin.
    image = httpx.get(base + status["images"][0]["url"], timeout=10, follow_redirects=True)
    assert image.status_code == 200
    assert image.headers["content-type"].startswith("image/")

    created = sh(f"{PODRELAY} {KEYS_CREATE.removeprefix('podrelay ')}", env=env, cwd=tmp_path)
    key = next(line.split(":", 1)[1].strip() for line in created.splitlines() if "api key" in line)
    connection = json.loads(run(CURL_TEST.replace("<api key>", key)))
    assert connection["ok"] is True
    assert connection["key_accepted"] is True
    ready = json.loads(run(CURL_READY))
    assert ready["status"] == "ready", ready

    # The README's SDK examples, against the same stack.
    first_screen = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    [python], [typescript] = code_blocks(first_screen, "python"), code_blocks(first_screen, "ts")
    sh(f"{sys.executable} -c {shlex.quote(python.replace('http://localhost:8000', base))}",
       env=env, cwd=tmp_path)  # fmt: skip
    assert (tmp_path / "girl.png").read_bytes().startswith(b"\x89PNG")
    installed_npm()
    script = TYPESCRIPT / ".readme-check.mjs"  # in the package: it imports itself by name
    script.write_text(
        typescript.replace("http://localhost:8000", base) + "\nconsole.log(png[1]);\n"
    )
    try:
        assert sh(f"node {script}", env=env, cwd=TYPESCRIPT).strip() == str(ord("P"))
    finally:
        script.unlink()
