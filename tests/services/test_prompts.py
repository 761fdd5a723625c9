import pytest
from pydantic import ValidationError

from app.services.default_prompts import (
    NEGATIVE_TAGS,
    QUALITY_TAGS,
    build_negative_prompt,
    build_prompt,
    merge_tags,
)
from app.services.generation_defaults import GenerationParams, build_runpod_input


def test_merge_drops_repeats_case_and_space_insensitively() -> None:
    assert merge_tags("a cat,  Best  Quality, ,cat", ("best quality", "CAT", "dog")) == (
        "a cat, Best Quality, cat, dog"
    )


def test_prompt_keeps_user_text_first_and_adds_quality_tags_once() -> None:
    prompt = build_prompt("beautiful anime girl, masterpiece")
    assert prompt.startswith("beautiful anime girl, masterpiece")
    assert prompt.lower().count("masterpiece") == 1
    assert all(tag in prompt for tag in QUALITY_TAGS)


def test_negative_prompt_merges_defaults() -> None:
    negative = build_negative_prompt("blurry, extra limbs")
    assert negative.startswith("blurry, extra limbs")
    assert negative.count("blurry") == 1
    assert all(tag in negative for tag in NEGATIVE_TAGS)
    assert build_negative_prompt(None, add_defaults=False) == ""


def test_runpod_input_has_seed_defaults() -> None:
    job_input = build_runpod_input("a fox")
    assert job_input["return_type"] == "url"
    assert job_input["width"] == 1024
    assert job_input["num_inference_steps"] == 25
    assert "seed" not in job_input
    assert job_input["prompt"].startswith("a fox, ")


@pytest.mark.parametrize(
    "bad",
    [
        {"width": 100},
        {"width": 1001},
        {"height": 4096},
        {"num_inference_steps": 0},
        {"guidance_scale": 31},
        {"num_images": 5},
        {"seed": -1},
        {"scheduler": "MAGIC"},
        {"return_type": "file"},
        {"unknown": 1},
    ],
)
def test_out_of_range_parameters_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        GenerationParams.model_validate(bad)
