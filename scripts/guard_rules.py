"""How many model outputs each guard rule rejects, and how many of those were right, before and after the
length rule learnt to read the conversation and the unsupported-content bar went from 4 to 2.

Input: the per-case file of `qr-edge eval --cases` and the dataset files it ran on. "Right" means the raw
output equals a reference after normalisation (`evaluate.quality.matches_reference`). "Before" is the old length rule,
which allowed max(3 x query, query + 40) characters whatever the rewrite copied, and content of weight 4 found
nowhere in the conversation; "after" is the guard as it is, which does not count the Latin words a rewrite
copies from earlier turns and allows weight 2 (one English word, two Chinese bigrams).

    python scripts/guard_rules.py --cases build/eval/new-dev.cases.jsonl build/mix/dev-*.jsonl
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from qr_edge import LeakageGuard
from qr_edge.data.dataset import read_dataset
from qr_edge.evaluate.quality import CaseResult, matches_reference
from qr_edge.text import normalise


def rule(verdict) -> str:
    if verdict.accepted:
        return "accepted"
    if "characters" in verdict.reason:
        return "length"
    return verdict.decision.value.removeprefix("rejected_") + (
        f" ({verdict.reason})" if verdict.decision.value == "rejected_invalid" else ""
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, required=True)
    parser.add_argument("data", type=Path, nargs="+")
    args = parser.parse_args()
    records = {r.id: r for path in args.data for r in read_dataset(path)}
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
