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


def test_default_bar_leaves_a_margin_for_conversations_dev_never_saw():
    # 70 cases: 67 sure copies, a wrong rewrite at 0.1, a right one at 0.5 and a wrong one at 0.55. A bar at 0.56
    # takes both wrong ones away for 0.65 / 70 = 0.93 BLEU on these cases, within the 1-point budget on dev itself;
    # but a resample that draws the right one twice costs about 1.9, so the bar stops below it.
    right = _case(1, "how old is he?", "how old is Barack Obama?", "how old is Barack Obama?", 0.5)
    wrong = [
        _case(i, "what did it cost?", "what did the Eiffel Tower cost?", "Huracan engine prices", c)
        for i, c in ((2, 0.1), (3, 0.55))
    ]
    copies = [
        _case(
            10 + i,
            "what is the capital of France?",
            "what is the capital of France?",
            "what is the capital of France?",
            0.9,
        )
        for i in range(67)
    ]
    cases = [right, *wrong, *copies]
    point = {p.threshold: p for p in tradeoff(cases, bleu_scorer(), thresholds=(0.0, 0.56))}
    assert point[0.56].wrong_rewrites == 0 and point[0.0].bleu4 - point[0.56].bleu4 <= 0.01
    bar = default_bar(cases, bleu_scorer())
    assert bar is not None and 0.1 < bar <= 0.5  # the first wrong rewrite goes, the right one stays
