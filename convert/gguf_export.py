"""Write a merged HF model to GGUF with gguf-py, streaming: one tensor converted and written at a time.

``GGUFWriter`` moves through explicit states: tensor infos are registered from shapes alone, then the
header, key/values and infos are written, then each tensor's data in the same order. The model is
never copied as a whole.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from .arch import ArchSpec
from .errors import ConvertError

_ARCH_ENUM = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}
_FILE_TYPES = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16}


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    params = params.get("full_attention", params)  # Gemma 3: one set per layer type (the global layers' here)
    theta = getattr(config, "rope_theta", None) or params.get("rope_theta")
    if theta is None:
        raise ConvertError("config has no rope_theta")
    scaling = getattr(config, "rope_scaling", None) or params
    kind = (scaling or {}).get("rope_type") or (scaling or {}).get("type") or "default"
    if kind != "default":
        raise ConvertError(f"rope scaling {kind!r} is not supported by this exporter")
    return float(theta)


def add_hparams(writer: gguf.GGUFWriter, config: Any, spec: ArchSpec) -> None:
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    if spec.hparams is not None:
        spec.hparams(writer, config)


def _plan(model: Any, spec: ArchSpec, ftype: str) -> list[tuple[str, str, Any, np.dtype]]:
    """(gguf name, hf name, tensor, numpy dtype) for every tensor to write; nothing is copied here."""
    config = model.config
    name_map = gguf.get_tensor_name_map(_ARCH_ENUM[spec.gguf_arch], config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    plan = []
    for hf_name, tensor in model.state_dict().items():
        if (tied and hf_name == "lm_head.weight") or "rotary_emb" in hf_name:
            continue
        new = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ConvertError(f"tensor {hf_name} has no {spec.gguf_arch} GGUF name")
        dtype = np.dtype(np.float32 if tensor.ndim == 1 or ftype == "F32" else np.float16)
        plan.append((new, hf_name, tensor, dtype))
    return plan


def write_gguf(
    model: Any,
    spec: ArchSpec,
    out: Path,
    ftype: str,
    add_vocab: Callable[[gguf.GGUFWriter], None],
    metadata: dict[str, Any],
    on_tensor: Callable[[int, int], None] | None = None,
) -> int:
    """Write ``model`` to ``out`` as F16 or F32 GGUF; returns the number of parameters written."""
    if ftype not in _FILE_TYPES:
        raise ConvertError(f"the exporter writes F32 or F16; {ftype} comes from quantizing")
    writer = gguf.GGUFWriter(out, spec.gguf_arch)
    try:
        for key, value in metadata.items():
            if isinstance(value, bool):
                writer.add_bool(key, value)
            elif isinstance(value, int):
                writer.add_uint32(key, value)
            else:
                writer.add_string(key, str(value))
        add_hparams(writer, model.config, spec)
        writer.add_file_type(_FILE_TYPES[ftype])
        add_vocab(writer)
        plan = _plan(model, spec, ftype)
        for new, _, tensor, dtype in plan:
            writer.add_tensor_info(new, tuple(tensor.shape), dtype, tensor.numel() * dtype.itemsize)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        n_params = 0
        for i, (_, hf_name, tensor, dtype) in enumerate(plan):
            data = spec.transform(hf_name, tensor.detach().float().numpy(), model.config).astype(dtype, copy=False)
            writer.write_tensor_data(np.ascontiguousarray(data))
            n_params += data.size
            if on_tensor:
                on_tensor(i + 1, len(plan))
    finally:
        writer.close()
    return n_params
