"""How sure the model was of a rewrite, from the log-probabilities greedy decoding computed anyway.

No extra forward pass: each emitted token's log-probability is one log-sum-exp over logits the passes
produced. The scores here are the candidates a calibration chooses among (``ConfidenceScores``);
``confidence`` maps them to 0-1. Until an adapter records a calibration (a later step of ``make adapter``), the
map is uncalibrated: the geometric-mean probability of the tokens the rewrite adds or changes (of all its
tokens when it copies the query).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel


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
