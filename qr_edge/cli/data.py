"""``qr-edge data``: build datasets (the seeded generator) and import public corpora into the dataset format."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..dataset import write_dataset
from ..errors import InputFileError
from ..importers import FORMATS, import_corpus
from ..synthetic import RewriteGenerator

console = Console(stderr=True)
app = typer.Typer(help="Datasets: generate synthetic data, import public corpora.", no_args_is_help=True)


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
) -> None:
    """Generate bilingual rewrite conversations from entity and template pools (deterministic for a seed)."""
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
) -> None:
    """Convert a public corpus into the dataset format, reporting every skipped line by reason."""
    result = import_corpus(fmt, file)
    write_dataset(result.records, out)
    console.print(f"wrote {len(result.records)} records to {out} ({_summary(result.records)})", highlight=False)
    for reason, count in result.skipped.most_common():
        console.print(f"skipped {count}: {escape(reason)}", highlight=False)
    for example in result.examples:
        console.print(f"  e.g. {escape(example)}", highlight=False)
