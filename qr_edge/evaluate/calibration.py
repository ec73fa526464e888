"""How well a result's confidence tells right from wrong rewrites, and what a ``min_confidence`` bar costs.

"Right" is ``confidence.RIGHT``: the result is no worse than the query (an exact match with a reference, or a
sentence BLEU at least the query's), so a "wrong rewrite" is one that searching with would be worse than not
rewriting. The fitting half (isotonic regression, Platt scaling, their mean; chosen by cross-validated ECE; the
logistic combination of candidate scores; the default bar) is here too, so scripts/calibrate_confidence.py and
``qr-edge eval`` share one definition. The plots are plain SVG (no plotting
library): a reliability diagram and the coverage/quality trade-off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from ..atomic_file import write_text_atomic
from ..text import normalise
from .quality import CaseResult, bleu_scorer, matches_reference, references

BINS = 10
THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.0, 0.95, 20))


def is_right(case: CaseResult, output: str | None = None) -> bool:
    """``confidence.RIGHT`` for the case's output (or ``output`` in its place)."""
    output = case.outputs["qr-edge"] if output is None else output
    if matches_reference(output, case):
        return True
    bleu, refs = bleu_scorer(), references(case)
    return bleu(output, refs, case.lang) >= bleu(case.query, refs, case.lang)


