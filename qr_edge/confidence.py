"""How sure the model was of a rewrite, from the log-probabilities greedy decoding computed anyway.

No extra forward pass: each emitted token's log-probability is one log-sum-exp over logits the passes
produced. The scores here are the candidates a calibration chooses among (``ConfidenceScores``). An adapter
that records a ``Calibration`` (fitted on dev by scripts/calibrate_confidence.py) maps its chosen score to the
share of such rewrites that were right (``RIGHT``); one that records none gets the uncalibrated map: the
geometric-mean probability of the tokens the rewrite adds or changes (of all its tokens when it copies the query).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ValidationError, model_validator

from .model_meta import META_CONFIDENCE_CALIBRATION

#: What "right" means, once for every calibration: the result's ``rewrite`` equals one of the references after
#: ``text.normalise`` (for a query that needs no rewrite, the reference is the query: keeping it is right).
RIGHT = "exact match with a reference after normalisation"
#: Below this confidence a changed rewrite is searched together with the query (``RewriteResult.queries``). Chosen for
#: the bundled adapter's calibrated confidence on the 97 dev search turns that refer to the answer (`qr-edge eval
#: --passages`: MRR@10 0.466 for the rewrite alone, 0.505 here, the best bar); on the held-out 124 it does not pay
#: (0.448 alone, 0.417): docs/default-adapter.md.
QUERIES_BOTH_BELOW = 0.2


def search_queries(
    query: str, rewrite: str, confidence: float | None, both_below: float = QUERIES_BOTH_BELOW
) -> list[str]:
    """The rewrite, or the rewrite and the query when the rewrite changed the query and is not sure."""
    if rewrite == query:
        return [query]
    return [rewrite, query] if confidence is not None and confidence < both_below else [rewrite]


class ConfidenceScores(BaseModel):
    """Candidate scores of one rewrite (log-probabilities, natural log)."""

    tokens: int  # output tokens before the stop tag
    mean_logprob: float
    min_logprob: float
    changed_tokens: int  # output tokens that are not the query's (a copied token counts once per copy in the query)
    changed_mean_logprob: float | None = None
    changed_min_logprob: float | None = None


def confidence_scores(
    tokens: Sequence[int], logprobs: Sequence[float], query_tokens: Sequence[int]
) -> ConfidenceScores | None:
    """The scores of an output (None when decoding recorded no log-probabilities: a sampled reply)."""
    if not logprobs:
        return None
    available = Counter(query_tokens)
    changed = []
    for token, logprob in zip(tokens, logprobs, strict=False):
        if available[token] > 0:
            available[token] -= 1
        else:
            changed.append(logprob)
    return ConfidenceScores(
        tokens=len(logprobs),
        mean_logprob=round(sum(logprobs) / len(logprobs), 5),
        min_logprob=round(min(logprobs), 5),
        changed_tokens=len(changed),
        changed_mean_logprob=round(sum(changed) / len(changed), 5) if changed else None,
        changed_min_logprob=round(min(changed), 5) if changed else None,
    )


def uncalibrated_confidence(scores: ConfidenceScores) -> float:
    """The geometric-mean probability of the changed tokens (of every token for a copy), in [0, 1]."""
    mean = scores.changed_mean_logprob if scores.changed_mean_logprob is not None else scores.mean_logprob
    return round(min(1.0, max(0.0, math.exp(mean))), 4)


def score_value(scores: ConfidenceScores, name: str) -> float:
    """One candidate score by name; a ``changed_*`` score of a copy (no changed token) is its overall score."""
    value = getattr(scores, name)
    if value is None and name.startswith("changed_"):
        value = getattr(scores, name.removeprefix("changed_"))
    return float(value)


class Calibration(BaseModel):
    """A non-decreasing map from one candidate score to P(right), as breakpoints fitted on dev (``method``: isotonic
    regression, Platt scaling or their mean, whichever calibrated held-out folds of dev best)."""

    score: str
    x: list[float]
    y: list[float]
    method: str = "isotonic"
    right: str = RIGHT
    n: int = 0  # dev cases it was fitted on

    @model_validator(mode="after")
    def _check(self) -> Calibration:
        if self.score not in ConfidenceScores.model_fields or self.score in ("tokens", "changed_tokens"):
            raise ValueError(f"unknown score {self.score!r}")
        if not self.x or len(self.x) != len(self.y) or any(b < a for a, b in zip(self.x, self.x[1:], strict=False)):
            raise ValueError("breakpoints must be non-empty, paired and increasing")
        if any(not 0.0 <= v <= 1.0 for v in self.y):
            raise ValueError("probabilities must lie in [0, 1]")
        return self

    def __call__(self, scores: ConfidenceScores) -> float:
        return round(float(np.interp(score_value(scores, self.score), self.x, self.y)), 4)


def read_calibration(metadata: dict[str, str]) -> Calibration | None:
    """The calibration a model or adapter records (None where it records none, or one this runtime cannot read)."""
    raw = metadata.get(META_CONFIDENCE_CALIBRATION)
    if not raw:
        return None
    try:
        return Calibration.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None
