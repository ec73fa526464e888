"""Parity checks: the merge in transformers, then each GGUF in llama.cpp against the merged HF model."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .report import MergeCheck, ParityRow

#: Probe strings: Chinese, English, digits and punctuation, emoji, and a chat-formatted turn.
PROBES = (
    "Python和Java哪个更高效？那它的内存管理怎么样？",
    "How tall is the Eiffel Tower, and when was it finished?",
    "Order #12345 costs $67.89, due 2024-03-15 at 09:30.",
    "Great job 😀🎉👍 — thanks!",
    "<|im_start|>user\n<current_query>它怎么样？</current_query><|im_end|>\n<|im_start|>assistant\n",
)
#: Lowest top-1 agreement with the HF model per output type. Counted only where the HF model is decisive (its
#: top token leads the runner-up by at least DECISIVE_MARGIN logits): quantization may flip near-ties, a
#: conversion bug flips clear choices too. Types not listed (k-quants, Q4_0...) use MIN_TOP1_LOW_BIT.
MIN_TOP1 = {"F32": 0.99, "F16": 0.99, "BF16": 0.99, "Q8_0": 0.95}
MIN_TOP1_LOW_BIT = 0.90
DECISIVE_MARGIN = 1.0


def min_top1(quant: str) -> float:
    return MIN_TOP1.get(quant.upper(), MIN_TOP1_LOW_BIT)


def hf_logits(model: Any, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    import torch

    out = []
    with torch.no_grad():
        for seq in ids:
            logits = model(torch.tensor([list(seq)], dtype=torch.long)).logits[0]
            out.append(logits.float().numpy().copy())
    return out


def _llama(path: Path, **kwargs: Any):
    import llama_cpp

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return llama_cpp.Llama(model_path=str(path), verbose=False, **kwargs)


def gguf_tokenizer(path: Path) -> Callable[[str], list[int]]:
    """llama.cpp's tokenizer of a GGUF (vocab only, no weights loaded), special tokens parsed."""
    llm = _llama(path, vocab_only=True)
    return lambda text: llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)


def gguf_logits(path: Path, ids: Sequence[Sequence[int]], lora_path: Path | None = None) -> list[np.ndarray]:
    """Logits at every position, from llama.cpp; with ``lora_path``, a GGUF LoRA applied on the model."""
    n_ctx = max(len(s) for s in ids) + 8
    extra = {"lora_path": str(lora_path)} if lora_path is not None else {}
    llm = _llama(path, logits_all=True, n_ctx=max(n_ctx, 64), n_batch=max(n_ctx, 64), **extra)
    out = []
    for seq in ids:
        llm.reset()
        llm.eval(list(seq))
        out.append(np.array(llm.scores[: len(seq)], dtype=np.float32))
    del llm
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def compare(reference: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float, float, int]:
    """Top-1 agreement, mean KL(reference || got), max |logit diff|, positions compared."""
    agree = kl = 0.0
    max_diff = 0.0
    n = 0
    for ref, other in zip(reference, got, strict=False):
        vocab = min(ref.shape[-1], other.shape[-1])
        ref, other = ref[:, :vocab], other[:, :vocab]
        agree += float((ref.argmax(-1) == other.argmax(-1)).sum())
        lp, lq = _log_softmax(ref), _log_softmax(other)
        kl += float((np.exp(lp) * (lp - lq)).sum())
        max_diff = max(max_diff, float(np.abs(ref - other).max()))
        n += ref.shape[0]
    return agree / n, kl / n, max_diff, n


def decisive_agreement(reference: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, int]:
    """Top-1 agreement where the reference is decisive, and at how many positions.

    Decisive: the best token leads the runner-up by DECISIVE_MARGIN logits, or by the upper-quartile lead when
    that is smaller (a small random test model's logits are nearly flat, so its clearest quarter counts)."""
    margins, agrees = [], []
    for ref, other in zip(reference, got, strict=False):
        vocab = min(ref.shape[-1], other.shape[-1])
        ref, other = ref[:, :vocab], other[:, :vocab]
        top2 = np.partition(ref, -2, axis=-1)[:, -2:]
        margins.append(top2[:, 1] - top2[:, 0])
        agrees.append(ref.argmax(-1) == other.argmax(-1))
    margin, agree = np.concatenate(margins), np.concatenate(agrees)
    decisive = margin >= min(DECISIVE_MARGIN, float(np.quantile(margin, 0.75)))
    n = int(decisive.sum())
    return (float(agree[decisive].mean()) if n else 1.0), n


def merge_check(before: list[np.ndarray], after: list[np.ndarray]) -> MergeCheck:
    top1, _, max_diff, _ = compare(before, after)
    scale = max(float(np.abs(b).max()) for b in before)
    return MergeCheck(
        max_abs_logit_diff=max_diff, top1_agreement=top1, passed=top1 == 1.0 and max_diff <= 1e-3 * max(scale, 1.0)
    )


def parity_row(
    quant: str,
    path: Path,
    ids: list[list[int]],
    reference: list[np.ndarray],
    reference_tokenize: Callable[[str], list[int]],
) -> ParityRow:
    got = gguf_logits(path, ids)
    top1, kl, max_diff, n = compare(reference, got)
    decisive, n_decisive = decisive_agreement(reference, got)
    tokenize = gguf_tokenizer(path)
    tok_agree = sum(tokenize(p) == reference_tokenize(p) for p in PROBES) / len(PROBES)
    return ParityRow(
        quant=quant,
        top1_agreement=round(top1, 4),
        decisive_top1_agreement=round(decisive, 4),
        decisive_positions=n_decisive,
        min_decisive_top1_agreement=min_top1(quant),
        mean_kl=round(kl, 6),
        max_abs_logit_diff=round(max_diff, 4),
        tokenizer_agreement=tok_agree,
        positions=n,
        passed=tok_agree == 1.0 and decisive >= min_top1(quant),
    )
