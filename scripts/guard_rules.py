"""How many model outputs each guard rule rejects, and how many of those were right, before and after the
length rule learnt to read the conversation and the unsupported-content bar went from 4 to 2.

Input: the per-case file of `qr-edge eval --cases` and the dataset files it ran on. "Right" means the raw
output equals a reference after normalisation (`evaluate.quality.matches_reference`). "Before" is the old length rule,
which allowed max(3 x query, query + 40) characters whatever the rewrite copied, and content of weight 4 found
nowhere in the conversation; "after" is the guard as it is, which does not count the Latin words a rewrite
copies from earlier turns and allows weight 2 (one English word, two Chinese bigrams).

    python scripts/guard_rules.py --cases build/eval/new-dev.cases.jsonl build/mix/dev-*.jsonl

``--styles``: the guard as it is now re-applied to the raw outputs of an older eval's cases (the model's outputs do
not change with the guard, so no model runs): BLEU and queries kept unchanged per style, as the eval reported them
and as the guard would make them.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from qr_edge import Decision, LeakageGuard
from qr_edge.data.dataset import read_dataset
from qr_edge.evaluate.quality import CaseResult, bleu_scorer, matches_reference, references
from qr_edge.text import normalise


def rule(verdict) -> str:
    if verdict.decision == Decision.UNCHANGED:
        return "kept: adds nothing from the conversation"
    if verdict.accepted:
        return "accepted"
    if "characters" in verdict.reason:
        return "length"
    return verdict.decision.value.removeprefix("rejected_") + (
        f" ({verdict.reason})" if verdict.decision.value == "rejected_invalid" else ""
    )


def styles(cases: Path, records: dict) -> None:
    """Per style: BLEU and kept-unchanged of the eval's ``qr-edge`` outputs, then of the current guard's verdicts."""
    guard, bleu = LeakageGuard(), bleu_scorer()
    rows: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0, 0, 0, 0])
    for line in cases.read_text(encoding="utf-8").splitlines():
        case = CaseResult.model_validate_json(line)
        rec = records[case.id]
        before = after = case.outputs["qr-edge"]
        if case.decision in ("rewritten", "unchanged"):  # the guard's own verdicts; gate and errors stay as they were
            raw = case.outputs["raw"]
            after = raw if guard.check(raw, rec.messages).decision == Decision.REWRITTEN else rec.query
        b0, b1 = bleu(before, references(case), case.lang), bleu(after, references(case), case.lang)
        for key in ("all", case.style):
            row = rows[key]
            row[0] += 1
            row[1] += b0
            row[2] += b1
            row[3] += after != before
            if case.label == "unchanged":
                row[4] += 1
                row[5] += normalise(before) == normalise(case.query)
                row[6] += normalise(after) == normalise(case.query)
    print(f"The guard as it is on the raw outputs of {cases}\n")
    print("| style | n | BLEU as evaluated | BLEU, guard now | outputs that change | kept as evaluated | kept, now |")
    print("|---|---|---|---|---|---|---|")
    for key, (n, b0, b1, changed, need, k0, k1) in sorted(rows.items(), key=lambda kv: (kv[0] != "all", kv[0])):
        kept0, kept1 = (f"{k0}/{need}", f"{k1}/{need}") if need else ("-", "-")
        print(f"| {key} | {n} | {100 * b0 / n:.1f} | {100 * b1 / n:.1f} | {changed} | {kept0} | {kept1} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, required=True)
    parser.add_argument("--styles", action="store_true", help="BLEU and kept per style with the guard as it is now")
    parser.add_argument("data", type=Path, nargs="+")
    args = parser.parse_args()
    records = {r.id: r for path in args.data for r in read_dataset(path)}
    if args.styles:
        styles(args.cases, records)
        return
    guard = LeakageGuard()  # the fine-tuned default shows no few-shot examples
    old_guard = LeakageGuard(max_unsupported_weight=4)
    counts: dict[str, Counter] = {"before": Counter(), "after": Counter()}
    right: dict[str, Counter] = {"before": Counter(), "after": Counter()}
    outputs = 0
    for line in args.cases.read_text(encoding="utf-8").splitlines():
        case = CaseResult.model_validate_json(line)
        rec = records.get(case.id)
        raw = case.outputs["raw"]
        if rec is None or normalise(raw) == normalise(rec.query):
            continue
        outputs += 1
        ok = matches_reference(raw, case)
        after = rule(guard.check(raw, rec.messages))
        q = rec.query.strip()
        old_limit = max(guard.max_length_ratio * len(q), len(q) + guard.max_extra_chars)
        before = "length" if len(raw.strip()) > old_limit else rule(old_guard.check(raw, rec.messages))
        for when, name in (("before", before), ("after", after)):
            counts[when][name] += 1
            right[when][name] += ok
    names = sorted(set(counts["before"]) | set(counts["after"]), key=lambda n: (n == "accepted", n))
    print(f"{outputs} outputs that change the query ({args.cases})\n")
    print("| rule | rejected before | of them right | rejected after | of them right |")
    print("|---|---|---|---|---|")
    for name in names:
        b, a = counts["before"][name], counts["after"][name]
        print(f"| {name} | {b} | {right['before'][name]} | {a} | {right['after'][name]} |")


if __name__ == "__main__":
    main()
