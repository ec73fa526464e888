"""``qr-edge train``: DoRA/LoRA fine-tuning (needs the ``convert`` extra, which carries torch and peft)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .convert import _load_pipeline

console = Console()
err_console = Console(stderr=True)


def train(
    base: Annotated[str, typer.Option("--base", help="base model: a Hugging Face folder or a .gguf file")],
    data: Annotated[list[Path], typer.Option("--data", help="training JSONL in the dataset format (repeat to mix files)")],
    out: Annotated[Path, typer.Option("--out", help="adapter output folder")],
    eval: Annotated[Optional[Path], typer.Option("--eval", help="dev JSONL, evaluated after each epoch")] = None,
    epochs: Annotated[float, typer.Option("--epochs")] = 1.0,
    lr: Annotated[float, typer.Option("--lr")] = 3e-4,
    rank: Annotated[int, typer.Option("--rank")] = 16,
    alpha: Annotated[int, typer.Option("--alpha")] = 32,
    targets: Annotated[Optional[list[str]], typer.Option("--targets", help="modules to adapt (repeat); default: all linear layers")] = None,
    batch: Annotated[int, typer.Option("--batch")] = 8,
    max_len: Annotated[int, typer.Option("--max-len", help="tokens per example; older turns are dropped to fit")] = 384,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda")] = "auto",
    lora: Annotated[bool, typer.Option("--lora", help="plain LoRA instead of DoRA")] = False,
    qlora: Annotated[bool, typer.Option("--qlora", help="4-bit base through bitsandbytes (CUDA only)")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUT/checkpoint")] = False,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="stop after this many optimizer steps")] = None,
    gate_ratio: Annotated[float, typer.Option("--gate-ratio", help="share of records that also give gate yes/no examples")] = 0.25,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Fine-tune a DoRA adapter for rewriting and the gate questions, with the runtime's prompt format."""
    _load_pipeline()
    from qr_edge_convert.train import TrainOptions
    from qr_edge_convert.train import train as run_training

    options = TrainOptions(
        base=base, data=[str(d) for d in data], eval=str(eval) if eval else None, out=str(out), epochs=epochs, lr=lr,
        rank=rank, alpha=alpha, batch=batch, max_len=max_len, device=device, lora=lora, qlora=qlora, resume=resume,
        max_steps=max_steps, gate_ratio=gate_ratio, seed=seed, **({"targets": targets} if targets else {}),
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.3f}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console) as progress:
        report = run_training(options, progress=progress)
    if json_out:
        typer.echo(report.model_dump_json(indent=2))
        return
    console.print(f"adapter: {report.adapter} ({report.method}); {report.examples} examples, {report.steps} steps in "
                  f"{report.seconds:.0f} s ({report.steps_per_second:.3f} steps/s); loss {report.first_loss:.3f} -> {report.last_loss:.3f}")
    for ev in report.evals:
        console.print(json.dumps({k: v for k, v in ev.items() if k != "samples"}, ensure_ascii=False))
