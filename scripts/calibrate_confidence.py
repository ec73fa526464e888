"""Fit an adapter's confidence map on dev cases and record it in its qr_edge.json (`qr-edge convert` writes it into
the GGUF): a step of `make adapter`, recomputed with every new adapter, never a constant in code.

Input: the cases JSONL of `qr-edge eval --cases` on the dev splits, run with that adapter. Every candidate score
(`confidence.ConfidenceScores`) is ranked by how well it tells right from wrong rewrites (AUROC; "right" is
`confidence.RIGHT`); the best one is mapped to P(right) by isotonic regression (pool-adjacent-violators), whose
blocks become the map's breakpoints.

    qr-edge eval --data build/mix/dev-... --cases build/eval/v2-dev.cases.jsonl ...
    python scripts/calibrate_confidence.py --cases build/eval/v2-dev.cases.jsonl --adapter-dir build/default-lora-v2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from qr_edge.atomic_file import write_text_atomic
from qr_edge.confidence import RIGHT, Calibration, ConfidenceScores, score_value
from qr_edge.text import normalise

CANDIDATES = ("mean_logprob", "min_logprob", "changed_mean_logprob", "changed_min_logprob")
BINS = 10


def is_right(case: dict) -> bool:
    refs = case.get("references") or [case["reference"]]
    return normalise(case["outputs"]["qr-edge"]) in {normalise(r) for r in refs}


def auroc(scores: np.ndarray, right: np.ndarray) -> float:
    """P(a right case scores above a wrong one), ties counting half (the Mann-Whitney statistic)."""
    pos, neg = scores[right], scores[~right]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def isotonic(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators on (x, y) sorted by x: one breakpoint per block (its mean x, its mean y)."""
    order = np.argsort(x, kind="mergesort")
    blocks: list[list[float]] = []  # [sum x, sum y, count]
    for xi, yi in zip(x[order], y[order], strict=True):
        blocks.append([float(xi), float(yi), 1.0])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            last = blocks.pop()
            for k in range(3):
                blocks[-1][k] += last[k]
    return [b[0] / b[2] for b in blocks], [round(b[1] / b[2], 4) for b in blocks]


def ece(prob: np.ndarray, right: np.ndarray) -> float:
    """Expected calibration error over BINS equal-width bins."""
    total = 0.0
    for lo in np.linspace(0, 1, BINS, endpoint=False):
        inside = (prob >= lo) & (prob < lo + 1 / BINS) if lo + 1 / BINS < 1 else (prob >= lo)
        if inside.any():
            total += inside.sum() / len(prob) * abs(prob[inside].mean() - right[inside].mean())
    return float(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, required=True, help="qr-edge eval --cases JSONL on dev")
    parser.add_argument("--adapter-dir", type=Path, help="the folder whose qr_edge.json gets the map")
    args = parser.parse_args()
    cases = [json.loads(line) for line in args.cases.read_text(encoding="utf-8").splitlines() if line.strip()]
    cases = [c for c in cases if c.get("confidence_scores")]
    if len(cases) < 20:
        raise SystemExit(f"{args.cases}: {len(cases)} cases carry confidence scores; calibrating needs 20 or more")
    right = np.array([is_right(c) for c in cases])
    scores = [ConfidenceScores.model_validate(c["confidence_scores"]) for c in cases]
    print(f"{len(cases)} dev cases with scores, {right.mean():.1%} right ({RIGHT})")
    print("| score | AUROC |\n|---|---|")
    ranked = []
    for name in CANDIDATES:
        values = np.array([score_value(s, name) for s in scores])
        ranked.append((auroc(values, right), name, values))
        print(f"| {name} | {ranked[-1][0]:.3f} |")
    best_auc, best, values = max(ranked, key=lambda r: (np.nan_to_num(r[0]), r[1]))
    x, y = isotonic(values, right.astype(float))
    calibration = Calibration(score=best, x=[round(v, 5) for v in x], y=y, n=len(cases))
    prob = np.array([calibration(s) for s in scores])
    print(f"chosen: {best} (AUROC {best_auc:.3f}); {len(x)} breakpoints; dev ECE {ece(prob, right):.3f} (in sample)")
    if args.adapter_dir:
        meta_path = args.adapter_dir / "qr_edge.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["confidence_calibration"] = calibration.model_dump()
        write_text_atomic(meta_path, json.dumps(meta, indent=2, ensure_ascii=False))
        print(f"confidence_calibration -> {meta_path}")


if __name__ == "__main__":
    main()
