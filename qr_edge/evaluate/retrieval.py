"""What a rewrite does to retrieval: BM25 (``bm25s``, the eval extra) over the pooled canonical passages of the
evaluated turns, each turn's own passage the one to find.

CAsT-21/22 and iKAT ship one passage per turn (``RewriteRecord.passage``). For each turn the pool of every
evaluated passage is searched with the raw query, the rewrite, the result's ``queries`` (the rewrite and, when
unsure, the query, or the query and the rewrite the confidence bar held back: rankings merged by reciprocal rank
fusion) and the reference rewrite.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from ..confidence import search_queries
from ..data.dataset import RewriteRecord
from ..errors import MissingExtraError
from ..fusion import reciprocal_rank_fusion
from .quality import CaseResult

DEPTH = 10
SYSTEMS = ("raw query", "rewrite", "queries (fused)", "reference")
#: ``queries_both_below`` bars a sweep tries (0: the rewrite alone; above 1: rewrite and query every time it changed);
#: a calibrated confidence is low for most search rewrites (few match a reference word for word), so low bars too.
BARS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)


class RetrievalRow(BaseModel):
    system: str
    slice: str
    n: int
    mrr_at_10: float
    recall_at_1: float


class FusionPoint(BaseModel):
    """Searching with ``search_queries`` at one ``queries_both_below`` bar, every judged turn."""

    both_below: float
    searched_both: float  # share of turns searched with rewrite and query
    mrr_at_10: float
    recall_at_1: float


class PassageIndex:
    """BM25 over passages; ``rank`` gives each passage's rank for a query (absent: not retrieved in the top k)."""

    def __init__(self, passages: Sequence[str]) -> None:
        try:
            import bm25s
        except ImportError:
            raise MissingExtraError("retrieval evaluation needs bm25s: pip install 'qr-edge[eval]'") from None
        self._bm25s = bm25s
        self._index = bm25s.BM25()
        self._index.index(bm25s.tokenize(list(passages), stopwords="en", show_progress=False), show_progress=False)
        self.size = len(passages)

    def ranks(self, queries: Sequence[str], k: int = DEPTH) -> list[dict[int, int]]:
        """Per query: passage index -> 1-based rank, for the top ``k`` passages with a positive score."""
        tokens = self._bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        found, scores = self._index.retrieve(tokens, k=min(k, self.size), show_progress=False)
        return [
            {int(doc): rank + 1 for rank, (doc, score) in enumerate(zip(row, row_scores, strict=True)) if score > 0}
            for row, row_scores in zip(found, scores, strict=True)
        ]


def fuse(rankings: Sequence[dict[int, int]], k: int = DEPTH) -> dict[int, int]:
    """Reciprocal rank fusion of several rankings into one (1-based ranks, best first, top ``k``; ties: lower index)."""
    fused = reciprocal_rank_fusion([sorted(r, key=r.__getitem__) for r in rankings])
    best = [doc for doc, _ in sorted(fused, key=lambda pair: (-pair[1], pair[0]))[:k]]
    return {doc: i + 1 for i, doc in enumerate(best)}


class Rankings:
    """The judged cases (those whose record has a passage) and, once for the rows and the sweep, where BM25 over
    their pooled passages ranks each turn's own for the raw query, the rewrite, the result's queries (fused) and the
    reference."""

    def __init__(self, cases: Sequence[CaseResult], records: dict[str, RewriteRecord]) -> None:
        self.cases = [c for c in cases if records[c.id].passage]
        self.ranked: dict[str, list[dict[int, int]]] = {}
        if self.cases:
            index = PassageIndex([records[c.id].passage or "" for c in self.cases])
            texts = {
                "raw query": [c.query for c in self.cases],
                "rewrite": [c.outputs["qr-edge"] for c in self.cases],
                "reference": [c.reference for c in self.cases],
            }
            self.ranked = {name: index.ranks(queries) for name, queries in texts.items()}
            # what each result says to search with (a case file without ``queries``: its output), each ranked, fused
            asked = [c.queries or [c.outputs["qr-edge"]] for c in self.cases]
            flat = iter(index.ranks([q for qs in asked for q in qs]))
            self.ranked["queries (fused)"] = [fuse([next(flat) for _ in qs]) for qs in asked]

    def searched(self, both: Sequence[bool]) -> list[dict[int, int]]:
        """Per turn: the rewrite's ranking, or where ``both`` the rewrite's and the raw query's fused (what a
        result's ``queries`` of two search with)."""
        rewrite, raw = self.ranked["rewrite"], self.ranked["raw query"]
        return [fuse([rewrite[i], raw[i]]) if b else rewrite[i] for i, b in enumerate(both)]


def _hits_row(ranks: Sequence[int | None]) -> tuple[float, float]:
    """MRR@10 and recall@1 of the own passage's ranks (None: not in the top 10)."""
    return round(sum(1 / r for r in ranks if r) / len(ranks), 4), round(sum(r == 1 for r in ranks) / len(ranks), 4)


def fusion_sweep(rankings: Rankings, bars: Sequence[float] = BARS) -> list[FusionPoint]:
    """What ``Rewriter(queries_both_below=bar)`` would retrieve, for each bar, from the cases' confidences."""
    if not rankings.cases:
        return []
    points = []
    for bar in bars:
        both = [len(search_queries(c.query, c.outputs["qr-edge"], c.confidence, bar)) == 2 for c in rankings.cases]
        mrr, recall = _hits_row([ranks.get(i) for i, ranks in enumerate(rankings.searched(both))])
        points.append(
            FusionPoint(
                both_below=bar, searched_both=round(sum(both) / len(both), 4), mrr_at_10=mrr, recall_at_1=recall
            )
        )
    return points


def retrieval_rows(rankings: Rankings) -> list[RetrievalRow]:
    """MRR@10 and recall@1 per system, for every slice (all, each style) of the judged cases."""
    judged = rankings.cases
    if not judged:
        return []
    ranked = rankings.ranked
    slices = [("all", lambda c: True)] + [
        (style, lambda c, style=style: c.style == style) for style in sorted({c.style for c in judged} - {""})
    ]
    rows = []
    for name in SYSTEMS:
        for label, keep in slices:
            hits = [ranked[name][i].get(i) for i, c in enumerate(judged) if keep(c)]
            if hits:
                mrr, recall = _hits_row(hits)
                rows.append(RetrievalRow(system=name, slice=label, n=len(hits), mrr_at_10=mrr, recall_at_1=recall))
    return rows
