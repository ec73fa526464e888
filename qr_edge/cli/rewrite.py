"""``qr-edge rewrite``: one conversation, stdin, a JSONL batch, or legacy user-only queries."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ..batch import check_output, open_output, run_batch
from ..errors import InputFileError, InvalidConversationError, MissingExtraError
from ..messages import iter_batch, read_conversation
from ..result import RewriteResult
from ..rewriter import Rewriter
from .options import (
    AdapterOpt,
    ExamplesOpt,
    GpuOpt,
    HfFileOpt,
    MinConfidenceOpt,
    ModelOpt,
    NCtxOpt,
    NExamplesOpt,
    ThreadsOpt,
    build_rewriter,
    rewriter_settings,
)

console = Console()
err_console = Console(stderr=True)
#: Exit code of a batch in which some lines failed (every line is still written, failures as error records).
BATCH_LINES_FAILED = 1


class RateColumn(ProgressColumn):
    """Lines per second, rounded ("–" before the first line is timed, or on a finished --resume)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("– lines/s" if speed is None else f"{speed:.1f} lines/s")


def _print_result(result: RewriteResult) -> None:
    t = result.timings
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_row("[bold]query[/]", escape(result.query))
    table.add_row(
        "[bold]rewrite[/]", f"[green]{escape(result.rewrite)}[/]" if result.changed else escape(result.rewrite)
    )
    table.add_row("[bold]decision[/]", result.decision.value + (f" ({escape(result.reason)})" if result.reason else ""))
    if result.gate is not None:
        g = result.gate
        table.add_row(
            "[bold]gate[/]",
            f"needs rewrite p={g.needs_rewrite_p:.2f}"
            + (f", depends on answer p={g.depends_on_answer_p:.2f}" if g.depends_on_answer_p is not None else ""),
        )
    table.add_row(
        "[bold]timings[/]",
        f"{t.total_ms:.0f} ms; prompt {t.prompt_tokens} tokens ({t.prompt_tokens_reused} reused, "
        f"{t.prompt_tokens_evaluated} new); {t.generated_tokens} generated",
    )
    console.print(table, highlight=False)


