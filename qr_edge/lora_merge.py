"""A GGUF LoRA adapter merged into its GGUF base, for the run copy of the embedded default.

llama.cpp applies a LoRA at run time as two extra small matrix products per linear layer and pass
(``W x + s * B (A x)``); on the embedded 135M model that costs about a fifth of a rewrite's time. Merging
``W + s * B A`` once gives the same model without that cost. gguf-py reads both files and writes the
merged one (merged weights in F32, everything else as stored, the base's metadata plus the adapter's
qr-edge keys); llama.cpp's own quantizer then brings it to the run type. No torch: this runs in the core
install.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

import numpy as np

from .chat_template import ARCH_TEMPLATES
from .errors import AdapterError
from .model_meta import META_BASE_NAME

#: Metadata keys the merged file gains: which adapter is in its weights.
META_MERGED_ADAPTER = "qr_edge.merged.adapter"
META_MERGED_ADAPTER_SIZE = "qr_edge.merged.adapter_size"


def copy_fields(reader: Any, writer: Any, skip: Collection[str] = (), prefix: str = "") -> None:
    """Every key of a ``GGUFReader`` (or those under ``prefix``) into a ``GGUFWriter`` as stored, but those the
    writer writes itself and ``skip``."""
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture" or name in skip or not name.startswith(prefix):
            continue
        sub_type = field.types[-1] if len(field.types) > 1 else None
        writer.add_key_value(name, field.contents(), field.types[0], sub_type=sub_type)


def merge_lora(base: str, adapter: str, out: str | os.PathLike[str]) -> int:
    """Write ``base`` with the LoRA ``adapter`` merged into its weights at ``out`` (merged tensors F32).

    Returns the number of merged tensors; raises ``AdapterError`` when the adapter does not fit the base.
    """
    from gguf import GGUFReader, GGUFWriter
    from gguf.quants import dequantize

    base_file, lora_file = GGUFReader(base), GGUFReader(adapter)
    if "adapter.lora.alpha" not in lora_file.fields:
        raise AdapterError(f"{adapter} is not a GGUF LoRA adapter (no adapter.lora.alpha)")
    alpha = float(lora_file.fields["adapter.lora.alpha"].contents())
    pairs = {t.name: t for t in lora_file.tensors}
    arch = base_file.fields["general.architecture"].contents()
    writer = GGUFWriter(out, arch)
    copy_fields(base_file, writer)
    # What the adapter records of its training (prompt format, examples, provenance) now describes this model, as
    # in ``qr-edge convert``'s merged exports: the file runs as a fine-tuned model on its own.
    for name, field in lora_file.fields.items():
        if name.startswith("qr_edge.") and not name.startswith("qr_edge.base."):
            writer.add_key_value(name, field.contents(), field.types[0])
    if "tokenizer.chat_template" not in base_file.fields and arch in ARCH_TEMPLATES:
        # a pretrained base without a template (Gemma 3 270M): the merged file records the turn format it was
        # trained in, so it renders right in any llama.cpp front end, not only in qr-edge
        writer.add_string("tokenizer.chat_template", ARCH_TEMPLATES[arch])
    writer.add_string(META_BASE_NAME, str(base_file.fields["general.name"].contents()))
    writer.add_string(META_MERGED_ADAPTER, os.path.basename(adapter))
    writer.add_uint64(META_MERGED_ADAPTER_SIZE, os.path.getsize(adapter))
    merged = 0
    for tensor in base_file.tensors:
        a, b = pairs.pop(f"{tensor.name}.lora_a", None), pairs.pop(f"{tensor.name}.lora_b", None)
        if a is None and b is None:
            writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
            continue
        if a is None or b is None:
            raise AdapterError(f"{adapter} has only one of lora_a/lora_b for {tensor.name}")
        weight = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        lora_a, lora_b = np.asarray(a.data, dtype=np.float32), np.asarray(b.data, dtype=np.float32)
        if lora_b.shape[1] != lora_a.shape[0] or (lora_b.shape[0], lora_a.shape[1]) != weight.shape:
            raise AdapterError(f"{adapter}: {tensor.name} is {weight.shape}, its LoRA {lora_b.shape} x {lora_a.shape}")
        # llama.cpp's scale for a LoRA applied at 1.0: alpha / rank
        writer.add_tensor(tensor.name, weight + (alpha / lora_a.shape[0]) * (lora_b @ lora_a))
        merged += 1
    if pairs:
        raise AdapterError(f"{adapter} has tensors for weights the base lacks: {', '.join(sorted(pairs)[:3])}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return merged
