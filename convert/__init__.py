"""qr-edge's export pipeline (installed as ``qr_edge_convert``, behind the ``convert`` extra).

``convert(ConvertOptions(...))`` merges a peft DoRA/LoRA adapter into its base model, writes GGUF with
gguf-py, quantizes with llama.cpp's own quantizer and verifies logit parity; ``export_adapter`` writes a
LoRA adapter as a GGUF LoRA that llama.cpp applies at run time.
"""

from .errors import AdapterMismatchError, ConvertError, VerificationError
from .export import convert, output_paths
from .lora_export import export_adapter
from .quantize import QUANT_TYPES
from .report import AdapterExportReport, ConvertOptions, ConvertReport

__all__ = [
    "AdapterExportReport",
    "QUANT_TYPES",
    "AdapterMismatchError",
    "ConvertError",
    "ConvertOptions",
    "ConvertReport",
    "VerificationError",
    "convert",
    "export_adapter",
    "output_paths",
]
