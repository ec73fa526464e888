"""Readers for public rewrite corpora, into the dataset format, with the right labels.

Formats (``../shared/data/README.md`` describes each file):

- ``rewrite-tsv`` REWRITE (Su et al. 2019): question1, answer1, question2, rewrite;
- ``restoration-tsv`` Restoration-200K: four context turns, the turn to restore, the reply after it, a 0/1 label,
  the rewrite (the sixth column is not the restored turn, whatever the data README says: see the importer);
- ``cast`` TREC CAsT-19/21 as in LLM4CS; ``cast22`` TREC CAsT-22 (paths of topics); ``ikat`` TREC iKAT;
- ``canard`` (History/Question/Rewrite JSON), ``canard-tsv`` (CANARD test rows with their full history),
  ``canard-questions`` (CANARD train: questions and rewrites only);
- ``qrecc`` (Context/Question/Rewrite, or InfoCQR's NewContext/Truth_rewrite), ``qrecc-jsonl``
  ("Q: .. A: .." conversation text, question, label);
- ``cqr`` CQR in-car task dialogues (KVRET with crowd reformulations; every reference kept).

Two filters keep a corpus from teaching the model to invent: a CANARD-train rewrite whose new words are
not in the earlier questions (they come from the missing page title), and an iKAT rewrite whose new
words come only from the user's persona statements (``ptkb``), which a rewriter never sees.
Every skipped line or turn is counted with its reason; nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import InputFileError
from ..text import new_content, normalise, units_of
from .dataset import RewriteRecord

FORMATS = (
    "rewrite-tsv",
    "restoration-tsv",
    "cast",
    "cast22",
    "ikat",
    "canard",
    "canard-tsv",
    "canard-questions",
    "qrecc",
    "qrecc-jsonl",
    "cqr",
)
#: Filter reasons (counted in ``ImportResult.skipped`` like any other skip).
UNSUPPORTED_TITLE = "rewrite adds words found neither in the question nor in the earlier questions"
PERSONA_ONLY = "rewrite adds words found only in the persona statements (ptkb)"
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
    result: ImportResult,
    where: str,
    rec_id: str,
    turns: list[tuple[str, str]],
    rewrite: str,
    source: str,
    conversation: str | None = None,
    references: list[str] | None = None,
    passage: str | None = None,
) -> None:
    query = turns[-1][1].strip()
    rewrite = rewrite.strip()
    label = "unchanged" if rewrite == query else "rewritten"
    refs = [r.strip() for r in references or () if r.strip() and r.strip() != rewrite]
    try:
        result.records.append(
            RewriteRecord(
                id=rec_id,
                lang=_lang(query + rewrite),
                messages=[{"role": r, "content": c.strip()} for r, c in turns if c.strip()],
                rewrite=rewrite,
                label=label,
                source=source,
                conversation=conversation,
                references=refs or None,
                passage=passage.strip() if isinstance(passage, str) and passage.strip() else None,
            )
        )
    except ValidationError as exc:
        result.skip(where, exc.errors()[0]["msg"])


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from None


def _tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped columns) of every non-blank line of a tab-separated corpus."""
    for n, line in enumerate(_read_lines(path), start=1):
        if line.strip():
            yield n, [c.strip() for c in line.split("\t")]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from None


