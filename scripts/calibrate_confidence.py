"""Fit an adapter's confidence map on dev cases and record it in its qr_edge.json (`qr-edge convert` writes it into
the GGUF): a step of `make adapter`, recomputed with every new adapter, never a constant in code.

Input: the cases JSONL of `qr-edge eval --cases` on the dev splits, run with that adapter. Every candidate score
(`confidence.ConfidenceScores`) is ranked by how well it tells right from wrong rewrites (AUROC; "right" is
`confidence.RIGHT`); the best one is mapped to P(right) by the map (isotonic, Platt or their mean) whose
5-fold cross-validated expected calibration error on the dev cases is lowest, so the choice predicts cases the map
never saw; its breakpoints are what the adapter records.

    qr-edge eval --data build/mix/dev-... --cases build/eval/v2-dev.cases.jsonl ...
    python scripts/calibrate_confidence.py --cases build/eval/v2-dev.cases.jsonl --adapter-dir build/default-lora-v2
    python scripts/calibrate_confidence.py --cases DEV.cases.jsonl --check TEST.cases.jsonl --plots docs/confidence
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from qr_edge.atomic_file import write_text_atomic
from qr_edge.confidence import RIGHT, Calibration, ConfidenceScores, score_value
from qr_edge.evaluate.calibration import (
    MAP_METHODS,
    auroc,
    calibration_rows,
    cross_validated_ece,
    ece,
    fit_map,
    is_right,
    tradeoff,
    write_plots,
)
from qr_edge.evaluate.quality import CaseResult, bleu_scorer

CANDIDATES = ("mean_logprob", "min_logprob", "changed_mean_logprob", "changed_min_logprob")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, required=True, help="qr-edge eval --cases JSONL on dev")
    parser.add_argument("--adapter-dir", type=Path, help="the folder whose qr_edge.json gets the map")
    parser.add_argument(
        "--check", type=Path, action="append", default=[], help="cases (held out) to report the fitted map on"
    )
    parser.add_argument("--plots", type=Path, help="with --check: the reliability and trade-off plots of the last")
    args = parser.parse_args()
    cases = [c for c in _read_cases(args.cases) if c.confidence_scores is not None]
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
    print(f"\n| map of {best} | ECE, 5-fold cross-validated on dev |\n|---|---|")
    held_out = {method: cross_validated_ece(values, right.astype(float), method) for method in MAP_METHODS}
    for method, error in held_out.items():
        print(f"| {method} | {error:.3f} |")
    method = min(MAP_METHODS, key=lambda m: held_out[m])
    x, y = fit_map(values, right.astype(float), method)
    calibration = Calibration(score=best, x=[round(v, 5) for v in x], y=y, method=method, n=len(cases))
    prob = np.array([calibration(s) for s in scores])
    print(
        f"chosen: {best} (AUROC {best_auc:.3f}), {method} map ({held_out[method]:.3f} cross-validated); "
        f"{len(x)} breakpoints; dev ECE {ece(prob, right):.3f} (in sample)"
    )
    if args.adapter_dir:
        meta_path = args.adapter_dir / "qr_edge.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["confidence_calibration"] = calibration.model_dump()
        write_text_atomic(meta_path, json.dumps(meta, indent=2, ensure_ascii=False))
        print(f"confidence_calibration -> {meta_path}")
    for path in args.check:
        _check(calibration, _read_cases(path), path, args.plots if path == args.check[-1] else None)


def _read_cases(path: Path) -> list[CaseResult]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [CaseResult.model_validate_json(line) for line in lines if line.strip()]


def _check(calibration: Calibration, cases: list[CaseResult], path: Path, plots: Path | None) -> None:
    """The map applied to other cases' scores (as an adapter recording it would give them): calibration per
    slice and the ``min_confidence`` trade-off, as ``qr-edge eval`` reports them."""
    for case in cases:
        if case.confidence_scores is not None:
            case.confidence = calibration(case.confidence_scores)
    print(f"\n{path}: the map on its cases\n| slice | n | right | AUROC | ECE |\n|---|---|---|---|---|")
    for row in calibration_rows(cases):
        auc = "-" if row.auroc is None else f"{row.auroc:.3f}"
        print(f"| {row.slice} | {row.n} | {row.right:.1%} | {auc} | {row.ece:.3f} |")
    points = tradeoff(cases, bleu_scorer())
    print("\n| min_confidence | changed | wrong rewrites | BLEU |\n|---|---|---|---|")
    for p in points:
        print(f"| {p.threshold} | {p.changed:.1%} | {p.wrong_rewrites:.1%} | {100 * p.bleu4:.1f} |")
    if plots is not None:
        for written in write_plots(cases, points, plots):
            print(f"plot -> {written}")


if __name__ == "__main__":
    main()
