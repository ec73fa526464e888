"""Qwen2 / Qwen2.5 (the target family): q/k/v carry biases, which map by name; no weight permutation."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import ArchSpec


def _identity(name: str, tensor: np.ndarray, config: Any) -> np.ndarray:
    return tensor


SPEC = ArchSpec(gguf_arch="qwen2", transform=_identity)
