"""The Docker files: both compose files resolve, are wired as documented, run the seed's
commands, and every module and command they name exists. The worker image's requirements
agree with pyproject.toml and are enough for the worker without anything else installed.

`docker compose config` needs a compose client, not a Docker engine; CI installs one.
"""

import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from app.core.config import Settings
from tests.docker.images import build_context_entries

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = "docker-compose.yml"
COMPOSE_LOCAL = "docker-compose.local.yml"
PODRELAY_SERVICES = {"api", "worker", "beat", "flower", "simulator"}
SERVICES = {"postgres", "redis", *PODRELAY_SERVICES}
# The base file keeps images in MinIO (the s3 media backend); the local one in a folder.
OBJECT_STORE = {"minio", "minio-init"}
OBSERVABILITY = {"prometheus", "grafana"}
PUBLIC_BASE = "python:3.11-slim"
SEED_WORKER = "celery -A app.celery_app worker --loglevel=info --concurrency=2"
SEED_FLOWER = "celery -A app.celery_app flower --port=5555"
API_COMMAND = "uvicorn app.main:app --host 0.0.0.0 --port 8000"
# Nothing the worker image may carry: GPU stacks, and the API's web server and UI.
NOT_IN_WORKER = ("torch", "nvidia-", "cuda", "triton", "fastapi", "uvicorn", "flower", "typer")
# Settings the compose files set from the host; a developer's own must not leak into the test.
HOST_VARIABLES = (
    "RUNPOD_",
    "PUBLIC_BASE_URL",
    "POSTGRES_PASSWORD",
    "WEBHOOK_SIGNING_SECRET",
    "MEDIA_URL_SECRET",
    "MEDIA_PUBLIC_BASE_URL",
    "MINIO_ROOT_",
    "ENVIRONMENT",
    "LOG_LEVEL",
    "OTEL_",
    "BASE_IMAGE",
    "HOST_",
)
# docker-compose.yml refuses to start without these (no weak defaults in production).
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD": "a-test-password",
    "WEBHOOK_SIGNING_SECRET": "whsec_a_test_secret",
    "MEDIA_URL_SECRET": "a-test-media-secret",
}


