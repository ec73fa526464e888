"""The trade-off and the default bar, on hand-made cases whose outcomes can be counted by hand."""

from qr_edge.evaluate.calibration import default_bar, tradeoff
from qr_edge.evaluate.quality import CaseResult, bleu_scorer


def _case(i: int, query: str, reference: str, output: str, confidence: float) -> CaseResult:
    return CaseResult(
        id=str(i),
        lang="en",
        label="rewritten",
        query=query,
        reference=reference,
        outputs={"qr-edge": output},
        decision="rewritten",
        guard_rejected=False,
        ms=1.0,
        confidence=confidence,
    )


CASES = [
    # right rewrites, sure of themselves
    _case(0, "how old is he?", "how old is Barack Obama?", "how old is Barack Obama?", 0.9),
    _case(1, "where was she born?", "where was Marie Curie born?", "where was Marie Curie born?", 0.8),
    # a wrong referent, unsure: worse than the query
    _case(2, "what did it cost?", "what did the Eiffel Tower cost?", "Huracan engine prices", 0.3),
    # a copy is right whatever its confidence
    _case(3, "what is the capital of France?", "what is the capital of France?", "what is the capital of France?", 0.2),
]


def test_tradeoff_counts_changes_and_wrong_rewrites_per_bar():
    points = {p.threshold: p for p in tradeoff(CASES, bleu_scorer(), thresholds=(0.0, 0.5, 0.85, 0.95))}
    assert (points[0.0].changed, points[0.0].wrong_rewrites) == (0.75, 0.25)
    assert (points[0.5].changed, points[0.5].wrong_rewrites) == (0.5, 0.0)  # the wrong one keeps its query
    assert (points[0.85].changed, points[0.85].wrong_rewrites) == (0.25, 0.0)
    assert (points[0.95].changed, points[0.95].wrong_rewrites) == (0.0, 0.0)
    assert points[0.5].bleu4 > points[0.0].bleu4 > points[0.95].bleu4


def test_default_bar_takes_away_the_wrong_rewrite_without_the_right_ones():
    bar = default_bar(CASES, bleu_scorer())
    assert bar is not None and 0.3 < bar <= 0.8
    assert default_bar(CASES[:2], bleu_scorer()) is None  # nothing wrong to take away
