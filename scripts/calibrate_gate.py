"""Choose the two-stage gate's "depends on the missing answer" threshold for an adapter on the dev splits, and
record it in the adapter folder's qr_edge.json (`qr-edge convert` writes it into the GGUF): a step of
`make adapter`, recomputed with every new adapter, never a constant in code.

Negatives: queries-only dev conversations whose reference rewrite uses only earlier questions (CAsT-19, CANARD
train): skipping them throws a good rewrite away. Positives: dev cases whose rewrite needs an assistant answer,
shown queries-only (and the generated missing-context cases): the gate should keep those. The threshold is the
lowest one of a grid that skips at most --max-false-skip of the negatives.

    python scripts/calibrate_gate.py --adapter-gguf qr_edge/assets/smollm2-135m-rewrite.lora.gguf \
        --adapter-dir build/default-lora --mix build/mix
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qr_edge import Rewriter
from qr_edge.atomic_file import write_text_atomic
from qr_edge.data.dataset import read_dataset
from qr_edge.data.mix import as_legacy
from qr_edge.model_source import DEFAULT_MODEL, EMBEDDED_MODELS
from qr_edge.prompt import GateQuestion

NEGATIVE = ("dev-en-legacy-search.jsonl", "dev-en-qa-legacy.jsonl")
POSITIVE = ("dev-en-answer-search.jsonl", "dev-en-qa.jsonl", "dev-synthetic.jsonl")
GRID = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter-gguf", type=Path, required=True)
    parser.add_argument("--adapter-dir", type=Path, required=True, help="the folder whose qr_edge.json gets the value")
    parser.add_argument("--mix", type=Path, default=Path("build/mix"))
    parser.add_argument("--max-false-skip", type=float, default=0.05)
    parser.add_argument("--model", choices=sorted(EMBEDDED_MODELS), default=DEFAULT_MODEL.name, help="the base")
    args = parser.parse_args()
    # by name: the run copy the runtime loads (Q8_0 or BF16), not the shipped Q4_1 file, so the bar fits what serves
    rw = Rewriter(args.model, adapter=str(args.adapter_gguf), n_ctx=2048)
    gate = rw.gate

    def p_depends(messages) -> float | None:
        users = [m for m in messages if m.role == "user"]
        return gate.probability(users, GateQuestion.DEPENDS_ON_ANSWER)[0] if len(users) >= 2 else None

    negatives = [p_depends(r.messages) for name in NEGATIVE for r in read_dataset(args.mix / name)]
    positives = []
    for name in POSITIVE:
        for r in read_dataset(args.mix / name):
            legacy = r if r.label == "missing_context" else as_legacy(r)
            if legacy is not None:
                positives.append(p_depends(legacy.messages))
    negatives = [p for p in negatives if p is not None]
    positives = [p for p in positives if p is not None]
    print(f"{len(negatives)} queries-only rewrites, {len(positives)} cases that need the missing answer (dev)")
    print("| threshold | good rewrites skipped | answer-dependent cases kept |")
    print("|---|---|---|")
    chosen = None
    for t in GRID:
        skipped = sum(p >= t for p in negatives) / len(negatives)
        caught = sum(p >= t for p in positives) / len(positives)
        print(f"| {t:.2f} | {100 * skipped:.1f}% | {100 * caught:.1f}% |")
        if chosen is None and skipped <= args.max_false_skip:
            chosen = t
    chosen = chosen if chosen is not None else GRID[-1]
    meta_path = args.adapter_dir / "qr_edge.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["gate_depend_threshold"] = chosen
    write_text_atomic(meta_path, json.dumps(meta, indent=2, ensure_ascii=False))
    print(f"gate_depend_threshold = {chosen} -> {meta_path}")


if __name__ == "__main__":
    main()