def import_rewrite_tsv(path: Path) -> ImportResult:
    """REWRITE: one user/assistant/user -> rewrite case per line; duplicates of (q1, a1, q2) are dropped (counted)."""
    result = ImportResult()
    seen: set[tuple[str, ...]] = set()
    for n, cols in _tsv_rows(path):
        if len(cols) != 4:
            result.skip(f"line {n}", f"expected 4 tab-separated columns, got {len(cols)}")
            continue
        if not all(cols):
            result.skip(f"line {n}", "an empty column")
            continue
        q1, a1, q2, rewrite = cols
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
                    conversation=f"{path.stem}-{conv.get('conv_id')}",
                    passage=t.get("response"),
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
    """QReCC: Context = [q1, a1, q2, a2, ...] (or InfoCQR's NewContext, Truth_rewrite); first turns are skipped.

    The conversation is named by its first question, so the same QReCC dialogue from two files is one group.
    """
    result = ImportResult()
    data = _read_json(path)
    if not isinstance(data, list):
        raise InputFileError(f"{path}: expected a list of turns")
    for i, row in enumerate(data):
        where = f"record {i}"
        if not isinstance(row, dict):
            result.skip(where, "not an object")
            continue
        rewrite = row.get("Rewrite", row.get("Truth_rewrite"))
        if not isinstance(row.get("Question"), str) or not isinstance(rewrite, str):
            result.skip(where, "missing Question/Rewrite")
            continue
        context = row.get("Context", row.get("NewContext")) or []
        if not context:
            result.skip(where, "first turn (no history)")
            continue
        turns = [*_alternating(context), ("user", row["Question"])]
        _add(
            result,
            where,
            f"qrecc-{row.get('Conversation_no', i)}-{row.get('Turn_no', i)}",
            turns,
            rewrite,
            "qrecc",
            conversation="qrecc:" + normalise(str(context[0]))[:80],
        )
    return result


_QA = re.compile(r"^Q:\s*(.*?)\s+A:\s*(.*)$")


def import_qrecc_jsonl(path: Path) -> ImportResult:
    """QReCC as one JSON object per line: "Q: .. A: .." lines of history, the question and its rewrite (label)."""
    result = ImportResult()
    for n, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            result.skip(where, f"invalid JSON: {exc.msg}")
            continue
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("conversation", "question", "label")
        ):
            result.skip(where, "missing conversation/question/label")
            continue
        turns: list[tuple[str, str]] = []
        for qa in row["conversation"].splitlines():
            m = _QA.match(qa.strip())
            if m:
                turns += [("user", m.group(1)), ("assistant", m.group(2))]
        if not turns:
            result.skip(where, "first turn (no history)")
            continue
        _add(
            result,
            where,
            f"qrecc4k-{n}",
            [*turns, ("user", row["question"])],
            row["label"],
            "qrecc",
            conversation="qrecc:" + normalise(turns[0][1])[:80],
        )
    return result


def import_canard_tsv(path: Path) -> ImportResult:
    """CANARD test rows: title, section, q1, a1, ..., question, rewrite; the title and section open the history."""
    result = ImportResult()
    for n, cols in _tsv_rows(path):
        if len(cols) < 4 or len(cols) % 2:
            result.skip(
                f"line {n}",
                f"expected title, section, question/answer pairs, question, rewrite; got {len(cols)} columns",
            )
            continue
        title, section, *context, question, rewrite = cols
        if not question or not rewrite:
            result.skip(f"line {n}", "an empty question or rewrite")
            continue
        turns = [("user", f"{title}: {section}"), *_alternating(context), ("user", question)]
        conv = f"canard:{title}|{section}|{context[0] if context else question}"
        _add(result, f"line {n}", f"canard-test-{n}", turns, rewrite, "canard", conversation=conv)
    return result


def import_canard_questions(path: Path) -> ImportResult:
    """CANARD train: ``C_<dialogue>_q#<k>  question  rewrite``; the history is the dialogue's earlier questions.

    The page title is missing, so a rewrite that names the subject from it cannot be learnt from the
    history: such rows are dropped (``UNSUPPORTED_TITLE``), or the model learns to invent entities.
    """
    result = ImportResult()
    dialogues: dict[str, list[str]] = {}
    for n, cols in _tsv_rows(path):
        where = f"line {n}"
        if len(cols) != 3 or "_q#" not in cols[0]:
            result.skip(where, "expected C_<dialogue>_q#<k>, question, rewrite")
            continue
        dialogue, _, k = cols[0].rpartition("_q#")
        earlier = dialogues.setdefault(dialogue, [])
        question, rewrite = cols[1], cols[2]
        if not question or not rewrite:
            result.skip(where, "an empty question or rewrite")
        elif not earlier:
            result.skip(where, "first turn (no history)")
        elif new_content(rewrite, [question, *earlier]):
            result.skip(where, UNSUPPORTED_TITLE)
        else:
            turns = [*(("user", q) for q in earlier), ("user", question)]
            _add(result, where, f"canard-train-{dialogue}-{k}", turns, rewrite, "canard-train", conversation=dialogue)
        if question:
            earlier.append(question)
    return result


