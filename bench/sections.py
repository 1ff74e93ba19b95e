"""One section of bench/RESULTS.md written by a measurement that runs on its own (soak, arm64, idle):
replaced where it is, or added before "## Method", leaving the rest of the file as it was."""

from __future__ import annotations

import re


def upsert(markdown: str, heading: str, body: str) -> str:
    block = f"{heading}\n\n{body}\n\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(markdown):
        return pattern.sub(lambda _m: block, markdown, count=1)
    at = markdown.find("\n## Method")
    if at < 0:
        return markdown.rstrip("\n") + "\n\n" + block
    return markdown[:at + 1] + block + markdown[at + 1:]
