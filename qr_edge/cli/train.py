"""``qr-edge train``: DoRA/LoRA fine-tuning (needs the ``convert`` extra, which carries torch and peft)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..model_meta import TRAIN_PROMPT_FORMAT
from .convert import load_pipeline

console = Console()
err_console = Console(stderr=True)


def train(
    base: Annotated[str, typer.Option("--base", help="base model: a Hugging Face folder or a .gguf file")],
    data: Annotated[
        list[Path], typer.Option("--data", help="training JSONL in the dataset format (repeat to mix files)")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="adapter output folder (not needed with --benchmark)")
    ] = None,
    eval: Annotated[Path | None, typer.Option("--eval", help="dev JSONL, evaluated after each epoch")] = None,
    epochs: Annotated[float, typer.Option("--epochs")] = 1.0,
    lr: Annotated[float, typer.Option("--lr")] = 3e-4,
    rank: Annotated[int, typer.Option("--rank")] = 16,
    alpha: Annotated[int, typer.Option("--alpha")] = 32,
    targets: Annotated[
        list[str] | None, typer.Option("--targets", help="modules to adapt (repeat); default: all linear layers")
    ] = None,
    batch: Annotated[int, typer.Option("--batch")] = 8,
    max_len: Annotated[int, typer.Option("--max-len", help="tokens per example; older turns are dropped to fit")] = 384,
    device: Annotated[str, typer.Option("--device", help="auto (cuda where torch sees a GPU), cpu or cuda")] = "auto",
    qlora: Annotated[
        bool, typer.Option("--qlora", help="base in 4-bit NF4 through bitsandbytes, adapter on top (CUDA only)")
    ] = False,
    gradient_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", help="recompute activations in backward: less memory, slower")
    ] = False,
    lora: Annotated[bool, typer.Option("--lora", help="plain LoRA instead of DoRA")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUT/checkpoint")] = False,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="stop after this many optimizer steps")] = None,
    gate_ratio: Annotated[
        float, typer.Option("--gate-ratio", help="share of records that also give gate yes/no examples")
    ] = 0.25,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    prompt_format: Annotated[
        str,
        typer.Option(
            "--prompt-format", help="2: compact (adapters), 4: append-only (fewer new tokens a turn), 1: full task"
        ),
    ] = TRAIN_PROMPT_FORMAT,
    bf16: Annotated[
        str,
        typer.Option("--bf16", help="auto (where native: CUDA with bf16, a CPU with AVX512-BF16/AMX), on, off"),
    ] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", help="torch threads (default: all cores)")] = None,
    save_every: Annotated[int, typer.Option("--save-every", help="checkpoint every N steps")] = 50,
    eval_limit: Annotated[int, typer.Option("--eval-limit", help="dev records evaluated per epoch")] = 40,
    benchmark: Annotated[
        int | None,
        typer.Option("--benchmark", help="run N steps, print throughput and the projected time, save nothing"),
    ] = None,
    init_adapter: Annotated[
        Path | None,
        typer.Option("--init-adapter", help="a GGUF LoRA to continue from (e.g. the bundled adapter); needs --lora"),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Fine-tune a DoRA (or --lora) adapter for rewriting and the gate questions, with the runtime's prompt format."""
    if out is None and not benchmark:
        raise typer.BadParameter(
            "give the adapter's output folder (--benchmark alone saves nothing)", param_hint="--out"
        )
    load_pipeline()
    from qr_edge_convert.train import TrainOptions
    from qr_edge_convert.train import train as run_training

    options = TrainOptions(
        base=base,
        data=[str(d) for d in data],
        eval=str(eval) if eval else None,
        out=str(out) if out else None,
        epochs=epochs,
        lr=lr,
        rank=rank,
        alpha=alpha,
        batch=batch,
        max_len=max_len,
        device=device,
        lora=lora,
        resume=resume,
        max_steps=max_steps,
        gate_ratio=gate_ratio,
        seed=seed,
        prompt_format=prompt_format,
        bf16=bf16,
        threads=threads,
        save_every=save_every,
        eval_limit=eval_limit,
        benchmark=benchmark,
        init_adapter=str(init_adapter) if init_adapter else None,
        qlora=qlora,
        gradient_checkpointing=gradient_checkpointing,
        **({"targets": targets} if targets else {}),
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[rate]:.2f} ex/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console) as progress:
        report = run_training(options, progress=progress)
    if json_out:
        typer.echo(report.model_dump_json(indent=2))
        return
    machine = f"{report.threads} threads, bf16 {'on' if report.bf16 else 'off'}, CPU flags: {report.cpu_flags}"
    if report.device == "cuda":
        machine += f", CUDA{' QLoRA' if report.qlora else ''}, peak GPU memory {report.peak_gpu_memory_mb:.0f} MiB"
    if benchmark:
        console.print(
            f"{report.steps} steps: {report.examples_per_second:.2f} examples/s, "
            f"{report.tokens_per_second:.0f} tokens/s; "
            f"the whole run ({report.examples} examples) would take {report.projected_seconds / 60:.1f} min ({machine})"
        )
        return
    console.print(
        f"adapter: {report.adapter} ({report.method}); {report.examples_trained} of {report.examples} examples, "
        f"{report.steps} steps in "
        f"{report.seconds:.0f} s ({report.steps_per_second:.3f} steps/s); "
        f"loss {report.first_loss:.3f} -> {report.last_loss:.3f}"
    )
    for ev in report.evals:
        console.print(json.dumps({k: v for k, v in ev.items() if k != "samples"}, ensure_ascii=False))
