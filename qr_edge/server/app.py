"""The HTTP service: FastAPI routes over a pool of Rewriters (``pool.py``), with typed JSON errors (``errors.py``)
and bounded load.

Why it is built this way:
- a llama.cpp context runs one call at a time, so the pool holds N Rewriters (N contexts) and hands each
  request one of them; the blocking model call runs in a worker thread, never on the event loop;
- a request that cannot be served soon is refused (503 + Retry-After when the queue is full, 504 after the
  timeout) rather than piling up: a caller can fall back to the raw query at once;
- every refusal is ``{"error": {"type": ..., "message": ...}}`` with the library's error class name, so a
  client branches on ``type`` the way a Python caller catches the exception; never a 500 with a traceback.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, SkipValidation, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from .. import __version__
from ..adapters import BUNDLED
from ..errors import AdapterError, CancelledError, InvalidConversationError, QrEdgeError
from ..messages import messages_from_queries, parse_messages
from ..result import RewriteResult
from ..rewriter import Rewriter
from .drain import DrainState
from .errors import (
    BatchTooLargeError,
    BodyTimeoutError,
    InvalidJSONError,
    InvalidRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServerBusyError,
    UnauthorizedError,
    error_body,
    error_response,
    http_status,
)
from .json_response import SafeJSONResponse
from .openai_api import MODEL_ID, add_openai_routes
from .pool import Dispatcher, RewriterPool

__all__ = ["create_app"]

log = logging.getLogger("qr_edge.server")

#: Paths served without an API key: a load balancer's health probe carries none.
#: Paths served without the API key: the probe, the playground and the API docs (static, no data).
OPEN_PATHS = frozenset({"/healthz", "/", "/docs", "/openapi.json"})
OPEN_PREFIXES = ("/static/",)
STATIC = Path(__file__).parent / "static"


# -- request checks the schema cannot express ----------------------------------------------------
#: Deepest ``id`` echoed back (a list or object inside a list or object...): ids match results to inputs.
MAX_ID_DEPTH = 8


def check_id(value: Any, depth: int = 0) -> None:
    """Refuse an ``id`` that could not be echoed as JSON: NaN or infinite numbers, or nesting past MAX_ID_DEPTH."""
    if depth > MAX_ID_DEPTH:
        raise InvalidRequestError(f"id: nested more than {MAX_ID_DEPTH} deep; use a string or a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequestError("id: NaN and Infinity are not JSON; use a string or a finite number")
    if isinstance(value, list):
        for item in value:
            check_id(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            check_id(item, depth + 1)


# -- request bodies ---------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    """One turn, OpenAI style (extra keys are ignored). Checked by the library, so errors name the turn."""

    model_config = ConfigDict(extra="allow")

    role: str = Field(description="system (first turn only), user or assistant; the last turn is the user query")
    content: str = Field(description="the turn's text")


class RewriteRequest(BaseModel):
    """One rewrite: a conversation (``messages``) or the legacy user-only form (``queries``), not both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "messages": [
                        {"role": "user", "content": "Which is faster, NumPy or Python loops?"},
                        {"role": "assistant", "content": "NumPy, because its loops run in compiled C."},
                        {"role": "user", "content": "Why is it faster?"},
                    ]
                },
                {"queries": ["Python和Java哪个更好？", "它怎么样？"]},
            ]
        },
    )

    # SkipValidation: the documented shape, but the library validates it so errors are InvalidConversationError.
    messages: SkipValidation[list[ChatMessage]] | None = Field(
        None, description="the conversation; its last turn is the user query to rewrite"
    )
    queries: list[str] | None = Field(None, description="legacy: user queries only, the last one is rewritten")
    adapter: str | None = Field(
        None, description="a loaded adapter's name; null for the bare model; absent for the default adapter"
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description='{"include_prompt": true} adds "prompt", the exact text the model received (rewrite path); '
        "no other option exists",
    )
    id: Any = Field(None, description="echoed in the result, to match batch results to inputs")


class BatchRequest(BaseModel):
    """Several rewrites in one request; a bad item fails alone."""

    model_config = ConfigDict(extra="forbid")

    # SkipValidation: items are validated one by one, so one bad item does not refuse the batch.
    items: list[SkipValidation[RewriteRequest]] = Field(description="rewrite requests, answered in order")