def import_restoration_tsv(path: Path) -> ImportResult:
    """Restoration-200K: the turn a row restores is c5, not the sixth column.

    Each row is ``c1 c2 c3 c4 c5 next label rewrite``. Read against the data, the rewrite restores c5 (in all
    6,023 rewritten rows of the two files every character of c5 is in the rewrite; only 43 hold every
    character of the sixth column), so c5 is the user's turn, c1..c4 its history (c4, c2 the other side) and
    the sixth column is the reply that came after it: it is dropped, since a rewriter never sees the future.
    Label 0: c5 needs no rewrite.
    """
    result = ImportResult()
    for n, cols in _tsv_rows(path):
        where = f"line {n}"
        if len(cols) != 8:
            result.skip(where, f"expected 8 tab-separated columns, got {len(cols)}")
            continue
        *context, query, _next, label, rewrite = cols
        if label not in ("0", "1") or not query:
            result.skip(where, "label must be 0 or 1 and the fifth turn non-empty")
            continue
        if label == "1" and not rewrite:
            result.skip(where, "label 1 without a rewrite")
            continue
        turns = [("user" if i % 2 else "assistant", c) for i, c in enumerate(context, start=1)]
        _add(
            result,
            where,
            f"{path.stem}-{n}",
            [*turns, ("user", query)],
            rewrite if label == "1" else query,
            "restoration200k",
            f"{path.stem}-{n}",
        )
    return result


def import_cast22(path: Path) -> ImportResult:
    """CAsT-22: each topic has paths ("1-3": path 1, turn 3) that share their first turns; a turn seen on an
    earlier path with the same history is imported once."""
    result = ImportResult()
    data = _read_json(path)
    if not isinstance(data, list):
        raise InputFileError(f"{path}: expected a list of topic paths")
    seen: set[str] = set()
    for p, topic in enumerate(data):
        turns: list[tuple[str, str]] = []
        number = topic.get("number", p) if isinstance(topic, dict) else p
        for t in topic.get("turn", []) if isinstance(topic, dict) else []:
            where = f"topic {number} turn {t.get('number')}"
            question, rewrite = t.get("utterance"), t.get("manual_rewritten_utterance")
            if not isinstance(question, str) or not isinstance(rewrite, str):
                result.skip(where, "missing utterance or manual_rewritten_utterance")
                continue
            key = json.dumps([turns, question], ensure_ascii=False)
            if not turns:
                result.skip(where, "first turn (no history)")
            elif key in seen:
                result.skip(where, "turn shared with an earlier path of the topic")
            else:
                _add(
                    result,
                    where,
                    f"cast22-{number}-{t.get('number')}",
                    [*turns, ("user", question)],
                    rewrite,
                    "cast:cast22",
                    conversation=f"cast22-{number}",
                    passage=t.get("response"),
                )
            seen.add(key)
            turns.append(("user", question))
            if t.get("response"):
                turns.append(("assistant", t["response"]))
    return result


