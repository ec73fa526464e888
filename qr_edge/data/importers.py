"""Readers for public rewrite corpora, into the dataset format, with the right labels.

Formats: ``rewrite-tsv`` (REWRITE, Su et al. 2019: question1, answer1, question2, rewrite),
``cast`` (TREC CAsT topics as in LLM4CS: conversations of turns with question, response,
manual_rewrite), ``canard`` (History/Question/Rewrite) and ``qrecc`` (Context/Question/Rewrite).
Every skipped line or turn is counted with its reason; nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import InputFileError
from .dataset import RewriteRecord

FORMATS = ("rewrite-tsv", "cast", "canard", "qrecc")
_CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class ImportResult:
    records: list[RewriteRecord] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: list[str] = field(default_factory=list)  # "line N: reason" for the first few

    def skip(self, where: str, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{where}: {reason}")


def _lang(text: str) -> str:
    return "zh" if _CJK.search(text) else "en"


def _add(
    result: ImportResult, where: str, rec_id: str, turns: list[tuple[str, str]], rewrite: str, source: str
) -> None:
    query = turns[-1][1].strip()
    rewrite = rewrite.strip()
    label = "unchanged" if rewrite == query else "rewritten"
    try:
        result.records.append(
            RewriteRecord(
                id=rec_id,
                lang=_lang(query + rewrite),
                messages=[{"role": r, "content": c.strip()} for r, c in turns],
                rewrite=rewrite,
                label=label,
                source=source,
            )
        )
    except ValidationError as exc:
        result.skip(where, exc.errors()[0]["msg"])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from None


def import_rewrite_tsv(path: Path) -> ImportResult:
    """REWRITE: one user/assistant/user -> rewrite case per line; duplicates of (q1, a1, q2) are dropped (counted)."""
    result = ImportResult()
    seen: set[tuple[str, ...]] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 4:
            result.skip(f"line {n}", f"expected 4 tab-separated columns, got {len(cols)}")
            continue
        if not all(c.strip() for c in cols):
            result.skip(f"line {n}", "an empty column")
            continue
        q1, a1, q2, rewrite = (c.strip() for c in cols)
        if (q1, a1, q2) in seen:
            result.skip(f"line {n}", "duplicate conversation")
            continue
        seen.add((q1, a1, q2))
        _add(
            result, f"line {n}", f"rewrite-{n}", [("user", q1), ("assistant", a1), ("user", q2)], rewrite, "rewrite-zh"
        )
    return result


def import_cast(path: Path) -> ImportResult:
    """CAsT: every turn after the first; responses become assistant turns when present (CAsT-21), else queries only."""
    result = ImportResult()
    data = _read_json(path)
    if not isinstance(data, list):
        raise InputFileError(f"{path}: expected a list of conversations")
    source = f"cast:{path.stem}"
    for conv in data:
        turns: list[tuple[str, str]] = []
        for t in conv.get("turns", []):
            where = f"conversation {conv.get('conv_id')} turn {t.get('turn_id')}"
            question, rewrite = t.get("question"), t.get("manual_rewrite")
            if not isinstance(question, str) or not isinstance(rewrite, str):
                result.skip(where, "missing question or manual_rewrite")
                continue
            if turns:
                _add(
                    result,
                    where,
                    f"{path.stem}-{conv.get('conv_id')}-{t.get('turn_id')}",
                    [*turns, ("user", question)],
                    rewrite,
                    source,
                )
            else:
                result.skip(where, "first turn (no history)")
            turns.append(("user", question))
            if t.get("response"):
                turns.append(("assistant", t["response"]))
    return result


def _alternating(context: list[str]) -> list[tuple[str, str]]:
    return [("user" if i % 2 == 0 else "assistant", c) for i, c in enumerate(context)]


def import_canard(path: Path) -> ImportResult:
    """CANARD: History = [title, section, q1, a1, ...]; the title and section become a first user turn."""
    result = ImportResult()
    for i, row in enumerate(_read_json(path)):
        where = f"record {i}"
        history = row.get("History") or []
        if len(history) < 2 or not isinstance(row.get("Question"), str) or not isinstance(row.get("Rewrite"), str):
            result.skip(where, "missing History/Question/Rewrite")
            continue
        turns = [("user", f"{history[0]}: {history[1]}"), *_alternating(history[2:]), ("user", row["Question"])]
        rec_id = f"canard-{row.get('QuAC_dialog_id', i)}-{row.get('Question_no', i)}"
        _add(result, where, rec_id, turns, row["Rewrite"], "canard")
    return result


def import_qrecc(path: Path) -> ImportResult:
    """QReCC: Context = [q1, a1, q2, a2, ...]; first turns (empty context) are skipped."""
    result = ImportResult()
    for i, row in enumerate(_read_json(path)):
        where = f"record {i}"
        if not isinstance(row.get("Question"), str) or not isinstance(row.get("Rewrite"), str):
            result.skip(where, "missing Question/Rewrite")
            continue
        context = row.get("Context") or []
        if not context:
            result.skip(where, "first turn (no history)")
            continue
        turns = [*_alternating(context), ("user", row["Question"])]
        _add(
            result,
            where,
            f"qrecc-{row.get('Conversation_no', i)}-{row.get('Turn_no', i)}",
            turns,
            row["Rewrite"],
            "qrecc",
        )
    return result


IMPORTERS: dict[str, Callable[[Path], ImportResult]] = {
    "rewrite-tsv": import_rewrite_tsv,
    "cast": import_cast,
    "canard": import_canard,
    "qrecc": import_qrecc,
}


def import_corpus(fmt: str, path: str | Path) -> ImportResult:
    if fmt not in IMPORTERS:
        raise InputFileError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"cannot read {path}: no such file")
    return IMPORTERS[fmt](path)
