"""Gemma 3 (text): llama.cpp stores RMSNorm weights with Gemma's ``1 +`` folded in, and no rotary permutation.

Gemma's head size (256 on the 270M) is not hidden / heads, so the key and value lengths are written; its
local (sliding-window) layers use rotary base 10,000, which llama.cpp assumes for ``gemma3``, and one
global layer in six, which llama.cpp also assumes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConvertError
from . import ArchSpec

#: The rotary base llama.cpp uses for gemma3's sliding-window layers (it reads none from the file).
SLIDING_ROPE_THETA = 10000.0
#: llama.cpp's gemma3 graph: every sixth layer attends globally, the others within the sliding window.
SLIDING_PATTERN = 6


def _transform(name: str, tensor: np.ndarray, config: Any) -> np.ndarray:
    return tensor + 1.0 if name.endswith("norm.weight") else tensor


def _hparams(writer: Any, config: Any) -> None:
    head_dim = config.head_dim
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_sliding_window(config.sliding_window)
    if getattr(config, "query_pre_attn_scalar", head_dim) != head_dim:
        raise ConvertError("llama.cpp scales gemma3 attention by 1/sqrt(head_dim); this config scales otherwise")
    for cap in ("final_logit_softcapping", "attn_logit_softcapping"):
        if getattr(config, cap, None) is not None:
            raise ConvertError(f"{cap} is set: Gemma 3 has none, and this exporter writes none")
    sliding = (getattr(config, "rope_parameters", None) or {}).get("sliding_attention") or {}
    if float(sliding.get("rope_theta", SLIDING_ROPE_THETA)) != SLIDING_ROPE_THETA:
        raise ConvertError(f"llama.cpp runs gemma3's sliding layers at rope base {SLIDING_ROPE_THETA:g}")
    types = getattr(config, "layer_types", None)
    expected = [
        "full_attention" if (i + 1) % SLIDING_PATTERN == 0 else "sliding_attention"
        for i in range(config.num_hidden_layers)
    ]
    if types is not None and list(types) != expected:
        raise ConvertError("this gemma3 config's layer pattern is not llama.cpp's (one global layer in six)")


SPEC = ArchSpec(gguf_arch="gemma3", transform=_transform, hparams=_hparams)
