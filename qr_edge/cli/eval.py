"""``qr-edge eval``: quality metrics on a dataset, as tables and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..atomic_file import check_target, write_text_atomic
from ..data.dataset import read_dataset
from ..errors import InputFileError
from ..evaluate.calibration import calibration_rows, tradeoff, write_plots
from ..evaluate.quality import EvalReport, MetricRow, bleu_scorer, evaluate_cases, metric_rows
from .options import (
    AdapterOpt,
    ExamplesOpt,
    GpuOpt,
    MinConfidenceOpt,
    ModelOpt,
    NCtxOpt,
    NExamplesOpt,
    ThreadsOpt,
    build_rewriter,
    rewriter_settings,
)

console = Console(width=max(Console().width, 132))  # tables stay readable in logs and pipes
err_console = Console(stderr=True)

QUALITY = [("exact_match", "EM"), ("bleu4", "BLEU-4"), ("rouge_l", "ROUGE-L")]
SAFETY = [
    ("unchanged_accuracy", "unchg acc"),
    ("rewrote_when_not_needed", "needless"),
    ("missing_context_safety", "miss-ctx"),
    ("leakage_rate", "leak"),
    ("unsupported_rate", "unsup"),
    ("guard_rejections", "rejects"),
]


def metrics_table(rows: list[MetricRow], columns: list[tuple[str, str]], title: str) -> Table:
    """One row per (system, slice); a dash where a metric has no case in that slice."""
    table = Table(title=title, title_justify="left")
    for header in ("system", "slice", "n", *(h for _, h in columns)):
        table.add_column(header, justify="left" if header in ("system", "slice") else "right", no_wrap=True)
    for row in rows:
        values = row.model_dump()
        cells = ["-" if values[k] is None else f"{values[k]:.3f}" for k, _ in columns]
        table.add_row(row.system, row.slice, str(row.n), *cells)
    return table


def eval_command(
    data: Annotated[
        list[Path],
        typer.Option("--data", help="dataset JSONL (messages, rewrite, label, lang); repeat for one slice per file"),
    ],
    baselines: Annotated[
        bool, typer.Option("--baselines", help="add never-rewrite and raw-model (no guard) rows")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="write the report as JSON")] = None,
    cases_out: Annotated[Path | None, typer.Option("--cases", help="write per-case outputs as JSONL")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="evaluate only the first N records of each file")] = None,
    plots: Annotated[
        Path | None,
        typer.Option("--plots", help="write reliability.svg and tradeoff.svg (confidence) into this folder"),
    ] = None,
    passages: Annotated[
        bool,
        typer.Option(
            "--passages",
            help="also rank each turn's canonical passage (CAsT-21/22, iKAT) with BM25: raw query, rewrite, "
            "the result's queries (fused), reference; MRR@10 and recall@1",
        ),
    ] = False,
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    examples: ExamplesOpt = None,
    n_examples: NExamplesOpt = None,
    n_ctx: NCtxOpt = 4096,
    threads: ThreadsOpt = None,
    gpu_layers: GpuOpt = 0,
    min_confidence: MinConfidenceOpt = None,
) -> None:
    """Exact match, BLEU-4, ROUGE-L, unchanged accuracy, missing-context safety, leakage and more."""
    for option, target in (("--out", out), ("--cases", cases_out)):
        if target is not None:  # refused now, not after the whole evaluation has run
            check_target(target, option)
    records, styles = [], {}
    for path in data:
        part = read_dataset(path)[:limit]
        records += part
        styles.update({r.id: path.stem for r in part} if len(data) > 1 else {})
    if passages:  # before any rewrite runs
        from ..evaluate.retrieval import PassageIndex

        if not any(r.passage for r in records):
            raise InputFileError("--passages: no record has a passage (CAsT-21/22 and iKAT records have them)")
        PassageIndex(["bm25s is installed"])
    settings = rewriter_settings(model, None, examples, n_examples, n_ctx, threads, gpu_layers, adapter, min_confidence)
    rw = build_rewriter(settings)
    with Progress(
        TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console
    ) as progress:
        task = progress.add_task("eval", total=len(records))
        cases = evaluate_cases(rw, records, on_case=lambda _: progress.advance(task), styles=styles)
    rows = metric_rows(cases, {r.id: r for r in records}, rw.examples)
    if not baselines:
        rows = [r for r in rows if r.system == "qr-edge"]
    report = EvalReport(model=rw.engine.name, cases=len(cases), rows=rows)
    if passages:
        from ..evaluate.retrieval import Rankings, fusion_sweep, retrieval_rows

        rankings = Rankings(cases, {r.id: r for r in records})
        report.retrieval = [r.model_dump() for r in retrieval_rows(rankings)]
        report.fusion = [p.model_dump() for p in fusion_sweep(rankings)]
    adapter_name = Path(rw.engine.adapters[rw.default_adapter].path).name if rw.default_adapter else "no adapter"
    title = (
        f"{', '.join(p.name for p in data)} on {rw.engine.name} + {adapter_name}, {len(rw.examples)} few-shot examples"
    )
    console.print(metrics_table(rows, QUALITY, f"quality: {title}"))
    console.print(
        metrics_table(
            rows,
            SAFETY,
            "safety (unchg acc: kept when no rewrite needed; needless: rewrote when it should not; "
            "miss-ctx: kept when the answer is missing; leak/unsup: share of outputs with example/unsupported content)",
        )
    )
    report.calibration = [r.model_dump() for r in calibration_rows(cases)]
    points = tradeoff(cases, bleu_scorer())
    report.tradeoff = [p.model_dump() for p in points]
    if report.calibration:
        table = Table(title="confidence: AUROC for right vs wrong, expected calibration error", title_justify="left")
        for header in ("slice", "n", "right", "AUROC", "ECE"):
            table.add_column(header, justify="left" if header == "slice" else "right", no_wrap=True)
        for r in report.calibration:
            auc = "-" if r["auroc"] is None else f"{r['auroc']:.3f}"
            table.add_row(r["slice"], str(r["n"]), f"{r['right']:.3f}", auc, f"{r['ece']:.3f}")
        console.print(table)
    if plots is not None:
        if not points:
            raise InputFileError("--plots: no result carries a confidence")
        for path in write_plots(cases, points, plots):
            err_console.print(f"wrote {path}", highlight=False)
    if report.retrieval:
        table = Table(title="retrieval: BM25 over the pooled passages, each turn's own to find", title_justify="left")
        for header in ("system", "slice", "n", "MRR@10", "recall@1"):
            table.add_column(header, justify="left" if header in ("system", "slice") else "right", no_wrap=True)
        for r in report.retrieval:
            table.add_row(r["system"], r["slice"], str(r["n"]), f"{r['mrr_at_10']:.3f}", f"{r['recall_at_1']:.3f}")
        console.print(table)
        sweep = Table(title="searching with rewrite + query below a confidence bar (queries_both_below)")
        for header in ("bar", "searched both", "MRR@10", "recall@1"):
            sweep.add_column(header, justify="right", no_wrap=True)
        for p in report.fusion:
            sweep.add_row(
                f"{p['both_below']:g}", f"{p['searched_both']:.3f}", f"{p['mrr_at_10']:.3f}", f"{p['recall_at_1']:.3f}"
            )
        console.print(sweep)
    if out is not None:
        write_text_atomic(out, report.model_dump_json(indent=2))
    if cases_out is not None:
        write_text_atomic(cases_out, "".join(c.model_dump_json() + "\n" for c in cases))
