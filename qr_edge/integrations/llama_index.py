"""LlamaIndex drop-in (extra ``llama-index``, on ``llama-index-core`` only).

``QrEdgeChatEngine`` is a ``CondenseQuestionChatEngine`` whose condense step is a qr-edge rewrite of the chat
history and the new message, instead of an LLM call with a condense prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine import CondenseQuestionChatEngine
from llama_index.core.llms import MockLLM

from ..rewriter import Rewriter

ROLES = {MessageRole.USER: "user", MessageRole.ASSISTANT: "assistant", MessageRole.SYSTEM: "system"}


def to_messages(chat_history: Sequence[ChatMessage], question: str) -> list[dict[str, str]]:
    """LlamaIndex history plus the new question as qr-edge messages (tool and function turns dropped)."""
    messages = [
        {"role": ROLES[m.role], "content": m.content}
        for m in chat_history
        if m.role in ROLES and isinstance(m.content, str)
    ]
    return [*messages, {"role": "user", "content": question}]


class QrEdgeChatEngine(CondenseQuestionChatEngine):
    """Condense-question chat over ``query_engine``, condensed by qr-edge."""

    def __init__(self, *args: Any, rewriter: Rewriter | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rewriter = rewriter or Rewriter()

    @classmethod
    def from_rewriter(
        cls,
        query_engine: BaseQueryEngine,
        rewriter: Rewriter | None = None,
        chat_history: list[ChatMessage] | None = None,
        **kwargs: Any,
    ) -> QrEdgeChatEngine:
        """Like ``from_defaults``; no LLM is called for condensing (a ``MockLLM`` fills the parent's slot)."""
        base = CondenseQuestionChatEngine.from_defaults(
            query_engine, chat_history=chat_history, llm=MockLLM(max_tokens=1), **kwargs
        )
        return cls(
            query_engine,
            base._condense_question_prompt,
            base._memory,
            base._llm,
            verbose=base._verbose,
            callback_manager=base.callback_manager,
            rewriter=rewriter,
        )

    def _condense_question(self, chat_history: list[ChatMessage], last_message: str) -> str:
        return self._rewriter.rewrite(to_messages(chat_history, last_message)).rewrite

    async def _acondense_question(self, chat_history: list[ChatMessage], last_message: str) -> str:
        return self._condense_question(chat_history, last_message)
