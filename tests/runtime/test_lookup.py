"""Prompt-lookup drafting: the draft index, and greedy decoding with drafts on the real embedded model."""

from __future__ import annotations

from qr_edge import Rewriter
from qr_edge.lookup import PromptLookup

from ..conftest import CONVERSATION


def test_draft_follows_the_longest_matching_tail():
    lookup = PromptLookup([5, 6, 7, 8, 9, 6, 7, 1, 2], max_ngram=3, max_draft=3)
    assert lookup.draft([6, 7], limit=10) == [1, 2]  # the most recent "6 7" is followed by 1 2
    assert lookup.draft([5, 6, 7], limit=10) == [8, 9, 6]  # a longer match wins
    assert lookup.draft([4, 4], limit=10) == []
    assert lookup.draft([6, 7], limit=1) == [1]
    assert PromptLookup([1, 2, 3], max_draft=0).draft([1], limit=5) == []


def test_drafting_verifies_several_tokens_per_pass():
    rw = Rewriter(adapter=None, n_ctx=2048, n_examples=1)
    messages = [
        *CONVERSATION[:2],
        {"role": "user", "content": "Why is NumPy usually much faster than plain Python loops?"},
    ]
    plain = rw.rewrite(messages)
    assert plain.timings.forward_passes <= plain.timings.generated_tokens
    rw.engine.draft_tokens = 8
    drafted = rw.rewrite(messages)
    t = drafted.timings
    assert t.generated_tokens > 3 and t.forward_passes < t.generated_tokens - 1  # copied tokens verified in batches