@cache
def compose_command() -> list[str]:
    """`docker compose` (v2) when it works, else `docker-compose` (v1)."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=60, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail(
        "no compose client: install the Docker Compose plugin (`docker compose`) or "
        "`docker-compose` (apt-get install docker-compose); `config` needs no Docker engine"
    )


class Compose:
    """Runs `config` on the compose files, with none of the developer's settings or `.env`."""

    def __init__(self, empty_env_file: Path) -> None:
        empty_env_file.write_text("")
        self.env_file = empty_env_file

    def run_config(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(HOST_VARIABLES)}
        return subprocess.run(
            [*compose_command(), "--env-file", str(self.env_file), *args, "config"],
            cwd=ROOT,
            env={**clean, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def config(self, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        """The resolved configuration, as `docker compose config` prints it (with the
        required secrets set unless `env` sets them)."""
        result = self.run_config(*args, env={**REQUIRED_SECRETS, **(env or {})})
        assert result.returncode == 0, f"compose config {args} failed:\n{result.stderr}"
        # PyYAML (a uvicorn[standard] dependency) ships no type stubs.
        yaml: Any = importlib.import_module("yaml")
        config: dict[str, Any] = yaml.safe_load(result.stdout)
        return config

    def services(self, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        found: dict[str, dict[str, Any]] = self.config(*args, env=env)["services"]
        return found


def command(service: dict[str, Any]) -> str:
    value = service["command"]
    return value if isinstance(value, str) else shlex.join(value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    value = service.get("environment") or {}
    if isinstance(value, list):
        value = dict(item.split("=", 1) for item in value)
    return {key: str(item) for key, item in value.items()}


def published(service: dict[str, Any]) -> set[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port."""
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, str):
            ip, host, container = port.removesuffix("/tcp").rsplit(":", 2)
            ports.add((ip, int(host), int(container)))
        else:
            ports.add((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
    return ports


def podrelay_settings(service: dict[str, Any]) -> Settings:
    """The settings a service's process would load from its environment."""
    values: dict[str, Any] = {name.lower(): value for name, value in environment(service).items()}
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Compose:
    return Compose(tmp_path_factory.mktemp("compose") / "empty.env")


@pytest.fixture(scope="module")
def base(compose: Compose) -> dict[str, dict[str, Any]]:
    return compose.services("-f", COMPOSE, "--profile", "simulator")


@pytest.fixture(scope="module")
def local(compose: Compose) -> dict[str, dict[str, Any]]:
    return compose.services("-f", COMPOSE_LOCAL)


def test_compose_files_define_the_whole_stack(
    compose: Compose, base: dict[str, dict[str, Any]], local: dict[str, dict[str, Any]]
) -> None:
    # v1 lists every profile's services, v2 not
    assert set(base) - OBSERVABILITY == SERVICES | OBJECT_STORE
    assert set(local) == SERVICES
    assert base["simulator"].get("profiles") == ["simulator"]
    assert all("profiles" not in base[name] for name in SERVICES - {"simulator"})
    assert all("profiles" not in service for service in local.values())
    default = compose.services("-f", COMPOSE)
    assert SERVICES - {"simulator"} <= set(default)
    observed = compose.services("-f", COMPOSE, "--profile", "observability")
    assert OBSERVABILITY <= set(observed)
    assert all(observed[name]["profiles"] == ["observability"] for name in OBSERVABILITY)


def test_production_secrets_have_no_defaults(compose: Compose) -> None:
    for name in REQUIRED_SECRETS:
        others = {k: v for k, v in REQUIRED_SECRETS.items() if k != name}
        refused = compose.run_config("-f", COMPOSE, env=others)
        assert refused.returncode != 0
        assert f"set {name}" in refused.stderr
    found = compose.services("-f", COMPOSE)
    assert environment(found["postgres"])["POSTGRES_PASSWORD"] == "a-test-password"
    for name in ("api", "worker", "beat", "flower"):
        settings = podrelay_settings(found[name])
        assert settings.webhook_signing_secret.get_secret_value() == "whsec_a_test_secret"
        assert ":a-test-password@postgres:5432/" in settings.database_url


@pytest.mark.parametrize("file", [COMPOSE, COMPOSE_LOCAL])
def test_commands_are_the_seeds(compose: Compose, file: str) -> None:
    found = compose.services("-f", file, "--profile", "simulator")
    assert command(found["worker"]) == SEED_WORKER
    assert command(found["flower"]) == SEED_FLOWER
    assert command(found["beat"]) == "celery -A app.celery_app beat --loglevel=info"
    assert command(found["api"]) == API_COMMAND
    assert command(found["simulator"]) == "podrelay simulator --host 0.0.0.0 --port 8001"
    assert found["worker"]["build"]["dockerfile"] == "Dockerfile.celery"
    assert found["beat"]["image"] == found["worker"]["image"]
    assert found["api"]["build"]["dockerfile"] == "Dockerfile"
    assert found["flower"]["image"] == found["simulator"]["image"] == found["api"]["image"]


@pytest.mark.parametrize("file", [COMPOSE, COMPOSE_LOCAL])
def test_health_checks_and_start_order(compose: Compose, file: str) -> None:
    found = compose.services("-f", file, "--profile", "simulator")
    for name in ("postgres", "redis", "api", "worker", "flower", "simulator"):
        assert found[name]["healthcheck"]["test"], name
    # The worker image's own check pings a worker, which beat is not.
    beat = found["beat"]["healthcheck"]
    assert beat.get("disable") is True or beat.get("test") == ["NONE"]  # compose v2 / v1
    for name in ("api", "worker"):
        conditions = {dep: cond["condition"] for dep, cond in found[name]["depends_on"].items()}
        assert conditions["postgres"] == conditions["redis"] == "service_healthy", name
    assert found["beat"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert found["flower"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_bucket_serves_objects_by_key_and_lists_nothing(
    base: dict[str, dict[str, Any]],
) -> None:
    """minio-init gives anonymous readers s3:GetObject on the bucket's objects and nothing
    else: no s3:ListBucket (what `mc anonymous set download` also grants), which would hand out
    every image's key. tests/docker/test_stack.py reads an image through it."""
    init = base["minio-init"]
    mounts = {volume["target"]: volume["source"] for volume in map(mount, init["volumes"])}
    assert init["entrypoint"] == ["sh", "-c"]
    (script,) = as_list(init["command"])
    match = re.search(r"mc anonymous set-json (\S+) local/(\S+)", script)
    assert match, script
    policy_path, bucket = match.groups()
    assert bucket == podrelay_settings(base["api"]).s3_bucket
    assert f"mc mb --ignore-existing local/{bucket}" in script
    policy = json.loads(Path(mounts[policy_path]).read_text())
    granted = {
        (action, resource)
        for statement in policy["Statement"]
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
        if statement["Effect"] == "Allow"
    }
    assert granted == {("s3:GetObject", f"arn:aws:s3:::{bucket}/*")}


def mount(volume: str | dict[str, Any]) -> dict[str, str]:
    """A bind mount as compose v2 prints it (v1: `source:target:mode`)."""
    if isinstance(volume, dict):
        return {"source": volume["source"], "target": volume["target"]}
    source, target = volume.split(":")[:2]
    return {"source": source, "target": target}


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


@pytest.mark.parametrize("file", [COMPOSE, COMPOSE_LOCAL])
def test_ports_are_published_on_loopback(compose: Compose, file: str) -> None:
    found = compose.services("-f", file, "--profile", "simulator")
    assert published(found["api"]) == {("127.0.0.1", 8000, 8000)}
    assert published(found["flower"]) == {("127.0.0.1", 5555, 5555)}
    assert published(found["simulator"]) == {("127.0.0.1", 8001, 8001)}
    assert not any(published(found[name]) for name in ("postgres", "redis", "worker", "beat"))
    if file == COMPOSE:  # browsers load the images from MinIO
        assert published(found["minio"]) == {("127.0.0.1", 9000, 9000)}
        assert not published(found["minio-init"])


def test_host_ports_and_base_image_come_from_the_host(compose: Compose) -> None:
    host = {
        "HOST_API_PORT": "18000",
        "HOST_FLOWER_PORT": "15555",
        "HOST_SIMULATOR_PORT": "18001",
        "HOST_MINIO_PORT": "19000",
        "HOST_PROMETHEUS_PORT": "19090",
        "HOST_GRAFANA_PORT": "13000",
        "BASE_IMAGE": "python:3.11-slim@sha256:" + "0" * 64,
    }
    found = compose.services(
        "-f", COMPOSE, "--profile", "simulator", "--profile", "observability", env=host
    )
    assert published(found["api"]) == {("127.0.0.1", 18000, 8000)}
    assert published(found["flower"]) == {("127.0.0.1", 15555, 5555)}
    assert published(found["simulator"]) == {("127.0.0.1", 18001, 8001)}
    assert published(found["minio"]) == {("127.0.0.1", 19000, 9000)}
    assert published(found["prometheus"]) == {("127.0.0.1", 19090, 9090)}
    assert published(found["grafana"]) == {("127.0.0.1", 13000, 3000)}
    for name in ("api", "worker"):
        assert found[name]["build"]["args"]["BASE_IMAGE"] == host["BASE_IMAGE"]
    local = compose.services("-f", COMPOSE_LOCAL, env=host)
    for name in ("api", "worker"):
        assert local[name]["build"]["args"]["BASE_IMAGE"] == host["BASE_IMAGE"]
    for file in (COMPOSE, COMPOSE_LOCAL):
        default = compose.services("-f", file)
        for name in ("api", "worker"):
            assert default[name]["build"]["args"]["BASE_IMAGE"] == PUBLIC_BASE


def test_runpod_settings_come_from_the_host(compose: Compose) -> None:
    host = {
        "RUNPOD_API_KEY": "rp_from_host",
        "RUNPOD_URL": "https://api.runpod.ai/v2/abc123/run",
        "PUBLIC_BASE_URL": "https://podrelay.example.com",
    }
    found = compose.services("-f", COMPOSE, env=host)
    for name in ("api", "worker", "beat", "flower"):
        settings = podrelay_settings(found[name])
        target = settings.runpod_target
        assert (target.base_url, target.endpoint_id) == ("https://api.runpod.ai/v2", "abc123")
        assert target.api_key.get_secret_value() == "rp_from_host"
        assert settings.webhook_base_url == "https://podrelay.example.com"


def test_without_runpod_settings_the_base_file_targets_its_simulator(
    base: dict[str, dict[str, Any]],
) -> None:
    for name in ("api", "worker", "beat", "flower"):
        settings = podrelay_settings(base[name])
        assert settings.runpod_target.base_url == "http://simulator:8001/v2", name
        assert settings.webhook_base_url is None  # polling: RunPod cannot reach a private host
        assert settings.environment == "production"
        assert settings.database_url.startswith("postgresql+psycopg://podrelay:")
        assert "@postgres:5432/" in settings.database_url
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.media_backend == "s3"
        assert (settings.s3_bucket, settings.s3_endpoint_url) == ("podrelay", "http://minio:9000")
        assert settings.media_public_base_url == "http://127.0.0.1:9000/podrelay"


def test_local_file_is_a_development_stack_in_webhook_mode(
    local: dict[str, dict[str, Any]],
) -> None:
    for name in ("api", "worker", "beat", "flower"):
        settings = podrelay_settings(local[name])
        assert settings.runpod_target.base_url == "http://simulator:8001/v2", name
        assert settings.anonymous_allowed
        # The simulator posts its webhooks to the API's service name and container port.
        assert settings.webhook_base_url == "http://api:8000"
        assert settings.redis_url == "redis://redis:6379/0"
    # API and worker share the media store: the worker writes images, the API serves them.
    mounts = {name: set(local[name]["volumes"]) for name in ("api", "worker")}
    assert mounts["api"] & mounts["worker"]


# --- the images ------------------------------------------------------------------------------


def dockerfile(name: str) -> str:
    return (ROOT / name).read_text()


def dockerfile_cmd(text: str) -> str:
    match = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert match, "no exec-form CMD"
    return shlex.join(json.loads(match.group(1)))


def test_images_run_the_compose_commands(base: dict[str, dict[str, Any]]) -> None:
    api, worker = dockerfile("Dockerfile"), dockerfile("Dockerfile.celery")
    for text in (api, worker):
        # One base image, replaceable (BASE_IMAGE), the public one by default.
        assert re.findall(r"^ARG BASE_IMAGE=(.*)$", text, re.MULTILINE) == [PUBLIC_BASE]
        froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
        assert set(froms) == {"${BASE_IMAGE}"}
    # The API image installs the package's wheel (a multi-stage build), not an editable tree.
    assert "pip wheel --no-deps" in api
    assert " -e " not in api
    assert dockerfile_cmd(api) == command(base["api"]) == API_COMMAND
    assert dockerfile_cmd(worker) == command(base["worker"]) == SEED_WORKER
    for text in (api, worker):
        assert re.search(r"^USER podrelay$", text, re.MULTILINE), "must not run as root"
        assert "HEALTHCHECK" in text
    assert "/healthz" in api
    assert "pip install -r requirements-celery.txt" in worker
    assert "pyproject" not in worker, "the worker image installs requirements-celery.txt only"


def test_copied_files_exist_and_reach_the_build_context() -> None:
    allowed = set(build_context_entries())
    for name in ("Dockerfile", "Dockerfile.celery"):
        for line in dockerfile(name).splitlines():
            if line.startswith("COPY ") and not line.startswith("COPY --from="):
                sources = line.split()[1:-1]
                for source in sources:
                    assert (ROOT / source).exists(), f"{name}: {source} does not exist"
                    assert source in allowed, f"{name}: .dockerignore leaves out {source}"


def test_referenced_modules_and_commands_exist(
    base: dict[str, dict[str, Any]], local: dict[str, dict[str, Any]]
) -> None:
    commands = [
        command(service)
        for service in [*base.values(), *local.values()]
        if service.get("image", "").startswith("podrelay")
    ]
    commands += [dockerfile_cmd(dockerfile(name)) for name in ("Dockerfile", "Dockerfile.celery")]
    for line in commands:
        argv = shlex.split(line)
        if argv[0] == "celery":
            module = argv[argv.index("-A") + 1]
            assert importlib.util.find_spec(module) is not None, line
        elif argv[0] == "uvicorn":
            module, _, attribute = argv[1].partition(":")
            spec = importlib.util.find_spec(module)
            assert spec is not None, line
            assert spec.origin is not None, line
            assert re.search(rf"^{attribute} = ", Path(spec.origin).read_text(), re.MULTILINE)
        elif argv[0] == "podrelay":
            script = Path(sys.executable).with_name("podrelay")
            helped = subprocess.run(
                [str(script), *argv[1:2], "--help"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert helped.returncode == 0, f"{line}: {helped.stderr}"
            for option in (arg for arg in argv[2:] if arg.startswith("--")):
                assert option in helped.stdout, f"{line}: no {option}"
    # Flower's health check URL is one of Flower's own.
    flower_urls = importlib.util.find_spec("flower.urls")
    assert flower_urls is not None
    assert flower_urls.origin is not None
    assert '(r"/healthcheck"' in Path(flower_urls.origin).read_text()


# --- the worker's requirements -------------------------------------------------------------


def requirements_celery() -> list[Requirement]:
    lines = (ROOT / "requirements-celery.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def test_worker_requirements_are_pyprojects_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {canonicalize_name(Requirement(line).name): line for line in project["dependencies"]}
    for requirement in requirements_celery():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not a dependency in pyproject.toml"
        assert str(requirement) == str(Requirement(pins[name])), f"{requirement} != {pins[name]}"
        assert str(requirement.specifier).startswith("=="), f"{requirement} is not pinned"


def test_worker_requirements_leave_out_gpu_and_web_stacks() -> None:
    closure = dependency_closure(requirements_celery())
    heavy = sorted(name for name in closure if name.startswith(NOT_IN_WORKER))
    assert not heavy, f"the worker image would carry {heavy}"


def dependency_closure(requirements: list[Requirement]) -> set[str]:
    """Every installed distribution the requirements pull in, extras and markers applied."""
    seen: set[tuple[str, str]] = set()
    stack = list(requirements)
    while stack:
        requirement = stack.pop()
        for extra in requirement.extras or {""}:
            key = (canonicalize_name(requirement.name), extra)
            if key in seen:
                continue
            seen.add(key)
            try:
                requires = importlib.metadata.requires(requirement.name) or []
            except importlib.metadata.PackageNotFoundError:
                continue
            for line in requires:
                needed = Requirement(line)
                if needed.marker is None or needed.marker.evaluate({"extra": extra}):
                    stack.append(needed)
    return {name for name, _ in seen}


# Imports every module the worker and beat can load with only the closure of
# requirements-celery.txt importable: any other installed distribution raises ImportError.
_SANDBOX = """
import importlib, importlib.abc, importlib.metadata, json, pkgutil, re, sys
allowed = set(json.loads(sys.argv[1]))
blocked = {
    top for top, dists in importlib.metadata.packages_distributions().items()
    if top != "app" and not any(re.sub(r"[-_.]+", "-", d).lower() in allowed for d in dists)
}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"not in the worker image: {name}", name=name)
        return None
sys.meta_path.insert(0, Refuse())
import app
skip = ("app.api", "app.main", "app.cli", "app.simulator", "app.devstack", "app.playground")
for info in pkgutil.walk_packages(app.__path__, "app."):
    if not info.name.startswith(skip):
        importlib.import_module(info.name)
for name in ("app.celery_app", "celery.bin.celery", "celery.apps.worker", "celery.apps.beat",
             "celery.concurrency.prefork", "kombu.transport.redis", "psycopg"):
    importlib.import_module(name)
from app.tasks import runtime
runtime.get_engine()  # builds the engine and runs the migrations
print("ok")
"""


def test_worker_runs_with_only_its_requirements(tmp_path: Path) -> None:
    allowed = dependency_closure(requirements_celery())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "REDIS_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.db'}",
        DATA_DIR=str(tmp_path / "data"),
        MEDIA_DIR=str(tmp_path / "media"),
        LOG_FILE=str(tmp_path / "app.log"),
    )
    result = subprocess.run(
        [sys.executable, "-c", _SANDBOX, json.dumps(sorted(allowed))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_migrations_apply_when_the_api_or_a_worker_starts() -> None:
    """What the compose files rely on instead of a migration step of their own."""
    for module in ("app/main.py", "app/tasks/runtime.py"):
        source = (ROOT / module).read_text()
        assert "upgrade_database(" in source, f"{module} no longer migrates on start"
    # Several processes starting at once take turns (an advisory lock on PostgreSQL).
    assert "pg_advisory_lock" in (ROOT / "app/core/migrate.py").read_text()


def test_the_tests_clear_every_variable_the_compose_files_read() -> None:
    for name in (COMPOSE, COMPOSE_LOCAL):
        for variable in re.findall(r"\$\{(\w+)", (ROOT / name).read_text()):
            assert variable.startswith(HOST_VARIABLES), f"{name} reads {variable} from the host"
