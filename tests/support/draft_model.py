"""A second model for the DRAFT_MODEL tests: a copy of the embedded tiny.en whose text is marked.

No larger CTranslate2 Whisper model can be fetched at test time, so the tests prove the mechanism
with two differently configured copies of the embedded model: the copy's weights are the same files
(symlinked), but its tokenizer turns every "e" it decodes into a schwa ("ə"), which no English
transcript holds. Any text from the draft is therefore visible as the draft's: in partials where it
belongs, and in a final, where it must never be.
"""

from __future__ import annotations

import json
from pathlib import Path

from stt_core.model import embedded_model_dir

MARK = "ə"


def marked_draft_copy(into: Path, name: str = "tiny-draft") -> Path:
    """``into/name``: the embedded model's files, with a tokenizer that decodes "e" as ``MARK``."""
    src = embedded_model_dir()
    out = into / name
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name != "tokenizer.json" and not (out / f.name).exists():
            (out / f.name).symlink_to(f)
    tok = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tok["decoder"] = {"type": "Sequence", "decoders": [
        tok["decoder"], {"type": "Replace", "pattern": {"String": "e"}, "content": MARK}]}
    (out / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")
    return out
