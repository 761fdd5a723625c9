"""Generation parameters with their defaults and valid ranges, and the RunPod input they make.

Field names are the ones worker-sdxl reads (`num_inference_steps`, `guidance_scale`, ...);
`return_type="url"` asks for image links instead of inline base64, as the seed does.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.services.default_prompts import build_negative_prompt, build_prompt

Scheduler = Literal[
    "DDIM",
    "PNDM",
    "KLMS",
    "K_EULER",
    "K_EULER_ANCESTRAL",
    "DPMSolverMultistep",
    "DPMSolverSinglestep",
]

MAX_PROMPT_LENGTH = 2000
MAX_SEED = 2**32 - 1


class GenerationParams(BaseModel):
    """Everything but the prompt that shapes one generation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(default=1024, ge=256, le=2048, multiple_of=8)
    height: int = Field(default=1024, ge=256, le=2048, multiple_of=8)
    num_inference_steps: int = Field(default=25, ge=1, le=150)
    guidance_scale: float = Field(default=7.5, ge=0.0, le=30.0)
    scheduler: Scheduler = "DDIM"
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    num_images: int = Field(default=1, ge=1, le=4)
    return_type: Literal["url", "base64"] = "url"
    add_default_prompts: bool = True
    """Merge the quality tags and the default negative prompt into the user's prompts."""


DEFAULT_PARAMS = GenerationParams()


def build_runpod_input(
    prompt: str,
    negative_prompt: str | None = None,
    params: GenerationParams = DEFAULT_PARAMS,
) -> dict[str, Any]:
    """The `input` object of a RunPod job: merged prompts plus every parameter."""
    defaults = params.add_default_prompts
    return {
        "prompt": build_prompt(prompt, add_quality_tags=defaults),
        "negative_prompt": build_negative_prompt(negative_prompt, add_defaults=defaults),
        **params.model_dump(exclude_none=True, exclude={"add_default_prompts"}),
    }
