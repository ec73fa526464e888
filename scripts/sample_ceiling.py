"""What choosing among the model's own candidates could give: greedy, sampled rewrites, their consensus, and the best.

For each conversation (full histories only; queries-only ones go through the gate, not here) the default
``Rewriter()`` writes its greedy rewrite, then ``--samples`` sampled ones at ``--temperature`` from the same prompt.
Every candidate passes the guard (a rejected one is the query). Per style the table gives sentence BLEU-4 x100 of:
the query (never-rewrite), the greedy rewrite (bar off), the greedy rewrite at the adapter's confidence bar (what
``Rewriter()`` returns), the consensus candidate (minimum Bayes risk: the candidate with the highest mean BLEU
against all the others), and the oracle (the best candidate or the query, per case, chosen with the reference): no
reranker of these candidates can beat the oracle. #23 asked whether any choice among them reaches +8 over
never-rewrite where the model falls short.

    python scripts/sample_ceiling.py build/mix/dev-en-answer-search.jsonl build/mix/dev-zh-restoration.jsonl \
        --limit 60 --samples 8 --temperature 0.7 --out build/eval/sample-ceiling-dev.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from qr_edge import Decision, Rewriter
from qr_edge.atomic_file import write_text_atomic
from qr_edge.data.dataset import RewriteRecord, read_dataset
from qr_edge.errors import QrEdgeError
from qr_edge.evaluate.quality import bleu_scorer

SYSTEMS = ("never", "greedy", "greedy_bar", "consensus", "oracle")


def consensus(candidates: list[str], lang: str) -> str:
    """The candidate closest on average to all the candidates (itself included): minimum Bayes risk under BLEU."""
    bleu = bleu_scorer()
    return max(dict.fromkeys(candidates), key=lambda c: sum(bleu(c, [o], lang) for o in candidates))


def case(rewriter: Rewriter, record: RewriteRecord, samples: int, temperature: float) -> dict:
    """One conversation's candidates and what each way of choosing among them scores."""
    bleu = bleu_scorer()
    result = rewriter.rewrite(record.messages)
    kept, prompt, tokens, max_tokens = rewriter.fit_prompt(record.messages)

    def guarded(raw: str) -> str:  # as the pipeline answers: an output the guard does not pass is the query
        output = rewriter.builder.parse_output(raw)
        return output if rewriter.guard.check(output, kept).decision == Decision.REWRITTEN else record.query

    greedy = guarded(result.raw_output or "")
    candidates = [greedy]
    for _ in range(samples):
        generation = rewriter.engine.generate(
            prompt, max_tokens, temperature=temperature, tokens=tokens, adapter=rewriter.default_adapter
        )
        candidates.append(guarded(generation.text))
    refs = record.all_references
    chosen = {
        "never": record.query,
        "greedy": greedy,
        "greedy_bar": result.rewrite,
        "consensus": consensus(candidates, record.lang),
    }
    scores = {name: bleu(text, refs, record.lang) for name, text in chosen.items()}
    scores["oracle"] = max(bleu(c, refs, record.lang) for c in [*candidates, record.query])
    return {
        "id": record.id,
        "query": record.query,
        "references": refs,
        "candidates": candidates,
        **chosen,
        "bleu": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="+", help="dataset files (one style each)")
    parser.add_argument("--limit", type=int, default=60, help="first N conversations with full histories per file")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--out", type=Path, required=True, help="every case's candidates and scores (JSON)")
    args = parser.parse_args()
    try:
        styles = {
            path.stem: [r for r in read_dataset(path) if any(m.role == "assistant" for m in r.messages)][: args.limit]
            for path in args.data
        }
        rewriter = Rewriter()
        results: dict[str, list[dict]] = defaultdict(list)
        with Progress(console=Console(stderr=True)) as progress:  # stdout is the table
            task = progress.add_task("candidates", total=sum(len(v) for v in styles.values()))
            for style, records in styles.items():
                for record in records:
                    results[style].append(case(rewriter, record, args.samples, args.temperature))
                    progress.advance(task)
    except (QrEdgeError, OSError, ValueError) as exc:
        sys.exit(f"sample_ceiling.py: {exc}")
    write_text_atomic(args.out, json.dumps(results, ensure_ascii=False, indent=1))
    print(f"| style | n | {' | '.join(SYSTEMS)} |")
    print("|---|---|" + "---|" * len(SYSTEMS))
    for style, cases in results.items():
        means = [100 * sum(c["bleu"][s] for c in cases) / max(len(cases), 1) for s in SYSTEMS]
        print(f"| {style} | {len(cases)} | {' | '.join(f'{m:.1f}' for m in means)} |")


if __name__ == "__main__":
    main()
