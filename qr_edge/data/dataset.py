"""The training/evaluation dataset format: one ``RewriteRecord`` per JSONL line, validated with line numbers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError, field_validator, model_validator

from ..atomic_file import write_text_atomic
from ..errors import InputFileError, InvalidConversationError
from ..messages import Message, parse_messages
from ..text import content_units

Label = Literal["rewritten", "unchanged", "missing_context"]


class RewriteRecord(BaseModel):
    """A conversation, the reference rewrite of its last user query, and what kind of case it is.

    ``unchanged``: the rewrite equals the query. ``missing_context``: a queries-only history whose
    follow-up depends on an answer that is not there; the safe output is the original query.
    """

    id: str
    lang: Literal["zh", "en"]
    messages: list[Message]
    rewrite: str
    label: Label
    source: str = "synthetic"
    analysis: str | None = None
    #: The conversation (dialogue, topic) a corpus record comes from: splits never cut through one.
    conversation: str | None = None
    #: Further acceptable rewrites (CQR's crowd reformulations); evaluation scores against all of them.
    references: list[str] | None = None
    #: The turn's own canonical passage (CAsT-21/22 and iKAT ship one: the answer to this query), what a search
    #: with the rewrite should find (``qr-edge eval --passages``). Never shown to the model.
    passage: str | None = None

    @field_validator("messages", mode="before")
    @classmethod
    def _valid_conversation(cls, value):
        try:
            return parse_messages(value)
        except InvalidConversationError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _label_matches(self) -> RewriteRecord:
        if self.label in ("unchanged", "missing_context") and self.rewrite.strip() != self.query.strip():
            raise ValueError(f"label {self.label} requires rewrite == query")
        if self.label == "rewritten" and self.rewrite.strip() == self.query.strip():
            raise ValueError("label rewritten but the rewrite equals the query")
        if not self.rewrite.strip():
            raise ValueError("empty rewrite")
        return self

    @property
    def all_references(self) -> list[str]:
        return [self.rewrite, *(r for r in self.references or () if r != self.rewrite)]

    @property
    def query(self) -> str:
        return self.messages[-1].content

    @property
    def legacy_messages(self) -> list[Message]:
        """The same conversation as a queries-only caller sends it (system and assistant turns dropped)."""
        return [m for m in self.messages if m.role == "user"]

    def depends_on_assistant(self) -> bool:
        """True when the rewrite adds content that an assistant turn has and no user turn has."""
        if self.label != "rewritten":
            return False
        added = content_units(self.rewrite) - content_units(self.query)
        from_users = set().union(*(content_units(m.content) for m in self.messages if m.role == "user"))
        from_assistant = set().union(*(content_units(m.content) for m in self.messages if m.role == "assistant"))
        return bool((added & from_assistant) - from_users)


def record_from_turns(
    rec_id: str, lang: str, turns: Sequence[tuple[str, str]], rewrite: str, label: str, source: str
) -> RewriteRecord:
    """A record from (role, content) pairs: what the generators produce."""
    return RewriteRecord(
        id=rec_id,
        lang=lang,
        messages=[{"role": r, "content": c} for r, c in turns],
        rewrite=rewrite,
        label=label,
        source=source,
    )


def read_dataset(path: str | Path) -> list[RewriteRecord]:
    """Read a dataset; every bad line is reported (with its number), none is silently dropped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read dataset {path}: {exc}") from None
    records, errors = [], []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(RewriteRecord.model_validate_json(line))
        except ValidationError as exc:
            err = exc.errors()[0]
            errors.append(f"line {n}: {err['msg']} at {'.'.join(map(str, err['loc'])) or 'record'}")
    if errors:
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise InputFileError(f"{path}: {len(errors)} invalid records: " + "; ".join(errors[:10]) + more)
    return records


def write_dataset(records: Iterable[RewriteRecord], path: str | Path) -> int:
    """Write records atomically; returns how many."""
    lines = [r.model_dump_json(exclude_none=True) for r in records]
    write_text_atomic(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def dataset_sha256(records: Sequence[RewriteRecord]) -> str:
    h = hashlib.sha256()
    for r in records:
        # the passage is evaluation data, never trained on: a mix that gains passages trains the same examples
        h.update(
            json.dumps(
                r.model_dump(exclude_none=True, exclude={"passage"}), ensure_ascii=False, sort_keys=True
            ).encode()
        )
    return h.hexdigest()
