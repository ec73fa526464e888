"""/v1/chat/completions with the real clients (openai, LangChain's ChatOpenAI, LlamaIndex's OpenAILike) against a
real uvicorn server on loopback and the real default model: each gets the rewrite `Rewriter.rewrite` gives."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from qr_edge import Rewriter  # noqa: E402
from qr_edge.server import RewriterPool, create_app  # noqa: E402
from qr_edge.server.condense import (  # noqa: E402
    LANGCHAIN_CONDENSE_TEMPLATE,
    LLAMA_INDEX_CONDENSE_TEMPLATE,
    match_condense_prompt,
)

from ..conftest import CONVERSATION  # noqa: E402
from .test_serve import serving  # noqa: E402

INSTRUCTION = {"role": "system", "content": "Rephrase the follow-up question as a standalone question."}


class PathLog:
    """ASGI wrapper that records every HTTP path the clients call: no call of another kind may be made."""

    def __init__(self, app) -> None:
        self.app, self.paths = app, []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def rewriter():
    return Rewriter(n_ctx=2048, n_threads=1)  # the default: bundled adapter merged


@pytest.fixture(scope="module")
def server(rewriter):
    log = PathLog(create_app(RewriterPool([rewriter]), timeout_s=600))
    with serving(log) as client:
        yield client, log


@pytest.fixture()
def api(server):
    client, log = server
    log.paths.clear()
    return openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", max_retries=0), log


def test_the_openai_client_gets_the_rewrite_plain_and_streaming(api, rewriter):
    client, log = api
    expected = rewriter.rewrite(CONVERSATION).rewrite
    assert expected != CONVERSATION[-1]["content"]  # a lost history would show
    reply = client.chat.completions.create(model="qr-edge", messages=CONVERSATION, temperature=0.7, max_tokens=5)
    assert reply.choices[0].message.content == expected and reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.model_extra["qr_edge"]["decision"] == "rewritten"
    # a leading system message (the framework's instruction) is not part of the conversation
    again = client.chat.completions.create(model="qr-edge", messages=[INSTRUCTION, *CONVERSATION])
    assert again.choices[0].message.content == expected
    chunks = list(
        client.chat.completions.create(
            model="qr-edge", messages=CONVERSATION, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected and chunks[-1].usage.completion_tokens > 0
    assert {c.choices[0].finish_reason for c in chunks if c.choices} == {None, "stop"}
    assert [m.id for m in client.models.list().data][0] == "qr-edge"
    assert set(log.paths) == {"/v1/chat/completions", "/v1/models"}


def test_a_content_list_of_text_parts_is_one_message(api, rewriter):
    client, _ = api
    parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in CONVERSATION]
    reply = client.chat.completions.create(model="qr-edge", messages=parts)
    assert reply.choices[0].message.content == rewriter.rewrite(CONVERSATION).rewrite


def test_the_frameworks_condense_templates_are_the_installed_ones():
    pytest.importorskip("langchain_classic")
    pytest.importorskip("llama_index.core")
    from langchain_classic.chains.conversational_retrieval.prompts import CONDENSE_QUESTION_PROMPT
    from llama_index.core.chat_engine.condense_question import DEFAULT_TEMPLATE

    assert CONDENSE_QUESTION_PROMPT.template == LANGCHAIN_CONDENSE_TEMPLATE
    assert DEFAULT_TEMPLATE == LLAMA_INDEX_CONDENSE_TEMPLATE


def test_a_condense_prompt_is_parsed_into_turns_as_each_framework_writes_them():
    pytest.importorskip("langchain_classic")
    from langchain_classic.chains.conversational_retrieval.base import _get_chat_history
    from langchain_classic.chains.conversational_retrieval.prompts import CONDENSE_QUESTION_PROMPT
    from langchain_core.messages import AIMessage, HumanMessage
    from llama_index.core.base.llms.generic_utils import messages_to_history_str
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.chat_engine.condense_question import DEFAULT_PROMPT

    history, question = CONVERSATION[:2], CONVERSATION[2]["content"]
    lc_history = _get_chat_history([HumanMessage(history[0]["content"]), AIMessage(history[1]["content"])])
    li_history = messages_to_history_str([ChatMessage(role=m["role"], content=m["content"]) for m in history])
    for name, text in (
        ("langchain", CONDENSE_QUESTION_PROMPT.format(chat_history=lc_history, question=question)),
        ("llama-index", DEFAULT_PROMPT.format(chat_history=li_history, question=question)),
    ):
        assert match_condense_prompt(text) == (name, CONVERSATION)
    assert match_condense_prompt("Why is it faster?") is None


def test_langchain_history_aware_retriever_with_chat_openai(server, rewriter):
    pytest.importorskip("langchain_openai")
    from langchain_classic.chains import create_history_aware_retriever
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
    from langchain_core.retrievers import BaseRetriever
    from langchain_openai import ChatOpenAI

    class Recorder(BaseRetriever):
        queries: list[str] = []

        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun):
            self.queries.append(query)
            return [Document(page_content=query)]

    client, log = server
    log.paths.clear()
    llm = ChatOpenAI(model="qr-edge", base_url=f"{client.base_url}/v1", api_key="unused", max_retries=0)
    prompt = ChatPromptTemplate.from_messages(
        [("system", INSTRUCTION["content"]), MessagesPlaceholder("chat_history"), ("human", "{input}")]
    )
    retriever = Recorder()
    chain = create_history_aware_retriever(llm, retriever, prompt)
    history = [HumanMessage(CONVERSATION[0]["content"]), AIMessage(CONVERSATION[1]["content"])]
    chain.invoke({"input": CONVERSATION[2]["content"], "chat_history": history})
    assert retriever.queries == [rewriter.rewrite(CONVERSATION).rewrite]
    assert log.paths == ["/v1/chat/completions"]


def test_llama_index_condense_question_chat_engine_with_openai_like(server, rewriter):
    pytest.importorskip("llama_index.llms.openai_like")
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.chat_engine import CondenseQuestionChatEngine
    from llama_index.core.query_engine import CustomQueryEngine
    from llama_index.llms.openai_like import OpenAILike

    class Recorder(CustomQueryEngine):
        queries: list[str] = []

        def custom_query(self, query_str: str) -> str:
            self.queries.append(query_str)
            return "ok"

    client, log = server
    log.paths.clear()
    llm = OpenAILike(model="qr-edge", api_base=f"{client.base_url}/v1", api_key="unused", is_chat_model=True)
    engine = Recorder()
    history = [ChatMessage(role=m["role"], content=m["content"]) for m in CONVERSATION[:2]]
    chat = CondenseQuestionChatEngine.from_defaults(query_engine=engine, llm=llm, chat_history=history)
    chat.chat(CONVERSATION[2]["content"])
    assert engine.queries == [rewriter.rewrite(CONVERSATION).rewrite]
    assert log.paths == ["/v1/chat/completions"]


@pytest.mark.parametrize(
    "body, status, error_type",
    [
        ({"model": "qr-edge", "messages": [INSTRUCTION]}, 422, "InvalidConversationError"),
        ({"model": "qr-edge", "messages": [{"role": "user", "content": 5}]}, 422, "InvalidConversationError"),
        (
            {
                "model": "qr-edge",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,"}}]}
                ],
            },
            422,
            "InvalidConversationError",
        ),
        ({"model": "qr-edge"}, 422, "InvalidConversationError"),
        ({"model": "qr-edge", "messages": CONVERSATION, "n": 2}, 400, "OpenAIRequestError"),
        ({"model": "qr-edge:nope", "messages": CONVERSATION}, 422, "AdapterError"),
        ([1, 2], 400, "OpenAIRequestError"),
    ],
)
def test_bad_input_gets_openai_shaped_errors(server, body, status, error_type):
    client, _ = server
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == error_type and error["message"] and {"param", "code"} <= set(error)
    broken = client.post("/v1/chat/completions", content=b"{nope", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "OpenAIRequestError"


def test_the_openai_client_raises_its_own_errors(api):
    client, _ = api
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.chat.completions.create(model="qr-edge", messages=[INSTRUCTION])
    assert info.value.body["type"] == "InvalidConversationError"


def test_streaming_is_server_sent_events_ending_in_done(server):
    client, _ = server
    with client.stream("POST", "/v1/chat/completions", json={"messages": CONVERSATION, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "qr-edge" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
