"""``qr-edge rewrite``: one conversation, stdin, a JSONL batch, or legacy user-only queries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..atomic_file import atomic_path
from ..errors import InvalidConversationError
from ..messages import iter_batch, read_conversation
from ..result import RewriteResult
from ..rewriter import Rewriter

console = Console()
err_console = Console(stderr=True)

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="GGUF file (default: $QR_EDGE_MODEL, else the embedded SmolLM2-135M)")]
HfFileOpt = Annotated[Optional[str], typer.Option("--hf-file", help="with --model REPO_ID: the GGUF file to fetch from a hub (needs network)")]
ExamplesOpt = Annotated[Optional[Path], typer.Option("--examples", help="few-shot examples JSONL (default: bundled zh+en set)")]
NExamplesOpt = Annotated[Optional[int], typer.Option("--n-examples", help="number of few-shot examples, 0-10")]
NCtxOpt = Annotated[int, typer.Option("--n-ctx", help="context window in tokens")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="CPU threads (default: llama.cpp's choice)")]
GpuOpt = Annotated[int, typer.Option("--gpu-layers", help="layers to offload to a GPU (-1: all)")]


def build_rewriter(
    model: Optional[str], hf_file: Optional[str], examples: Optional[Path], n_examples: Optional[int],
    n_ctx: int, threads: Optional[int], gpu_layers: int,
) -> Rewriter:
    return Rewriter(
        model, hf_file=hf_file, examples=examples, n_examples=n_examples, n_ctx=n_ctx, n_threads=threads, n_gpu_layers=gpu_layers
    )


def _print_result(result: RewriteResult) -> None:
    t = result.timings
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_row("[bold]query[/]", escape(result.query))
    table.add_row("[bold]rewrite[/]", f"[green]{escape(result.rewrite)}[/]" if result.changed else escape(result.rewrite))
    table.add_row("[bold]decision[/]", result.decision.value + (f" ({escape(result.reason)})" if result.reason else ""))
    if result.gate is not None:
        g = result.gate
        table.add_row("[bold]gate[/]", f"needs rewrite p={g.needs_rewrite_p:.2f}" + (
            f", depends on answer p={g.depends_on_answer_p:.2f}" if g.depends_on_answer_p is not None else ""))
    table.add_row(
        "[bold]timings[/]",
        f"{t.total_ms:.0f} ms; prompt {t.prompt_tokens} tokens ({t.prompt_tokens_reused} reused, "
        f"{t.prompt_tokens_evaluated} new); {t.generated_tokens} generated",
    )
    console.print(table, highlight=False)


def rewrite(
    conversation: Annotated[Optional[str], typer.Argument(help="conversation JSON file (a list of messages or {\"messages\": [...]}); - for stdin")] = None,
    queries: Annotated[Optional[list[str]], typer.Option("--queries", "-q", help="legacy: earlier user queries, the last one is rewritten (repeat)")] = None,
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="batch: JSONL, one {\"messages\": [...]} per line (optional \"id\")")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="batch output JSONL (default: stdout)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    show_prompt: Annotated[bool, typer.Option("--show-prompt", help="also print the exact prompt sent to the model")] = False,
    model: ModelOpt = None,
    hf_file: HfFileOpt = None,
    examples: ExamplesOpt = None,
    n_examples: NExamplesOpt = None,
    n_ctx: NCtxOpt = 4096,
    threads: ThreadsOpt = None,
    gpu_layers: GpuOpt = 0,
) -> None:
    """Rewrite the last user query of a conversation into a standalone query."""
    sources = [s for s in (conversation is not None, bool(queries), input is not None) if s]
    if len(sources) != 1:
        raise InvalidConversationError("give exactly one of: a CONVERSATION file (or -), --queries, or --input")
    if output is not None and input is None:
        raise InvalidConversationError("--output goes with --input (batch mode)")
    if input is not None:
        items = list(iter_batch(input))  # read and validate everything before loading the model
        rw = build_rewriter(model, hf_file, examples, n_examples, n_ctx, threads, gpu_layers)
        raise typer.Exit(_run_batch(rw, items, output))
    messages = read_conversation(conversation) if conversation is not None else None
    rw = build_rewriter(model, hf_file, examples, n_examples, n_ctx, threads, gpu_layers)
    if messages is None:
        result = rw.rewrite_queries(queries or [])
        prompt_messages = None
    else:
        result = rw.rewrite(messages)
        prompt_messages = messages
    prompt = None
    if show_prompt:
        prompt = rw.render_prompt(prompt_messages) if prompt_messages else rw.render_prompt([{"role": "user", "content": q} for q in queries or []])
    if json_out:
        data = json.loads(result.to_json())
        if prompt is not None:
            data["prompt"] = prompt
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    if prompt is not None:
        console.rule("prompt")
        console.print(prompt, markup=False, highlight=False)
        console.rule()
    _print_result(result)


def _run_batch(rw: Rewriter, items: list, output: Optional[Path]) -> int:
    """Rewrite every line in order; bad lines become error records. Returns the exit code (1 if any line failed)."""
    failed = 0
    lines: list[str] = []
    with Progress(
        TextColumn("rewriting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=False,
    ) as progress:
        task = progress.add_task("rewrite", total=len(items))
        for item in items:
            if item.error is not None:
                failed += 1
                lines.append(json.dumps({"id": item.id, "line": item.line, "error": item.error}, ensure_ascii=False))
            else:
                result = rw.rewrite(item.messages)
                result.id = item.id
                lines.append(result.to_json())
            progress.advance(task)
    text = "\n".join(lines) + ("\n" if lines else "")
    if output is None:
        typer.echo(text, nl=False)
    else:
        with atomic_path(output) as tmp:
            tmp.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {len(lines)} results to {output}" + (f"; {failed} lines had errors" if failed else ""))
    if failed:
        err_console.print(f"[red]{failed} of {len(items)} lines could not be rewritten (see their \"error\" records)[/]")
    return 1 if failed else 0
