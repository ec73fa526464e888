"""``qr-edge data build``: exact and near-duplicate removal, a train/dev split, the golden mix, and a data card."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..atomic_file import write_text_atomic
from ..errors import MissingExtraError
from ..text import normalise
from .dataset import RewriteRecord, read_dataset, write_dataset


class DataCard(BaseModel):
    inputs: list[str]
    stages: dict[str, Any]  # per input: the synth/judge stats found beside it
    loaded: int
    exact_duplicates: int
    near_duplicates: int
    train: int
    dev: int
    golden_added: int
    balance: dict[str, dict[str, int]]  # lang -> label -> count, in the final train split

    def markdown(self) -> str:
        lines = ["# Data card", "", f"Inputs: {', '.join(self.inputs)}", "", "| stage | count |", "|---|---|"]
        for name, stats in self.stages.items():
            for key in ("requested", "written", "malformed", "failed", "refined"):
                if key in stats:
                    lines.append(f"| {name}: {key} | {stats[key]} |")
            for reason, count in stats.get("rejected", {}).items():
                lines.append(f"| {name}: rejected ({reason}) | {count} |")
        lines += [
            f"| loaded | {self.loaded} |",
            f"| exact duplicates removed | {self.exact_duplicates} |",
            f"| near duplicates removed | {self.near_duplicates} |",
            f"| golden records mixed in | {self.golden_added} |",
            f"| final train | {self.train} |",
            f"| final dev | {self.dev} |",
            "",
            "| lang | label | count |",
            "|---|---|---|",
        ]
        for lang, labels in sorted(self.balance.items()):
            for label, count in sorted(labels.items()):
                lines.append(f"| {lang} | {label} | {count} |")
        return "\n".join(lines) + "\n"


def _key(record: RewriteRecord) -> str:
    return normalise(" ".join(m.content for m in record.messages) + " => " + record.rewrite)


def _shingles(text: str, k: int = 3) -> set[str]:
    return {text[i : i + k] for i in range(max(1, len(text) - k + 1))}


def near_duplicates(records: list[RewriteRecord], threshold: float = 0.85, seed: int = 0) -> set[int]:
    """Indexes of records whose character-shingle MinHash is close to an earlier record's (datasketch LSH)."""
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError:
        raise MissingExtraError("near-duplicate removal needs datasketch: pip install 'qr-edge[distill]'") from None
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    drop = set()
    for i, record in enumerate(records):
        mh = MinHash(num_perm=128, seed=seed)
        for s in _shingles(_key(record)):
            mh.update(s.encode("utf-8"))
        if lsh.query(mh):
            drop.add(i)
        else:
            lsh.insert(str(i), mh)
    return drop


def build(
    inputs: list[Path],
    out_dir: Path,
    golden: Path | None = None,
    golden_ratio: float = 0.1,
    dev_ratio: float = 0.1,
    near_threshold: float = 0.85,
    seed: int = 0,
) -> DataCard:
    stages = {}
    records: list[RewriteRecord] = []
    for path in inputs:
        records += read_dataset(path)
        stats = Path(f"{path}.stats.json")
        if stats.is_file():
            stages[path.name] = json.loads(stats.read_text())
    loaded = len(records)
    seen: set[str] = set()
    unique = []
    for r in records:
        if _key(r) not in seen:
            seen.add(_key(r))
            unique.append(r)
    exact = loaded - len(unique)
    drop = near_duplicates(unique, near_threshold, seed)
    kept = [r for i, r in enumerate(unique) if i not in drop]
    rng = random.Random(seed)
    rng.shuffle(kept)
    n_dev = int(len(kept) * dev_ratio)
    dev, train = kept[:n_dev], kept[n_dev:]
    added = 0
    if golden is not None and golden_ratio > 0:
        pool = read_dataset(golden)
        want = min(len(pool), round(len(train) * golden_ratio / max(1e-9, 1 - golden_ratio)))
        extra = rng.sample(pool, want)
        train += extra
        added = len(extra)
        rng.shuffle(train)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_dataset(train, out_dir / "train.jsonl")
    write_dataset(dev, out_dir / "dev.jsonl")
    balance: dict[str, Counter] = {}
    for r in train:
        balance.setdefault(r.lang, Counter())[r.label] += 1
    card = DataCard(
        inputs=[str(p) for p in inputs],
        stages=stages,
        loaded=loaded,
        exact_duplicates=exact,
        near_duplicates=len(drop),
        train=len(train),
        dev=len(dev),
        golden_added=added,
        balance={k: dict(v) for k, v in balance.items()},
    )
    write_text_atomic(out_dir / "card.json", card.model_dump_json(indent=2))
    write_text_atomic(out_dir / "card.md", card.markdown())
    return card
