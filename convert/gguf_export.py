"""Write a merged HF model to GGUF with gguf-py, streaming: one tensor converted and written at a time.

``GGUFWriter`` moves through explicit states: tensor infos are registered from shapes alone, then the
header, key/values and infos are written, then each tensor's data in the same order. The tensors may come
from a model in memory or one decoder layer at a time (``streaming.LayerwiseModel``).
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


def plan_of(model: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of an in-memory HF model, in its state-dict order."""
    return [(name, tuple(tensor.shape)) for name, tensor in model.state_dict().items()]


class GGUFStream:
    """A GGUF file written tensor by tensor: the infos of every tensor in ``plan`` (names and shapes alone) go
    first, then each tensor's data as ``write`` receives it, in plan order. The model is never copied as a whole.

    Tied output weights and rotary tables in the plan are skipped (llama.cpp reuses the embedding, computes rope)."""

    def __init__(
        self,
        out: Path,
        spec: ArchSpec,
        config: Any,
        ftype: str,
        plan: list[tuple[str, tuple[int, ...]]],
        add_vocab: Callable[[gguf.GGUFWriter], None],
        metadata: dict[str, Any],
        on_tensor: Callable[[int, int], None] | None = None,
    ) -> None:
        if ftype not in _FILE_TYPES:
            raise ConvertError(f"the exporter writes F32 or F16; {ftype} comes from quantizing")
        self.spec, self.config, self.on_tensor = spec, config, on_tensor
        name_map = gguf.get_tensor_name_map(_ARCH_ENUM[spec.gguf_arch], config.num_hidden_layers)
        tied = bool(getattr(config, "tie_word_embeddings", False))
        self.plan: list[tuple[str, str, tuple[int, ...], np.dtype]] = []
        for hf_name, shape in plan:
            if (tied and hf_name == "lm_head.weight") or "rotary_emb" in hf_name:
                continue
            new = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if new is None:
                raise ConvertError(f"tensor {hf_name} has no {spec.gguf_arch} GGUF name")
            dtype = np.dtype(np.float32 if len(shape) == 1 or ftype == "F32" else np.float16)
            self.plan.append((hf_name, new, shape, dtype))
        self.done = self.parameters = 0
        self.writer = gguf.GGUFWriter(out, spec.gguf_arch)
        try:
            for key, value in metadata.items():
                if isinstance(value, bool):
                    self.writer.add_bool(key, value)
                elif isinstance(value, int):
                    self.writer.add_uint32(key, value)
                else:
                    self.writer.add_string(key, str(value))
            add_hparams(self.writer, config, spec)
            self.writer.add_file_type(_FILE_TYPES[ftype])
            add_vocab(self.writer)
            for _, new, shape, dtype in self.plan:
                self.writer.add_tensor_info(new, shape, dtype, int(np.prod(shape)) * dtype.itemsize)
            self.writer.write_header_to_file()
            self.writer.write_kv_data_to_file()
            self.writer.write_ti_data_to_file()
        except BaseException:
            self.writer.close()
            raise

    def write(self, hf_name: str, tensor: np.ndarray) -> None:
        """The next tensor's data (float32, as in the HF model); a tensor the plan skips is ignored."""
        if self.done < len(self.plan) and self.plan[self.done][0] != hf_name:
            if any(name == hf_name for name, *_ in self.plan):
                raise ConvertError(f"tensor {hf_name} came out of order (expected {self.plan[self.done][0]})")
            return
        if self.done >= len(self.plan):
            return
        _, _, shape, dtype = self.plan[self.done]
        data = self.spec.transform(hf_name, np.asarray(tensor, dtype=np.float32), self.config).astype(dtype, copy=False)
        if tuple(data.shape) != tuple(shape):
            raise ConvertError(f"tensor {hf_name} has shape {data.shape}, planned {shape}")
        self.writer.write_tensor_data(np.ascontiguousarray(data))
        self.done += 1
        self.parameters += data.size
        if self.on_tensor:
            self.on_tensor(self.done, len(self.plan))

    def close(self) -> int:
        """Close the file; returns the number of parameters written (all of the plan, or an error)."""
        self.writer.close()
        if self.done != len(self.plan):
            raise ConvertError(f"{len(self.plan) - self.done} planned tensors were never written")
        return self.parameters

    def abort(self) -> None:
        self.writer.close()
