"""Reciprocal rank fusion: how the rankings of a result's several queries (``RewriteResult.queries``) become one.

The one home of the formula, for the retrieval evaluation and the LangChain and LlamaIndex drop-ins.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

#: The usual constant of reciprocal rank fusion (Cormack et al., 2009): an item's score is the sum of 1 / (K + rank).
RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Iterable[Sequence[T]], key: Callable[[T], Hashable] = lambda item: item
) -> list[tuple[T, float]]:
    """Every item of several best-first rankings once (the first seen for its ``key``) with its fused score, best
    first; equal scores keep the order in which the items were first seen."""
    score: dict[Hashable, float] = {}
    first: dict[Hashable, T] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            k = key(item)
            score[k] = score.get(k, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(k, item)
    return [(first[k], score[k]) for k in sorted(score, key=lambda k: -score[k])]
