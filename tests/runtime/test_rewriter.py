"""The full pipeline on the real embedded model (llama.cpp, SmolLM2-135M): no mocks."""

import json
import threading

import pytest

from qr_edge import (
    ContextOverflowError,
    Decision,
    ModelLoadError,
    ModelNotFoundError,
    QrEdgeError,
    Rewriter,
    RewriteResult,
    parse_messages,
)

from ..conftest import CONVERSATION


def valid_result(result: RewriteResult, query: str) -> None:
    assert isinstance(result.rewrite, str) and result.rewrite.strip()
    assert result.query == query
    assert result.changed == (result.rewrite != query)
    if result.decision != Decision.REWRITTEN:
        assert result.rewrite == query
    json.loads(result.to_json())


def test_rewrite_returns_a_complete_result(rewriter):
    result = rewriter.rewrite(CONVERSATION)
    valid_result(result, "Why is it faster?")
    assert result.raw_output is not None
    t = result.timings
    assert t.model_calls == 1 and t.prompt_tokens == t.prompt_tokens_reused + t.prompt_tokens_evaluated
    assert t.generated_tokens >= 1 and t.total_ms > 0


def test_no_history_does_not_call_the_model(rewriter):
    for messages in (
        [{"role": "user", "content": "What is DoRA?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    ):
        result = rewriter.rewrite(messages)
        assert result.decision == Decision.NO_HISTORY and result.timings.model_calls == 0 and not result.changed


def test_second_call_and_follow_up_reuse_the_prefix(rewriter):
    rewriter.rewrite(CONVERSATION)
    again = rewriter.rewrite(CONVERSATION).timings
    assert (
        again.prompt_tokens_evaluated <= rewriter.engine.pass_rows  # a pass evaluates at least that many
        and again.prompt_tokens_reused == again.prompt_tokens - again.prompt_tokens_evaluated
    )
    follow = CONVERSATION + [
        {"role": "assistant", "content": "It avoids the interpreter."},
        {"role": "user", "content": "Does it use the GPU?"},
    ]
    t = rewriter.rewrite(follow).timings
    stable = len(rewriter.engine.tokenize(rewriter.builder.rewrite_prompt(parse_messages(follow)).stable_prefix))
    assert t.prompt_tokens_reused > stable  # reuses the stable prefix and the shared part of the conversation
    assert t.prompt_tokens_evaluated < t.prompt_tokens // 4


def test_switching_between_gate_and_rewrite_restores_saved_prefixes(rewriter):
    rewriter.rewrite(CONVERSATION)
    rewriter.rewrite_queries(["Tell me about the Great Wall.", "How long is it?"])  # gate prompts take the context
    t = rewriter.rewrite(
        [{"role": "user", "content": "Who wrote Dune?"}, {"role": "user", "content": "When was it published?"}]
    ).timings
    prompt = rewriter.builder.rewrite_prompt(parse_messages(CONVERSATION))
    assert t.prompt_tokens_reused >= len(rewriter.engine.tokenize(prompt.stable_prefix)) - 1


@pytest.mark.parametrize(
    "need, depend, decision, calls",
    [
        (1.01, 0.5, Decision.UNCHANGED, 1),  # stage 1 says no: no rewrite, one model call
        (0.0, 0.0, Decision.SKIPPED_MISSING_CONTEXT, 2),  # depends on the missing answer: keep the original
    ],
)
def test_gate_decisions_reach_the_result(rewriter, need, depend, decision, calls):
    gate = rewriter.gate
    old = gate.need_threshold, gate.depend_threshold
    gate.need_threshold, gate.depend_threshold = need, depend
    try:
        result = rewriter.rewrite_queries(
            ["Which laptops have the best battery life?", "How much does the second one cost?"]
        )
    finally:
        gate.need_threshold, gate.depend_threshold = old
    assert result.decision == decision and result.timings.model_calls == calls and result.gate is not None
    assert result.rewrite == "How much does the second one cost?" and not result.changed
    assert 0.0 <= result.gate.needs_rewrite_p <= 1.0


def test_gate_passes_to_rewrite_when_the_answer_is_not_needed(rewriter):
    gate = rewriter.gate
    old = gate.need_threshold, gate.depend_threshold
    gate.need_threshold, gate.depend_threshold = 0.0, 1.01
    try:
        result = rewriter.rewrite_queries(["Tell me about the Great Wall of China.", "How long is it?"])
    finally:
        gate.need_threshold, gate.depend_threshold = old
    assert result.gate.needs_rewrite and result.gate.depends_on_answer is False
    assert result.timings.model_calls == 3 and result.raw_output is not None
    valid_result(result, "How long is it?")


def test_single_query_legacy_is_no_history(rewriter):
    assert rewriter.rewrite_queries(["hello"]).decision == Decision.NO_HISTORY


def test_huge_history_is_truncated_to_fit(rewriter):
    long_turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "lorem ipsum " * 120}
        for i in range(30)
    ]
    result = rewriter.rewrite(long_turns + [{"role": "user", "content": "And the last one?"}])
    valid_result(result, "And the last one?")
    assert result.timings.prompt_tokens + 48 <= rewriter.engine.n_ctx


def test_a_query_longer_than_the_context_is_a_typed_error(rewriter):
    with pytest.raises(ContextOverflowError, match="n_ctx"):
        rewriter.rewrite([{"role": "user", "content": "hi"}, {"role": "user", "content": "word " * 3000}])


def test_shared_by_threads(rewriter):
    convs = [
        CONVERSATION,
        [{"role": "user", "content": "Who wrote Dune?"}, {"role": "user", "content": "When was it published?"}],
    ]
    results: list = []
    errors: list = []

    def work(conv):
        try:
            results.append((conv[-1]["content"], rewriter.rewrite(conv)))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(convs[i % 2],)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(results) == 6
    for query, result in results:
        valid_result(result, query)


def test_missing_and_broken_model_files(tmp_path):
    with pytest.raises(ModelNotFoundError):
        Rewriter(tmp_path / "nope.gguf")
    with pytest.raises(ModelNotFoundError, match="folder"):
        Rewriter(tmp_path)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all" * 100)
    with pytest.raises(ModelLoadError):
        Rewriter(bad)


def test_env_var_selects_the_model(monkeypatch, tmp_path):
    monkeypatch.setenv("QR_EDGE_MODEL", str(tmp_path / "from-env.gguf"))
    with pytest.raises(ModelNotFoundError, match="from-env.gguf"):
        Rewriter()


def test_hub_reference_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(QrEdgeError, match="offline|huggingface-hub"):
        Rewriter("Qwen/Qwen2.5-3B-Instruct-GGUF", hf_file="qwen2.5-3b-instruct-q4_k_m.gguf")


def test_interleaved_conversations_resume_from_their_own_saved_state(rewriter):
    a = [
        {"role": "user", "content": "Tell me about the Kindle Paperwhite e-reader and its screen."},
        {"role": "assistant", "content": "It has a 6.8 inch glare-free display and weeks of battery."},
        {"role": "user", "content": "Is it waterproof?"},
    ]
    b = [
        {"role": "user", "content": "Who wrote the novel Dune?"},
        {"role": "user", "content": "When was it published?"},
    ]
    rewriter.rewrite(a)
    rewriter.rewrite(b)  # another conversation takes the context
    follow = a + [{"role": "assistant", "content": "Yes, IPX8."}, {"role": "user", "content": "How heavy is it?"}]
    t = rewriter.rewrite(follow).timings
    stable = len(rewriter.engine.tokenize(rewriter.builder.rewrite_prompt(parse_messages(follow)).stable_prefix))
    history_a = len(rewriter.engine.tokenize(rewriter.builder.rewrite_prompt(parse_messages(a)).text)) - stable
    assert t.prompt_tokens_reused >= stable + history_a // 2  # conversation A's own history came back from its snapshot


def test_saved_kv_states_stay_within_their_byte_bound():
    probe = Rewriter(adapter=None, n_ctx=1024, n_examples=1)
    assert probe.engine.max_cache_bytes >= 64 << 20  # the default: four full contexts, at least 64 MiB
    probe.rewrite(CONVERSATION)
    one = probe.engine.cache_bytes  # the stable prefix + this conversation's prompt
    bound = 2 * one
    rw = Rewriter(adapter=None, n_ctx=1024, n_examples=1, max_cache_bytes=bound)
    for i in range(6):  # six conversations: without the bound each would keep its own saved state
        res = rw.rewrite([*CONVERSATION[:2], {"role": "user", "content": f"And what about case {i}?"}])
        assert res.query.endswith(f"{i}?") and res.timings.cache_bytes == rw.engine.cache_bytes <= bound
    assert sum(len(s) for s in rw.engine._recent_store.values()) < 6
