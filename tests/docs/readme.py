"""The README's parts the tests run or check: its quickstart commands and its links."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
QUICKSTART = "## Quickstart"

_FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def section(text: str, heading: str) -> str:
    """From `heading` (a line starting with it) to the next heading of the same level."""
    level = heading.split(" ", 1)[0]
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(level + " ")), len(lines))
    return "\n".join(lines[start:end]) + "\n"


def quickstart_script(text: str | None = None) -> str:
    """The quickstart's bash blocks, in order, as one script."""
    blocks = _FENCE.findall(section(text if text is not None else README.read_text(), QUICKSTART))
    return "\n".join(blocks)


def relative_links(text: str) -> list[str]:
    """Links that are not URLs of another site (`http(s)://`, `mailto:`)."""
    return [target for target in _LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text."""
    found = set()
    in_fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (m := re.match(r"#{1,6} (.+)", line)):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            found.add(slug)
    return found
