"""qr-edge's export pipeline (installed as ``qr_edge_convert``, behind the ``convert`` extra).

``convert(ConvertOptions(...))`` merges a peft DoRA/LoRA adapter into its base model, writes GGUF with
gguf-py, quantizes with llama.cpp's own quantizer and verifies logit parity.
"""

from .errors import AdapterMismatchError, ConvertError, VerificationError
from .export import convert, output_paths
from .quantize import QUANT_TYPES
from .report import ConvertOptions, ConvertReport

__all__ = [
    "QUANT_TYPES",
    "AdapterMismatchError",
    "ConvertError",
    "ConvertOptions",
    "ConvertReport",
    "VerificationError",
    "convert",
    "output_paths",
]
