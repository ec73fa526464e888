"""GGUF LoRA adapters: exported from peft, checked against peft in torch, applied by llama.cpp at run time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qr_edge import AdapterError, Rewriter

from ..tiny_models import build_adapter, build_model

pytest.importorskip("torch")
from qr_edge_convert import ConvertError, ConvertOptions, convert, export_adapter  # noqa: E402
from qr_edge_convert.verify import PROBES, compare, gguf_logits, gguf_tokenizer, hf_logits  # noqa: E402

CONVERSATION = [
    {"role": "user", "content": "How tall is the Eiffel Tower?"},
    {"role": "assistant", "content": "It is about 330 metres tall."},
    {"role": "user", "content": "When was it finished?"},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Per architecture: an HF model, its F32 GGUF (the base llama.cpp runs), and two LoRA adapters."""
    root = tmp_path_factory.mktemp("lora")
    out = {}
    for arch in ("qwen2", "llama", "gemma3"):
        hf = build_model(root / arch, arch)
        base = root / f"{arch}.gguf"
        convert(ConvertOptions(base=str(hf), out=str(base), quants=["F32"]))
        out[arch] = {
            "hf": hf,
            "gguf": base,
            "lora1": build_adapter(hf, root / f"{arch}-lora1", dora=False, seed=1),
            "lora2": build_adapter(hf, root / f"{arch}-lora2", dora=False, seed=2),
            "dora": build_adapter(hf, root / f"{arch}-dora", dora=True, seed=3),
        }
    return out


