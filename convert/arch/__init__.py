"""One module per architecture family, imported only when that architecture is asked for."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConvertError

#: HF ``model_type`` (or a GGUF's ``general.architecture``) -> module.
SUPPORTED = {"qwen2": "qwen2", "llama": "llama", "gemma3_text": "gemma3", "gemma3": "gemma3"}


@dataclass(frozen=True)
class ArchSpec:
    """How one HF ``model_type`` maps onto a llama.cpp architecture."""

    gguf_arch: str
    transform: Callable[[str, np.ndarray, Any], np.ndarray]  # (hf_name, tensor, config) -> tensor as llama.cpp wants it
    hparams: Callable[[Any, Any], None] | None = None  # (GGUFWriter, config): keys beyond the common ones


def get_arch(model_type: str) -> ArchSpec:
    module = SUPPORTED.get(model_type)
    if module is None:
        raise ConvertError(f"architecture {model_type!r} is not supported; supported: {', '.join(SUPPORTED)}")
    return importlib.import_module(f"{__name__}.{module}").SPEC
