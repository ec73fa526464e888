"""Conversation input: OpenAI-style messages, validated once at the boundary, and their file readers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import InputFileError, InvalidConversationError

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    """One turn. Extra keys from OpenAI-style dicts (name, tool_calls...) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    role: Role
    content: str


MessagesLike = Sequence[Message | dict[str, Any]]


def parse_messages(raw: Any, require_query: bool = True) -> list[Message]:
    """Validate a conversation: a list of messages, or a dict with a ``messages`` list.

    Rules: at least one message; roles are system/user/assistant; a system message may only come
    first; every content is a string; with ``require_query`` the last message is a non-empty user turn
    (the query to rewrite). A saved chat transcript may end with the assistant: pass ``False``.
    """
    if isinstance(raw, dict):
        if "messages" not in raw:
            raise InvalidConversationError('expected a list of messages or an object with a "messages" key')
        raw = raw["messages"]
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise InvalidConversationError(f"messages must be a list, got {type(raw).__name__}")
    if not raw:
        raise InvalidConversationError("the conversation is empty: give at least one user message")
    messages: list[Message] = []
    for i, item in enumerate(raw):
        if isinstance(item, Message):
            messages.append(item)
            continue
        if not isinstance(item, dict):
            raise InvalidConversationError(
                f"message {i} must be an object with role and content, got {type(item).__name__}"
            )
        role, content = item.get("role"), item.get("content")
        if role not in ("system", "user", "assistant"):
            raise InvalidConversationError(f"message {i} has role {role!r}; use 'system', 'user' or 'assistant'")
        if not isinstance(content, str):
            raise InvalidConversationError(
                f"message {i} ({role}) content must be a string, got {type(content).__name__}"
            )
        if not _encodable(content):
            raise InvalidConversationError(
                f"message {i} ({role}) contains a lone surrogate (invalid Unicode such as \\ud800)"
            )
        try:
            messages.append(Message(role=role, content=content))
        except ValidationError as exc:  # pragma: no cover - guarded above, kept for safety
            raise InvalidConversationError(f"message {i}: {exc.errors()[0]['msg']}") from None
    for i, m in enumerate(messages):
        if m.role == "system" and i != 0:
            raise InvalidConversationError(f"message {i} is a system message; only the first message may be one")
    last = messages[-1]
    if not require_query:
        return messages
    if last.role != "user":
        raise InvalidConversationError(f"the last message must be the user query to rewrite, got role {last.role!r}")
    if not last.content.strip():
        raise InvalidConversationError("the last user message is empty: there is no query to rewrite")
    return messages


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def messages_from_queries(queries: Sequence[str]) -> list[Message]:
    """The legacy input: earlier user queries only, the last one being the query to rewrite."""
    if isinstance(queries, str):
        raise InvalidConversationError("queries must be a list of strings, not one string")
    return parse_messages([{"role": "user", "content": q} for q in queries])


def read_conversation(path: str | Path, require_query: bool = True) -> list[Message]:
    """Read one conversation from a JSON file, or from stdin when ``path`` is ``-``."""
    source = "stdin" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read {source}: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{source} is not valid JSON: {exc}") from None
    try:
        return parse_messages(raw, require_query)
    except InvalidConversationError as exc:
        raise InvalidConversationError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class BatchItem:
    """One line of a JSONL batch: its messages, or the error (type name, one-line message) that line has."""

    line: int
    id: Any
    messages: list[Message] | None
    error: tuple[str, str] | None = None


def iter_batch(path: str | Path) -> Iterator[BatchItem]:
    """Yield every non-blank line of a JSONL batch; a bad line (not UTF-8, not JSON, not a conversation) becomes an
    item with an error, never a crash."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from None
    with handle:
        for n, raw_line in enumerate(handle, start=1):
            item = parse_batch_line(n, raw_line)
            if item is not None:
                yield item


def parse_batch_line(n: int, raw_line: bytes) -> BatchItem | None:
    """Line ``n`` (1-based) of a JSONL batch as an item, its problem recorded in it; None for a blank line."""
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BatchItem(n, None, None, ("InputFileError", f"line {n} is not UTF-8: {exc.reason} at byte {exc.start}"))
    if not line.strip():
        return None
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        return BatchItem(n, None, None, ("InputFileError", f"line {n}: not valid JSON: {exc}"))
    return batch_item(n, raw)


def batch_item(n: int, raw: Any) -> BatchItem:
    """A parsed row (a dict with ``messages`` and an optional ``id``, or a bare list of messages) as an item."""
    item_id = raw.get("id") if isinstance(raw, dict) else None
    try:
        return BatchItem(n, item_id, parse_messages(raw))
    except InvalidConversationError as exc:
        return BatchItem(n, item_id, None, (type(exc).__name__, f"line {n}: {exc}"))
