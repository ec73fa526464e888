"""`qr-edge convert` on tiny random Qwen2/Llama models built here, and on the real embedded SmolLM2 GGUF."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qr_edge import Rewriter
from qr_edge.rewriter import PromptFormatWarning

from ..tiny_models import build_adapter, build_model

pytest.importorskip("torch")
from qr_edge_convert import AdapterMismatchError, ConvertOptions, convert  # noqa: E402
from qr_edge_convert.verify import PROBES, compare, gguf_logits, hf_logits  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    qwen = build_model(root / "qwen", "qwen2")
    llama = build_model(root / "llama", "llama")
    return {
        "root": root,
        "qwen": qwen,
        "qwen_dora": build_adapter(qwen, root / "qwen-dora", dora=True),
        "llama": llama,
        "llama_lora": build_adapter(
            llama, root / "llama-lora", dora=False, targets=("q_proj", "k_proj", "v_proj", "o_proj")
        ),
    }


def _merged_reference(base: Path, adapter: Path | None):
    """An independent merge, to check the exported GGUF against (not the converter's own verify)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    tok = AutoTokenizer.from_pretrained(base)
    ids = [tok.encode(p) for p in PROBES]
    return ids, hf_logits(model.eval(), ids)


def test_qwen2_dora_full_chain(tiny, tmp_path):
    out = tmp_path / "qwen.gguf"
    report = convert(
        ConvertOptions(
            base=str(tiny["qwen"]), adapter=str(tiny["qwen_dora"]), out=str(out), quants=["F16,Q8_0", "Q4_K_M"]
        )
    )
    paths = {o.quant: Path(o.path) for o in report.outputs}
    assert set(paths) == {"F16", "Q8_0", "Q4_K_M"} and all(p.is_file() for p in paths.values())
    assert paths["Q4_K_M"].stat().st_size < paths["Q8_0"].stat().st_size < paths["F16"].stat().st_size
    assert report.merge_check.passed and report.merge_check.max_abs_logit_diff < 1e-3
    rows = {r.quant: r for r in report.parity}
    assert rows["F16"].top1_agreement >= 0.99 and rows["F16"].tokenizer_agreement == 1.0 and rows["F16"].mean_kl < 1e-3
    assert set(report.stage_seconds) >= {"load", "merge", "write F16", "quantize Q8_0", "quantize Q4_K_M", "verify"}
    assert report.peak_rss_mb > 0 and report.parameters > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    ids, reference = _merged_reference(tiny["qwen"], tiny["qwen_dora"])
    top1, kl, _, _ = compare(reference, gguf_logits(paths["F16"], ids))
    assert top1 >= 0.99 and kl < 1e-3
    # without the adapter the logits are clearly different: the merge really changed the model
    _, plain = _merged_reference(tiny["qwen"], None)
    assert compare(plain, gguf_logits(paths["F16"], ids))[1] > 10 * kl

    for path in paths.values():
        rw = Rewriter(path, n_examples=0, n_ctx=512)
        assert rw.engine.metadata["general.architecture"] == "qwen2"
        assert (
            rw.engine.metadata["qr_edge.adapter.method"] == "dora"
            and len(rw.engine.metadata["qr_edge.adapter.sha256"]) == 64
        )
        assert not rw.engine.chat_template.is_fallback
        result = rw.rewrite([{"role": "user", "content": "Who wrote Dune?"}, {"role": "user", "content": "When?"}])
        assert result.query == "When?" and result.timings.model_calls == 1


def test_llama_lora_parity_with_qk_permutation(tiny, tmp_path):
    out = tmp_path / "llama.gguf"
    report = convert(
        ConvertOptions(base=str(tiny["llama"]), adapter=str(tiny["llama_lora"]), out=str(out), quants=["F16"])
    )
    assert report.architecture == "llama" and report.parity[0].passed
    ids, reference = _merged_reference(tiny["llama"], tiny["llama_lora"])
    top1, kl, _, _ = compare(reference, gguf_logits(out, ids))
    assert top1 >= 0.99 and kl < 1e-3


def test_plain_export_and_prompt_metadata(tiny, tmp_path):
    out = tmp_path / "plain.gguf"
    report = convert(ConvertOptions(base=str(tiny["qwen"]), out=str(out), quants=["Q8_0"], n_examples=0))
    assert report.merge_check is None and report.outputs[0].path == str(out)
    rw = Rewriter(out, n_ctx=512)
    assert rw.examples == [] and "qr_edge.adapter.name" not in rw.engine.metadata


def test_adapter_trained_for_another_prompt_version_warns(tiny, tmp_path):
    adapter = tmp_path / "adapter"
    build_adapter(tiny["qwen"], adapter, dora=True)
    (adapter / "qr_edge.json").write_text(json.dumps({"prompt_format_version": "0", "n_examples": 1}))
    out = tmp_path / "v0.gguf"
    convert(ConvertOptions(base=str(tiny["qwen"]), adapter=str(adapter), out=str(out), quants=["F16"], verify=False))
    with pytest.warns(PromptFormatWarning, match="prompt format 0"):
        rw = Rewriter(out, n_ctx=512)
    assert len(rw.examples) == 1


def test_mismatched_adapter_fails_before_loading(tiny, tmp_path):
    other = build_model(tmp_path / "wide", "qwen2")
    cfg = json.loads((other / "config.json").read_text())
    cfg.update(hidden_size=32, intermediate_size=64)
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(AdapterMismatchError, match="does not fit"):
        convert(ConvertOptions(base=str(other), adapter=str(tiny["qwen_dora"]), out=str(tmp_path / "x.gguf")))
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*tmp"))


def test_ctrl_c_during_write_leaves_nothing(tiny, tmp_path):
    class CtrlCDuringWrite:
        """A progress display whose update is where the user presses Ctrl-C, halfway through writing."""

        def add_task(self, name, total=None):
            return name

        def update(self, task, completed=0, total=None):
            if task == "write F16" and total and completed >= total // 2:
                raise KeyboardInterrupt

    out = tmp_path / "int.gguf"
    with pytest.raises(KeyboardInterrupt):
        convert(ConvertOptions(base=str(tiny["qwen"]), out=str(out), quants=["Q4_K_M"]), progress=CtrlCDuringWrite())
    assert list(tmp_path.iterdir()) == []


def test_damaged_conversion_fails_verification_and_writes_nothing(tiny, tmp_path, monkeypatch):
    """A conversion bug (one attention projection's rows scrambled on the way to GGUF) is caught for F16 and
    for Q8_0, and the target folder stays empty."""
    from qr_edge_convert import VerificationError, gguf_export

    real_write = gguf_export.GGUFStream.write

    def write_with_a_bug(self, name, tensor):
        if name == "model.layers.0.self_attn.q_proj.weight":
            tensor = tensor[::-1]
        return real_write(self, name, tensor)

    monkeypatch.setattr(gguf_export.GGUFStream, "write", write_with_a_bug)
    out = tmp_path / "bad.gguf"
    with pytest.raises(VerificationError, match=r"nothing written: F16: top-1 .* \(needs 99%\)"):
        convert(ConvertOptions(base=str(tiny["qwen"]), out=str(out), quants=["F16,Q8_0"]))
    assert list(tmp_path.iterdir()) == []


def test_per_type_thresholds_pass_real_quantization_and_count_decisive_positions():
    from qr_edge_convert.verify import decisive_agreement, min_top1

    assert (min_top1("F16"), min_top1("Q8_0"), min_top1("Q4_K_M"), min_top1("q5_k_m")) == (0.99, 0.95, 0.9, 0.9)
    ref = [np.array([[0.0, 5.0, 0.0], [1.0, 1.2, 0.0], [3.0, 0.0, 0.0]]), np.array([[2.0, 0.0, 0.0]])]
    got = [np.array([[0.0, 4.0, 0.0], [1.3, 1.0, 0.0], [0.0, 3.0, 0.0]]), np.array([[2.0, 0.0, 0.0]])]
    # the near-tie (lead 0.2 < 1) flips and does not count; the clear choice that flips does
    assert decisive_agreement(ref, got) == (2 / 3, 3)
    flat = [np.array([[0.1, 0.0], [0.3, 0.0], [0.0, 0.2], [0.0, 0.4]])]
    # nearly flat logits: the clearest quarter counts (lead 0.4 >= the upper quartile 0.325; 0.3 flips, unseen)
    assert decisive_agreement(flat, [np.array([[0.0, 0.1], [0.0, 0.3], [0.2, 0.0], [0.0, 0.4]])]) == (1.0, 1)


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "qr_edge", "convert", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        **kwargs,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_interrupt_leaves_no_half_file(tiny, tmp_path, sig):
    out = tmp_path / "sig.gguf"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        # five output types: seconds of work after the temp files are reserved, so the signal lands mid-run
        [sys.executable, "-m", "qr_edge", "convert", "--base", str(tiny["qwen"]), "--out", str(out)]
        + ["--quant", "F16,Q8_0,Q6_K,Q5_K_M,Q4_K_M"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".*.tmp")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".*.tmp")), "convert never reserved its temp file"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (["--quant", "Q9_Z"], 2, "valid: F32, F16"),
        (["--adapter", "nope"], 2, "no such folder"),
        (["--base", "nope-dir"], 2, "neither a folder"),
    ],
)
def test_cli_error_paths(tiny, tmp_path, extra, code, message):
    args = ["--base", str(tiny["qwen"]), "--out", str(tmp_path / "o.gguf"), *extra]
    if "--base" in extra:
        args = args[2:]
    proc = _cli(*args)
    assert proc.returncode == code and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_cli_existing_output_needs_force(tiny, tmp_path):
    out = tmp_path / "o.gguf"
    out.write_bytes(b"keep me")
    proc = _cli("--base", str(tiny["qwen"]), "--out", str(out), "--quant", "F16")
    assert proc.returncode == 2 and "--force" in proc.stderr and out.read_bytes() == b"keep me"
    proc = _cli("--base", str(tiny["qwen"]), "--out", str(out), "--quant", "F16", "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)["parity"][0]
    assert row["passed"] and out.read_bytes()[:4] == b"GGUF"
    # the figure the check uses is named with its threshold: decisive positions, not every position
    assert row["min_decisive_top1_agreement"] == 0.99 and row["decisive_top1_agreement"] >= 0.99
    assert "min_top1" not in row


def test_cli_without_the_convert_extra_says_what_to_install(tmp_path):
    code = "import sys; sys.modules['torch'] = None; sys.argv = ['qr-edge', 'convert', '--base', 'x', '--out', 'y.gguf']; from qr_edge.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 4 and "pip install 'qr-edge[convert]'" in proc.stderr and "Traceback" not in proc.stderr


def test_real_chain_smollm2_gguf_dora_q4_k_m_runs_in_the_rewriter(tmp_path):
    """The embedded SmolLM2-135M GGUF (dequantized by transformers) + a random DoRA -> Q4_K_M -> Rewriter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from qr_edge.model_source import embedded_model_path

    base = embedded_model_path()
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(base), gguf_file=os.path.basename(base), dtype=torch.float32
    )
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"], use_dora=True, init_lora_weights=False
        ),
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.01)
    peft_model.save_pretrained(tmp_path / "dora")
    del peft_model, model
    out = tmp_path / "smol.Q4_K_M.gguf"
    proc = _cli("--base", base, "--adapter", str(tmp_path / "dora"), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (
        report["architecture"] == "llama"
        and report["merge_check"]["passed"]
        and report["parity"][0]["tokenizer_agreement"] == 1.0
    )
    rewrite = subprocess.run(
        [
            sys.executable,
            "-m",
            "qr_edge",
            "rewrite",
            str(ROOT / "examples" / "conversation.json"),
            "--model",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rewrite.returncode == 0, rewrite.stderr
    assert json.loads(rewrite.stdout)["query"] == "Why is it faster?"


def test_compare_detects_disagreement():
    a = [np.array([[0.0, 5.0], [5.0, 0.0]])]
    b = [np.array([[5.0, 0.0], [5.0, 0.0]])]
    top1, kl, diff, n = compare(a, b)
    assert top1 == 0.5 and kl > 1 and diff == 5.0 and n == 2


@pytest.mark.parametrize("base, adapter", [("qwen", "qwen_dora"), ("llama", "llama_lora")])
def test_layer_by_layer_merge_matches_the_in_memory_merge(tiny, base, adapter):
    """The layer-by-layer walk (what an HF folder goes through) gives the in-memory peft merge's tensors and logits
    (to float tolerance), with the adapter applied or merged, and never holds more than one decoder layer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from qr_edge_convert.streaming import LayerwiseModel

    ids, reference = _merged_reference(tiny[base], tiny[adapter])
    model = AutoModelForCausalLM.from_pretrained(tiny[base], dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(model, tiny[adapter]).eval()
    before = hf_logits(peft_model, ids)
    merged = {k: v.float().numpy() for k, v in peft_model.merge_and_unload(safe_merge=True).state_dict().items()}

    layered = LayerwiseModel(tiny[base], str(tiny[adapter]))

    def filled_layers() -> int:  # layers with base weights in memory (the adapter's own small weights always are)
        return sum(
            any(p.device.type != "meta" for n, p in layer.named_parameters() if "lora_" not in n)
            for layer in layered.layers
        )

    assert filled_layers() == 0

    for got, want in zip(layered.logits(ids, merged=False), before, strict=True):
        assert np.abs(got - want).max() < 1e-4
    seen, most_filled = {}, 0

    def on_tensor(name, value):
        nonlocal most_filled
        seen[name] = value.copy()
        most_filled = max(most_filled, filled_layers())

    for got, want in zip(layered.logits(ids, merged=True, on_tensor=on_tensor), reference, strict=True):
        assert np.abs(got - want).max() < 1e-4
    assert [name for name, _ in layered.plan()] == list(seen) and most_filled == 1 and filled_layers() == 0
    assert set(merged) - set(seen) <= {"lm_head.weight"}  # tied: llama.cpp reuses the embedding
    assert max(float(np.abs(seen[k] - merged[k]).max()) for k in seen) < 1e-6
    walked = {name: value.copy() for name, value in LayerwiseModel(tiny[base], str(tiny[adapter])).tensors()}
    assert max(float(np.abs(walked[k] - merged[k]).max()) for k in walked) < 1e-6