class AdapterInfo(BaseModel):
    name: str
    file: str
    merged: bool = Field(False, description="in the model's weights: the bare model is then not available")


class ErrorDetail(BaseModel):
    type: str = Field(description="the error's class name, e.g. InvalidConversationError, AdapterError")
    message: str = Field(description="what is wrong and how to fix it")


class ErrorResponse(BaseModel):
    """Every refusal's body."""

    error: ErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "the body is not JSON",
        401: "missing or wrong API key",
        413: "body or batch too large",
        422: "bad request or conversation (InvalidConversationError, AdapterError, InvalidRequestError...)",
        503: "busy: retry after Retry-After seconds",
        504: "no result within the timeout",
    }.items()
}


class OpenAIModel(BaseModel):
    """An entry of OpenAI's model list: ``qr-edge`` (the default adapter) and ``qr-edge:NAME`` per adapter."""

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "qr-edge"


class ModelsResponse(BaseModel):
    object: str = Field("list", description="OpenAI's list shape: what an OpenAI client's models.list() reads")
    data: list[OpenAIModel] = Field(description="model names /v1/chat/completions accepts")
    model: str = Field(description="the base model's name")
    file: str = Field(
        description="the GGUF file the model runs from (out of the box: the run copy with the adapter merged in)"
    )
    adapters: list[AdapterInfo]
    default_adapter: str | None = Field(description="the adapter a request that names none runs under")
    prompt_format: str = Field(description="the prompt format of the default adapter (or the bare model)")
    workers: int


def _prepare(req: RewriteRequest, rewriter: Rewriter) -> Callable[[Rewriter], dict[str, Any]]:
    """Check what the schema cannot before the request takes a queue slot (a bad request never waits for a
    busy rewriter); return the model call, which gives the result's JSON body. The ``id`` is checked by the
    callers first: a batch must know it before it echoes it in an error record."""
    if (req.messages is None) == (req.queries is None):
        raise InvalidConversationError('give either "messages" (a conversation) or "queries" (user queries only)')
    unknown = sorted(set(req.options) - {"include_prompt"})
    if unknown:
        raise InvalidRequestError(f"unsupported option(s): {', '.join(unknown)}; the only option is include_prompt")
    if not isinstance(req.options.get("include_prompt", False), bool):
        raise InvalidRequestError("options.include_prompt must be true or false")
    adapter = req.adapter if "adapter" in req.model_fields_set else BUNDLED
    merged = rewriter.engine.merged_adapter
    if adapter is None and merged is not None:  # the library's advice (a Rewriter argument) is not the service's
        raise AdapterError(
            f"adapter {merged!r} is merged into this service's model, so the bare base is not served; "
            "start one with `qr-edge serve --adapter none` for it"
        )
    rewriter.require_adapter(adapter)
    include_prompt = req.options.get("include_prompt", False)
    if req.messages is not None:
        messages = parse_messages(req.messages)

        def run(rewriter: Rewriter) -> dict[str, Any]:
            body = _dump(rewriter.rewrite(messages, adapter=adapter), req.id)
            if include_prompt:  # a first query has no history: the model sees no prompt
                body["prompt"] = rewriter.render_prompt(messages, adapter=adapter) if len(messages) > 1 else ""
            return body

        return run
    queries = req.queries or []
    messages_from_queries(queries)
    return lambda rewriter: _dump(rewriter.rewrite_queries(queries, adapter=adapter), req.id)


def _dump(result: RewriteResult, item_id: Any) -> dict[str, Any]:
    if item_id is not None:
        result.id = item_id
    return result.model_dump(mode="json")


def _error_record(error_type: str, message: str, item_id: Any) -> dict[str, Any]:
    record = error_body(error_type, message)
    return record if item_id is None else {"id": item_id, **record}


