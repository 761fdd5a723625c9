"""The simulated image handler: input validation and the per-run outcome plan.

Input follows worker-sdxl names (`prompt`, `negative_prompt`, `width`, `height`, `seed`,
`num_images`, `num_inference_steps`) plus `return_type` ("url" | "base64") and the
simulator-only `sim_output_shape`, which overrides the `output_shape` knob for one job.
An invalid input fails the job with a plain error string, as the real validator does.
"""

import json
import random
from dataclasses import dataclass
from typing import Any, Literal

from app.simulator.config import OUTPUT_SHAPES, SimulatorConfig

MAX_IMAGES = 4
DEFAULT_SIDE = 1024
DEFAULT_STEPS = 25
RUNPOD_VERSION = "1.12.0"

Outcome = Literal["ok", "fail", "empty", "hang", "invalid"]


class InputError(ValueError):
    """The job input does not pass the simulated worker's validation."""


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    seed: int
    num_images: int
    steps: int
    return_type: Literal["url", "base64"]
    shape: str


@dataclass(frozen=True)
class Plan:
    outcome: Outcome
    duration_s: float
    total_steps: int
    request: ImageRequest | None = None
    error: str | None = None


def make_rng(seed: str | None) -> random.Random:
    """Create a random stream for simulated behaviour (seeded when reproducibility is wanted)."""
    return random.Random(seed)  # noqa: S311 - simulation noise, never used for security


def _int_field(data: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer.")
    if not low <= value <= high:
        raise InputError(f"{name} must be between {low} and {high}.")
    return value


def parse_input(raw: Any, config: SimulatorConfig, rng: random.Random) -> ImageRequest:
    """Validate a job input the way worker-sdxl does (a ComfyUI workflow, A1111's or FLUX's
    parameters are read as theirs); raise InputError on the first problem."""
    if not isinstance(raw, dict):
        raise InputError("input must be a JSON object.")
    raw = sdxl_fields(raw)
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt is a required field.")
    negative = raw.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise InputError("negative_prompt must be a string.")
    return_type = raw.get("return_type", "url")
    if return_type not in ("url", "base64"):
        raise InputError("return_type must be 'url' or 'base64'.")
    shape = raw.get("sim_output_shape", config.output_shape)
    if shape not in OUTPUT_SHAPES:
        raise InputError(f"sim_output_shape must be one of {list(OUTPUT_SHAPES)}.")
    seed = raw.get("seed")
    if seed is None or seed == -1:  # -1: A1111's and FLUX's "random"
        seed = rng.randrange(2**32)
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError("seed must be an integer.")
    big = 1 << 16
    return ImageRequest(
        prompt=prompt,
        negative_prompt=negative,
        width=min(_int_field(raw, "width", DEFAULT_SIDE, 1, big), config.max_image_side),
        height=min(_int_field(raw, "height", DEFAULT_SIDE, 1, big), config.max_image_side),
        seed=seed,
        num_images=_int_field(raw, "num_images", 1, 1, MAX_IMAGES),
        steps=_int_field(raw, "num_inference_steps", DEFAULT_STEPS, 1, 1000),
        return_type=return_type,
        shape=shape,
    )


# Other workers' names for worker-sdxl's fields (A1111's, ComfyUI nodes' inputs).
_ALIASES = {"steps": "num_inference_steps", "batch_size": "num_images"}
_WORKFLOW_FIELDS = {"width", "height", "seed", "steps", "batch_size"}


def sdxl_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """The worker-sdxl fields of another worker's input: a ComfyUI workflow's (`workflow`: its
    first CLIPTextEncode's text, its nodes' sizes, seed, steps and batch), A1111's; worker-sdxl's
    own input unchanged."""
    workflow = raw.get("workflow")
    if not isinstance(workflow, dict):
        return {_ALIASES.get(name, name): value for name, value in raw.items()}
    found: dict[str, Any] = {}
    for node in workflow.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        if node.get("class_type") == "CLIPTextEncode":
            found.setdefault("prompt", inputs.get("text"))
        for name in _WORKFLOW_FIELDS & inputs.keys():
            found[_ALIASES.get(name, name)] = inputs[name]
    return found


def failure_message(style: str, rng: random.Random, worker_id: str) -> str:
    """Describe a simulated handler crash, JSON-encoded like runpod-python or as plain text."""
    if style == "mixed":
        style = rng.choice(["json", "plain"])
    message = "CUDA out of memory (simulated failure)"
    if style == "plain":
        return f"Simulated worker failure: {message}"
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/handler.py", line 87, in generate_image\n'
        "    output = pipeline(prompt=prompt, num_inference_steps=steps).images\n"
        f"RuntimeError: {message}\n"
    )
    return json.dumps(
        {
            "error_type": "<class 'RuntimeError'>",
            "error_message": message,
            "error_traceback": traceback,
            "hostname": f"{worker_id}-sim",
            "worker_id": worker_id,
            "runpod_version": RUNPOD_VERSION,
        }
    )


def plan_job(raw_input: Any, config: SimulatorConfig, rng: random.Random, worker_id: str) -> Plan:
    """Decide how one run of a job goes, drawing every random choice from the job's rng."""
    try:
        request = parse_input(raw_input, config, rng)
    except InputError as exc:
        return Plan("invalid", 0.0, 1, error=str(exc))
    mean, jitter = config.job_duration_ms, config.job_duration_jitter_ms
    duration_s = max(0.0, rng.uniform(mean - jitter, mean + jitter)) / 1000
    roll = rng.random()
    # One roll, split in the order fail, empty, hang, so each rate is that exact fraction.
    faults: tuple[tuple[Outcome, float], ...] = (
        ("fail", config.fail_rate),
        ("empty", config.empty_output_rate),
        ("hang", config.hang_rate),
    )
    for outcome, rate in faults:
        if roll < rate:
            error = (
                failure_message(config.fail_style, rng, worker_id) if outcome == "fail" else None
            )
            return Plan(outcome, duration_s, request.steps, request, error)
        roll -= rate
    return Plan("ok", duration_s, request.steps, request)
