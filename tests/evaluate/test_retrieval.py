"""Retrieval evaluation: real BM25 (bm25s) over pooled passages, each turn's own to find."""

from __future__ import annotations

import pytest

from qr_edge.data.dataset import RewriteRecord
from qr_edge.evaluate.quality import CaseResult
from qr_edge.evaluate.retrieval import Rankings, fuse, retrieval_rows

pytest.importorskip("bm25s")

PASSAGES = {
    "a": "The Eiffel Tower in Paris is 330 metres tall and was finished in 1889 for the World's Fair.",
    "b": "Lobular carcinoma starts in the lobules of the breast and may spread to nearby tissue.",
    "c": "A food truck needs a business licence, a health permit and a commissary kitchen to operate.",
}


def _pair(cid: str, query: str, rewrite: str, output: str, queries: list[str]) -> tuple[CaseResult, RewriteRecord]:
    record = RewriteRecord(
        id=cid,
        lang="en",
        messages=[{"role": "user", "content": "earlier"}, {"role": "user", "content": query}],
        rewrite=rewrite,
        label="rewritten",
        passage=PASSAGES[cid],
    )
    case = CaseResult(
        id=cid,
        lang="en",
        label="rewritten",
        style="search",
        query=query,
        reference=rewrite,
        outputs={"qr-edge": output, "never-rewrite": query, "raw": output},
        decision="rewritten",
        guard_rejected=False,
        ms=1.0,
        queries=queries,
    )
    return case, record


def test_a_rewrite_that_names_the_entity_finds_its_passage_and_fusion_keeps_both():
    pairs = [
        _pair("a", "How tall is it?", "How tall is the Eiffel Tower?", "How tall is the Eiffel Tower?", []),
        _pair(
            "b",
            "How likely is it to spread?",
            "How likely is lobular carcinoma to spread?",
            "How likely is the Eiffel Tower to spread?",  # a wrong referent...
            ["How likely is the Eiffel Tower to spread?", "How likely is it to spread?"],  # ...searched with the query
        ),
        _pair(
            "c",
            "What permits does it need?",  # BM25 without stemming: "permits" is not the passage's "permit"
            "What permits does a food truck need?",
            "What permits does a food truck need?",
            [],
        ),
    ]
    cases = [c for c, _ in pairs]
    records = {r.id: r for _, r in pairs}
    rows = {(r.system, r.slice): r for r in retrieval_rows(Rankings(cases, records))}
    assert {s for s, _ in rows} == {"raw query", "rewrite", "queries (fused)", "reference"}
    assert rows[("reference", "all")].recall_at_1 == 1.0 and rows[("reference", "search")].n == 3
    assert rows[("rewrite", "all")].mrr_at_10 > rows[("raw query", "all")].mrr_at_10
    # the wrong referent puts the Eiffel Tower passage first; fusing in the raw query brings "spread" back
    assert rows[("queries (fused)", "all")].mrr_at_10 == 1.0 > rows[("rewrite", "all")].mrr_at_10


def test_reciprocal_rank_fusion():
    assert fuse([{1: 1, 2: 2}, {2: 1, 3: 2}]) == {2: 1, 1: 2, 3: 3}
    assert fuse([{5: 1}]) == {5: 1} and fuse([]) == {}


def test_no_passage_no_rows():
    case, record = _pair("a", "How tall is it?", "How tall is the Eiffel Tower?", "x", [])
    record.passage = None
    assert retrieval_rows(Rankings([case], {"a": record})) == []


def test_fusion_sweep_searches_both_below_the_bar():
    from qr_edge.evaluate.retrieval import fusion_sweep

    pairs = [
        _pair("a", "How tall is it?", "How tall is the Eiffel Tower?", "How tall is the Eiffel Tower?", []),
        _pair(
            "b",
            "How likely is it to spread?",
            "How likely is lobular carcinoma to spread?",
            "How likely is the Eiffel Tower to spread?",
            [],
        ),
    ]
    for (case, _), confidence in zip(pairs, (0.95, 0.4), strict=True):
        case.confidence = confidence
    points = {p.both_below: p for p in fusion_sweep(Rankings([c for c, _ in pairs], {r.id: r for _, r in pairs}))}
    assert points[0.0].searched_both == 0.0 and points[0.5].searched_both == 0.5 and points[1.01].searched_both == 1.0
    # the unsure wrong referent (0.4) searched with the raw query too: its passage comes first again
    assert points[0.5].mrr_at_10 == 1.0 > points[0.0].mrr_at_10


def test_a_rewrite_the_bar_held_back_is_searched_beside_the_query():
    from qr_edge.confidence import search_queries

    query, unsure = "Is it curable?", "Is lobular carcinoma curable?"
    assert search_queries(query, query, 0.3, held_back=unsure) == [query, unsure]
    assert search_queries(query, query, 0.3, held_back=query) == [query]  # nothing held back but the query
    assert search_queries(query, unsure, 0.9) == [unsure] and search_queries(query, unsure, 0.1) == [unsure, query]
    # the result keeps the query (the bar's decision); its queries also rank the held-back rewrite's passage
    pairs = [
        _pair("a", "How tall is it?", "How tall is the Eiffel Tower?", "How tall is the Eiffel Tower?", []),
        _pair("b", query, unsure, query, search_queries(query, query, 0.3, held_back=unsure)),
    ]
    rows = {
        (r.system, r.slice): r for r in retrieval_rows(Rankings([c for c, _ in pairs], {r.id: r for _, r in pairs}))
    }
    assert rows[("rewrite", "all")].recall_at_1 == 0.5  # the query alone misses lobular carcinoma's passage
    assert rows[("queries (fused)", "all")].mrr_at_10 > rows[("rewrite", "all")].mrr_at_10
