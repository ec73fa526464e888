"""The LlamaIndex drop-in with real llama-index-core: a vector index in memory, the embedded model, no network."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")
from llama_index.core import Document, VectorStoreIndex  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.base.llms.types import ChatMessage, MessageRole  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import CustomQueryEngine  # noqa: E402

from qr_edge import Rewriter  # noqa: E402
from qr_edge.integrations.llama_index import QrEdgeChatEngine, fuse_nodes  # noqa: E402

from .corpus import CONVERSATION, DOCUMENTS, FOLLOW_UP, embed  # noqa: E402


class BagOfWords(BaseEmbedding):
    def _get_query_embedding(self, query: str) -> list[float]:
        return embed(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return embed(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return embed(query)


class MockQueryEngine(CustomQueryEngine):
    """A query engine without a retriever of its own."""

    def custom_query(self, query_str: str) -> str:
        return query_str


@pytest.fixture(scope="module")
def query_engine():
    docs = [Document(text=text, doc_id=key) for key, text in DOCUMENTS.items()]
    index = VectorStoreIndex.from_documents(docs, embed_model=BagOfWords())
    return index.as_query_engine(similarity_top_k=1, llm=MockLLM(max_tokens=8))


def _history() -> list[ChatMessage]:
    return [
        ChatMessage(role=MessageRole.USER, content=CONVERSATION[0]["content"]),
        ChatMessage(role=MessageRole.ASSISTANT, content=CONVERSATION[1]["content"]),
    ]


def test_the_follow_up_finds_the_right_document_only_after_the_rewrite(query_engine):
    assert query_engine.query(FOLLOW_UP).source_nodes[0].node.ref_doc_id == "trains"
    engine = QrEdgeChatEngine.from_rewriter(query_engine, Rewriter(), chat_history=_history())
    response = engine.chat(FOLLOW_UP)
    assert response.sources[0].raw_input["query"] != FOLLOW_UP and "NumPy" in response.sources[0].raw_input["query"]
    assert response.source_nodes[0].node.ref_doc_id == "numpy"


async def test_async_chat_condenses_the_same_way(query_engine):
    engine = QrEdgeChatEngine.from_rewriter(query_engine, Rewriter(), chat_history=_history())
    response = await engine.achat(FOLLOW_UP)
    assert response.source_nodes[0].node.ref_doc_id == "numpy"


def test_search_both_retrieves_with_every_query_of_the_result_and_merges():
    """An unsure rewrite (the bar is above any confidence) is searched together with the raw follow-up: both
    documents come back, the rewrite's first; a sure one searches with the rewrite alone."""
    docs = [Document(text=text, doc_id=key) for key, text in DOCUMENTS.items()]
    query_engine = VectorStoreIndex.from_documents(docs, embed_model=BagOfWords()).as_query_engine(
        similarity_top_k=1, llm=MockLLM(max_tokens=8)
    )
    unsure = QrEdgeChatEngine.from_rewriter(
        query_engine, Rewriter(n_ctx=2048, queries_both_below=1.01), chat_history=_history(), search_both=True
    )
    found = [n.node.ref_doc_id for n in unsure.chat(FOLLOW_UP).source_nodes]
    assert found == ["numpy", "trains"]
    sure = QrEdgeChatEngine.from_rewriter(
        query_engine, Rewriter(n_ctx=2048, queries_both_below=0.0), chat_history=_history(), search_both=True
    )
    assert [n.node.ref_doc_id for n in sure.chat(FOLLOW_UP).source_nodes] == ["numpy"]
    node = unsure.chat(FOLLOW_UP).source_nodes[0]
    assert [n.node.node_id for n in fuse_nodes([[node], [node]])] == [node.node.node_id]  # each node once
    with pytest.raises(TypeError, match="RetrieverQueryEngine"):
        QrEdgeChatEngine.from_rewriter(MockQueryEngine(), Rewriter(n_ctx=2048), search_both=True)
