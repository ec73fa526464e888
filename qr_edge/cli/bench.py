"""``qr-edge bench``: latency tables for qr-edge against the peer prompt and transformers, on this machine."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..atomic_file import check_target, write_text_atomic
from ..errors import InputFileError
from ..evaluate.bench import SYSTEMS, BenchRow, machine, run_bench
from ..model_source import resolve_model
from .options import AdapterOpt, GpuOpt, ModelOpt, NExamplesOpt, ThreadsOpt

console = Console(width=max(Console().width, 132))  # tables stay readable in logs and pipes
err_console = Console(stderr=True)
COLUMNS = [
    "system",
    "scenario",
    "rewrites",
    "p50_ms",
    "p95_ms",
    "mean_ms",
    "mean_prompt_tokens_evaluated",
    "mean_prompt_tokens_reused",
    "mean_new_turn_tokens",
    "follow_up_wrapping",
    "generated_tokens_per_s",
    "load_s",
    "peak_rss_mb",
    "floor_ms",
    "efficiency",
    "tokens_per_pass",
    "note",
]


def _fmt(value) -> str:
    return "-" if value is None else str(value)


def _ratio(theirs: float, ours: float) -> str:
    """ "2.1x faster" or, when qr-edge is the slower one, "1.4x slower" (never "0.7x faster")."""
    return f"{theirs / ours:.1f}x faster" if theirs >= ours else f"{ours / theirs:.1f}x slower"


def speedups(rows: list[BenchRow]) -> list[str]:
    """qr-edge's p50 speed-up over each other system, per scenario."""
    lines = []
    for scenario in sorted({r.scenario for r in rows}):
        ours = next((r for r in rows if r.system == "qr-edge" and r.scenario == scenario and r.rewrites), None)
        others = (r for r in rows if r.system not in ("qr-edge", "floor") and r.scenario == scenario and r.rewrites)
        for other in others:
            if ours:
                lines.append(
                    f"{scenario}: qr-edge is {_ratio(other.p50_ms, ours.p50_ms)} per rewrite (p50) and "
                    f"{_ratio(other.mean_ms, ours.mean_ms)} (mean) than {other.system}"
                )
    return lines


def markdown(rows: list[BenchRow], model: str, command: str) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(_fmt(getattr(r, c)) for c in COLUMNS) + " |\n" for r in rows)
    ratios = "".join(f"- {line}\n" for line in speedups(rows))
    ours = next((r.model_file for r in rows if r.system == "qr-edge" and r.model_file), Path(model).name)
    # out of the box qr-edge runs another file than the others: the run copy with the adapter merged in
    where = f"`{model}`" + (
        f"; qr-edge ran `{ours}`, its copy with the adapter merged in" if ours != Path(model).name else ""
    )
    return f"# Benchmarks\n\nMachine: {machine()}\n\nModel: {where}\n\nCommand: `{command}`\n\n{head}{body}\n{ratios}"


def bench(
    model: ModelOpt = None,
    turns: Annotated[int, typer.Option("--turns", help="user turns per conversation")] = 6,
    repeat: Annotated[int, typer.Option("--repeat", help="conversations per scenario")] = 3,
    systems: Annotated[
        list[str], typer.Option("--system", help="qr-edge, peer, transformers (repeat; default all)")
    ] = list(SYSTEMS),  # noqa: B006
    scenarios: Annotated[
        list[str], typer.Option("--scenario", help="stream, interleaved (repeat; default both)")
    ] = None,  # noqa: B006
    adapter: AdapterOpt = None,
    n_examples: NExamplesOpt = None,
    threads: ThreadsOpt = None,
    gpu_layers: GpuOpt = 0,
    out: Annotated[Path | None, typer.Option("--out", help="write rows as JSON")] = None,
    docs: Annotated[
        Path | None, typer.Option("--docs", help="write a markdown report (e.g. docs/benchmarks.md)")
    ] = None,
) -> None:
    """Rewrite latency (p50/p95), reused vs new prompt tokens, tokens/s, load time and peak RSS per system."""
    if scenarios is None:
        scenarios = ["stream", "interleaved"]
    bad = sorted(set(systems) - set(SYSTEMS)) + sorted(set(scenarios) - {"stream", "interleaved"})
    if bad:
        raise InputFileError(
            f"unknown system or scenario {bad}; systems: {', '.join(SYSTEMS)}; scenarios: stream, interleaved"
        )
    if turns < 2 or repeat < 1:
        raise InputFileError("--turns must be at least 2 and --repeat at least 1")
    for option, target in (("--out", out), ("--docs", docs)):
        if target is not None:  # refused now, not after minutes of benchmarking
            check_target(target, option)
    path = resolve_model(model)
    err_console.print(f"benchmarking {path} on {machine()}", highlight=False)
    rows = run_bench(
        model,  # None: qr-edge runs Rewriter() out of the box, the other systems the embedded base's run copy
        systems,
        scenarios,
        turns,
        repeat,
        {"n_examples": n_examples, "threads": threads, "gpu_layers": gpu_layers, "adapter": adapter},
    )
    table = Table(title="rewrite latency", title_justify="left")
    for col in (
        "system",
        "scenario",
        "n",
        "p50 ms",
        "p95 ms",
        "mean ms",
        "new tok",
        "reused tok",
        "turn tok",
        "wrap tok",
        "gen tok/s",
        "load s",
        "RSS MB",
        "floor ms",
        "efficiency",
        "tok/pass",
    ):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(
            r.system,
            r.scenario,
            str(r.rewrites),
            _fmt(r.p50_ms),
            _fmt(r.p95_ms),
            _fmt(r.mean_ms),
            _fmt(r.mean_prompt_tokens_evaluated),
            _fmt(r.mean_prompt_tokens_reused),
            _fmt(r.mean_new_turn_tokens),
            _fmt(r.follow_up_wrapping),
            _fmt(r.generated_tokens_per_s),
            _fmt(r.load_s),
            _fmt(r.peak_rss_mb),
            _fmt(r.floor_ms),
            _fmt(r.efficiency),
            _fmt(r.tokens_per_pass),
        )
    console.print(table)
    for r in rows:
        if r.note:
            console.print(f"{r.system}/{r.scenario}: {r.note}", highlight=False, markup=False)
    for line in speedups(rows):
        console.print(line, highlight=False)
    if out is not None:
        write_text_atomic(out, json.dumps([r.model_dump() for r in rows], indent=2))
    if docs is not None:
        command = "qr-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        write_text_atomic(docs, markdown(rows, path, command))
    failed = sorted({r.system for r in rows if r.failed})
    if failed:
        err_console.print(f"[red]failed: {', '.join(failed)}[/] (see the notes above)")
        raise typer.Exit(1)
