"""An eval's cases at another ``min_confidence`` bar, without running the model again: the report's rows.

A bar only chooses, per case, between the rewrite and the query (the model call is the same), so a `qr-edge eval
--min-confidence 0 --cases` run can be replayed at any bar: every rewrite whose confidence is under it becomes its
query, as `Rewriter(min_confidence=...)` would return. At bar 0 the rows equal the eval's own, field for field.
``--limit`` keeps the first N cases of each style (e.g. the first 30 per dev file, as an older table used).
``--map ADAPTER.gguf`` scores every case again with the confidence map that adapter records (from the candidate
scores the cases keep), for cases evaluated before its map was refitted (the Makefile's dev eval runs before the map
is fitted on it); without ``--bar`` the bar is the one that map records, as ``Rewriter()`` applies it.

    python scripts/replay_bar.py --cases build/eval/v6-test.cases.jsonl --data build/mix/test-*.jsonl \
        --bar 0.64 --out build/eval/v6-test-bar.json
    python scripts/compare_evals.py build/eval/v6-test.json build/eval/v6-test-bar.json
    python scripts/replay_bar.py --cases build/eval/v6as-test.cases.jsonl --data build/mix/test-en-answer-search.jsonl \
        --bar 0.64 --passages --out build/eval/v6as-test-bar.json      # what searching with res.queries finds
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from qr_edge import Decision
from qr_edge.atomic_file import write_text_atomic
from qr_edge.confidence import Calibration, file_calibration, search_queries
from qr_edge.data.dataset import read_dataset
from qr_edge.evaluate.quality import CaseResult, metric_rows


def rescored(cases: list[CaseResult], calibration: Calibration) -> list[CaseResult]:
    """The cases with the confidence an adapter's map gives their scores."""
    return [
        c.model_copy(update={"confidence": calibration(c.confidence_scores)}) if c.confidence_scores else c
        for c in cases
    ]


def replay(cases: list[CaseResult], bar: float) -> list[CaseResult]:
    """The cases as the bar would have answered them."""
    out = []
    for c in cases:
        if c.confidence is not None and c.confidence < bar:
            held_back = c.outputs["qr-edge"]
            c = c.model_copy(
                update={
                    "outputs": {**c.outputs, "qr-edge": c.query},
                    "decision": Decision.KEPT_LOW_CONFIDENCE.value,
                    "queries": search_queries(c.query, c.query, c.confidence, held_back=held_back),
                }
            )
        out.append(c)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, required=True, help="qr-edge eval --cases JSONL (run with the bar off)")
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="the dataset files those cases came from")
    parser.add_argument(
        "--bar", type=float, help="min_confidence to replay (0: as evaluated; default: the --map adapter's own bar)"
    )
    parser.add_argument("--limit", type=int, help="the first N cases of each style only")
    parser.add_argument("--map", type=Path, help="score the cases again with this GGUF adapter's confidence map")
    parser.add_argument(
        "--passages", action="store_true", help="also the retrieval rows (as `qr-edge eval --passages`)"
    )
    parser.add_argument("--out", type=Path, required=True, help="report JSON (rows) for scripts/compare_evals.py")
    args = parser.parse_args()
    lines = args.cases.read_text(encoding="utf-8").splitlines()
    cases = [CaseResult.model_validate_json(line) for line in lines if line.strip()]
    calibration = None
    if args.map:
        try:
            calibration = file_calibration(args.map)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--map {args.map}: not a readable GGUF adapter ({exc})") from None
        if calibration is None:
            raise SystemExit(f"{args.map} records no confidence map this runtime reads")
        cases = rescored(cases, calibration)
    if args.bar is None:
        if calibration is None or calibration.min_confidence is None:
            parser.error("--bar is needed unless --map names an adapter that records its bar")
        args.bar = calibration.min_confidence
    if args.limit:
        seen: Counter[str] = Counter()
        kept = []
        for c in cases:
            seen[c.style] += 1
            if seen[c.style] <= args.limit:
                kept.append(c)
        cases = kept
    conversations = {r.id: r for path in args.data for r in read_dataset(path)}
    missing = [c.id for c in cases if c.id not in conversations]
    if missing:
        raise SystemExit(f"{len(missing)} cases are in none of the --data files (first: {missing[0]})")
    replayed = replay(cases, args.bar)
    rows = metric_rows(replayed, conversations)
    report = {"bar": args.bar, "n": len(cases), "rows": [r.model_dump() for r in rows]}
    if args.passages:
        from qr_edge.evaluate.retrieval import Rankings, retrieval_rows

        report["retrieval"] = [r.model_dump() for r in retrieval_rows(Rankings(replayed, conversations))]
        for r in report["retrieval"]:
            if r["slice"] == "all":
                print(
                    f"{r['system']:16s} MRR@10 {r['mrr_at_10']:.3f}  recall@1 {r['recall_at_1']:.3f}  ({r['n']} turns)"
                )
    write_text_atomic(args.out, json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    overall = next(r for r in rows if r.system == "qr-edge" and r.slice == "all")
    print(f"{len(cases)} cases at bar {args.bar:g}: BLEU {100 * overall.bleu4:.1f}, EM {100 * overall.exact_match:.1f}")


if __name__ == "__main__":
    main()
