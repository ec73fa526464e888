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
from qr_edge.evaluate.calibration import auroc, ece, is_right, isotonic
from qr_edge.evaluate.quality import CaseResult

CANDIDATES = ("mean_logprob", "min_logprob", "changed_mean_logprob", "changed_min_logprob")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, required=True, help="qr-edge eval --cases JSONL on dev")
    parser.add_argument("--adapter-dir", type=Path, help="the folder whose qr_edge.json gets the map")
    args = parser.parse_args()
    lines = args.cases.read_text(encoding="utf-8").splitlines()
    cases = [CaseResult.model_validate_json(line) for line in lines if line.strip()]
    cases = [c for c in cases if c.confidence_scores is not None]
    if len(cases) < 20:
        raise SystemExit(f"{args.cases}: {len(cases)} cases carry confidence scores; calibrating needs 20 or more")
    right = np.array([is_right(c) for c in cases])
    scores: list[ConfidenceScores] = [c.confidence_scores for c in cases]  # type: ignore[misc]
    print(f"{len(cases)} dev cases with scores, {right.mean():.1%} right ({RIGHT})")
    print("| score | AUROC |\n|---|---|")
    ranked = []
    for name in CANDIDATES:
        values = np.array([score_value(s, name) for s in scores])
        auc = auroc(values, right)
        ranked.append((-1.0 if auc is None else auc, name, values))
        print(f"| {name} | {'-' if auc is None else f'{auc:.3f}'} |")
    best_auc, best, values = max(ranked, key=lambda r: (r[0], r[1]))
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
