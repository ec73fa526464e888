"""``qr-edge tui``: start the interactive session (the ``tui`` extra); textual is imported only here."""

from __future__ import annotations

from ..errors import MissingExtraError
from .options import AdapterOpt, GpuOpt, ModelOpt, NExamplesOpt, ThreadsOpt


def tui(
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    n_examples: NExamplesOpt = None,
    threads: ThreadsOpt = None,
    gpu_layers: GpuOpt = 0,
) -> None:
    """Hold a conversation and watch each follow-up get rewritten (F-keys: role, legacy mode, prompt, settings)."""
    try:
        from ..tui.app import RewriteApp
    except ImportError as exc:
        raise MissingExtraError(
            f"qr-edge tui needs the tui extra ({exc.name} is missing): pip install 'qr-edge[tui]'"
        ) from None
    settings = {
        "model": model,
        "adapter": adapter,
        "n_examples": n_examples,
        "threads": threads,
        "gpu_layers": gpu_layers,
    }
    RewriteApp(settings).run()
