"""The rewriter pool the server tests share: one per module."""

import pytest

from qr_edge import Rewriter

pytest.importorskip("fastapi")
from qr_edge.server import RewriterPool  # noqa: E402


@pytest.fixture(scope="module")
def pool():
    # One llama.cpp thread: with two, each token waits on a thread barrier, which stalls badly on a busy machine.
    return RewriterPool([Rewriter(n_ctx=2048, adapter=None, n_examples=0, n_threads=1)])
