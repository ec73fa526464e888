"""Every model result carries a confidence in [0, 1], from the log-probabilities greedy decoding computed anyway:
right (checked against llama.cpp's own logits of the same tokens), with no extra model call."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qr_edge import Decision, Rewriter
from qr_edge.confidence import confidence_scores, uncalibrated_confidence

from ..conftest import CONVERSATION


@pytest.fixture(scope="module")
def default() -> Rewriter:
    return Rewriter(n_ctx=2048)


def test_logprobs_are_llama_cpps_own_for_the_emitted_tokens(default):
    """The decoding loop's log-probabilities equal a log-softmax of the logits llama.cpp gives, position by
    position, when prompt + output are evaluated again from scratch in one pass."""
    engine = default.engine
    _, prompt, tokens, max_tokens = default.fit_prompt(CONVERSATION)
    generation = engine.generate(prompt, max_tokens=max_tokens, tokens=tokens, adapter=default.default_adapter)
    assert generation.logprobs and len(generation.logprobs) <= len(generation.tokens)
    llm = engine._llm
    llm.reset()
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    sequence = [*tokens, *generation.tokens]
    rows = [engine._eval(sequence, outputs=len(generation.tokens) + 1)]
    logits = np.asarray(rows[0], dtype=np.float64)
    for i, logprob in enumerate(generation.logprobs):
        row = logits[i]
        expected = row[generation.tokens[i]] - row.max() - math.log(np.exp(row - row.max()).sum())
        assert logprob == pytest.approx(expected, abs=0.05), i  # another split into passes: last-bit differences
    assert all(lp <= 1e-6 for lp in generation.logprobs)
    llm.reset()
    engine._live_prompt = None  # the live context is this test's, not a saved conversation's


@pytest.mark.parametrize(
    "messages",
    [CONVERSATION, [{"role": "user", "content": "Was ist die Hauptstadt von Frankreich?"}, *CONVERSATION]],
)
def test_every_model_result_has_a_confidence_and_costs_no_extra_call(default, messages):
    result = default.rewrite(messages)
    assert result.timings.model_calls == 1
    assert result.confidence is not None and 0.0 <= result.confidence <= 1.0
    scores = result.confidence_scores
    assert scores is not None and scores.tokens >= 1 and scores.min_logprob <= scores.mean_logprob <= 0.0
    assert result.confidence == uncalibrated_confidence(scores)
    assert '"confidence"' in result.to_json()


def test_results_without_a_model_call_have_no_confidence(default):
    result = default.rewrite([{"role": "user", "content": "What is DoRA?"}])
    assert result.decision == Decision.NO_HISTORY and result.confidence is None
    gated = default.rewrite_queries(["Which is faster, NumPy or Python loops?", "How tall is the Eiffel Tower?"])
    assert (gated.confidence is None) == (gated.timings.model_calls < 3)  # the gate decided alone, or it rewrote


def test_changed_tokens_are_those_the_query_does_not_have():
    scores = confidence_scores([5, 6, 7, 6, 9], [-0.1, -0.2, -1.0, -0.3, -2.0], query_tokens=[6, 5, 8])
    assert scores.tokens == 5 and scores.changed_tokens == 3  # 7, the second 6, 9
    assert scores.changed_mean_logprob == pytest.approx((-1.0 - 0.3 - 2.0) / 3, abs=1e-4)
    assert scores.changed_min_logprob == -2.0 and scores.min_logprob == -2.0
    copy = confidence_scores([1, 2], [-0.01, -0.03], query_tokens=[1, 2])
    assert copy.changed_tokens == 0 and copy.changed_mean_logprob is None
    assert uncalibrated_confidence(copy) == pytest.approx(math.exp(-0.02), abs=1e-3)
    assert confidence_scores([], [], [1]) is None
