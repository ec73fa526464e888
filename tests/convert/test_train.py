"""`qr-edge train` on a tiny random Qwen2 built here: masking, a falling loss, and the adapter's way to the runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qr_edge import Rewriter
from qr_edge.data.dataset import write_dataset
from qr_edge.data.synthetic import RewriteGenerator
from qr_edge.model_meta import TRAIN_PROMPT_FORMAT
from qr_edge.prompt import PromptBuilder

from ..tiny_models import build_model

pytest.importorskip("torch")
from qr_edge_convert import ConvertOptions, convert  # noqa: E402
from qr_edge_convert.source import inspect_base, load_base  # noqa: E402
from qr_edge_convert.train import PromptTokenizer, TrainOptions, build_examples, train  # noqa: E402


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp("base") / "qwen", "qwen2")


@pytest.fixture(scope="module")
def records():
    return RewriteGenerator(seed=5).generate(12)


def test_only_rewrite_and_answer_tokens_carry_loss(base, records):
    info = inspect_base(str(base))
    _, hf_tok = load_base(info)
    tok = PromptTokenizer(info.kind, info.ref, hf_tok)
    builder = PromptBuilder(tok.template, [], fmt=TRAIN_PROMPT_FORMAT)
    examples = build_examples(records, builder, tok, max_len=100_000, gate_ratio=1.0, seed=0)
    rewrites = [e for e in examples if "</rewritten_query>" in tok.decode([t for t in e.labels if t != -100])]
    gates = [e for e in examples if "</answer>" in tok.decode([t for t in e.labels if t != -100])]
    assert len(rewrites) == len(records) and gates  # every record gives a rewrite example, gate_ratio=1 adds gate ones
    for rec, ex in zip(records, rewrites, strict=False):
        target = tok.decode([t for t in ex.labels if t != -100])
        assert target == PromptBuilder.rewrite_completion(rec.rewrite)
        first = next(i for i, t in enumerate(ex.labels) if t != -100)
        assert all(t == -100 for t in ex.labels[:first]) and tok.decode(ex.input_ids[:first]).endswith(
            "<rewritten_query>"
        )
        assert ex.input_ids[:first] == tok.prompt(builder.rewrite_prompt(rec.messages).text)  # what the runtime sends
    for ex in gates:
        assert tok.decode([t for t in ex.labels if t != -100]) in ("yes</answer>", "no</answer>")


def test_training_lowers_the_loss_and_the_adapter_reaches_the_runtime(base, records, tmp_path):
    data = tmp_path / "train.jsonl"
    write_dataset(records[:4], data)
    out = tmp_path / "adapter"
    report = train(
        TrainOptions(
            base=str(base),
            data=[str(data)],
            out=str(out),
            epochs=20,
            lr=5e-3,
            rank=4,
            alpha=8,
            batch=4,
            gate_ratio=0.0,
            save_every=5,
            max_len=1500,
        )
    )
    assert report.steps == 20 and report.last_loss < 0.8 * report.first_loss
    assert report.examples_per_second > 0 and report.tokens_per_second > 0 and report.threads >= 1
    meta = json.loads((out / "qr_edge.json").read_text())
    assert meta["prompt_format_version"] == TRAIN_PROMPT_FORMAT and meta["n_examples"] == 0 and meta["method"] == "dora"
    assert (out / "adapter_config.json").is_file() and (out / "checkpoint" / "trainer_state.pt").is_file()

    gguf = tmp_path / "tuned.gguf"
    convert(ConvertOptions(base=str(base), adapter=str(out), out=str(gguf), quants=["F16"]))
    rw = Rewriter(gguf, n_ctx=2048)
    assert rw.engine.metadata["qr_edge.prompt_format_version"] == TRAIN_PROMPT_FORMAT
    assert rw.examples == [] and rw.builder.compact  # the model records the prompt it was trained on
    result = rw.rewrite(records[0].messages)
    assert result.query == records[0].query and result.timings.model_calls == 1


def test_resume_continues_from_the_checkpoint(base, records, tmp_path):
    data = tmp_path / "train.jsonl"
    write_dataset(records, data)
    out = tmp_path / "adapter"
    opts = dict(
        base=str(base),
        data=[str(data)],
        out=str(out),
        epochs=2,
        rank=4,
        alpha=8,
        batch=4,
        gate_ratio=0.0,
        save_every=2,
        max_len=1500,
    )
    first = train(TrainOptions(**opts, max_steps=3))
    assert first.examples_trained == 12 and first.examples == 12  # 3 steps of 4, of the 12 records' examples
    state = __import__("torch").load(out / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 2
    # stopped between the save's two renames: only the previous checkpoint, in checkpoint.old, is left
    (out / "checkpoint").rename(out / "checkpoint.old")
    report = train(TrainOptions(**opts, resume=True))
    assert report.steps == 6 and report.steps_per_second > 0
    assert report.resumed_at == 2 and not (out / "checkpoint.old").exists()


def test_cli_errors(base, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qr_edge",
            "train",
            "--base",
            str(base),
            "--data",
            str(bad),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2 and "line 1" in proc.stderr and "Traceback" not in proc.stderr
    good = tmp_path / "good.jsonl"
    write_dataset(RewriteGenerator(seed=1).generate(2), good)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qr_edge",
            "train",
            "--base",
            str(base),
            "--data",
            str(good),
            "--out",
            str(tmp_path / "o"),
            "--prompt-format",
            "9",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2 and "prompt format" in proc.stderr and "Traceback" not in proc.stderr


def test_benchmark_needs_no_out_and_training_does(base, tmp_path):
    """The README's "size a run first" command has no --out: it saves nothing, so none is needed; a real run
    without --out is a usage error (exit 2), not a traceback."""
    data = tmp_path / "train.jsonl"
    write_dataset(RewriteGenerator(seed=1).generate(4), data)
    cmd = [sys.executable, "-m", "qr_edge", "train", "--base", str(base), "--data", str(data), "--lora", "--batch", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([*cmd, "--benchmark", "1"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and "examples/s" in proc.stdout, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]  # nothing saved
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "--out" in proc.stderr and "Traceback" not in proc.stderr


def test_gpu_options_say_what_is_missing_on_a_cpu_machine(base, tmp_path):
    """--device cuda and --qlora on a machine without CUDA (or bitsandbytes): a typed error, exit 2, no traceback."""
    import importlib.util

    import torch

    data = tmp_path / "train.jsonl"
    write_dataset(RewriteGenerator(seed=1).generate(2), data)
    cmd = [sys.executable, "-m", "qr_edge", "train", "--base", str(base), "--data", str(data), "--benchmark", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if not torch.cuda.is_available():
        proc = subprocess.run([*cmd, "--device", "cuda"], capture_output=True, text=True, env=env)
        assert proc.returncode == 2 and "sees no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([*cmd, "--qlora"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    if importlib.util.find_spec("bitsandbytes") is None:
        assert "pip install bitsandbytes" in proc.stderr
    elif not torch.cuda.is_available():
        assert "--qlora needs a CUDA GPU" in proc.stderr
    proc = subprocess.run([*cmd, "--device", "tpu"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "choose auto, cpu or cuda" in proc.stderr


def test_a_cpu_run_is_the_same_with_gradient_checkpointing(base, records, tmp_path):
    """Checkpointing recomputes activations instead of keeping them: the same losses, step for step."""
    data = tmp_path / "train.jsonl"
    write_dataset(records, data)
    runs = [
        train(
            TrainOptions(base=str(base), data=[str(data)], lora=True, batch=4, benchmark=3, gradient_checkpointing=gc)
        )
        for gc in (False, True)
    ]
    assert runs[0].device == runs[1].device == "cpu" and runs[0].peak_gpu_memory_mb is None
    assert (runs[0].first_loss, runs[0].last_loss) == pytest.approx((runs[1].first_loss, runs[1].last_loss), abs=1e-4)
