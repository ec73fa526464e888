"""``qr-edge tui``: start the interactive session (the ``tui`` extra); textual is imported only here."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import MissingExtraError
from .rewrite import GpuOpt, ModelOpt, ThreadsOpt


def tui(
    model: ModelOpt = None,
    n_examples: Annotated[int, typer.Option("--n-examples", help="few-shot examples, 0-10")] = 4,
    threads: ThreadsOpt = None,
    gpu_layers: GpuOpt = 0,
) -> None:
    """Hold a conversation and watch each follow-up get rewritten (F-keys: role, legacy mode, prompt, settings)."""
    try:
        from ..tui.app import RewriteApp
    except ImportError as exc:
        raise MissingExtraError(f"qr-edge tui needs the tui extra ({exc.name} is missing): pip install 'qr-edge[tui]'") from None
    RewriteApp({"model": model, "n_examples": n_examples, "threads": threads, "gpu_layers": gpu_layers}).run()
