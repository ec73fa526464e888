"""Every model result carries a confidence in [0, 1], from the log-probabilities greedy decoding computed anyway:
right (checked against llama.cpp's own logits of the same tokens), with no extra model call."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from qr_edge import Decision, Rewriter
from qr_edge.confidence import confidence_scores, read_calibration, uncalibrated_confidence
from qr_edge.model_source import EMBEDDED_MODELS

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
    # the bundled adapter records its dev-fitted map: the result is that map of the scores, not the raw score
    calibration = read_calibration(default.engine.adapters[default.default_adapter].metadata)
    assert calibration is not None
    assert result.confidence == calibration(scores) != uncalibrated_confidence(scores)
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


def test_maps_are_monotone_probabilities_and_cross_validation_sees_overfitting():
    """Every map is a non-decreasing probability; Platt recovers a logistic law; on scores that say nothing the
    isotonic map looks calibrated in sample and is not on held-out folds (why the choice is cross-validated)."""
    from qr_edge.evaluate.calibration import MAP_METHODS, cross_validated_ece, ece, fit_map, platt

    rng = np.random.default_rng(1)
    x = rng.normal(-1.0, 1.0, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(2.0 * x + 1.0)))).astype(float)
    a, b = platt(x, y)
    assert abs(a - 2.0) < 0.3 and abs(b - 1.0) < 0.3
    for method in MAP_METHODS:
        bx, by = fit_map(x, y, method)
        assert bx == sorted(bx) and by == sorted(by) and all(0.0 <= v <= 1.0 for v in by)
    noise_x, noise_y = rng.normal(size=300), (rng.random(300) < 0.5).astype(float)
    bx, by = fit_map(noise_x, noise_y, "isotonic")
    in_sample = ece(np.interp(noise_x, bx, by), noise_y.astype(bool))
    assert cross_validated_ece(noise_x, noise_y, "isotonic") > in_sample + 0.02
    with pytest.raises(ValueError, match="unknown map"):
        fit_map(x, y, "spline")


def test_calibration_is_fitted_on_dev_cases_and_applied_from_the_adapter(tmp_path):
    """scripts/calibrate_confidence.py fits a map (the one that calibrates held-out folds best) on eval cases and
    writes it into qr_edge.json and into an adapter's GGUF key (every other key and tensor kept); the adapter then
    gives calibrated confidences and applies the map's default min_confidence; a malformed map is ignored."""
    import json
    import subprocess
    import sys

    from qr_edge.confidence import Calibration, ConfidenceScores, file_calibration, read_calibration
    from qr_edge.evaluate.calibration import MAP_METHODS
    from qr_edge.evaluate.quality import CaseResult
    from qr_edge.model_meta import META_CONFIDENCE_CALIBRATION
    from qr_edge.model_source import bundled_adapter_path, embedded_model_path

    rng = np.random.default_rng(0)
    lines = []
    for i in range(200):
        lp = float(-rng.exponential(0.8))
        right = rng.random() < math.exp(lp)  # the likelier the tokens, the likelier right
        scores = ConfidenceScores(tokens=4, mean_logprob=lp / 2, min_logprob=lp, changed_tokens=0)
        out = "the reference" if right else "something else"  # worse than the query (its BLEU is 0)
        case = CaseResult(
            id=str(i),
            lang="en",
            label="rewritten",
            query="the reference it?",
            reference="The reference",
            outputs={"qr-edge": out},
            decision="rewritten",
            guard_rejected=False,
            ms=1.0,
            confidence=math.exp(lp),
            confidence_scores=scores,
        )
        lines.append(case.model_dump_json())
    cases = tmp_path / "dev.cases.jsonl"
    cases.write_text("\n".join(lines) + "\n")
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "qr_edge.json").write_text('{"prompt_format_version": "2"}')
    adapter = tmp_path / "calibrated.lora.gguf"
    shutil.copy(bundled_adapter_path(), adapter)
    script = Path(__file__).resolve().parents[2] / "scripts" / "calibrate_confidence.py"
    run = subprocess.run(
        [sys.executable, str(script), "--cases", str(cases), "--adapter-dir", str(folder), "--adapter-gguf", adapter],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "AUROC" in run.stdout and "chosen:" in run.stdout
    fitted = json.loads((folder / "qr_edge.json").read_text())["confidence_calibration"]
    calibration = Calibration.model_validate(fitted)
    assert calibration.n == 200 and calibration.y == sorted(calibration.y)
    assert (
        calibration.method in MAP_METHODS
        and f"{calibration.method} map" in run.stdout
        and "cross-validated" in run.stdout
    )
    low = ConfidenceScores(tokens=4, mean_logprob=-2.0, min_logprob=-4.0, changed_tokens=0)
    high = ConfidenceScores(tokens=4, mean_logprob=-0.01, min_logprob=-0.02, changed_tokens=0)
    assert calibration(low) < calibration(high)

    from gguf import GGUFReader

    before, after = GGUFReader(bundled_adapter_path()), GGUFReader(adapter)
    assert file_calibration(adapter) == calibration
    assert [(t.name, t.data.tobytes()) for t in before.tensors] == [(t.name, t.data.tobytes()) for t in after.tensors]
    assert not list(tmp_path.glob("*.tmp"))
    rw = Rewriter(embedded_model_path(), adapter=str(adapter), n_ctx=2048)
    result = rw.rewrite(CONVERSATION)
    assert result.confidence == calibration(result.confidence_scores)
    bar = calibration.min_confidence
    assert bar is not None  # dropping the wrong half costs no BLEU on these cases
    if result.confidence < bar:
        assert result.rewrite == result.query
    else:
        assert result.decision != Decision.KEPT_LOW_CONFIDENCE
    assert read_calibration({META_CONFIDENCE_CALIBRATION: '{"score": "nope", "x": [0], "y": [2]}'}) is None

    # --bar-only: the map as recorded, the bar chosen again on other cases; tensors untouched
    few = tmp_path / "few.cases.jsonl"
    few.write_text("\n".join(lines[:40]) + "\n")
    run = subprocess.run(
        [sys.executable, str(script), "--cases", str(few), "--adapter-gguf", adapter, "--bar-only"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    again = file_calibration(adapter)
    assert again is not None and again.model_dump(exclude={"min_confidence"}) == calibration.model_dump(
        exclude={"min_confidence"}
    )
    assert f"-> {again.min_confidence} on 40 dev cases" in run.stdout
    assert [(t.name, t.data.tobytes()) for t in before.tensors] == [
        (t.name, t.data.tobytes()) for t in GGUFReader(adapter).tensors
    ]
    alone = subprocess.run(
        [sys.executable, str(script), "--cases", str(few), "--bar-only"], capture_output=True, text=True
    )
    assert alone.returncode != 0 and "--bar-only needs an --adapter-gguf" in alone.stderr


def test_min_confidence_keeps_the_query_with_its_own_decision(default):
    rewritten = default.rewrite(CONVERSATION)  # the default rewrites this follow-up (the README's example)
    assert rewritten.decision == Decision.REWRITTEN and rewritten.changed and rewritten.confidence < 1.0
    strict = Rewriter(n_ctx=2048, min_confidence=min(1.0, rewritten.confidence + 0.001))
    kept = strict.rewrite(CONVERSATION)
    assert kept.decision == Decision.KEPT_LOW_CONFIDENCE and kept.rewrite == kept.query and not kept.changed
    assert kept.confidence == rewritten.confidence and "below min_confidence" in kept.reason
    shown, bar = (float(word) for word in re.findall(r"\d\.\d+|\d", kept.reason))
    assert shown < bar  # the reason never reads "0.76 is below 0.76"
    assert kept.raw_output == rewritten.raw_output  # same model call, only the decision differs
    # the held-back rewrite is still searched, beside the query; a sure rewrite is searched alone
    assert kept.queries == [kept.query, rewritten.rewrite] and rewritten.queries == [rewritten.rewrite]
    lenient = Rewriter(n_ctx=2048, min_confidence=max(0.0, rewritten.confidence - 0.01))
    assert lenient.rewrite(CONVERSATION).decision == Decision.REWRITTEN
    with pytest.raises(ValueError, match="min_confidence"):
        Rewriter(n_ctx=2048, min_confidence=1.5)


def test_by_default_the_bar_is_the_one_the_adapter_records(default):
    """``min_confidence=None`` applies the bar the bundled map records (chosen on dev; the fitted-map test above
    shows a result below it kept); 0 turns it off."""
    bar = read_calibration(default.engine.adapters[default.default_adapter].metadata).min_confidence
    assert bar is not None and 0.0 < bar < 1.0 and default.min_confidence is None
    result = default.rewrite(CONVERSATION)
    assert result.confidence >= bar and result.decision == Decision.REWRITTEN
    strict = Rewriter(n_ctx=2048, min_confidence=min(1.0, result.confidence + 0.01))
    assert strict.rewrite(CONVERSATION).decision == Decision.KEPT_LOW_CONFIDENCE  # an explicit bar wins
    off = Rewriter(n_ctx=2048, min_confidence=0.0)
    assert off.rewrite(CONVERSATION).raw_output == result.raw_output and off.min_confidence == 0.0


@pytest.mark.parametrize("name", sorted(EMBEDDED_MODELS))
def test_every_bundled_adapter_records_a_map_of_todays_right_with_a_bar(name):
    """Each embedded model's adapter is calibrated under the one definition of "right" and brings its own bar
    (chosen on its dev cases), so ``Rewriter(model=name)`` applies it: a map fitted under an older definition fails."""
    from qr_edge.confidence import RIGHT, file_calibration
    from qr_edge.model_source import bundled_adapter_path

    calibration = file_calibration(bundled_adapter_path(EMBEDDED_MODELS[name]))
    assert calibration is not None and calibration.right == RIGHT
    assert calibration.min_confidence is not None and 0.5 <= calibration.min_confidence < 1.0
