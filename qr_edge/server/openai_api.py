"""``POST /v1/chat/completions``: any OpenAI client is a qr-edge client; the assistant's answer is the rewrite.

Why: a JavaScript app, a Go service or a RAG tool configured only by an "OpenAI base URL" can call qr-edge
without a client of its own, and the frameworks' condense-question steps already call this API. What the
route does with a request:
- ``system`` and ``developer`` messages are instructions to a generic model ("rephrase the follow-up as a
  standalone question"), not conversation: dropped; ``tool`` turns and assistant turns without text too;
- a single user message holding LangChain's or LlamaIndex's default condense prompt is parsed into its
  history and follow-up (``condense.py``); anything else is a plain conversation;
- the last user message is rewritten with the full history; ``model`` ``"qr-edge:NAME"`` picks the loaded
  adapter NAME, any other model name the default;
- sampling fields are accepted and ignored (``IGNORED_FIELDS``): the rewrite is greedy and guarded;
- ``stream: true`` answers as server-sent events in OpenAI's chunk format, the rewrite in one chunk, once
  it is done (a rewrite is a few tokens, and the guard must see all of it first);
- errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with the library's error
  name in ``type``, so the openai package raises its usual exceptions.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..adapters import BUNDLED
from ..errors import InvalidConversationError, QrEdgeError
from ..messages import Message, parse_messages
from ..result import RewriteResult
from ..rewriter import Rewriter
from .condense import match_condense_prompt
from .json_response import SafeJSONResponse

MODEL_ID = "qr-edge"
#: Fields of OpenAI's chat-completions request that are accepted and have no effect.
IGNORED_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "user",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "metadata",
    "store",
    "service_tier",
    "reasoning_effort",
)
_INSTRUCTION_ROLES = ("system", "developer")


class OpenAIRequestError(QrEdgeError):
    """A chat-completions request that is not of the API's shape (no messages, n > 1, a non-text part...)."""


def openai_error(exc: QrEdgeError, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": str(exc), "type": type(exc).__name__, "param": None, "code": None}}
    return SafeJSONResponse(body, status_code=status, headers=headers)


def _text(content: Any, i: int) -> str | None:
    """A message's text: a string, or the text parts of a content list; any other part is refused."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text" or not isinstance(part.get("text"), str):
                raise InvalidConversationError(f"message {i} has a {kind!r} content part; qr-edge rewrites text only")
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidConversationError(f"message {i} content must be a string or a list of text parts")


def conversation(raw: Any) -> list[Message]:
    """The conversation to rewrite from a request's ``messages`` (a condense prompt parsed back into its turns)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidConversationError('"messages" must be a non-empty list of {"role", "content"} objects')
    turns = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise InvalidConversationError(f"message {i} must be an object with role and content")
        role, text = m.get("role"), _text(m.get("content"), i)
        if role in _INSTRUCTION_ROLES or role in ("tool", "function"):
            continue
        if role == "assistant" and not text:
            continue  # a tool call: no text to resolve against
        turns.append({"role": role, "content": text})
    if len(turns) == 1 and turns[0]["role"] == "user" and isinstance(turns[0]["content"], str):
        found = match_condense_prompt(turns[0]["content"])
        if found:
            turns = found[1]
    if not any(t["role"] == "user" for t in turns):
        raise InvalidConversationError("the request has no user message to rewrite")
    return parse_messages(turns)


def _adapter(model: Any) -> Any:
    """``qr-edge:NAME`` names a loaded adapter; any other model name means the default one."""
    if isinstance(model, str) and model.startswith(MODEL_ID + ":"):
        return model.split(":", 1)[1]
    return BUNDLED


def _completion(result: RewriteResult, model: str, cid: str, created: int) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.rewrite},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(result),
        "system_fingerprint": None,
        "qr_edge": {"decision": result.decision.value, "reason": result.reason, "changed": result.changed},
    }


def _usage(result: RewriteResult) -> dict[str, int]:
    prompt, generated = result.timings.prompt_tokens, result.timings.generated_tokens
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


async def _chunks(result: RewriteResult, model: str, cid: str, created: int, usage: bool) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        body = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""}, None)
    yield chunk({"content": result.rewrite}, None)
    yield chunk({}, "stop")
    if usage:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": []}
        yield f"data: {json.dumps({**body, 'usage': _usage(result)})}\n\n".encode()
    yield b"data: [DONE]\n\n"


def add_openai_routes(
    app: FastAPI,
    primary: Callable[[], Rewriter],
    run: Callable[[Callable[[Rewriter], RewriteResult]], Any],
    status: Callable[[QrEdgeError], tuple[int, dict[str, str] | None]],
) -> None:
    """Mount ``/v1/chat/completions`` on ``app``; ``run`` is the service's dispatcher (queue and timeout)."""

    @app.post("/v1/chat/completions", summary="OpenAI chat completions: the reply is the rewrite of the last query")
    async def chat_completions(request: Request) -> Any:
        try:
            try:
                body = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise OpenAIRequestError(f"the body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise OpenAIRequestError("the body must be a JSON object with model and messages")
            if body.get("n", 1) != 1:
                raise OpenAIRequestError("n must be 1: qr-edge gives one rewrite")
            stream = body.get("stream", False)
            if not isinstance(stream, bool):
                raise OpenAIRequestError("stream must be true or false")
            messages = conversation(body.get("messages"))
            adapter = _adapter(body.get("model"))
            primary().require_adapter(adapter)  # before the request waits for a busy model
            result = await run(lambda rewriter: rewriter.rewrite(messages, adapter=adapter))
        except OpenAIRequestError as exc:
            return openai_error(exc, 400)
        except QrEdgeError as exc:
            code, headers = status(exc)
            return openai_error(exc, code, headers)
        model = body.get("model") if isinstance(body.get("model"), str) else MODEL_ID
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if stream:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return StreamingResponse(_chunks(result, model, cid, created, usage), media_type="text/event-stream")
        return SafeJSONResponse(_completion(result, model, cid, created))
