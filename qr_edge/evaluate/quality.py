"""``qr-edge eval``: quality of a rewriter on a dataset, overall and per language and label.

Systems compared on the same cases: ``qr-edge`` (the full pipeline), ``raw`` (the model's output
without the guard) and ``never-rewrite`` (always return the query). Leakage and unsupported content
are measured with the guard's content units (Latin content words, CJK bigrams) against the bundled
few-shot examples and the conversation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from ..confidence import ConfidenceScores
from ..data.dataset import RewriteRecord
from ..errors import MissingExtraError
from ..examples import FewShotExample, load_examples
from ..result import RewriteResult
from ..text import content_units, new_content, normalise

SYSTEMS = ("qr-edge", "raw", "never-rewrite")


class CaseResult(BaseModel):
    id: str
    lang: str
    label: str
    style: str = ""  # the dataset file the case came from, when several are evaluated together
    query: str
    reference: str
    references: list[str] = []  # every acceptable rewrite (CQR has several); empty: just ``reference``
    outputs: dict[str, str]  # system -> output
    decision: str
    guard_rejected: bool
    ms: float
    confidence: float | None = None
    confidence_scores: ConfidenceScores | None = None  # what a calibration is fitted on (``--cases`` JSONL)
    queries: list[str] = []  # what the result says to search with


class MetricRow(BaseModel):
    system: str
    slice: str
    n: int
    exact_match: float
    bleu4: float
    rouge_l: float
    unchanged_accuracy: float | None = None
    rewrote_when_not_needed: float | None = None
    missing_context_safety: float | None = None
    leakage_rate: float
    unsupported_rate: float
    guard_rejections: float | None = None


class EvalReport(BaseModel):
    model: str
    cases: int
    rows: list[MetricRow]
    retrieval: list[dict[str, Any]] = []  # ``qr-edge eval --passages``: retrieval.RetrievalRow per system and slice
    fusion: list[dict[str, Any]] = []  # ``--passages``: retrieval.FusionPoint per queries_both_below bar
    calibration: list[dict[str, Any]] = []  # calibration.CalibrationRow per slice
    tradeoff: list[dict[str, Any]] = []  # calibration.TradeoffPoint per min_confidence bar


class _Scorer:
    """BLEU-4 (sacrebleu; its zh tokenizer for Chinese) and ROUGE-L (rouge-score; characters for zh, words for en)."""

    def __init__(self) -> None:
        try:
            import sacrebleu
            from rouge_score import rouge_scorer
        except ImportError:
            raise MissingExtraError(
                "qr-edge eval needs sacrebleu and rouge-score: pip install 'qr-edge[eval]'"
            ) from None

        class _Chars:
            def tokenize(self, text: str) -> list[str]:
                return [c for c in text if not c.isspace()]

        self._bleu = sacrebleu.sentence_bleu
        self._rouge = {
            "zh": rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Chars()),
            "en": rouge_scorer.RougeScorer(["rougeL"]),
        }

    def bleu(self, hyp: str, refs: Sequence[str], lang: str) -> float:
        """Multi-reference BLEU: n-grams match any reference, the closest length counts."""
        return self._bleu(hyp, list(refs), tokenize="zh" if lang == "zh" else "13a").score / 100

    def rouge_l(self, hyp: str, refs: Sequence[str], lang: str) -> float:
        return max(self._rouge[lang].score(ref, hyp)["rougeL"].fmeasure for ref in refs)


@functools.cache
def bleu_scorer() -> Callable[[str, Sequence[str], str], float]:
    """Sentence BLEU-4 (0-1) of a hypothesis against references, as the metric rows compute it."""
    return _Scorer().bleu


def run_case(rewriter: Any, record: RewriteRecord) -> RewriteResult:
    """Queries-only conversations go through the two-stage gate, as a legacy caller would send them."""
    if any(m.role == "assistant" for m in record.messages):
        return rewriter.rewrite(record.messages)
    return rewriter.rewrite_queries([m.content for m in record.messages if m.role == "user"])


def evaluate_cases(
    rewriter: Any,
    records: Sequence[RewriteRecord],
    on_case: Callable[[CaseResult], None] | None = None,
    styles: dict[str, str] | None = None,
) -> list[CaseResult]:
    """Run every record through the rewriter; ``styles`` maps a record id to the file (style) it came from."""
    cases = []
    for rec in records:
        result = run_case(rewriter, rec)
        raw = rewriter.builder.parse_output(result.raw_output) if result.raw_output is not None else rec.query
        case = CaseResult(
            id=rec.id,
            lang=rec.lang,
            label=rec.label,
            style=(styles or {}).get(rec.id, ""),
            query=rec.query,
            reference=rec.rewrite,
            references=rec.all_references if rec.references else [],
            outputs={"qr-edge": result.rewrite, "raw": raw or rec.query, "never-rewrite": rec.query},
            decision=result.decision.value,
            guard_rejected=result.decision.value.startswith("rejected_"),
            ms=result.timings.total_ms,
            confidence=result.confidence,
            confidence_scores=result.confidence_scores,
            queries=result.queries,
        )
        cases.append(case)
        if on_case:
            on_case(case)
    return cases


def references(case: CaseResult) -> list[str]:
    return case.references or [case.reference]


def matches_reference(output: str, case: CaseResult) -> bool:
    """Exact match with one of the case's references after normalisation (the metric rows' EM; ``confidence.RIGHT``
    counts it right)."""
    return normalise(output) in {normalise(r) for r in references(case)}


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


def metric_rows(
    cases: Sequence[CaseResult],
    conversations: dict[str, RewriteRecord],
    examples: Sequence[FewShotExample] | None = None,
) -> list[MetricRow]:
    """Metrics per system and slice. Leakage counts content of ``examples`` (the ones in the prompt; default:
    the bundled set) that an output adds and the conversation lacks."""
    scorer = _Scorer()
    examples = load_examples() if examples is None else examples
    example_units = set().union(*(content_units(t) for ex in examples for t in ex.texts()))
    slices: list[tuple[str, Callable[[CaseResult], bool]]] = [("all", lambda c: True)]
    slices += [(style, lambda c, style=style: c.style == style) for style in sorted({c.style for c in cases} - {""})]
    slices += [(lang, lambda c, lang=lang: c.lang == lang) for lang in sorted({c.lang for c in cases})]
    slices += [(label, lambda c, label=label: c.label == label) for label in sorted({c.label for c in cases})]
    rows = []
    for system in SYSTEMS:
        for name, keep in slices:
            sel = [c for c in cases if keep(c)]
            if not sel:
                continue
            leaked, unsupported = [], []
            for c in sel:
                new = new_content(c.outputs[system], [m.content for m in conversations[c.id].messages])
                leaked.append(float(bool(new & example_units)))
                unsupported.append(float(bool(new)))
            keep_query = [c for c in sel if c.label != "rewritten"]
            unchanged = [c for c in sel if c.label == "unchanged"]
            missing = [c for c in sel if c.label == "missing_context"]
            same = lambda c, system=system: float(normalise(c.outputs[system]) == normalise(c.query))  # noqa: E731
            rows.append(
                MetricRow(
                    system=system,
                    slice=name,
                    n=len(sel),
                    exact_match=_mean(float(matches_reference(c.outputs[system], c)) for c in sel),
                    bleu4=_mean(scorer.bleu(c.outputs[system], references(c), c.lang) for c in sel),
                    rouge_l=_mean(scorer.rouge_l(c.outputs[system], references(c), c.lang) for c in sel),
                    unchanged_accuracy=_mean(same(c) for c in unchanged),
                    rewrote_when_not_needed=_mean(1 - same(c) for c in keep_query),
                    missing_context_safety=_mean(same(c) for c in missing),
                    leakage_rate=_mean(leaked),
                    unsupported_rate=_mean(unsupported),
                    guard_rejections=_mean(float(c.guard_rejected) for c in sel) if system == "qr-edge" else None,
                )
            )
    return rows
