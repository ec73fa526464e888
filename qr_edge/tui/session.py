"""The conversation behind the TUI, kept apart from the widgets: turns, their results, save and load."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..atomic_file import write_text_atomic
from ..messages import Message, read_conversation
from ..result import RewriteResult
from ..rewriter import Rewriter

Role = Literal["user", "assistant"]


@dataclass
class Turn:
    role: Role
    content: str
    result: RewriteResult | None = None  # full history (user + assistant)
    legacy: RewriteResult | None = None  # queries only, through the two-stage gate
    prompt: str = ""


@dataclass
class Session:
    turns: list[Turn] = field(default_factory=list)

    def add(self, role: Role, content: str) -> Turn:
        turn = Turn(role, content)
        self.turns.append(turn)
        return turn

    def messages_until(self, turn: Turn) -> list[dict[str, str]]:
        end = self.turns.index(turn) + 1
        return [{"role": t.role, "content": t.content} for t in self.turns[:end]]

    def rewrite(self, rewriter: Rewriter, turn: Turn, legacy: bool) -> Turn:
        """Rewrite ``turn`` against the turns before it; in legacy mode also as a queries-only caller would."""
        messages = self.messages_until(turn)
        turn.result = rewriter.rewrite(messages)
        turn.prompt = rewriter.render_prompt(messages) if len(messages) > 1 else ""
        turn.legacy = (
            rewriter.rewrite_queries([m["content"] for m in messages if m["role"] == "user"]) if legacy else None
        )
        return turn

    def reply(self, rewriter: Rewriter, max_tokens: int = 96) -> str:
        """A short assistant answer from the same model (the TUI's optional answer mode)."""
        return rewriter.engine.chat_reply([{"role": t.role, "content": t.content} for t in self.turns], max_tokens)

    def save(self, path: str | Path) -> None:
        data = {"messages": [{"role": t.role, "content": t.content} for t in self.turns]}
        write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Session:
        messages: list[Message] = read_conversation(path, require_query=False)
        return cls([Turn(m.role, m.content) for m in messages if m.role in ("user", "assistant")])
