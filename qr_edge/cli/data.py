"""``qr-edge data``: build datasets (the seeded generator) and import public corpora into the dataset format."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..data.dataset import write_dataset
from ..data.importers import FORMATS, import_corpus
from ..data.synthetic import RewriteGenerator
from ..errors import InputFileError

console = Console(stderr=True)
app = typer.Typer(help="Datasets: generate synthetic data, import public corpora.", no_args_is_help=True)


ForceOpt = Annotated[bool, typer.Option("--force", help="replace an existing output")]


def _refuse_existing(path: Path, force: bool) -> None:
    """One rule for every command that writes a whole output: an existing one is replaced only with --force."""
    if force or not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    raise InputFileError(f"{path} exists; pass --force to replace it")


def _summary(records) -> str:
    counts = Counter((r.lang, r.label) for r in records)
    return ", ".join(f"{lang}/{label}: {n}" for (lang, label), n in sorted(counts.items()))


@app.command("generate")
def generate(
    out: Annotated[Path, typer.Option("--out", help="output JSONL")],
    n: Annotated[int, typer.Option("--n", help="number of records")] = 3000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    split: Annotated[str, typer.Option("--split", help="train, or golden (held-out entities)")] = "train",
    lang: Annotated[list[str], typer.Option("--lang", help="languages, repeat (default en and zh)")] = ["en", "zh"],  # noqa: B006
    force: ForceOpt = False,
) -> None:
    """Generate bilingual rewrite conversations from entity and template pools (deterministic for a seed)."""
    _refuse_existing(out, force)
    if split not in ("train", "golden"):
        raise InputFileError(f"--split must be train or golden, got {split!r}")
    bad = sorted(set(lang) - {"en", "zh"})
    if bad:
        raise InputFileError(f"unknown language(s) {bad}; use en and/or zh")
    records = RewriteGenerator(seed, split, tuple(lang)).generate(n)
    write_dataset(records, out)
    console.print(f"wrote {len(records)} records to {out} ({_summary(records)})", highlight=False)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="corpus file")],
    fmt: Annotated[str, typer.Option("--format", help=f"one of: {', '.join(FORMATS)}")],
    out: Annotated[Path, typer.Option("--out", help="output JSONL")],
    force: ForceOpt = False,
) -> None:
    """Convert a public corpus into the dataset format, reporting every skipped line by reason."""
    _refuse_existing(out, force)
    result = import_corpus(fmt, file)
    if not result.records:
        reasons = "; ".join(f"{n} {reason}" for reason, n in result.skipped.most_common(3)) or "the file is empty"
        raise InputFileError(f"no records in {file} read as --format {fmt} ({reasons}): is it another format?")
    write_dataset(result.records, out)
    console.print(f"wrote {len(result.records)} records to {out} ({_summary(result.records)})", highlight=False)
    for reason, count in result.skipped.most_common():
        console.print(f"skipped {count}: {escape(reason)}", highlight=False)
    for example in result.examples:
        console.print(f"  e.g. {escape(example)}", highlight=False)


BaseUrlOpt = Annotated[
    str, typer.Option("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1")
]
TeacherModelOpt = Annotated[str, typer.Option("--model", help="teacher model name as the server knows it")]
KeyEnvOpt = Annotated[
    str, typer.Option("--api-key-env", help="environment variable holding the API key (never printed)")
]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", help="requests in flight at once")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", help="longest teacher answer, in tokens")]


def _teacher(base_url: str, model: str, api_key_env: str, concurrency: int, max_tokens: int):
    from ..data.teacher import Teacher, TeacherConfig

    config = TeacherConfig(
        base_url=base_url, model=model, api_key_env=api_key_env, concurrency=concurrency, max_tokens=max_tokens
    )
    return Teacher(config)


def _progress(total: int, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    task = progress.add_task(label, total=total)
    return progress, lambda: progress.advance(task)


def _finish(stats, out: Path) -> None:
    rejected = ", ".join(f"{k}: {v}" for k, v in stats.rejected.items()) or "none"
    console.print(
        f"{stats.stage}: {stats.written} written to {out}, {stats.skipped_existing} already there, "
        f"{stats.malformed} malformed, "
        f"{stats.refined} refined, rejected: {rejected}; failed requests: {stats.failed}; usage: {stats.usage}",
        highlight=False,
    )
    if stats.failed:
        raise InputFileError(
            f"{stats.failed} requests failed (is the server reachable?); rerun the same command to resume"
        )


@app.command("synth")
def synth_command(
    out: Annotated[Path, typer.Option("--out", help="output JSONL (appended; a rerun resumes)")],
    base_url: BaseUrlOpt,
    model: TeacherModelOpt,
    n: Annotated[int, typer.Option("--n", help="samples to generate")] = 100,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    lang: Annotated[list[str], typer.Option("--lang")] = ["en", "zh"],  # noqa: B006
    topic: Annotated[list[str] | None, typer.Option("--topic", help="seed topics (repeat)")] = None,
    api_key_env: KeyEnvOpt = "OPENAI_API_KEY",
    concurrency: ConcurrencyOpt = 4,
    max_tokens: MaxTokensOpt = 768,
) -> None:
    """A teacher writes conversations, its reasoning and the rewrite, over a zh/en scenario mix."""
    from ..data.distill import synth

    teacher = _teacher(base_url, model, api_key_env, concurrency, max_tokens)
    progress, advance = _progress(n, "synth")
    with progress:
        stats = synth(teacher, out, n, seed, tuple(lang), topic, on_done=advance)
    _finish(stats, out)


@app.command("judge")
def judge_command(
    source: Annotated[Path, typer.Option("--in", help="records to judge (dataset JSONL)")],
    out: Annotated[Path, typer.Option("--out", help="kept records (appended; rejects go to OUT.rejected.jsonl)")],
    base_url: BaseUrlOpt,
    model: TeacherModelOpt,
    threshold: Annotated[int, typer.Option("--threshold", help="keep when every score is at least this (1-5)")] = 4,
    refine: Annotated[
        bool, typer.Option("--refine/--no-refine", help="correct and re-judge samples one point below")
    ] = True,
    api_key_env: KeyEnvOpt = "OPENAI_API_KEY",
    concurrency: ConcurrencyOpt = 4,
    max_tokens: MaxTokensOpt = 768,
) -> None:
    """Deterministic checks, then 1-5 judge scores with a rationale; filter and refine."""
    from ..data.dataset import read_dataset
    from ..data.distill import judge

    teacher = _teacher(base_url, model, api_key_env, concurrency, max_tokens)
    progress, advance = _progress(len(read_dataset(source)), "judge")
    with progress:
        stats = judge(teacher, source, out, threshold, refine, on_done=advance)
    _finish(stats, out)


@app.command("build")
def build_command(
    inputs: Annotated[list[Path], typer.Argument(help="judged (or any) dataset JSONL files")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="folder for train.jsonl, dev.jsonl, card.json, card.md")],
    golden: Annotated[Path | None, typer.Option("--golden", help="golden records to mix into train")] = None,
    golden_ratio: Annotated[
        float, typer.Option("--golden-ratio", help="share of golden records in the final train split")
    ] = 0.1,
    dev_ratio: Annotated[float, typer.Option("--dev-ratio")] = 0.1,
    near: Annotated[float, typer.Option("--near", help="MinHash Jaccard threshold for near duplicates")] = 0.85,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Deduplicate (exact + MinHash), split train/dev, mix in the golden set, write a data card."""
    from ..data.build import build

    card = build(inputs, out_dir, golden, golden_ratio, dev_ratio, near, seed)
    console.print(card.markdown(), highlight=False, markup=False)


@app.command("mix")
def mix_command(
    recipe: Annotated[Path, typer.Option("--recipe", help="TOML recipe (see recipes/default.toml)")],
    out: Annotated[Path, typer.Option("--out", help="folder for train.jsonl, dev-*.jsonl, test-*.jsonl, card.json")],
    force: ForceOpt = False,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="folder holding the corpus files (default: the paths the recipe gives)"),
    ] = None,
) -> None:
    """Build a training mix and held-out dev/test splits per style from public corpora and the generators (seeded)."""
    from rich.table import Table

    from ..data.mix import build_mix

    _refuse_existing(out, force)

    card = build_mix(recipe, out, data_dir)
    table = Table(title=f"{out} (recipe sha256 {card.recipe_sha256[:12]})")
    for col in ("file", "records", "labels", "sha256"):
        table.add_column(col)
    for name, info in card.files.items():
        labels = ", ".join(f"{k} {v}" for k, v in sorted(info["labels"].items()))
        table.add_row(name, str(info["records"]), labels, info["sha256"][:12])
    Console().print(table)
