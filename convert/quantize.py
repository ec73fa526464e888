"""Quantization through llama.cpp's own quantizer (``llama_model_quantize``): K-quants included."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import ConvertError

#: Output types: F32/F16 are written directly by the exporter, the rest by llama.cpp from the F16 file.
QUANT_TYPES = (
    "F32",
    "F16",
    "BF16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_0",
    "Q4_K_M",
    "Q4_K_S",
    "Q4_0",
    "Q4_1",
    "Q3_K_M",
    "Q2_K",
)
DIRECT_TYPES = ("F32", "F16")


def parse_quants(values: Iterable[str]) -> list[str]:
    """``["F16,Q8_0", "Q4_K_M"]`` -> ``["F16", "Q8_0", "Q4_K_M"]``; an unknown name is an error listing valid ones."""
    out: list[str] = []
    for value in values:
        for part in str(value).split(","):
            q = part.strip().upper()
            if not q:
                continue
            if q not in QUANT_TYPES:
                raise ConvertError(f"unknown quantization {part.strip()!r}; valid: {', '.join(QUANT_TYPES)}")
            if q not in out:
                out.append(q)
    if not out:
        raise ConvertError(f"no quantization given; valid: {', '.join(QUANT_TYPES)}")
    return out


def quantize(src: Path, dst: Path, qtype: str, threads: int | None = None) -> None:
    import llama_cpp

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp logs every tensor otherwise
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}")
    params.nthread = threads or os.cpu_count() or 1
    with tempfile.TemporaryFile(mode="w+b") as log, _stderr_to(log):  # llama.cpp prints per-tensor lines on fd 2
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
        log.seek(0)
        tail = log.read()[-2000:].decode("utf-8", errors="replace")
    if rc != 0:
        raise ConvertError(f"llama.cpp failed to quantize {src.name} to {qtype} (code {rc}): {tail}")


@contextlib.contextmanager
def _stderr_to(handle) -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(handle.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
