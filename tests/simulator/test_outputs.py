"""Output shapes (contract 7), image decoding and determinism, worker input validation."""

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from app.simulator.server import SimulatorServer
from tests.simulator.helpers import submit, wait_until

W, H = 48, 32
DATA_PREFIX = "data:image/png;base64,"


def _decode(value: str) -> bytes:
    if value.startswith(DATA_PREFIX):
        value = value[len(DATA_PREFIX) :]
    return base64.b64decode(value, validate=True)


def _fetch(anon: httpx.Client, value: str) -> bytes:
    """Download a URL without credentials (like a public bucket link), or decode base64."""
    if value.startswith("http"):
        response = anon.get(value)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        return response.content
    return _decode(value)


def _images(shape: str, output: dict[str, Any]) -> list[str]:
    """Pull every image reference out of an output of the given shape."""
    match shape:
        case "worker-sdxl":
            assert output["image_url"] == output["images"][0]
            return list(output["images"])
        case "comfyui":
            return [item["data"] for item in output["images"]]
        case "comfyui-legacy":
            assert output["status"] == "success"
            return [output["message"]]
        case "a1111":
            assert json.loads(output["info"])["seed"] == output["parameters"]["seed"]
            return list(output["images"])
        case "sdxl-turbo":
            assert isinstance(output["generation_time"], float)
            return [item["image"] for item in output["images"]]
        case _:
            assert isinstance(output["cost"], float)
            return [output["image_url"]]


def _run(client: httpx.Client, **job_input: Any) -> dict[str, Any]:
    job_id = submit(client, prompt="a lighthouse", width=W, height=H, **job_input)
    job = wait_until(client, job_id)
    assert job["status"] == "COMPLETED", job
    output: dict[str, Any] = job["output"]
    return output


@pytest.mark.parametrize(
    ("shape", "return_type", "inline"),
    [
        ("worker-sdxl", "url", False),
        ("worker-sdxl", "base64", True),
        ("comfyui", "url", False),
        ("comfyui", "base64", True),
        ("comfyui-legacy", "url", False),
        ("comfyui-legacy", "base64", True),
        ("a1111", "url", True),
        ("sdxl-turbo", "url", True),
        ("public", "base64", False),
    ],
)
def test_every_shape_yields_pngs_of_requested_size(
    anon: httpx.Client, client: httpx.Client, shape: str, return_type: str, inline: bool
) -> None:
    output = _run(client, sim_output_shape=shape, return_type=return_type, seed=7)
    refs = _images(shape, output)
    assert refs
    assert all(ref.startswith("http") != inline for ref in refs)
    if shape in ("a1111", "sdxl-turbo", "comfyui-legacy") or (shape == "comfyui" and inline):
        assert not any(ref.startswith("data:") for ref in refs)
    for ref in refs:
        with Image.open(io.BytesIO(_fetch(anon, ref))) as image:
            assert image.format == "PNG"
            assert image.size == (W, H)


def test_default_shape_follows_the_knob(sim: SimulatorServer, client: httpx.Client) -> None:
    assert set(_run(client)) == {"images", "image_url", "seed"}
    sim.set_faults(output_shape="comfyui")
    output = _run(client)
    assert output["images"][0]["type"] == "s3_url"
    assert output["images"][0]["filename"].endswith(".png")


def test_images_are_deterministic(anon: httpx.Client, client: httpx.Client) -> None:
    first = _fetch(anon, _run(client, seed=42, return_type="base64")["images"][0])
    again = _fetch(anon, _run(client, seed=42)["images"][0])
    other_seed = _fetch(anon, _run(client, seed=43)["images"][0])
    unrelated_knob = _fetch(anon, _run(client, seed=42, guidance_scale=9.0)["images"][0])
    assert first == again == unrelated_knob
    assert first != other_seed


def test_prompt_changes_the_image(anon: httpx.Client, client: httpx.Client) -> None:
    a = wait_until(client, submit(client, prompt="a", seed=1, width=W, height=H))["output"]
    b = wait_until(client, submit(client, prompt="b", seed=1, width=W, height=H))["output"]
    assert _fetch(anon, a["image_url"]) != _fetch(anon, b["image_url"])


def test_seed_is_reported_and_random_when_missing(client: httpx.Client) -> None:
    assert _run(client, seed=1234)["seed"] == 1234
    seeds = {_run(client)["seed"] for _ in range(3)}
    assert len(seeds) == 3
    assert all(isinstance(seed, int) for seed in seeds)


def test_multiple_images_use_consecutive_seeds(client: httpx.Client) -> None:
    output = _run(client, num_images=3, sim_output_shape="sdxl-turbo", seed=10)
    assert [item["seed"] for item in output["images"]] == [10, 11, 12]
    assert len({item["image"] for item in output["images"]}) == 3


def test_rendering_is_clamped_to_max_side(
    sim: SimulatorServer, anon: httpx.Client, client: httpx.Client
) -> None:
    sim.set_faults(max_image_side=40)
    output = _run(client)
    with Image.open(io.BytesIO(_fetch(anon, output["image_url"]))) as image:
        assert image.size == (40, 32)


def test_unknown_image_is_404(anon: httpx.Client) -> None:
    assert anon.get(f"/images/{'0' * 32}.png").status_code == 404


@pytest.mark.parametrize(
    ("job_input", "message"),
    [
        ({"width": 64}, "prompt"),
        ({"prompt": "p", "num_images": 5}, "num_images"),
        ({"prompt": "p", "width": "wide"}, "width"),
        ({"prompt": "p", "sim_output_shape": "svg"}, "sim_output_shape"),
        ({"prompt": "p", "return_type": "file"}, "return_type"),
    ],
)
def test_invalid_input_fails_with_plain_error(
    client: httpx.Client, job_input: dict[str, Any], message: str
) -> None:
    job = wait_until(client, submit(client, {"input": job_input}))
    assert job["status"] == "FAILED"
    assert message in job["error"]
    assert not job["error"].startswith("{")


def test_non_object_input_fails_the_job(client: httpx.Client) -> None:
    job = wait_until(client, submit(client, {"input": "just a string"}))
    assert job["status"] == "FAILED"
