"""Worker output shapes of popular image templates (contract section 7).

Shapes: worker-sdxl (default), comfyui (v5+), comfyui-legacy (pre-5.0 `message`), a1111 and
sdxl-turbo (always base64), and public (RunPod Public Endpoint, always a URL). Image `i` of a
job uses seed `seed + i`, as a diffusers generator batch would.
"""

import base64
import json
from typing import Any

from app.simulator.images import ImageRegistry, ImageSpec, render_png
from app.simulator.worker import ImageRequest

# Rough per-megapixel price, only so the public shape carries a plausible number.
_COST_PER_MEGAPIXEL = 0.0025


def needs_base64(request: ImageRequest) -> bool:
    """Tell whether the output inlines images, which means rendering them up front."""
    if request.shape in ("a1111", "sdxl-turbo"):
        return True
    if request.shape == "public":
        return False
    return request.return_type == "base64"


def _specs(request: ImageRequest) -> list[ImageSpec]:
    count = 1 if request.shape == "public" else request.num_images
    return [
        ImageSpec(request.prompt, request.seed + i, request.width, request.height)
        for i in range(count)
    ]


def _parameters(request: ImageRequest) -> dict[str, Any]:
    return {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt or "",
        "width": request.width,
        "height": request.height,
        "seed": request.seed,
        "steps": request.steps,
        "batch_size": request.num_images,
    }


def build_output(
    request: ImageRequest, *, registry: ImageRegistry, base_url: str, duration_s: float
) -> dict[str, Any]:
    """Build the handler's return value; renders PNGs only for inline (base64) shapes."""
    specs = _specs(request)
    inline = needs_base64(request)
    if inline:
        payloads = [base64.b64encode(render_png(spec)).decode("ascii") for spec in specs]
    else:
        payloads = [f"{base_url}/images/{registry.add(spec)}.png" for spec in specs]
    seeds = [spec.seed for spec in specs]
    match request.shape:
        case "comfyui":
            kind = "base64" if inline else "s3_url"
            return {
                "images": [
                    {"filename": f"ComfyUI_{seed}_{i:05d}_.png", "type": kind, "data": data}
                    for i, (seed, data) in enumerate(zip(seeds, payloads, strict=True))
                ]
            }
        case "comfyui-legacy":
            return {"message": payloads[0], "status": "success"}
        case "a1111":
            info = {**_parameters(request), "all_seeds": seeds}
            return {
                "images": payloads,
                "parameters": _parameters(request),
                "info": json.dumps(info),
            }
        case "sdxl-turbo":
            return {
                "images": [
                    {"image": data, "seed": seed}
                    for seed, data in zip(seeds, payloads, strict=True)
                ],
                "generation_time": round(duration_s, 3),
                "parameters": _parameters(request),
            }
        case "public":
            megapixels = request.width * request.height / 1_000_000
            return {"image_url": payloads[0], "cost": round(megapixels * _COST_PER_MEGAPIXEL, 6)}
        case _:
            images = [f"data:image/png;base64,{p}" if inline else p for p in payloads]
            return {"images": images, "image_url": images[0], "seed": request.seed}
