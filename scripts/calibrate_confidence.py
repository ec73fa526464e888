"""Fit an adapter's confidence map on dev cases and record it in its qr_edge.json (`qr-edge convert` writes it into
the GGUF): a step of `make adapter`, recomputed with every new adapter, never a constant in code.

Input: the cases JSONL of `qr-edge eval --cases` on the dev splits, run with that adapter. Every candidate score
(`confidence.FEATURES`: the token log-probabilities, whether the output copies the query, how much it adds) and
their logistic combination (`confidence.COMBINED`, fitted on the same cases) is ranked by how well it tells right
from wrong results (AUROC; "right" is `confidence.RIGHT`); the best one is mapped to P(right) by the map (isotonic,
Platt or their mean) whose 5-fold cross-validated expected calibration error on the dev cases is lowest, so the
choice predicts cases the map never saw; its breakpoints are what the adapter records.

    qr-edge eval --data build/mix/dev-... --cases build/eval/v2-dev.cases.jsonl ...
    python scripts/calibrate_confidence.py --cases build/eval/v2-dev.cases.jsonl --adapter-dir build/default-lora-v2
    python scripts/calibrate_confidence.py --cases DEV.cases.jsonl --check TEST.cases.jsonl --plots docs/confidence
    python scripts/calibrate_confidence.py --cases DEV.cases.jsonl --adapter-gguf ADAPTER.lora.gguf  # refit in place
    python scripts/calibrate_confidence.py --cases DEV.cases.jsonl --adapter-gguf ADAPTER.lora.gguf --bar-only

The map also records the default ``min_confidence`` (``evaluate.calibration.default_bar``, chosen on the same cases).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from qr_edge.atomic_file import write_text_atomic
from qr_edge.confidence import (
    COMBINED,
    FEATURES,
    RIGHT,
    Calibration,
    ConfidenceScores,
    file_calibration,
    score_value,
)
from qr_edge.evaluate.calibration import (
    MAP_METHODS,
    auroc,
    calibration_rows,
    combine,
    cross_validated_ece,
    default_bar,
    ece,
    fit_map,
    is_right,
    tradeoff,
    write_plots,
)
from qr_edge.evaluate.quality import CaseResult, bleu_scorer
from qr_edge.lora_merge import copy_fields
from qr_edge.model_meta import META_CONFIDENCE_CALIBRATION
from qr_edge.result import Decision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, required=True, help="qr-edge eval --cases JSONL on dev")
    parser.add_argument("--adapter-dir", type=Path, help="the folder whose qr_edge.json gets the map")
    parser.add_argument(
        "--adapter-gguf", type=Path, help="an exported adapter whose GGUF key gets the map (rewritten in place)"
    )
    parser.add_argument(
        "--bar-only",
        action="store_true",
        help="keep the map --adapter-gguf records and choose only its default bar again on the cases",
    )
    parser.add_argument(
        "--check", type=Path, action="append", default=[], help="cases (held out) to report the fitted map on"
    )
    parser.add_argument("--plots", type=Path, help="with --check: the reliability and trade-off plots of the last")
    args = parser.parse_args()
    cases = [c for c in _read_cases(args.cases) if c.confidence_scores is not None]
    if any(c.decision == Decision.KEPT_LOW_CONFIDENCE for c in cases):
        raise SystemExit(f"{args.cases}: some rewrites were kept below a bar; score them with --min-confidence 0")
    if len(cases) < 20:
        raise SystemExit(f"{args.cases}: {len(cases)} cases carry confidence scores; calibrating needs 20 or more")
    if args.bar_only:
        _choose_bar(cases, args.adapter_gguf)
        return
    right = np.array([is_right(c) for c in cases])
    scores: list[ConfidenceScores] = [c.confidence_scores for c in cases]  # type: ignore[misc]
    print(f"{len(cases)} dev cases with scores, {right.mean():.1%} right ({RIGHT})")
    print("| score | AUROC |\n|---|---|")
    features = np.array([[score_value(s, name) for name in FEATURES] for s in scores])
    weights, bias = combine(features, right.astype(float))
    candidates = {name: features[:, i] for i, name in enumerate(FEATURES)}
    candidates[COMBINED] = features @ np.array(weights) + bias
    ranked = []
    for name, values in candidates.items():
        auc = auroc(values, right)
        ranked.append((-1.0 if auc is None else auc, name, values))
        print(f"| {name} | {'-' if auc is None else f'{auc:.3f}'} |")
    print(
        f"({COMBINED}: {bias:+.3f} " + " ".join(f"{w:+.3f} {n}" for n, w in zip(FEATURES, weights, strict=True)) + ")"
    )
    best_auc, best, values = max(ranked, key=lambda r: (r[0], r[1]))
    print(f"\n| map of {best} | ECE, 5-fold cross-validated on dev |\n|---|---|")
    held_out = {method: cross_validated_ece(values, right.astype(float), method) for method in MAP_METHODS}
    for method, error in held_out.items():
        print(f"| {method} | {error:.3f} |")
    method = min(MAP_METHODS, key=lambda m: held_out[m])
    x, y = fit_map(values, right.astype(float), method)
    combined = {"features": list(FEATURES), "weights": weights, "bias": bias} if best == COMBINED else {}
    calibration = Calibration(score=best, **combined, x=[round(v, 5) for v in x], y=y, method=method, n=len(cases))
    prob = np.array([calibration(s) for s in scores])
    for case, p in zip(cases, prob, strict=True):
        case.confidence = float(p)
    calibration.min_confidence = default_bar(cases, bleu_scorer())
    print(
        f"chosen: {best} (AUROC {best_auc:.3f}), {method} map ({held_out[method]:.3f} cross-validated); "
        f"{len(x)} breakpoints; dev ECE {ece(prob, right):.3f} (in sample); default min_confidence "
        f"{calibration.min_confidence} (the fewest wrong rewrites on dev for at most 1 BLEU,"
        " with a bootstrap margin)"
    )
    if args.adapter_dir:
        meta_path = args.adapter_dir / "qr_edge.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["confidence_calibration"] = calibration.model_dump()
        write_text_atomic(meta_path, json.dumps(meta, indent=2, ensure_ascii=False))
        print(f"confidence_calibration -> {meta_path}")
    if args.adapter_gguf:
        _set_key(args.adapter_gguf, META_CONFIDENCE_CALIBRATION, calibration.model_dump_json())
        print(f"{META_CONFIDENCE_CALIBRATION} -> {args.adapter_gguf}")
    for path in args.check:
        _check(calibration, _read_cases(path), path, args.plots if path == args.check[-1] else None)


def _choose_bar(cases: list[CaseResult], adapter: Path | None) -> None:
    """The adapter's map as it is, with the default bar chosen again on ``cases`` (when the rule changes, not the
    adapter): its tensors and every other key stay as they are."""
    calibration = file_calibration(adapter) if adapter else None
    if calibration is None:
        raise SystemExit("--bar-only needs an --adapter-gguf that records a confidence map")
    _rescore(calibration, cases)
    before, calibration.min_confidence = calibration.min_confidence, default_bar(cases, bleu_scorer())
    print(f"default min_confidence {before} -> {calibration.min_confidence} on {len(cases)} dev cases")
    _set_key(adapter, META_CONFIDENCE_CALIBRATION, calibration.model_dump_json())  # type: ignore[arg-type]
    print(f"{META_CONFIDENCE_CALIBRATION} -> {adapter}")


def _set_key(path: Path, key: str, value: str) -> None:
    """Rewrite one string key of a GGUF file, every other key and tensor as they are; atomically (a temporary file
    beside it, then a rename): what `qr-edge convert` would write from the adapter's qr_edge.json."""
    from gguf import GGUFReader, GGUFWriter

    reader = GGUFReader(path)
    tmp = path.with_name(path.name + ".tmp")
    writer = GGUFWriter(tmp, reader.fields["general.architecture"].contents())
    copy_fields(reader, writer, skip={key})
    writer.add_string(key, value)
    for t in reader.tensors:
        writer.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)


def _read_cases(path: Path) -> list[CaseResult]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [CaseResult.model_validate_json(line) for line in lines if line.strip()]


def _rescore(calibration: Calibration, cases: list[CaseResult]) -> None:
    """Each case's confidence as the map gives it from the scores the case keeps."""
    for case in cases:
        if case.confidence_scores is not None:
            case.confidence = calibration(case.confidence_scores)


def _check(calibration: Calibration, cases: list[CaseResult], path: Path, plots: Path | None) -> None:
    """The map applied to other cases' scores (as an adapter recording it would give them): calibration per
    slice and the ``min_confidence`` trade-off, as ``qr-edge eval`` reports them."""
    _rescore(calibration, cases)
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