def import_ikat(path: Path) -> ImportResult:
    """TREC iKAT topics; a rewrite that adds words only the persona statements hold is dropped (``PERSONA_ONLY``)."""
    result = ImportResult()
    data = _read_json(path)
    if not isinstance(data, list):
        raise InputFileError(f"{path}: expected a list of topics")
    for p, topic in enumerate(data):
        if not isinstance(topic, dict):
            result.skip(f"topic {p}", "not an object")
            continue
        number = str(topic.get("number", p))
        ptkb = [str(v) for v in (topic.get("ptkb") or {}).values()]
        turns: list[tuple[str, str]] = []
        for t in topic.get("turns", []):
            where = f"topic {number} turn {t.get('turn_id')}"
            question, rewrite = t.get("utterance"), t.get("resolved_utterance")
            if not isinstance(question, str) or not isinstance(rewrite, str):
                result.skip(where, "missing utterance or resolved_utterance")
                continue
            added = new_content(rewrite, [question, *(c for _, c in turns)])
            if not turns:
                result.skip(where, "first turn (no history)")
            elif added & units_of(ptkb):
                result.skip(where, PERSONA_ONLY)
            else:
                _add(
                    result,
                    where,
                    f"{path.stem}-{number}-{t.get('turn_id')}",
                    [*turns, ("user", question)],
                    rewrite,
                    f"ikat:{path.stem}",
                    conversation=f"{path.stem}-{number.split('-')[0]}",
                    passage=t.get("response"),
                )
            turns.append(("user", question))
            if t.get("response"):
                turns.append(("assistant", t["response"]))
    return result


def _closest(query: str, candidates: list[str]) -> str:
    """The most conservative reference: the one that adds least to the query (then the shortest)."""
    return min(candidates, key=lambda c: (len(new_content(c, [query])), len(c)))


def import_cqr(path: Path) -> ImportResult:
    """CQR (KVRET in-car dialogues): the reformulation sits on the assistant turn after the driver's request.

    ``reformulated_utt`` null means the request needs no rewrite (``unchanged``); otherwise the reference
    is the candidate (``reformulated_utt`` and the crowd's ``mturk_reformulations``) that adds least, and
    every candidate is kept in ``references`` for evaluation.
    """
    result = ImportResult()
    data = _read_json(path)
    if not isinstance(data, list):
        raise InputFileError(f"{path}: expected a list of dialogues")
    for d, dialogue in enumerate(data):
        turns = dialogue.get("dialogue") if isinstance(dialogue, dict) else None
        if not isinstance(turns, list):
            result.skip(f"dialogue {d}", "no dialogue turns")
            continue
        history: list[tuple[str, str]] = []
        for i, t in enumerate(turns):
            text = ((t.get("data") or {}).get("utterance") or "").strip()
            role = "user" if t.get("turn") == "driver" else "assistant"
            ref = t.get("reformulation")
            if isinstance(ref, dict) and i > 0 and history and history[-1][0] == "user":
                where = f"dialogue {d} turn {i - 1}"
                query = history[-1][1]
                if len(history) < 2:
                    result.skip(where, "first turn (no history)")
                elif ref.get("reformulated_utt") is None:
                    _add(
                        result,
                        where,
                        f"{path.stem}-{d}-{i - 1}",
                        history,
                        query,
                        f"cqr:{path.stem}",
                        f"{path.stem}-{d}",
                    )
                else:
                    candidates = [
                        c.strip()
                        for c in [ref["reformulated_utt"], *(ref.get("mturk_reformulations") or [])]
                        if isinstance(c, str) and c.strip()
                    ]
                    _add(
                        result,
                        where,
                        f"{path.stem}-{d}-{i - 1}",
                        history,
                        _closest(query, candidates),
                        f"cqr:{path.stem}",
                        f"{path.stem}-{d}",
                        references=candidates,
                    )
            if text:
                history.append((role, text))
    return result


IMPORTERS: dict[str, Callable[[Path], ImportResult]] = {
    "rewrite-tsv": import_rewrite_tsv,
    "cast": import_cast,
    "canard": import_canard,
    "qrecc": import_qrecc,
    "qrecc-jsonl": import_qrecc_jsonl,
    "canard-tsv": import_canard_tsv,
    "canard-questions": import_canard_questions,
    "restoration-tsv": import_restoration_tsv,
    "cast22": import_cast22,
    "ikat": import_ikat,
    "cqr": import_cqr,
}


def import_corpus(fmt: str, path: str | Path) -> ImportResult:
    if fmt not in IMPORTERS:
        raise InputFileError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"cannot read {path}: no such file")
    return IMPORTERS[fmt](path)
