"""``qr-edge convert``: merge an adapter, export GGUF, quantize, verify (needs the ``convert`` extra)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import MissingExtraError

console = Console()
err_console = Console(stderr=True)


def load_pipeline():
    """Import the export pipeline and the libraries it needs, or say exactly what to install."""
    try:
        for module in ("torch", "transformers", "peft", "gguf", "qr_edge_convert"):
            importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"qr-edge convert needs the convert extra ({exc.name or exc} is missing): pip install 'qr-edge[convert]'"
        ) from None
    return importlib.import_module("qr_edge_convert")


def convert(
    base: Annotated[
        str, typer.Option("--base", help="base model: a Hugging Face folder, a .gguf file (dequantized), or a hub id")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="output .gguf; with several --quant types, NAME.TYPE.gguf beside it")
    ],
    adapter: Annotated[
        str | None, typer.Option("--adapter", help="peft DoRA/LoRA adapter folder; omit for a plain export")
    ] = None,
    quant: Annotated[
        list[str], typer.Option("--quant", help="output type(s), comma-separated: F16, Q8_0, Q5_K_M, Q4_K_M, ...")
    ] = ["Q4_K_M"],  # noqa: B006
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="check merge and GGUF logit parity, and the tokenizer")
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="overwrite existing outputs")] = False,
    name: Annotated[str | None, typer.Option("--name", help="general.name written into the GGUF")] = None,
    pre: Annotated[
        str | None, typer.Option("--pre", help="llama.cpp pre-tokenizer name, when it cannot be detected")
    ] = None,
    n_examples: Annotated[
        int | None, typer.Option("--n-examples", help="few-shot examples the runtime should use with this model")
    ] = None,
    adapter_only: Annotated[
        bool, typer.Option("--adapter-only", help="write the LoRA as a GGUF adapter for run time (no merge)")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Merge a DoRA/LoRA adapter into its base, export GGUF, quantize with llama.cpp, verify parity.

    With --adapter-only: write a LoRA adapter as a GGUF LoRA (llama.cpp applies it on the base at run time).
    """
    pipeline = load_pipeline()
    options = pipeline.ConvertOptions(
        base=base,
        adapter=adapter,
        out=str(out),
        quants=quant,
        verify=verify,
        force=force,
        name=name,
        pre_tokenizer=pre,
        n_examples=n_examples,
        adapter_only=adapter_only,
    )
    with Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as progress:
        run = pipeline.export_adapter if adapter_only else pipeline.convert
        report = run(options, progress=progress)
    if json_out:
        typer.echo(report.model_dump_json(indent=2))
    elif adapter_only:
        _print_adapter_report(report)
    else:
        _print_report(report)
    if not verify:
        err_console.print("[yellow]verification skipped (--no-verify)[/]")


def _print_adapter_report(report) -> None:
    console.print(f"adapter: {report.out} ({report.weights} weights, {report.bytes / 2**20:.1f} MiB)", highlight=False)
    if report.top1_agreement is not None:
        table = Table(title="base + GGUF adapter in llama.cpp vs the peft model in torch")
        for col in ("top-1 agreement", "mean KL", "max |Δlogit|", "positions"):
            table.add_column(col)
        table.add_row(
            f"{report.top1_agreement:.2%}",
            f"{report.mean_kl:.5f}",
            f"{report.max_abs_logit_diff:.3f}",
            str(report.positions),
        )
        console.print(table)
    for w in report.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)


def _print_report(report) -> None:
    files = Table(title="outputs")
    for col in ("type", "path", "size"):
        files.add_column(col)
    for f in report.outputs:
        files.add_row(f.quant, f.path, f"{f.bytes / 2**20:.1f} MiB")
    console.print(files)
    if report.parity:
        table = Table(title="verification against the merged HF model")
        for col in ("type", "top-1 (decisive)", "needs", "top-1 (all)", "mean KL", "max |Δlogit|", "tokenizer", "ok"):
            table.add_column(col)
        for r in report.parity:
            table.add_row(
                r.quant,
                f"{r.decisive_top1_agreement:.2%} of {r.decisive_positions}",
                f"{r.min_decisive_top1_agreement:.0%}",
                f"{r.top1_agreement:.2%} of {r.positions}",
                f"{r.mean_kl:.5f}",
                f"{r.max_abs_logit_diff:.3f}",
                f"{r.tokenizer_agreement:.0%}",
                "yes" if r.passed else "NO",
            )
        console.print(table)
    if report.merge_check:
        m = report.merge_check
        console.print(
            f"merge check: adapter vs merged top-1 {m.top1_agreement:.2%}, max |Δlogit| {m.max_abs_logit_diff:.2e}"
        )
    console.print(
        f"{report.architecture}, {report.parameters / 1e6:.1f}M parameters; stages (s): "
        + json.dumps(report.stage_seconds)
        + f"; peak RSS {report.peak_rss_mb:.0f} MiB",
        highlight=False,
    )
    for w in report.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
