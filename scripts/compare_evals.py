"""Per-style table of two `qr-edge eval --out` reports on the same files: never-rewrite, before, after.

    python scripts/compare_evals.py build/eval/old-test.json build/eval/new-test.json

BLEU-4 x100 (sentence BLEU averaged over cases, every reference of a case counted), exact match, the share of
queries that need no rewrite left unchanged ("kept"), and the share of outputs with content found nowhere in
the conversation ("unsupp.").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(path: Path) -> dict[tuple[str, str], dict]:
    report = json.loads(path.read_text(encoding="utf-8"))
    return {(r["system"], r["slice"]): r for r in report["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    before, after = rows(args.before), rows(args.after)
    slices = [s for (system, s) in after if system == "qr-edge"]
    print(
        "| style | n | never-rewrite BLEU | before BLEU | after BLEU | after Δ vs never | EM before → after "
        "| kept before → after | unsupp. before → after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}"

    def keep(row: dict) -> float | None:
        needless = row.get("rewrote_when_not_needed")
        return None if needless is None else 1 - needless

    for name in slices:
        new, old, never = after[("qr-edge", name)], before.get(("qr-edge", name)), after[("never-rewrite", name)]
        old = old or {}
        print(
            f"| {name.removeprefix('test-').removeprefix('dev-')} | {new['n']} | {pct(never['bleu4'])} "
            f"| {pct(old.get('bleu4'))} | **{pct(new['bleu4'])}** | {100 * (new['bleu4'] - never['bleu4']):+.1f} "
            f"| {pct(old.get('exact_match'))} → {pct(new['exact_match'])} "
            f"| {pct(keep(old) if old else None)} → {pct(keep(new))} "
            f"| {pct(old.get('unsupported_rate'))} → {pct(new['unsupported_rate'])} |"
        )


if __name__ == "__main__":
    main()
