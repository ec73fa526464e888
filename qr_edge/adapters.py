"""Which prompt a model or adapter was trained for, and whether an adapter fits the loaded base.

The answers come from qr-edge's GGUF metadata (``model_meta``): the prompt format version and the
number of few-shot examples, and for an adapter, the base it was trained on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from .errors import AdapterError
from .model_meta import (
    DEFAULT_GATE_THRESHOLD,
    DEFAULT_N_EXAMPLES,
    META_BASE_ARCH,
    META_BASE_NAME,
    META_GATE_DEPEND_THRESHOLD,
    META_GATE_NEED_THRESHOLD,
    META_N_EXAMPLES,
    META_PROMPT_VERSION,
    PROMPT_FORMAT_VERSION,
    PROMPT_FORMATS,
)


class BundledAdapter:
    """The type of ``BUNDLED``, the default of every ``adapter=`` argument: "the bundled adapter on the embedded
    model, else none". Its one instance is ``BUNDLED``: test with ``is BUNDLED`` or ``isinstance``."""

    def __repr__(self) -> str:
        return "BUNDLED"

    def __reduce__(self) -> str:
        return "BUNDLED"  # unpickles as the module's one instance, so ``is BUNDLED`` holds in other processes


#: ``Rewriter(adapter=BUNDLED)`` (the default): the packaged adapter when the model is the embedded one.
BUNDLED = BundledAdapter()


def adapter_choice(text: str | None) -> str | None | BundledAdapter:
    """A user's adapter setting (CLI, TUI): absent -> BUNDLED, "none" -> no adapter, anything else -> a path."""
    if text is None or text == "":
        return BUNDLED
    return None if text.lower() == "none" else text


class PromptFormatWarning(UserWarning):
    """The model or adapter was fine-tuned for a prompt format this runtime does not know, or records none."""


class AdapterBaseWarning(UserWarning):
    """The adapter records another base model than the loaded one (its shapes fit, so it still runs)."""


@dataclass(frozen=True)
class PromptSpec:
    """How to prompt a model: the format version and how many few-shot examples it expects."""

    fmt: str
    n_examples: int


def prompt_spec(metadata: dict[str, str], source: str, n_examples: int | None = None) -> PromptSpec:
    """Read the prompt spec from GGUF metadata; ``n_examples`` overrides what the file records."""
    fmt = metadata.get(META_PROMPT_VERSION)
    if fmt is not None and fmt not in PROMPT_FORMATS:
        raise AdapterError(
            f"{source} was trained for prompt format {fmt!r}; "
            f"this qr-edge builds {', '.join(PROMPT_FORMATS)}: upgrade qr-edge"
        )
    recorded = metadata.get(META_N_EXAMPLES)
    if n_examples is None:
        n_examples = int(recorded) if recorded is not None else DEFAULT_N_EXAMPLES
    return PromptSpec(fmt=fmt or PROMPT_FORMAT_VERSION, n_examples=n_examples)


def gate_thresholds(metadata: dict[str, str]) -> tuple[float, float]:
    """(need, depend) thresholds of the gate as the adapter or model records them (0.5 where it does not)."""

    def read(key: str) -> float:
        try:
            value = float(metadata.get(key, DEFAULT_GATE_THRESHOLD))
        except ValueError:
            return DEFAULT_GATE_THRESHOLD
        return value if 0.0 < value < 1.0 else DEFAULT_GATE_THRESHOLD

    return read(META_GATE_NEED_THRESHOLD), read(META_GATE_DEPEND_THRESHOLD)


def check_adapter(adapter_meta: dict[str, str], base_meta: dict[str, str], path: str) -> None:
    """Refuse an adapter made for another architecture; warn when it records another base model."""
    if adapter_meta.get("general.type", "adapter") != "adapter" or adapter_meta.get("adapter.type", "lora") != "lora":
        raise AdapterError(f"{path} is not a LoRA adapter GGUF")
    base_arch = base_meta.get("general.architecture")
    for key in ("general.architecture", META_BASE_ARCH):
        arch = adapter_meta.get(key)
        if arch and base_arch and arch != base_arch:
            raise AdapterError(f"{path} is a {arch} adapter; the loaded model is {base_arch}")
    if META_PROMPT_VERSION not in adapter_meta:
        warnings.warn(
            f"{path} records no qr-edge prompt format; using format {PROMPT_FORMAT_VERSION}",
            PromptFormatWarning,
            stacklevel=3,
        )
    trained_on, base_name = adapter_meta.get(META_BASE_NAME), base_meta.get("general.name")
    if trained_on and base_name and trained_on != base_name:
        warnings.warn(
            f"{path} was trained on {trained_on!r}, the loaded model is {base_name!r}", AdapterBaseWarning, stacklevel=3
        )
