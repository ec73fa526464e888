"""Llama family (SmolLM2 included): llama.cpp expects q/k rows in interleaved rotary order."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import ArchSpec


def permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """The same permutation as llama.cpp's convert_hf_to_gguf.py (HF's rotate-half -> GGML's interleaved)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _transform(name: str, tensor: np.ndarray, config: Any) -> np.ndarray:
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    if name.endswith("q_proj.weight") or name.endswith("q_proj.bias"):
        return permute(tensor, n_head, n_head)
    if name.endswith("k_proj.weight") or name.endswith("k_proj.bias"):
        return permute(tensor, n_head, n_kv)
    return tensor


SPEC = ArchSpec(gguf_arch="llama", transform=_transform)
