"""Reading the documentation: its files, its fenced code blocks and its shell commands."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DOCUMENTS = (
    ROOT / "README.md",
    DOCS / "RUNPOD_SETUP.md",
    DOCS / "RUNPOD_API_INTEGRATION.md",
    DOCS / "TROUBLESHOOTING.md",
    DOCS / "SIMULATOR.md",
)
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def code_blocks(text: str, language: str | None = None) -> list[str]:
    """The fenced code blocks of a markdown text, optionally only those of one language."""
    return [body for lang, body in _FENCE.findall(text) if language is None or lang == language]


def block_after(text: str, marker: str) -> str:
    """The first fenced code block after the HTML comment `<!-- marker -->`."""
    _, found, rest = text.partition(f"<!-- {marker} -->")
    assert found, f"no <!-- {marker} --> in the document"
    blocks = code_blocks(rest)
    assert blocks, f"no code block after <!-- {marker} -->"
    return blocks[0]


def shell_commands(text: str) -> list[str]:
    """Each command of the document's bash blocks: comments dropped, continuations joined."""
    commands: list[str] = []
    for block in code_blocks(text, "bash"):
        pending = ""
        for raw in block.splitlines():
            line = raw.split("  #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
            if not line.strip() and not pending:
                continue
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            command = (pending + line.strip()).strip()
            pending = ""
            if command:
                commands.append(command)
    return commands
