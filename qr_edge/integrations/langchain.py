"""LangChain drop-in (extra ``langchain``, on ``langchain-core`` only).

``condense_question()`` is a ``Runnable`` with the contract of ``create_history_aware_retriever``'s condense step:
``{"input": str, "chat_history": [BaseMessage | (role, content) | {"role", "content"}...]}`` → the standalone
question (the input itself when there is no history). ``history_aware_retriever(retriever)`` puts it in front
of any retriever; with ``search_both=True`` an unsure rewrite is searched together with the question as asked
(``RewriteResult.queries``) and the two rankings merged by reciprocal rank fusion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda

from ..errors import InvalidConversationError
from ..fusion import reciprocal_rank_fusion
from ..rewriter import Rewriter

#: LangChain message types (and the tuple shorthands) → OpenAI-style roles; other types (tool, function) are dropped.
ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant", "system": "system"}


def to_messages(
    chat_history: Sequence[BaseMessage | tuple[str, str] | dict[str, Any]], question: str
) -> list[dict[str, str]]:
    """LangChain history plus the new question as qr-edge messages.

    A turn is a ``BaseMessage``, a ``(role, content)`` tuple or an OpenAI-style ``{"role", "content"}`` dict (the
    library's own format); anything else is an ``InvalidConversationError``, never a silently dropped turn.
    """
    messages = []
    for i, m in enumerate(chat_history):
        if isinstance(m, BaseMessage):
            role, content = m.type, m.content
        elif isinstance(m, dict) and "role" in m and "content" in m:
            role, content = m["role"], m["content"]
        elif isinstance(m, tuple) and len(m) == 2:
            role, content = m
        else:
            raise InvalidConversationError(
                f"chat_history[{i}] is a {type(m).__name__}; give BaseMessage, (role, content) or {{'role', 'content'}}"
            )
        if role in ROLES and isinstance(content, str):
            messages.append({"role": ROLES[role], "content": content})
    return [*messages, {"role": "user", "content": question}]


def condense_question(rewriter: Rewriter | None = None) -> Runnable[dict[str, Any], str]:
    """The standalone question for ``{"input", "chat_history"}``; ``rewriter`` defaults to ``Rewriter()``."""
    rw = rewriter or Rewriter()

    def run(inputs: dict[str, Any]) -> str:
        if "input" not in inputs:
            raise InvalidConversationError('the condense step needs {"input": str, "chat_history": [...]}')
        return rw.rewrite(to_messages(inputs.get("chat_history") or [], inputs["input"])).rewrite

    return RunnableLambda(run, name="qr_edge_condense_question")


def history_aware_retriever(
    retriever: BaseRetriever | Runnable[str, Any], rewriter: Rewriter | None = None, *, search_both: bool = False
) -> Runnable[dict[str, Any], Any]:
    """``{"input", "chat_history"}`` → the retriever's documents for the standalone question (``search_both``: for
    every query of the result, merged)."""
    if not search_both:
        return (condense_question(rewriter) | retriever).with_config(run_name="qr_edge_history_aware_retriever")
    rw = rewriter or Rewriter()

    def run(inputs: dict[str, Any]) -> list[Any]:
        if "input" not in inputs:
            raise InvalidConversationError('the retriever needs {"input": str, "chat_history": [...]}')
        result = rw.rewrite(to_messages(inputs.get("chat_history") or [], inputs["input"]))
        return fuse_documents([retriever.invoke(q) for q in result.queries])

    return RunnableLambda(run, name="qr_edge_history_aware_retriever")


def fuse_documents(rankings: Sequence[Sequence[Any]]) -> list[Any]:
    """Documents of several rankings in reciprocal-rank-fusion order, each once (same ``page_content``)."""
    return [doc for doc, _ in reciprocal_rank_fusion(rankings, key=lambda doc: getattr(doc, "page_content", str(doc)))]
