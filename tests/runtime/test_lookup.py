"""Prompt-lookup drafting: the draft index, and exact greedy decoding with drafts on the real embedded model."""

from __future__ import annotations

import pytest

from qr_edge import Rewriter
from qr_edge.data.synthetic import RewriteGenerator
from qr_edge.engine import LlamaEngine
from qr_edge.lookup import PromptLookup

from ..conftest import CONVERSATION


def test_draft_follows_the_longest_matching_tail():
    lookup = PromptLookup([5, 6, 7, 8, 9, 6, 7, 1, 2], max_ngram=3, max_draft=3)
    assert lookup.draft([6, 7], limit=10) == [1, 2]  # the most recent "6 7" is followed by 1 2
    assert lookup.draft([5, 6, 7], limit=10) == [8, 9, 6]  # a longer match wins
    assert lookup.draft([4, 4], limit=10) == []
    assert lookup.draft([6, 7], limit=1) == [1]
    assert PromptLookup([1, 2, 3], max_draft=0).draft([1], limit=5) == []


@pytest.fixture(scope="module")
def default_rw() -> Rewriter:
    """``Rewriter()`` as users get it: the embedded model with the bundled adapter."""
    return Rewriter(n_ctx=2048)


def _golden(n: int) -> list[list[dict[str, str]]]:
    """Held-out synthetic conversations (entities never in training), English and Chinese."""
    return [[m.model_dump() for m in r.messages] for r in RewriteGenerator(seed=7, split="golden").generate(n)]


def _generate(rw: Rewriter, engine: LlamaEngine, messages: list[dict[str, str]], draft_tokens: int | None):
    _, prompt, tokens, max_tokens = rw.fit_prompt(messages)
    engine.draft_tokens = draft_tokens
    return engine.generate(prompt, max_tokens=max_tokens, tokens=tokens, adapter=rw.default_adapter)


def test_drafting_gives_plain_greedy_output_token_for_token(default_rw):
    """Drafts of any length verified in batched passes give exactly the tokens of one-token-per-pass decoding."""
    engine = default_rw.engine
    passes = {0: 0, 3: 0, 8: 0}
    generated = 0
    try:
        for messages in _golden(16):
            plain = _generate(default_rw, engine, messages, 0)
            generated += len(plain.tokens)
            passes[0] += plain.timings.forward_passes
            for k in (3, 8):
                drafted = _generate(default_rw, engine, messages, k)
                assert drafted.tokens == plain.tokens, (k, messages[-1]["content"])
                passes[k] += drafted.timings.forward_passes
    finally:
        engine.draft_tokens = None
    assert generated > 100
    if engine.drafting:  # exact here (the split-invariance probe passed): copied tokens share passes
        assert passes[3] < 0.7 * passes[0] and passes[8] <= passes[3]
    else:
        assert passes[3] == passes[0]


def test_output_does_not_depend_on_what_the_cache_held(default_rw):
    """A cold engine and one whose context, saved prefixes and recent prompts split the prompt differently
    give the same tokens (every pass evaluates at least ``pass_rows`` positions)."""
    follow = [
        *CONVERSATION,
        {"role": "assistant", "content": "Vectorised operations avoid the interpreter."},
        {"role": "user", "content": "Does it also use several cores?"},
    ]
    warm = default_rw.engine
    _generate(default_rw, warm, CONVERSATION, None)  # the follow-up reuses this prompt's prefix
    warm_out = _generate(default_rw, warm, follow, None)
    assert warm_out.timings.prompt_tokens_reused > 0
    cold = Rewriter(n_ctx=2048)
    cold_out = _generate(cold, cold.engine, follow, None)
    assert cold_out.timings.prompt_tokens_reused == 0
    assert cold_out.tokens == warm_out.tokens


def test_split_invariance_sets_pass_rows_and_drafting(default_rw):
    engine = default_rw.engine
    found = engine._split_invariance()
    assert found in (0, 1, 2)
    assert engine.pass_rows == (2 if found == 2 else 1)
    assert engine.drafting == (found > 0)
    engine.draft_tokens = 0
    assert not engine.drafting
    engine.draft_tokens = None


def _simulate(policy, passes: int, accepted: int, plain_ms: float, draft_ms: float) -> int:
    """``passes`` decoding passes where a draft is always found: how many of them verified one."""
    for _ in range(passes):
        if policy.allow():
            policy.observe(True, accepted, draft_ms)
        else:
            policy.observe(False, 0, plain_ms)
    return policy.drafted


def test_draft_policy_stops_drafting_that_does_not_pay_and_keeps_drafting_that_does():
    from qr_edge.decoding import DraftPolicy

    # a 3B model on a laptop CPU with drafts nobody accepts: a drafting pass costs 1.7 plain ones
    assert _simulate(DraftPolicy(), 200, accepted=0, plain_ms=100.0, draft_ms=170.0) <= 10
    # drafts accepted (two tokens a pass at 1.3x the cost): every pass drafts but the one plain pass that measures
    assert _simulate(DraftPolicy(), 200, accepted=2, plain_ms=100.0, draft_ms=130.0) == 199
    # free drafts are never wasted, even unaccepted ones
    assert _simulate(DraftPolicy(), 200, accepted=0, plain_ms=100.0, draft_ms=99.0) == 199
    # drafts that start to pay again are noticed within the longest back-off
    policy = DraftPolicy()
    _simulate(policy, 200, accepted=0, plain_ms=100.0, draft_ms=170.0)
    before = policy.drafted
    assert (
        _simulate(policy, 200, accepted=3, plain_ms=100.0, draft_ms=170.0) - before >= 200 - DraftPolicy.MAX_SKIP - 10
    )


def test_the_embedded_model_keeps_drafting(default_rw):
    """On the embedded model drafts pay (a rewrite copies runs of the query and the history): the policy keeps them."""
    result = default_rw.rewrite(CONVERSATION)
    if not default_rw.engine.drafting:
        pytest.skip("the split-invariance probe turned drafting off on this machine")
    policy = max(default_rw.engine.draft_policies.values(), key=lambda p: p.drafted)
    assert policy.drafted >= 1 and result.timings.generated_tokens > result.timings.forward_passes