def _validation_message(errors: Sequence[Any], root: str = "body") -> str:
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        parts.append(f"{'.'.join(loc) or root}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# -- key and size checks, before any routing ---------------------------------------------------------
class _GateMiddleware:
    """Refuses a request while draining (503), without the API key (401), with a body over the limit (413) or
    one that does not arrive in time (408), before it is parsed."""

    def __init__(
        self, app: ASGIApp, api_key: str | None, max_body_bytes: int, body_timeout_s: float, drain: DrainState
    ) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.drain = drain

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        """Either header that carries the key lets the request in (a wrong one beside a right one does not lock out)."""
        assert self.api_key is not None
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        given = [headers.get(b"x-api-key"), token.strip() if scheme.lower() == b"bearer" else None]
        return any(g is not None and hmac.compare_digest(g, self.api_key) for g in given)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            busy = ServerBusyError("the service is shutting down; retry shortly (or on another instance)")
            await error_response(busy)(scope, receive, send)
            return
        self.drain.in_flight += 1
        try:
            await self._checked(scope, receive, send)
        finally:
            self.drain.in_flight -= 1

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        path = scope["path"]
        is_open = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
        if self.api_key is not None and not is_open and not self._authorized(headers):
            message = "this service needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            await error_response(UnauthorizedError(message))(scope, receive, send)
            return
        too_large = PayloadTooLargeError(f"the request body is larger than {self.max_body_bytes} bytes")
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await error_response(too_large)(scope, receive, send)
            return
        # Read the (bounded) body here, so a chunked body without Content-Length is limited too, in time as well.
        chunks, size = [], 0
        with anyio.move_on_after(self.body_timeout_s) as reading:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    await error_response(too_large)(scope, receive, send)
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        if reading.cancelled_caught:
            late = BodyTimeoutError(f"the request body did not arrive within {self.body_timeout_s:g} s")
            await error_response(late)(scope, receive, send)
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# -- the app ---------------------------------------------------------------------------------------
def create_app(
    pool: RewriterPool,
    *,
    api_key: str | None = None,
    max_body_bytes: int = 1 << 20,
    max_batch: int = 64,
    timeout_s: float = 30.0,
    queue_size: int = 16,
    body_timeout_s: float = 30.0,
) -> FastAPI:
    """The service over ``pool``. ``timeout_s`` is per rewrite (a batch of k items gets k times it), waiting
    included; ``queue_size`` requests may wait for a rewriter beyond the ``pool.size`` running ones;
    ``body_timeout_s``: how long a client may take to send its body. ``app.state.drain`` stops the service
    gracefully (see ``DrainState``)."""
    if max_body_bytes < 1 or max_batch < 1 or timeout_s <= 0 or queue_size < 0 or body_timeout_s <= 0:
        raise ValueError("max_body_bytes and max_batch must be >= 1, timeout_s and body_timeout_s > 0, queue_size >= 0")
    dispatcher = Dispatcher(pool, queue_size, timeout_s)
    drain = DrainState()
    app = FastAPI(
        default_response_class=SafeJSONResponse,
        redirect_slashes=False,  # a redirect would echo the request's Host header back to the client
        title="qr-edge",
        version=__version__,
        description="Offline multi-turn query rewriting: the last user query of a conversation, made standalone.",
        docs_url=None,  # served below from local files: the machine may be offline
        redoc_url=None,
    )
    # The Swagger UI that ships in a Python package (swagger-ui-bundle) is 4.x, which renders OpenAPI 3.0 only.
    app.openapi_version = "3.0.3"
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")
    app.mount("/static/playground", StaticFiles(directory=STATIC), name="playground")
    app.state.pool = pool
    app.state.drain = drain
    app.add_middleware(
        _GateMiddleware, api_key=api_key, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s, drain=drain
    )

    @app.exception_handler(QrEdgeError)
    async def _library_error(request: Request, exc: QrEdgeError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            return error_response(InvalidJSONError(f"the body is not valid JSON: {_validation_message(errors)}"))
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type and all(tuple(e.get("loc", ())) == ("body",) for e in errors):
            return error_response(InvalidRequestError("send the body as JSON, with 'Content-Type: application/json'"))
        return error_response(InvalidRequestError(_validation_message(errors)))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not parse the body (invalid UTF-8, nesting too deep for json)
            return error_response(InvalidJSONError(f"the body is not valid JSON: {exc.detail}"))
        name = "".join(w.capitalize() for w in HTTPStatus(exc.status_code).phrase.replace("-", " ").split())
        return SafeJSONResponse(error_body(name, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return SafeJSONResponse(error_body("InternalError", "internal error; see the server log"), status_code=500)

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="qr-edge API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/playground/favicon.svg",
        )

    @app.get("/healthz", summary="Liveness probe (no API key needed)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.head("/healthz", include_in_schema=False)  # load balancers probe with HEAD
    async def healthz_head() -> Response:
        return Response()

    @app.get("/v1/models", response_model=ModelsResponse, summary="The loaded model, its adapters and prompt format")
    async def models() -> ModelsResponse:
        rewriter = pool.primary
        return ModelsResponse(
            data=[OpenAIModel(id=MODEL_ID), *(OpenAIModel(id=f"{MODEL_ID}:{n}") for n in rewriter.adapter_names)],
            model=rewriter.engine.name,
            file=os.path.basename(rewriter.model_path),
            adapters=[
                AdapterInfo(name=name, file=os.path.basename(loaded.path), merged=loaded.merged)
                for name, loaded in rewriter.engine.adapters.items()
            ],
            default_adapter=rewriter.default_adapter,
            prompt_format=rewriter.builder.fmt,
            workers=pool.size,
        )

    @app.post(
        "/v1/rewrite",
        response_model=RewriteResult,
        responses=_ERRORS,
        summary="Rewrite the last user query of a conversation",
    )
    async def rewrite(body: RewriteRequest) -> JSONResponse:
        check_id(body.id)
        call = _prepare(body, pool.primary)
        return SafeJSONResponse(await dispatcher.run(lambda rewriter, _cancelled: call(rewriter)))

    @app.post(
        "/v1/rewrite/batch", responses=_ERRORS, summary="Several rewrites in order; a bad item becomes an error record"
    )
    async def rewrite_batch(body: BatchRequest) -> JSONResponse:
        if len(body.items) > max_batch:
            raise BatchTooLargeError(f"the batch has {len(body.items)} items; at most {max_batch} are accepted")
        slots: list[dict[str, Any] | tuple[Any, Callable[[Rewriter], dict[str, Any]]]] = []
        for raw in body.items:
            item_id = raw.get("id") if isinstance(raw, dict) else None
            try:
                check_id(item_id)
            except InvalidRequestError as exc:  # not echoed: it cannot be written back as JSON
                slots.append(_error_record(type(exc).__name__, str(exc), None))
                continue
            try:
                req = RewriteRequest.model_validate(raw)
                slots.append((item_id, _prepare(req, pool.primary)))
            except ValidationError as exc:
                slots.append(_error_record("InvalidRequestError", _validation_message(exc.errors(), "item"), item_id))
            except QrEdgeError as exc:
                slots.append(_error_record(type(exc).__name__, str(exc), item_id))

        out: list[dict[str, Any]] = []  # filled as items finish: what finished is returned even on timeout

        def run_all(rewriter: Rewriter, cancelled: threading.Event) -> list[dict[str, Any]]:
            for slot in slots:
                if cancelled.is_set():
                    break  # timed out: nobody reads the rest
                if isinstance(slot, dict):
                    out.append(slot)
                    continue
                item_id, call = slot
                try:
                    out.append(call(rewriter))
                except CancelledError:
                    break  # timed out in the middle of this item
                except QrEdgeError as exc:
                    out.append(_error_record(type(exc).__name__, str(exc), item_id))
                except Exception:  # one item's bug must not lose the others' results
                    log.exception("unexpected error on a batch item")
                    out.append(_error_record("InternalError", "internal error; see the server log", item_id))
            return out

        runnable = sum(1 for slot in slots if not isinstance(slot, dict))
        if runnable == 0:
            return SafeJSONResponse({"results": slots})
        try:
            return SafeJSONResponse({"results": await dispatcher.run(run_all, units=runnable)})
        except RequestTimeoutError as exc:
            done = out[:]  # the abandoned thread stops at its next forward pass; later appends are not read
            late = [
                slot if isinstance(slot, dict) else _error_record(type(exc).__name__, str(exc), slot[0])
                for slot in slots[len(done) :]
            ]
            return SafeJSONResponse({"results": done + late})

    add_openai_routes(
        app,
        primary=lambda: pool.primary,
        run=lambda job: dispatcher.run(lambda rewriter, _cancelled: job(rewriter)),
        status=http_status,
    )
    return app
