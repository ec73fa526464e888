"""LlamaIndex drop-in (extra ``llama-index``, on ``llama-index-core`` only).

``QrEdgeChatEngine`` is a ``CondenseQuestionChatEngine`` whose condense step is a qr-edge rewrite of the chat
history and the new message, instead of an LLM call with a condense prompt. With ``search_both=True`` an unsure
rewrite is searched together with the question as asked (``RewriteResult.queries``) and the rankings merged by
reciprocal rank fusion, as LangChain's ``history_aware_retriever(search_both=True)`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine import CondenseQuestionChatEngine
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle

from ..fusion import reciprocal_rank_fusion
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


def fuse_nodes(rankings: Sequence[Sequence[NodeWithScore]]) -> list[NodeWithScore]:
    """Nodes of several rankings in reciprocal-rank-fusion order, each once (same node id), scored by the fusion."""
    fused = reciprocal_rank_fusion(rankings, key=lambda n: n.node.node_id)
    return [NodeWithScore(node=n.node, score=score) for n, score in fused]


class BothQueriesRetriever(BaseRetriever):
    """Retrieves with every query the engine's last rewrite gave for this standalone question (the rewrite, and the
    question as asked when the rewrite is unsure), merged; any other question is retrieved as it is."""

    def __init__(self, retriever: BaseRetriever, queries: dict[str, list[str]]) -> None:
        super().__init__()
        self._inner = retriever
        self._queries = queries

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        queries = self._queries.get(query_bundle.query_str, [query_bundle.query_str])
        return fuse_nodes([self._inner.retrieve(q) for q in queries])


class QrEdgeChatEngine(CondenseQuestionChatEngine):
    """Condense-question chat over ``query_engine``, condensed by qr-edge."""

    def __init__(self, *args: Any, rewriter: Rewriter | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rewriter = rewriter or Rewriter()
        self._queries: dict[str, list[str]] = {}  # the last rewrite -> what to search with (search_both)

    @classmethod
    def from_rewriter(
        cls,
        query_engine: BaseQueryEngine,
        rewriter: Rewriter | None = None,
        chat_history: list[ChatMessage] | None = None,
        *,
        search_both: bool = False,
        **kwargs: Any,
    ) -> QrEdgeChatEngine:
        """Like ``from_defaults``; no LLM is called for condensing (a ``MockLLM`` fills the parent's slot).

        ``search_both``: ``query_engine`` must be a ``RetrieverQueryEngine`` (``index.as_query_engine()`` is one); its
        retriever is asked once per query of the result and the rankings are fused."""
        base = CondenseQuestionChatEngine.from_defaults(
            query_engine, chat_history=chat_history, llm=MockLLM(max_tokens=1), **kwargs
        )
        queries: dict[str, list[str]] = {}
        if search_both:
            if not isinstance(query_engine, RetrieverQueryEngine):
                kind = type(query_engine).__name__
                raise TypeError(f"search_both needs a RetrieverQueryEngine (index.as_query_engine()), not {kind}")
            query_engine = query_engine.with_retriever(BothQueriesRetriever(query_engine.retriever, queries))
        engine = cls(
            query_engine,
            base._condense_question_prompt,
            base._memory,
            base._llm,
            verbose=base._verbose,
            callback_manager=base.callback_manager,
            rewriter=rewriter,
        )
        engine._queries = queries
        return engine

    def _condense_question(self, chat_history: list[ChatMessage], last_message: str) -> str:
        result = self._rewriter.rewrite(to_messages(chat_history, last_message))
        self._queries.clear()
        self._queries[result.rewrite] = result.queries
        return result.rewrite

    async def _acondense_question(self, chat_history: list[ChatMessage], last_message: str) -> str:
        return self._condense_question(chat_history, last_message)
