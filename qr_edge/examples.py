"""Few-shot examples: the bundled zh+en set (package data) or a caller's own file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from .errors import InputFileError
from .messages import Message


class FewShotExample(BaseModel):
    """One demonstration: a history, the query, and its rewrite (equal to the query when none is needed)."""

    lang: Literal["zh", "en"] = "en"
    history: list[Message]
    query: str
    rewrite: str

    def texts(self) -> list[str]:
        """Every piece of text in the example, for leakage checks."""
        return [m.content for m in self.history] + [self.query, self.rewrite]


def load_examples(path: str | Path | None = None) -> list[FewShotExample]:
    """Read examples from a JSONL file (one FewShotExample per line); ``None`` reads the bundled set."""
    if path is None:
        text = resources.files("qr_edge.assets").joinpath("examples.jsonl").read_text(encoding="utf-8")
        source = "bundled examples"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputFileError(f"cannot read examples file {path}: {exc}") from None
        source = str(path)
    examples = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(FewShotExample.model_validate_json(line))
        except ValidationError as exc:
            raise InputFileError(f"{source} line {n}: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}") from None
    return examples


def select_examples(examples: list[FewShotExample], n: int, order: str = "interleave") -> list[FewShotExample]:
    """Pick ``n`` examples (at most 10) in a fixed, deterministic order.

    ``interleave`` alternates languages so a short prompt still shows both; ``file`` keeps file order.
    """
    n = max(0, min(n, 10))
    if order == "file":
        return examples[:n]
    if order != "interleave":
        raise ValueError(f"unknown example order {order!r}; use 'interleave' or 'file'")
    by_lang: dict[str, list[FewShotExample]] = {}
    for ex in examples:
        by_lang.setdefault(ex.lang, []).append(ex)
    picked: list[FewShotExample] = []
    queues = list(by_lang.values())
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return picked
