"""A job's RunPod `input`, in the form its route's worker reads (`app.scheduler.routes`).

- `sdxl`: worker-sdxl's fields (`app.services.generation_defaults.build_runpod_input`).
- `a1111`: Automatic1111's txt2img parameters (`steps`, `cfg_scale`, `batch_size`, ...).
- `flux`: RunPod's FLUX endpoints (`guidance`, `seed` -1 for random).
- `comfyui`: `{"workflow": ...}`, the route's workflow with its placeholders filled in.
- `custom`: the route's template with its placeholders filled in.

Placeholders are `{{prompt}}`, `{{negative_prompt}}`, `{{seed}}`, `{{width}}`, `{{height}}`,
`{{steps}}`, `{{guidance}}` and `{{batch}}`. A string that is one placeholder becomes the value
itself (a number stays a number); one placeholder among other text is written into it. The
prompts are merged with the default tags first, as every kind does.
"""

import re
import secrets
from typing import Any

from app.scheduler.routes import Route, WorkerKind
from app.services.default_prompts import build_negative_prompt, build_prompt
from app.services.generation_defaults import MAX_SEED, GenerationParams, build_runpod_input

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def runpod_input(
    route: Route, prompt: str, negative_prompt: str | None, params: GenerationParams
) -> dict[str, Any]:
    if route.kind is WorkerKind.SDXL:
        return build_runpod_input(prompt, negative_prompt, params)
    values = _values(prompt, negative_prompt, params)
    if route.kind is WorkerKind.A1111:
        return {
            "prompt": values["prompt"],
            "negative_prompt": values["negative_prompt"],
            "width": params.width,
            "height": params.height,
            "steps": params.num_inference_steps,
            "cfg_scale": params.guidance_scale,
            "seed": -1 if params.seed is None else params.seed,
            "batch_size": params.num_images,
        }
    if route.kind is WorkerKind.FLUX:
        return {
            "prompt": values["prompt"],
            "negative_prompt": values["negative_prompt"],
            "width": params.width,
            "height": params.height,
            "num_inference_steps": params.num_inference_steps,
            "guidance": params.guidance_scale,
            "seed": -1 if params.seed is None else params.seed,
            "image_format": "png",
        }
    filled = fill(route.template, values)
    return {"workflow": filled} if route.kind is WorkerKind.COMFYUI else dict(filled)


def _values(prompt: str, negative_prompt: str | None, params: GenerationParams) -> dict[str, Any]:
    defaults = params.add_default_prompts
    return {
        "prompt": build_prompt(prompt, add_quality_tags=defaults),
        "negative_prompt": build_negative_prompt(negative_prompt, add_defaults=defaults),
        # A workflow needs a number: a random one when the request left it to chance.
        "seed": params.seed if params.seed is not None else secrets.randbelow(MAX_SEED + 1),
        "width": params.width,
        "height": params.height,
        "steps": params.num_inference_steps,
        "guidance": params.guidance_scale,
        "batch": params.num_images,
    }


def fill(template: Any, values: dict[str, Any]) -> Any:
    """The template with every placeholder replaced (unknown ones are left as they are)."""
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    if not isinstance(template, str):
        return template
    whole = _PLACEHOLDER.fullmatch(template.strip())
    if whole and whole.group(1) in values:
        return values[whole.group(1)]
    return _PLACEHOLDER.sub(lambda match: str(values.get(match.group(1), match.group(0))), template)
