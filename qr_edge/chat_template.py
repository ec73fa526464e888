"""The model's own chat template, rendered the way transformers renders it (jinja2 sandbox)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Qwen2.5's ChatML layout without its default system prompt: used only for a GGUF that carries no
# template, with a warning (llama-cpp-python would silently fall back to a llama-2 format instead).
CHATML_FALLBACK = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class MissingChatTemplateWarning(UserWarning):
    """The model file has no ``tokenizer.chat_template``; ChatML is assumed."""


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """A compiled chat template with the special tokens it refers to."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "", name: str = "model") -> None:
        self.is_fallback = not source
        if self.is_fallback:
            warnings.warn(
                f"{name} has no tokenizer.chat_template; using Qwen ChatML. "
                "If the model was trained with another format, rewrites will be poor.",
                MissingChatTemplateWarning,
                stacklevel=3,
            )
        self.source = source or CHATML_FALLBACK
        self.bos_token = bos_token
        self.eos_token = eos_token
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self._template = env.from_string(self.source)

    def render(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self._template.render(
            messages=list(messages),
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )
