"""Tokenizer metadata for the GGUF: copied verbatim from a GGUF base, or built from a HF tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf

from qr_edge.lora_merge import copy_fields

from .errors import ConvertError

CHAT_END = "<|im_end|>"

# llama.cpp picks its pre-tokenizer regex by name; these fragments of tokenizer.json's pre_tokenizer tell which.
_PRE_PATTERNS = [
    ("qwen2", r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"),
    ("llama-bpe", r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"),
]


def detect_pre_tokenizer(tokenizer_json: dict[str, Any]) -> str:
    """Name of the llama.cpp pre-tokenizer equivalent to a HF tokenizer.json's ``pre_tokenizer``."""
    pre = json.dumps(tokenizer_json.get("pre_tokenizer"))
    for name, fragment in _PRE_PATTERNS:
        if json.dumps(fragment)[1:-1] in pre:
            return name
    if '"Digits"' in pre and '"individual_digits": true' in pre and '"ByteLevel"' in pre:
        return "smollm"
    if '"ByteLevel"' in pre and '"use_regex": true' in pre:
        return "gpt-2"
    raise ConvertError(
        "unrecognised pre-tokenizer in tokenizer.json; pass --pre NAME (as llama.cpp names it, e.g. qwen2)"
    )


def copy_vocab_from_gguf(writer: gguf.GGUFWriter, source: str) -> None:
    """Every ``tokenizer.*`` key of the source GGUF, unchanged (its pre-tokenizer and chat template included)."""
    copy_fields(gguf.GGUFReader(source), writer, prefix="tokenizer.")


def add_vocab_from_hf(
    writer: gguf.GGUFWriter, tokenizer: Any, tokenizer_dir: Path, vocab_size: int, pre: str | None
) -> str:
    """BPE tokens, types and merges, special ids (chat end token as EOS), chat template; returns the pre-tokenizer."""
    tok_json_path = tokenizer_dir / "tokenizer.json"
    if not tok_json_path.is_file():
        raise ConvertError("only fast (tokenizer.json) BPE tokenizers are supported")
    tok_json = json.loads(tok_json_path.read_text(encoding="utf-8"))
    if tok_json.get("model", {}).get("type") != "BPE":
        raise ConvertError(
            f"tokenizer model {tok_json.get('model', {}).get('type')!r} is not BPE; only BPE is supported"
        )
    pre = pre or detect_pre_tokenizer(tok_json)
    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=len(tokens))
    if CHAT_END in tokenizer.get_vocab():
        special.special_token_ids["eos"] = tokenizer.get_vocab()[CHAT_END]
    # Say explicitly whether BOS is added: llama.cpp's default differs per pre-tokenizer, HF's behaviour is the truth.
    bos = tokenizer.bos_token_id
    special.add_special_token["bos"] = bos is not None and tokenizer.encode("a")[:1] == [bos]
    special.add_to_gguf(writer)
    return pre