def _export(t: dict, name: str, out: Path, **kw) -> Path:
    export_adapter(ConvertOptions(base=str(t["gguf"]), adapter=str(t[name]), out=str(out), adapter_only=True, **kw))
    return out


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gemma3"])
def test_gguf_adapter_agrees_with_peft(tiny, tmp_path, arch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    t = tiny[arch]
    out = tmp_path / "a.lora.gguf"
    report = export_adapter(
        ConvertOptions(base=str(t["gguf"]), adapter=str(t["lora1"]), out=str(out), adapter_only=True)
    )
    assert out.is_file() and report.top1_agreement >= 0.99 and report.weights == 2 * 7
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    # An independent reference: peft on the HF model (not the GGUF-dequantized one the exporter used).
    tokenize = gguf_tokenizer(t["gguf"])
    ids = [tokenize(p) for p in PROBES]
    model = AutoModelForCausalLM.from_pretrained(t["hf"], dtype=torch.float32)
    reference = hf_logits(PeftModel.from_pretrained(model, t["lora1"]).eval(), ids)
    top1, kl, max_diff, _ = compare(reference, gguf_logits(t["gguf"], ids, lora_path=out))
    scale = max(float(abs(r).max()) for r in reference)
    # F16 storage of a deliberately large random adapter: a few hundredths of a logit (measured 0.21 of 5.0)
    assert top1 >= 0.99 and kl < 1e-3 and max_diff < 0.06 * scale, (top1, kl, max_diff, scale)
    # and the adapter really changes the model
    plain = gguf_logits(t["gguf"], ids)
    assert compare(reference, plain)[2] > 10 * max(max_diff, 1e-3)


def test_dora_is_refused_and_writes_nothing(tiny, tmp_path):
    out = tmp_path / "d.lora.gguf"
    with pytest.raises(ConvertError, match="DoRA"):
        _export(tiny["qwen2"], "dora", out)
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_dora_with_one_line(tiny, tmp_path):
    t = tiny["qwen2"]
    out = tmp_path / "d.lora.gguf"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qr_edge",
            "convert",
            "--base",
            str(t["gguf"]),
            "--adapter",
            str(t["dora"]),
            "--adapter-only",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0 and "DoRA" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_two_adapters_switch_per_call_on_one_base(tiny, tmp_path):
    t = tiny["qwen2"]
    a1, a2 = _export(t, "lora1", tmp_path / "one.gguf"), _export(t, "lora2", tmp_path / "two.gguf")
    rw = Rewriter(t["gguf"], adapters={"one": a1, "two": a2}, n_ctx=4096, n_examples=0)
    assert rw.adapter_names == ["one", "two"] and rw.default_adapter is None
    engine_model = rw.engine._llm.model
    outputs = {}
    for name in ("one", "two", None, "one"):
        res = rw.rewrite(CONVERSATION, adapter=name)
        outputs.setdefault(name, []).append(res.raw_output)
        # a switch never reuses the previous adapter's KV cells: the whole prompt is evaluated again
        assert res.timings.prompt_tokens_reused == 0 or name == "one" and len(outputs["one"]) == 2
    assert rw.engine._llm.model is engine_model  # the base was never reloaded
    assert outputs["one"][0] == outputs["one"][1]  # switching back gives the same output
    assert len({outputs["one"][0], outputs["two"][0], outputs[None][0]}) == 3
    # same adapter, same conversation again: its own saved state is reused
    again = rw.rewrite(CONVERSATION, adapter="one")
    assert again.timings.prompt_tokens_reused > 0 and again.raw_output == outputs["one"][0]
    with pytest.raises(AdapterError, match="no adapter named 'three'"):
        rw.rewrite(CONVERSATION, adapter="three")


def test_adapter_records_its_prompt_format_and_base(tiny, tmp_path):
    t = tiny["llama"]
    (t["lora1"] / "qr_edge.json").write_text(
        '{"prompt_format_version": "2", "n_examples": 0, "dataset_sha256": "ab", "gate_depend_threshold": 0.7}'
    )
    try:
        path = _export(t, "lora1", tmp_path / "x.gguf")
    finally:
        (t["lora1"] / "qr_edge.json").unlink()
    rw = Rewriter(t["gguf"], adapter=path, n_ctx=4096)
    meta = rw.engine.adapters["default"].metadata
    assert meta["general.type"] == "adapter" and meta["adapter.type"] == "lora"
    assert meta["qr_edge.prompt_format_version"] == "2" and meta["qr_edge.base.architecture"] == "llama"
    assert len(meta["qr_edge.base.sha256"]) == 64 and meta["qr_edge.train.dataset_sha256"] == "ab"
    assert rw.builder.compact and rw.examples == []
    # the gate threshold calibrated for the adapter reaches its gate; the bare base keeps 0.5
    assert rw.gate.depend_threshold == 0.7 and rw.gate.need_threshold == 0.5
    assert "<task>Rewrite <current_query>" in rw.render_prompt(CONVERSATION)
    assert rw.render_prompt(CONVERSATION, adapter=None) != rw.render_prompt(CONVERSATION)


def test_wrong_architecture_and_bad_files_are_typed_errors(tiny, tmp_path):
    qwen_adapter = _export(tiny["qwen2"], "lora1", tmp_path / "q.gguf")
    with pytest.raises(AdapterError, match="q.gguf"):
        Rewriter(tiny["llama"]["gguf"], adapter=qwen_adapter, n_ctx=512)
    with pytest.raises(AdapterError, match="not found"):
        Rewriter(tiny["llama"]["gguf"], adapter=tmp_path / "missing.gguf", n_ctx=512)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    with pytest.raises(AdapterError, match="not a GGUF"):
        Rewriter(tiny["llama"]["gguf"], adapter=junk, n_ctx=512)
    # a model file is not an adapter
    with pytest.raises(AdapterError):
        Rewriter(tiny["llama"]["gguf"], adapter=tiny["llama"]["gguf"], n_ctx=512)


def test_cli_runs_an_adapter_without_torch(tiny, tmp_path):
    t = tiny["qwen2"]
    path = _export(t, "lora1", tmp_path / "a.gguf")
    code = (
        "import sys, json; from qr_edge.cli import main; sys.argv = ['qr-edge', 'rewrite', '-', '--json', '--model', "
        f"{str(t['gguf'])!r}, '--adapter', {str(path)!r}, '--n-ctx', '4096']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    import json

    proc = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(CONVERSATION), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["query"] == "When was it finished?"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "qr_edge",
            "rewrite",
            "-",
            "--model",
            str(t["gguf"]),
            "--adapter",
            str(tmp_path / "nope.gguf"),
        ],
        input=json.dumps(CONVERSATION),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 3 and "adapter file not found" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gemma3"])
def test_training_continues_a_gguf_adapter_exactly(tiny, tmp_path, arch):
    """--init-adapter reads a GGUF LoRA back (llama's q/k row permutation undone): with lr 0 the saved adapter is
    the original peft adapter, tensor for tensor; another rank is refused with a typed error."""
    import numpy as np
    from safetensors.numpy import load_file

    from qr_edge.data.dataset import write_dataset
    from qr_edge.data.synthetic import RewriteGenerator
    from qr_edge_convert.train import TrainOptions, train

    t = tiny[arch]
    gguf_lora = _export(t, "lora1", tmp_path / "a.lora.gguf")
    data = tmp_path / "train.jsonl"
    write_dataset(RewriteGenerator(seed=5).generate(4), data)
    opts = dict(base=str(t["gguf"]), data=[str(data)], out=str(tmp_path / "cont"), lora=True, alpha=8, batch=2)
    train(TrainOptions(**opts, rank=4, lr=0.0, max_steps=1, gate_ratio=0.0, init_adapter=str(gguf_lora)))
    before = load_file(t["lora1"] / "adapter_model.safetensors")
    after = load_file(tmp_path / "cont" / "adapter_model.safetensors")
    assert set(before) == set(after) and len(before) % (2 * 7) == 0 and before  # A and B of 7 modules per layer
    for key, value in before.items():
        np.testing.assert_allclose(after[key], value, rtol=2e-3, atol=2e-3)  # stored as F16 in the GGUF
    with pytest.raises(ConvertError, match="lora_A"):
        train(TrainOptions(**opts, rank=8, max_steps=1, init_adapter=str(gguf_lora)))
