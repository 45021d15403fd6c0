"""bench/RESULTS.md: a benchmark's Markdown section, kept between its own two markers."""
from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).parent / "RESULTS.md"


def write_section(section: str, start: str, end: str, path: Path = RESULTS) -> None:
    """Put `section` between the markers `start` and `end` in `path`, replacing what was there
    (appended at the end, markers and all, the first time)."""
    text = path.read_text() if path.exists() else ""
    block = f"{start}\n{section}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if start in text else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
