"""The LangChain drop-in with real langchain-core: an in-memory vector store, the embedded model, no network."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402

from qr_edge import InvalidConversationError, Rewriter  # noqa: E402
from qr_edge.integrations.langchain import condense_question, history_aware_retriever, to_messages  # noqa: E402

from .corpus import CONVERSATION, DOCUMENTS, FOLLOW_UP, embed  # noqa: E402


class BagOfWords(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return embed(text)


@pytest.fixture(scope="module")
def default_rewriter() -> Rewriter:
    return Rewriter()  # the embedded model with the bundled adapter, as a user gets it


@pytest.fixture(scope="module")
def retriever():
    store = InMemoryVectorStore(BagOfWords())
    store.add_texts(list(DOCUMENTS.values()), ids=list(DOCUMENTS))
    return store.as_retriever(search_kwargs={"k": 1})


def test_the_follow_up_finds_the_right_document_only_after_the_rewrite(default_rewriter, retriever):
    history = [HumanMessage(CONVERSATION[0]["content"]), AIMessage(CONVERSATION[1]["content"])]
    assert retriever.invoke(FOLLOW_UP)[0].id == "trains"  # the raw follow-up matches the wrong document
    chain = history_aware_retriever(retriever, default_rewriter)
    docs = chain.invoke({"input": FOLLOW_UP, "chat_history": history})
    assert docs[0].id == "numpy"
    question = condense_question(default_rewriter).invoke({"input": FOLLOW_UP, "chat_history": history})
    assert "NumPy" in question


def test_no_history_passes_the_input_through_and_tuples_work(default_rewriter, retriever):
    chain = history_aware_retriever(retriever, default_rewriter)
    assert chain.invoke({"input": "How tall is the Eiffel Tower?", "chat_history": []})[0].id == "eiffel"
    assert to_messages([("human", "hi"), ("ai", "hello"), ("tool", "x")], "q") == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "q"},
    ]
    with pytest.raises(InvalidConversationError, match="needs"):
        condense_question(default_rewriter).invoke({"question": "wrong key"})


def test_history_as_openai_style_dicts_is_kept_and_anything_else_is_a_typed_error():
    from qr_edge import InvalidConversationError
    from qr_edge.integrations.langchain import to_messages

    history = [{"role": "user", "content": "NumPy or loops?"}, {"role": "assistant", "content": "NumPy."}]
    assert to_messages(history, "Why is it faster?") == [*history, {"role": "user", "content": "Why is it faster?"}]
    with pytest.raises(InvalidConversationError, match=r"chat_history\[1\]"):
        to_messages([history[0], 42], "Why?")


def test_search_both_retrieves_with_every_query_of_the_result_and_merges(default_rewriter, retriever):
    """An unsure rewrite (here every rewrite: the bar is above any confidence) is searched together with the raw
    follow-up: both documents come back, the rewrite's first; a sure one searches with the rewrite alone."""
    from qr_edge.integrations.langchain import fuse_documents

    history = [HumanMessage(CONVERSATION[0]["content"]), AIMessage(CONVERSATION[1]["content"])]
    unsure = Rewriter(n_ctx=2048, queries_both_below=1.01)
    result = unsure.rewrite(to_messages(history, FOLLOW_UP))
    assert result.changed and result.queries == [result.rewrite, FOLLOW_UP]
    docs = history_aware_retriever(retriever, unsure, search_both=True).invoke(
        {"input": FOLLOW_UP, "chat_history": history}
    )
    assert [d.id for d in docs] == ["numpy", "trains"]
    sure = Rewriter(n_ctx=2048, queries_both_below=0.0)
    docs = history_aware_retriever(retriever, sure, search_both=True).invoke(
        {"input": FOLLOW_UP, "chat_history": history}
    )
    assert [d.id for d in docs] == ["numpy"]
    assert [d.id for d in fuse_documents([[docs[0]], [docs[0]]])] == ["numpy"]  # each document once
