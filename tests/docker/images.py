"""The images the Docker stack test runs, built once per content and kept in the Docker daemon.

- The base image: `python:3.11-slim` when the daemon has it or can pull it. Where no registry
  answers, a Debian root file system with Debian's python3, made by debootstrap and imported
  with `docker import`; it carries this machine's CA bundle and a pip.conf naming it, so pip in
  the builds trusts what the host trusts (a TLS-inspecting proxy included).
- Stand-ins for the compose file's PostgreSQL, Redis and MinIO images (server and client)
  when those cannot be pulled (stand-in.Dockerfile: Debian's PostgreSQL and Redis, moto's S3
  server and mc_stand_in.py, at pyproject.toml's pins, on the base image).
- Podrelay's two images, from the repository's Dockerfiles with `BASE_IMAGE`.

Each image is tagged by a hash of what goes into it (recipe, files, base image id), so an
unchanged tree builds nothing; older tags of the same image are removed. Builds use the host's
network (`--network host`), so pip and apt reach what the host reaches, proxies included.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PUBLIC_BASE = "python:3.11-slim"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BOOTSTRAP_PACKAGES = ("python3", "python3-venv", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PIP_CONF = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
BUILD_TIMEOUT_S = 900
KEPT_TAGS = 3
# Files of this folder that go into the stand-in image.
STAND_IN_FILES = ("stand-in-entrypoint.sh", "mc_stand_in.py")


class DockerError(RuntimeError):
    """A docker command failed; the message carries the end of its output."""


def docker(*args: str, timeout: float = 120, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        raise DockerError(f"docker {' '.join(args[:3])} … failed:\n{output[-4000:]}")
    return result.stdout.decode(errors="replace")


def daemon_problem() -> str | None:
    """Why no image can be built or run here, or None when a Docker daemon answers."""
    if shutil.which("docker") is None:
        return "no docker client on PATH (.ci/run installs docker.io)"
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except (DockerError, subprocess.TimeoutExpired) as error:
        return f"no Docker daemon answers ({str(error).strip().splitlines()[-1]})"
    return None


def image_id(reference: str) -> str | None:
    try:
        return docker("image", "inspect", "--format", "{{.Id}}", reference).strip()
    except DockerError:
        return None


def obtainable(reference: str) -> bool:
    """The daemon has the image, or pulls it now."""
    if image_id(reference) is not None:
        return True
    try:
        docker("pull", reference, timeout=600)
    except DockerError:
        return False
    return True


def digest(*parts: str | bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big") + data)
    return hasher.hexdigest()[:16]


def drop_old_tags(repository: str) -> None:
    """Removes all but the repository's newest few content tags (other worktrees' runs may be
    using those); an image a container still uses stays."""
    tags = docker("images", repository, "--format", "{{.Tag}}").split()  # newest first
    for tag in tags[KEPT_TAGS:]:
        try:
            docker("rmi", f"{repository}:{tag}")
        except DockerError:
            pass


def build(repository: str, dockerfile: Path, context: Path, inputs: str, **args: str) -> str:
    """`docker build` unless an image of the same inputs exists; returns its reference."""
    proxies = {name: os.environ[name] for name in PROXY_VARIABLES if os.environ.get(name)}
    build_args = {**args, **proxies}
    tag = digest(dockerfile.read_bytes(), inputs, *sorted(f"{k}={v}" for k, v in args.items()))
    reference = f"{repository}:{tag}"
    if image_id(reference) is None:
        argv = ["build", "--network", "host", "-f", str(dockerfile), "-t", reference]
        for name, value in build_args.items():
            argv += ["--build-arg", f"{name}={value}"]
        docker(*argv, str(context), timeout=BUILD_TIMEOUT_S)
        drop_old_tags(repository)
    return reference


def bootstrapped_base() -> str:
    """A Debian image with Debian's python3, made and imported once per recipe."""
    ca_bundle = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b""
    recipe = (DEBIAN_SUITE, DEBIAN_MIRROR, *BOOTSTRAP_PACKAGES, PIP_CONF)
    repository, tag = "podrelay-test-base", digest(*recipe, ca_bundle)
    reference = f"{repository}:{tag}"
    if image_id(reference) is not None:
        return reference
    if shutil.which("debootstrap") is None:
        raise DockerError(f"{PUBLIC_BASE} cannot be pulled and debootstrap is not installed")
    with tempfile.TemporaryDirectory(prefix="podrelay-rootfs-") as rootfs:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BOOTSTRAP_PACKAGES)}",
                DEBIAN_SUITE,
                rootfs,
                DEBIAN_MIRROR,
            ],
            capture_output=True,
            timeout=BUILD_TIMEOUT_S,
            check=True,
        )
        root = Path(rootfs)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        if ca_bundle:
            (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(ca_bundle)
        (root / "etc/pip.conf").write_text(PIP_CONF)
        archive = subprocess.run(
            ["tar", "-C", rootfs, "-c", "."], capture_output=True, timeout=300, check=True
        ).stdout
    docker("import", "-", reference, stdin=archive, timeout=300)
    drop_old_tags(repository)
    return reference


def build_context_entries() -> list[str]:
    """What .dockerignore lets into the images' build context (it ignores all else)."""
    return [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]


def podrelay_inputs() -> str:
    """A digest of every file of the images' build context."""
    files: list[Path] = []
    for name in build_context_entries():
        path = ROOT / name
        files += sorted(path.rglob("*")) if path.is_dir() else [path]
    kept = [f for f in files if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"]
    return digest(*(f"{f.relative_to(ROOT)}\0".encode() + f.read_bytes() for f in kept))


def pinned(name: str) -> str:
    """pyproject.toml's requirement line for distribution `name` (dependencies or extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    lines = [*project["dependencies"], *(line for extra in extras for line in extra)]
    found = [line for line in lines if canonicalize_name(Requirement(line).name) == name]
    if len(found) != 1:
        raise DockerError(f"pyproject.toml names {name} {len(found)} times, not once")
    return str(found[0])


@dataclass(frozen=True)
class Images:
    base: str
    api: str
    worker: str
    # Service name -> image replacing the compose file's, for those that cannot be pulled.
    stand_ins: dict[str, str]


def podrelay_images(public_services: dict[str, str]) -> Images:
    """Builds (or finds) everything the stack needs; `public_services` maps the compose
    file's PostgreSQL and Redis services to their images."""
    base = PUBLIC_BASE if obtainable(PUBLIC_BASE) else bootstrapped_base()
    base_id = image_id(base) or base
    inputs = digest(podrelay_inputs(), base_id)
    api = build("podrelay-test-api", ROOT / "Dockerfile", ROOT, inputs, BASE_IMAGE=base)
    worker = build(
        "podrelay-test-worker", ROOT / "Dockerfile.celery", ROOT, inputs, BASE_IMAGE=base
    )
    missing = [name for name, image in public_services.items() if not obtainable(image)]
    stand_ins: dict[str, str] = {}
    if missing:
        stand_in = build(
            "podrelay-test-stand-in",
            HERE / "stand-in.Dockerfile",
            HERE,
            digest(*((HERE / name).read_bytes() for name in STAND_IN_FILES), base_id),
            BASE_IMAGE=base,
            MOTO_REQUIREMENT=pinned("moto"),
            BOTO3_REQUIREMENT=pinned("boto3"),
        )
        stand_ins = dict.fromkeys(missing, stand_in)
    return Images(base=base, api=api, worker=worker, stand_ins=stand_ins)
