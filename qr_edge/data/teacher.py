"""A teacher model behind any OpenAI-compatible chat endpoint (hosted APIs, llama.cpp's server, Ollama, vLLM).

The API key is read from an environment variable and handed to the client only: it is never printed,
logged or written. Retries with backoff on 429/5xx and timeouts are the ``openai`` client's own.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

from pydantic import BaseModel

from ..errors import MissingExtraError

_JSON_BLOCK = re.compile(r"\{.*\}", re.S)
# How to ask for structured output, most specific first; the first one a server accepts is kept.
_MODES = ("json_schema", "json_object", "none")


class TeacherConfig(BaseModel):
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    max_retries: int = 4
    timeout: float = 120.0
    temperature: float = 0.7
    max_tokens: int = 768


def parse_json(text: str) -> dict[str, Any] | None:
    """The JSON object in a reply: the whole text, or the outermost {...} inside prose or a code fence."""
    for candidate in (text, *(m.group(0) for m in [_JSON_BLOCK.search(text or "")] if m)):
        try:
            value = json.loads(candidate)
        except (TypeError, json.JSONDecodeError):
            continue
        if isinstance(value, dict):
            return value
    return None


class Teacher:
    """Thread-safe: one client, shared by the worker threads; token usage is summed."""

    def __init__(self, config: TeacherConfig) -> None:
        try:
            import openai
        except ImportError:
            raise MissingExtraError("the teacher needs the openai package: pip install 'qr-edge[distill]'") from None
        self.config = config
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=config.base_url,
            api_key=os.environ.get(config.api_key_env) or "no-key",  # local servers accept any key
            max_retries=config.max_retries,
            timeout=config.timeout,
        )
        self._mode = 0
        self._lock = threading.Lock()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.requests = 0

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        o = self._openai
        return (o.APIConnectionError, o.APITimeoutError, o.InternalServerError, o.RateLimitError)

    def _format(self, schema: dict[str, Any]) -> dict[str, Any] | None:
        mode = _MODES[self._mode]
        if mode == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        if mode == "json_object":
            return {"type": "json_object", "schema": schema}
        return None

    def ask_json(
        self, system: str, user: str, schema: dict[str, Any], temperature: float | None = None
    ) -> tuple[dict[str, Any] | None, str]:
        """One chat call asking for a JSON object; returns (object or None, raw text)."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        while True:
            fmt = self._format(schema)
            kwargs: dict[str, Any] = {"response_format": fmt} if fmt else {}
            try:
                reply = self._client.chat.completions.create(
                    model=self.config.model,
                    messages=messages,
                    temperature=self.config.temperature if temperature is None else temperature,
                    max_tokens=self.config.max_tokens,
                    **kwargs,
                )
            except (
                self._openai.BadRequestError,
                self._openai.UnprocessableEntityError,
                self._openai.InternalServerError,
            ) as exc:
                # Some servers answer an unknown response_format with 400/422, llama-cpp-python's with 500.
                if fmt is None or "response_format" not in str(exc):
                    raise
                with self._lock:
                    self._mode += 1  # this server does not take that response_format: try the next one
                continue
            break
        with self._lock:
            self.requests += 1
            if reply.usage is not None:
                self.prompt_tokens += reply.usage.prompt_tokens or 0
                self.completion_tokens += reply.usage.completion_tokens or 0
        text = reply.choices[0].message.content or ""
        return parse_json(text), text

    def usage(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }
