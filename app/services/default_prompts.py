"""Default prompt text merged into every generation: a quality prefix and a negative prompt.

Prompts are comma-separated tag lists; merging keeps the first spelling of each tag and drops
later repeats (case- and whitespace-insensitive), so a user who already wrote "best quality"
does not get it twice.
"""

QUALITY_TAGS = ("masterpiece", "best quality", "highly detailed", "sharp focus")
NEGATIVE_TAGS = (
    "lowres",
    "worst quality",
    "low quality",
    "blurry",
    "jpeg artifacts",
    "watermark",
    "signature",
    "text",
    "bad anatomy",
    "bad hands",
    "extra fingers",
    "deformed",
)


def merge_tags(*parts: str | tuple[str, ...] | None) -> str:
    """Join tag lists into one comma-separated prompt, dropping empty and repeated tags."""
    seen: set[str] = set()
    merged: list[str] = []
    for part in parts:
        if not part:
            continue
        tags = part.split(",") if isinstance(part, str) else part
        for tag in tags:
            cleaned = " ".join(tag.split())
            key = cleaned.casefold()
            if cleaned and key not in seen:
                seen.add(key)
                merged.append(cleaned)
    return ", ".join(merged)


def build_prompt(user_prompt: str, *, add_quality_tags: bool = True) -> str:
    """The user's prompt first (it matters most to the model), then the quality tags."""
    return merge_tags(user_prompt, QUALITY_TAGS if add_quality_tags else None)


def build_negative_prompt(user_negative: str | None = None, *, add_defaults: bool = True) -> str:
    """The user's negative prompt merged with the default one."""
    return merge_tags(user_negative, NEGATIVE_TAGS if add_defaults else None)