def rewrite(
    conversation: Annotated[
        str | None,
        typer.Argument(help='conversation JSON file (a list of messages or {"messages": [...]}); - for stdin'),
    ] = None,
    queries: Annotated[
        list[str] | None,
        typer.Option("--queries", "-q", help="legacy: earlier user queries, the last one is rewritten (repeat)"),
    ] = None,
    input: Annotated[
        Path | None,
        typer.Option("--input", "-i", help='batch: JSONL, one {"messages": [...]} per line (optional "id")'),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="batch output JSONL (default: stdout)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="batch: continue an interrupted --output file")] = False,
    use_ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="batch on Ray Data (extra 'ray'): --input JSONL/Parquet file or folder, --output a new folder",
            rich_help_panel="Ray",
        ),
    ] = False,
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="Ray cluster: auto or ray://HOST:PORT (default: a local Ray)", rich_help_panel="Ray"
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Ray actors, one model each", rich_help_panel="Ray")
    ] = 1,
    cpus_per_actor: Annotated[
        float, typer.Option("--cpus-per-actor", min=0.1, help="CPUs Ray reserves per actor", rich_help_panel="Ray")
    ] = 1,
    output_format: Annotated[
        str, typer.Option("--output-format", help="with --ray: jsonl or parquet", rich_help_panel="Ray")
    ] = "jsonl",
    ship_files: Annotated[
        bool,
        typer.Option(
            "--ship-files",
            help="with --ray: send the model and adapter files to the nodes (else every node must read the path)",
            rich_help_panel="Ray",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    show_prompt: Annotated[
        bool, typer.Option("--show-prompt", help="also print the exact prompt sent to the model")
    ] = False,
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    hf_file: HfFileOpt = None,
    examples: ExamplesOpt = None,
    n_examples: NExamplesOpt = None,
    n_ctx: NCtxOpt = 4096,
    threads: ThreadsOpt = None,
    gpu_layers: GpuOpt = 0,
    min_confidence: MinConfidenceOpt = None,
) -> None:
    """Rewrite the last user query of a conversation into a standalone query."""
    sources = [s for s in (conversation is not None, bool(queries), input is not None) if s]
    if len(sources) != 1:
        raise InvalidConversationError("give exactly one of: a CONVERSATION file (or -), --queries, or --input")
    if output is not None and input is None:
        raise InvalidConversationError("--output goes with --input (batch mode)")
    if resume and output is None:
        raise InvalidConversationError("--resume needs --output FILE")
    settings = rewriter_settings(
        model, hf_file, examples, n_examples, n_ctx, threads, gpu_layers, adapter, min_confidence
    )
    if use_ray:
        if input is None or output is None or resume:
            raise InvalidConversationError("--ray needs --input and --output (a new folder), and has no --resume")
        if output_format not in ("jsonl", "parquet"):
            raise InvalidConversationError(f"--output-format {output_format!r}: give jsonl or parquet")
        raise typer.Exit(
            _run_ray(input, output, output_format, address, concurrency, cpus_per_actor, ship_files, settings)
        )
    if input is not None:
        _check_batch_input(input)
        if output is not None:
            check_output(output, resume)  # before loading the model
        rw = build_rewriter(settings)
        raise typer.Exit(_run_batch(rw, input, output, resume))
    messages = read_conversation(conversation) if conversation is not None else None
    rw = build_rewriter(settings)
    if messages is None:
        result = rw.rewrite_queries(queries or [])
        prompt_messages = None
    else:
        result = rw.rewrite(messages)
        prompt_messages = messages
    prompt = None
    if show_prompt:
        prompt = (
            rw.render_prompt(prompt_messages)
            if prompt_messages
            else rw.render_prompt([{"role": "user", "content": q} for q in queries or []])
        )
    if json_out:
        data = json.loads(result.to_json())
        if prompt is not None:
            data["prompt"] = prompt
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    if prompt is not None:  # raw: rich would wrap it at the terminal's width, and it would not be the exact prompt
        console.rule("prompt")
        console.file.write(prompt + "\n")
        console.file.flush()
        console.rule()
    _print_result(result)


def _run_ray(
    input: Path,
    output: Path,
    output_format: str,
    address: str | None,
    concurrency: int,
    cpus_per_actor: float,
    ship_files: bool,
    settings: dict,
) -> int:
    try:
        from ..scale import run_ray_batch
    except ImportError as exc:
        raise MissingExtraError(
            f"--ray needs the ray extra ({exc.name or exc} is missing): pip install 'qr-edge[ray]'"
        ) from None
    summary = run_ray_batch(
        str(input),
        output,
        output_format=output_format,
        address=address,
        concurrency=concurrency,
        num_cpus_per_actor=cpus_per_actor,
        ship_files=ship_files,
        **settings,
    )
    err_console.print(
        f"done {summary.rows} rows to {summary.output} in {summary.seconds:.0f} s: rewritten {summary.rewritten}, "
        f"unchanged {summary.unchanged}, errors {summary.errors}",
        highlight=False,
    )
    return BATCH_LINES_FAILED if summary.errors else 0


def _check_batch_input(path: Path) -> None:
    """The two mistakes a newcomer makes with --input, named before the model loads: a folder (that is --ray's
    input) and a single conversation file (that is the positional argument), instead of a JSONL file."""
    if path.is_dir():
        raise InputFileError(
            f"--input {path} is a folder: a folder of JSONL or Parquet files needs --ray; "
            "without it, give one JSONL file (one conversation per line)"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
        json.loads(next((line for line in head.splitlines() if line.strip()), b"null"))
    except OSError:
        return  # iter_batch reports it
    except (json.JSONDecodeError, UnicodeDecodeError):
        try:
            json.loads(head)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return  # bad lines of a JSONL file: each becomes an error record
        raise InputFileError(
            f"--input takes JSONL, one conversation per line; {path} is one JSON document: "
            f"rewrite a single conversation with `qr-edge rewrite {path}`"
        ) from None


def _run_batch(rw: Rewriter, input: Path, output: Path | None, resume: bool) -> int:
    """Stream results as they come; bad lines become error records. Exit code 1 when any line failed."""
    items = list(iter_batch(input))
    if output is None:
        out, skip = sys.stdout, 0
    else:
        out, skip = open_output(output, resume)
    columns = (
        TextColumn("rewriting"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    written = [min(skip, len(items))]

    def advance() -> None:
        written[0] += 1
        progress.advance(task)

    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task("rewrite", total=len(items), completed=written[0])
        try:
            summary = run_batch(lambda item: rw.rewrite(item.messages), items, out, skip, on_item=advance)
        except KeyboardInterrupt:
            progress.stop()
            where = f" to {output}; run the same command with --resume to continue" if output is not None else ""
            err_console.print(
                f"interrupted: {written[0]} of {len(items)} lines written{where}", highlight=False, soft_wrap=True
            )
            raise
        finally:
            if out is not sys.stdout:
                out.close()
    where = f" to {output}" if output is not None else ""
    err_console.print(
        f"done {summary.done}{where} ({summary.resumed} already there): rewritten {summary.rewritten}, "
        f"unchanged {summary.unchanged}, errors {summary.errors}"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in sorted(summary.error_types.items())) + ")" if summary.errors else ""
        ),
        highlight=False,
    )
    return BATCH_LINES_FAILED if summary.errors else 0
