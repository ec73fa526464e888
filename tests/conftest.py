"""Shared fixtures: the real embedded model, loaded once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from qr_edge import Rewriter  # noqa: E402

CONVERSATION = [
    {"role": "user", "content": "Which is faster for numeric code, NumPy or plain Python loops?"},
    {"role": "assistant", "content": "NumPy is usually much faster, because its loops run in compiled C."},
    {"role": "user", "content": "Why is it faster?"},
]


@pytest.fixture(scope="session")
def rewriter() -> Rewriter:
    """The bare embedded SmolLM2-135M (2-shot, no adapter) through the full pipeline; a small context keeps
    overflow tests quick."""
    return Rewriter(n_ctx=2048, n_examples=2, adapter=None)


@pytest.fixture(autouse=True)
def _no_model_env(monkeypatch):
    monkeypatch.delenv("QR_EDGE_MODEL", raising=False)