def auroc(scores: np.ndarray, right: np.ndarray) -> float | None:
    """P(a right case scores above a wrong one), ties counting half (Mann-Whitney); None without both kinds."""
    pos, neg = scores[right], scores[~right]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def ece(prob: np.ndarray, right: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error over ``bins`` equal-width bins of the confidence."""
    which = np.minimum((prob * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(prob[inside].mean() - right[inside].mean())
    return float(total)


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


def logistic(features: np.ndarray, y: np.ndarray, l2: float = 1e-6) -> np.ndarray:
    """Logistic regression of y on the columns of ``features`` (Newton's method, a little L2): weights, then bias."""
    design = np.concatenate([features, np.ones((len(features), 1))], axis=1)
    w = np.zeros(design.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        hessian = (design * (p * (1 - p))[:, None]).T @ design + l2 * np.eye(len(w))
        step = np.linalg.solve(hessian, design.T @ (p - y) + l2 * w)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def platt(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling, P(right) = 1 / (1 + exp(-(a x + b))): (a, b)."""
    a, b = logistic(x[:, None], y)
    return float(a), float(b)


def combine(features: np.ndarray, y: np.ndarray) -> tuple[list[float], float]:
    """Weights and bias of a logistic regression on standardised features, folded back to the raw features' scale:
    one score that ranks cases by every candidate at once."""
    mean, std = features.mean(axis=0), features.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    w = logistic((features - mean) / std, y, l2=1e-2)
    weights = w[:-1] / std
    return [round(float(v), 6) for v in weights], round(float(w[-1] - (weights * mean).sum()), 6)


#: The maps a calibration chooses among: isotonic alone follows dev closely (steps of 0 and 1 at the ends), Platt
#: alone is smooth but may bend the wrong way, their mean is between.
MAP_METHODS = ("isotonic", "platt", "isotonic+platt")


def fit_map(x: np.ndarray, y: np.ndarray, method: str) -> tuple[list[float], list[float]]:
    """A non-decreasing map from score to P(right) as breakpoints (``np.interp`` between them), fitted by
    ``method`` (one of ``MAP_METHODS``)."""
    iso_x, iso_y = isotonic(x, y)
    if method == "isotonic":
        return iso_x, iso_y
    a, b = platt(x, y)
    a = max(a, 0.0)  # a map that falls as the model grows surer is no calibration: flat at worst
    grid = np.unique(np.concatenate([iso_x, np.quantile(x, np.linspace(0, 1, 21))]))
    curve = 1.0 / (1.0 + np.exp(-(a * grid + b)))
    if method == "isotonic+platt":
        curve = (curve + np.interp(grid, iso_x, iso_y)) / 2
    elif method != "platt":
        raise ValueError(f"unknown map {method!r}; one of {MAP_METHODS}")
    return [float(v) for v in grid], [round(float(v), 4) for v in np.maximum.accumulate(curve)]


def cross_validated_ece(x: np.ndarray, y: np.ndarray, method: str, folds: int = 5, seed: int = 0) -> float:
    """ECE of ``method``'s map on each fold when fitted on the others: how well it calibrates cases it never saw."""
    order = np.random.default_rng(seed).permutation(len(x))
    prob = np.zeros(len(x))
    for held in np.array_split(order, folds):
        rest = np.setdiff1d(order, held)
        bx, by = fit_map(x[rest], y[rest], method)
        prob[held] = np.interp(x[held], bx, by)
    return ece(prob, y.astype(bool))


class CalibrationRow(BaseModel):
    slice: str
    n: int  # results with a confidence
    right: float  # share right
    auroc: float | None
    ece: float


class TradeoffPoint(BaseModel):
    """The results with ``min_confidence`` at ``threshold``: changed rewrites below it keep the query."""

    threshold: float
    changed: float  # share of results whose rewrite changes the query
    wrong_rewrites: float  # share of results that change the query and are not right (worse than the query)
    bleu4: float


def _scored(cases: Sequence[CaseResult]) -> list[CaseResult]:
    return [c for c in cases if c.confidence is not None]


def calibration_rows(cases: Sequence[CaseResult]) -> list[CalibrationRow]:
    scored = _scored(cases)
    slices = [("all", scored)] + [(s, [c for c in scored if c.style == s]) for s in sorted({c.style for c in scored})]
    rows = []
    for name, sel in slices:
        if not sel or not name:
            continue
        prob = np.array([c.confidence for c in sel], dtype=float)
        right = np.array([is_right(c) for c in sel])
        auc = auroc(prob, right)
        rows.append(
            CalibrationRow(
                slice=name,
                n=len(sel),
                right=round(float(right.mean()), 4),
                auroc=None if auc is None else round(auc, 4),
                ece=round(ece(prob, right), 4),
            )
        )
    return rows


@dataclass(frozen=True)
class _Outcomes:
    """Each scored case's two possible results under a bar: its rewrite stands, or its query is kept."""

    confidence: np.ndarray
    changed: np.ndarray  # the rewrite changes the query
    wrong: np.ndarray  # ... and is not right (worse than the query)
    rewrite_bleu: np.ndarray
    query_bleu: np.ndarray  # the query is never "wrong"


def _outcomes(cases: Sequence[CaseResult], bleu: Callable[[str, list[str], str], float]) -> _Outcomes | None:
    """A bar only chooses, per case, between two outputs (the rewrite or the query), so each case is scored once
    for both and every bar selects from those scores: a hundred bars cost what one did."""
    scored = _scored(cases)
    if not scored:
        return None
    changed = np.array([normalise(c.outputs["qr-edge"]) != normalise(c.query) for c in scored])
    return _Outcomes(
        confidence=np.array([c.confidence for c in scored], dtype=float),
        changed=changed,
        wrong=changed & ~np.array([is_right(c) for c in scored]),
        rewrite_bleu=np.array([bleu(c.outputs["qr-edge"], references(c), c.lang) for c in scored]),
        query_bleu=np.array([bleu(c.query, references(c), c.lang) for c in scored]),
    )


def tradeoff(
    cases: Sequence[CaseResult],
    bleu: Callable[[str, list[str], str], float],
    thresholds: Sequence[float] = THRESHOLDS,
) -> list[TradeoffPoint]:
    """For each bar: how many results still change the query, how many of those are wrong, BLEU."""
    o = _outcomes(cases, bleu)
    if o is None:
        return []
    points = []
    for t in thresholds:
        kept = o.confidence >= t  # the rewrite stands
        points.append(
            TradeoffPoint(
                threshold=t,
                changed=round(float(np.mean(o.changed & kept)), 4),
                wrong_rewrites=round(float(np.mean(o.wrong & kept)), 4),
                bleu4=round(float(np.mean(np.where(kept, o.rewrite_bleu, o.query_bleu))), 4),
            )
        )
    return points


#: What a default ``min_confidence`` may cost on dev: at most this BLEU (0-1) against no bar.
BLEU_COST = 0.01
#: The bars a default is chosen among (finer than the report's ``THRESHOLDS``).
FINE_THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.0, 0.99, 100))
#: A default bar must keep its cost within ``BLEU_COST`` at this quantile of dev's bootstrap resamples, not only on
#: dev itself: a bar chosen right at the edge on dev crosses it on conversations dev never saw about half the time.
COST_QUANTILE = 0.9
BOOTSTRAP_RESAMPLES = 2000


def default_bar(cases: Sequence[CaseResult], bleu: Callable[[str, list[str], str], float]) -> float | None:
    """The bar that takes away the most wrong rewrites of ``cases`` (dev) while its BLEU cost stays within
    ``BLEU_COST`` in ``COST_QUANTILE`` of the bootstrap resamples of those cases (seeded; each resample costs the
    bar against no bar on the same cases); None where no bar takes any away at that cost."""
    o = _outcomes(cases, bleu)
    if o is None:
        return None
    draws = np.random.default_rng(0).integers(0, len(o.confidence), size=(BOOTSTRAP_RESAMPLES, len(o.confidence)))
    fit, every_wrong = [], int(o.wrong.sum())
    for t in FINE_THRESHOLDS:
        kept = o.confidence >= t
        wrong = int((o.wrong & kept).sum())
        if wrong == every_wrong:
            continue
        cost = np.where(kept, 0.0, o.rewrite_bleu - o.query_bleu)  # what each case gives up to the bar
        if np.quantile(cost[draws].mean(axis=1), COST_QUANTILE) <= BLEU_COST:
            fit.append((wrong, t))
    return min(fit)[1] if fit else None


def _svg(title: str, x_label: str, y_label: str, series: list[tuple[str, str, list[tuple[float, float]]]]) -> str:
    """A 480x360 line chart over [0, 1] x [0, 1] with a legend: (name, colour, points) per series."""
    w, h, pad = 480, 360, 50

    def px(x: float, y: float) -> str:
        return f"{pad + x * (w - 2 * pad):.1f},{h - pad - y * (h - 2 * pad):.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
        f'<polyline points="{px(0, 0)} {px(1, 0)} {px(1, 1)} {px(0, 1)} {px(0, 0)}" fill="none" stroke="#999"/>',
        f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">{x_label}</text>',
        f'<text x="14" y="{h / 2}" text-anchor="middle" transform="rotate(-90 14 {h / 2})">{y_label}</text>',
    ]
    for tick in (0.0, 0.5, 1.0):
        x, y = px(tick, 0).split(",")
        parts.append(f'<text x="{x}" y="{float(y) + 16}" text-anchor="middle">{tick:g}</text>')
        x, y = px(0, tick).split(",")
        parts.append(f'<text x="{float(x) - 8}" y="{float(y) + 4}" text-anchor="end">{tick:g}</text>')
    for i, (name, colour, points) in enumerate(series):
        dash = ' stroke-dasharray="4 4"' if name == "ideal" else ""
        line = " ".join(px(x, y) for x, y in points)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        parts += [
            f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" fill="{colour}"/>' for p in line.split()
        ]
        parts.append(f'<text x="{pad + 10}" y="{pad + 16 * (i + 1)}" fill="{colour}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_plots(cases: Sequence[CaseResult], points: Sequence[TradeoffPoint], folder: Path) -> list[Path]:
    """reliability.svg (confidence vs share right, per bin) and tradeoff.svg (the bar vs BLEU and wrong rewrites)."""
    scored = _scored(cases)
    folder.mkdir(parents=True, exist_ok=True)
    prob = np.array([c.confidence for c in scored], dtype=float)
    right = np.array([is_right(c) for c in scored])
    which = np.minimum((prob * BINS).astype(int), BINS - 1)
    bins = [
        (float(prob[which == b].mean()), float(right[which == b].mean())) for b in range(BINS) if (which == b).any()
    ]
    reliability = _svg(
        f"Reliability ({len(scored)} results, ECE {ece(prob, right):.3f})",
        "confidence",
        "share right",
        [("ideal", "#999", [(0.0, 0.0), (1.0, 1.0)]), ("qr-edge", "#1f77b4", bins)],
    )
    curve = _svg(
        "min_confidence trade-off",
        "min_confidence",
        "share of results",
        [
            ("BLEU-4", "#1f77b4", [(p.threshold, p.bleu4) for p in points]),
            ("wrong rewrites", "#d62728", [(p.threshold, p.wrong_rewrites) for p in points]),
            ("changed", "#2ca02c", [(p.threshold, p.changed) for p in points]),
        ],
    )
    paths = [folder / "reliability.svg", folder / "tradeoff.svg"]
    write_text_atomic(paths[0], reliability)
    write_text_atomic(paths[1], curve)
    return paths
