"""``qr-edge train``: DoRA (or LoRA) fine-tuning on the dataset format, through the runtime's own PromptBuilder.

Each record gives one rewrite example (loss only on the rewrite tokens after ``<rewritten_query>``)
and, for part of the records, the two gate questions on its queries-only form, so one adapter serves
the rewrite and both gate prompts. Prompts are tokenized exactly as the runtime tokenizes them: with
llama.cpp's own tokenizer when the base is a GGUF file.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from qr_edge.atomic_file import write_text_atomic
from qr_edge.chat_template import ChatTemplate, template_source
from qr_edge.data.dataset import RewriteRecord, dataset_sha256, read_dataset
from qr_edge.evaluate.bench import cpu_flags
from qr_edge.messages import Message
from qr_edge.model_meta import PROMPT_FORMATS, TRAIN_PROMPT_FORMAT, output_budget
from qr_edge.prompt import GateQuestion, PromptBuilder, fit_to_budget
from qr_edge.text import normalise

from .errors import ConvertError
from .source import ADAPTER_META_FILE, LINEAR_MODULES, inspect_base, load_base

CHECKPOINT_DIR = "checkpoint"


class TrainOptions(BaseModel):
    base: str
    data: list[str]
    eval: str | None = None
    out: str | None = None  # the adapter folder; only ``benchmark`` runs without one
    epochs: float = 1.0
    lr: float = 3e-4
    rank: int = 16
    alpha: int = 32
    targets: list[str] = Field(default_factory=lambda: list(LINEAR_MODULES))
    batch: int = 8
    max_len: int = 384
    device: str = "auto"
    lora: bool = False
    resume: bool = False
    seed: int = 0
    gate_ratio: float = 0.25
    n_examples: int = 0
    eval_limit: int = 40
    save_every: int = 50
    max_steps: int | None = None
    prompt_format: str = TRAIN_PROMPT_FORMAT
    bf16: str = "auto"  # auto: bf16 autocast only where the CPU has native bf16 (AVX512-BF16 / AMX); on | off
    threads: int | None = None
    benchmark: int | None = None  # run this many steps, report throughput and the projected time, save nothing
    init_adapter: str | None = None  # a GGUF LoRA (the shipped adapter) to continue from instead of zeros
    qlora: bool = False  # the base in 4-bit NF4 through bitsandbytes (CUDA), the adapter on top in bf16/fp32
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower


class TrainReport(BaseModel):
    adapter: str
    method: str
    examples: int  # in the dataset (rewrite and gate examples)
    examples_trained: int = 0  # what the run's steps went through (a --max-steps run: fewer than ``examples``)
    steps: int
    resumed_at: int = 0  # the checkpoint's step a --resume run continued from (0: from the start)
    seconds: float
    steps_per_second: float
    examples_per_second: float = 0.0
    tokens_per_second: float = 0.0
    projected_seconds: float | None = None  # for the whole plan, from the measured rate
    bf16: bool = False
    device: str = "cpu"
    qlora: bool = False
    peak_gpu_memory_mb: float | None = None  # torch's peak allocation on the GPU (CUDA runs only)
    threads: int = 0
    cpu_flags: str = ""
    first_loss: float
    last_loss: float
    evals: list[dict[str, Any]] = Field(default_factory=list)
    dataset_sha256: str


@dataclass
class TrainExample:
    input_ids: list[int]
    labels: list[int]


# -- tokenization -----------------------------------------------------------------------------------
class PromptTokenizer:
    """Chat template + tokenizer exactly as the runtime uses them for this base."""

    def __init__(self, base_kind: str, base_ref: str, hf_tokenizer: Any) -> None:
        if base_kind == "gguf":
            import llama_cpp

            self._llm = llama_cpp.Llama(model_path=base_ref, vocab_only=True, verbose=False)
            meta = self._llm.metadata
            vocab = self._llm._model
            bos = vocab.token_get_text(vocab.token_bos()) if vocab.token_bos() >= 0 else ""
            eos = vocab.token_get_text(vocab.token_eos()) if vocab.token_eos() >= 0 else ""
            self.template = ChatTemplate(template_source(meta), bos, eos)
            self._encode = lambda text, special: self._llm.tokenize(
                text.encode("utf-8"), add_bos=special and not (bos and text.startswith(bos)), special=special
            )
            self.decode = lambda ids: self._llm.detokenize(ids).decode("utf-8", errors="ignore")
        else:
            tok = hf_tokenizer
            self.template = ChatTemplate(getattr(tok, "chat_template", None), tok.bos_token or "", tok.eos_token or "")
            self._encode = lambda text, special: tok.encode(
                text, add_special_tokens=special and not (tok.bos_token and text.startswith(tok.bos_token))
            )
            self.decode = lambda ids: tok.decode(ids, skip_special_tokens=False)
        self.pad_id = 0

    def prompt(self, text: str) -> list[int]:
        return list(self._encode(text, True))

    def completion(self, text: str) -> list[int]:
        return list(self._encode(text, False))


def build_examples(
    records: Sequence[RewriteRecord],
    builder: PromptBuilder,
    tok: PromptTokenizer,
    max_len: int,
    gate_ratio: float,
    seed: int,
) -> list[TrainExample]:
    rng = random.Random(seed)
    out: list[TrainExample] = []

    def add(messages: list[Message], render: Callable[[list[Message]], Any], completion: str) -> None:
        target = tok.completion(completion)
        fitted = fit_to_budget(messages, render, tok.prompt, max_len - len(target))
        if fitted is not None:
            prompt = fitted[2]
            out.append(TrainExample(prompt + target, [-100] * len(prompt) + target))

    for rec in records:
        add(rec.messages, builder.rewrite_prompt, builder.rewrite_completion(rec.rewrite))
        legacy = rec.legacy_messages
        if len(legacy) > 1 and rng.random() < gate_ratio:
            needs = rec.label != "unchanged"
            add(legacy, lambda m: builder.gate_prompt(m, GateQuestion.NEEDS_REWRITE), builder.gate_completion(needs))
            if needs:
                depends = rec.label == "missing_context" or rec.depends_on_assistant()
                add(
                    legacy,
                    lambda m: builder.gate_prompt(m, GateQuestion.DEPENDS_ON_ANSWER),
                    builder.gate_completion(depends),
                )
    return out


# -- training ---------------------------------------------------------------------------------------
def _batches(examples: list[TrainExample], batch: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches in a seeded random order (less padding, same order on resume)."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].input_ids), rng.random()))
    groups = [order[i : i + batch] for i in range(0, len(order), batch)]
    rng.shuffle(groups)
    return groups


def _collate(examples: list[TrainExample], pad_id: int, device: str):
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def resolve_device(requested: str, qlora: bool) -> str:
    """``auto`` -> cuda where torch sees a GPU, else cpu; a clear error where the request cannot be met."""
    import importlib.util

    import torch

    if requested not in ("auto", "cpu", "cuda"):
        raise ConvertError(f"--device {requested!r}: choose auto, cpu or cuda")
    if qlora and importlib.util.find_spec("bitsandbytes") is None:
        raise ConvertError("--qlora loads the base in 4-bit through bitsandbytes: pip install bitsandbytes")
    device = requested if requested != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ConvertError(
            f"--device cuda: torch {torch.__version__} ({build}) sees no CUDA GPU; "
            "install a CUDA build of torch on a machine with an NVIDIA GPU, or train with --device cpu"
        )
    if qlora and device != "cuda":
        raise ConvertError("--qlora needs a CUDA GPU (bitsandbytes' 4-bit kernels): train with --device cuda")
    return device


def use_bf16(setting: str, device: str) -> bool:
    """bf16 autocast: ``auto`` turns it on where it is native (a CUDA GPU that supports it, a CPU with
    AVX512-BF16 or AMX); ``on`` and ``off`` force it."""
    import torch

    if setting != "auto":
        return setting == "on"
    return torch.cuda.is_bf16_supported() if device == "cuda" else native_bf16()


def native_bf16() -> bool:
    """bf16 autocast pays only on CPUs with bf16 instructions; elsewhere it is emulated and slower."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def labelled_loss(model: Any, ids: Any, labels: Any, mask: Any) -> Any:
    """Causal LM loss with the vocabulary projection computed only where a label is (the rewrite suffix).

    The LM head over a 49k vocabulary is most of a small model's work when it is applied to every
    prompt position; the loss only needs the positions that predict a labelled token.
    """
    import torch

    lm = model.get_base_model()
    hidden = lm.model(input_ids=ids, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = lm.lm_head(hidden[:, :-1][keep]).float()
    return torch.nn.functional.cross_entropy(logits, target[keep])


def evaluate(
    model: Any,
    records: Sequence[RewriteRecord],
    builder: PromptBuilder,
    tok: PromptTokenizer,
    device: str,
    max_len: int,
) -> dict[str, Any]:
    """Greedy rewrites of dev records with the training model: exact match and unchanged accuracy."""
    import torch

    model.eval()
    exact = unchanged_ok = unchanged_n = 0
    samples = []
    with torch.no_grad():
        for rec in records:
            fitted = fit_to_budget(rec.messages, builder.rewrite_prompt, tok.prompt, max_len - 64)
            if fitted is None:
                continue
            prompt = fitted[2]
            limit = output_budget(len(tok.completion(rec.query)))
            out = model.generate(
                input_ids=torch.tensor([prompt], device=device),
                attention_mask=torch.ones((1, len(prompt)), dtype=torch.long, device=device),
                max_new_tokens=limit,
                do_sample=False,
                pad_token_id=tok.pad_id,
            )[0, len(prompt) :].tolist()
            text = builder.parse_output(tok.decode(out))
            exact += normalise(text) == normalise(rec.rewrite)
            if rec.label != "rewritten":
                unchanged_n += 1
                unchanged_ok += normalise(text) == normalise(rec.query)
            if len(samples) < 5:
                samples.append({"query": rec.query, "reference": rec.rewrite, "output": text})
    model.train()
    n = len(records)
    return {
        "n": n,
        "exact_match": round(exact / max(n, 1), 4),
        "unchanged_accuracy": round(unchanged_ok / unchanged_n, 4) if unchanged_n else None,
        "samples": samples,
    }


def train(options: TrainOptions, progress: Any | None = None) -> TrainReport:
    """Fine-tune an adapter with qr-edge's own loop.

    Not transformers' ``Trainer``: its loss applies the LM head to every position, and on these CPUs
    computing it only at the labelled suffix (``labelled_loss``) is what makes training affordable;
    length-bucketed batches, warmup + linear decay, checkpoints and ``--resume`` are the few parts of
    ``Trainer`` this needs, and they are below.
    """
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    unknown = sorted(set(options.targets) - set(LINEAR_MODULES))
    if unknown:
        raise ConvertError(f"unknown target modules {unknown}; choose from {', '.join(LINEAR_MODULES)}")
    if options.prompt_format not in PROMPT_FORMATS:
        raise ConvertError(f"unknown prompt format {options.prompt_format!r}; choose from {', '.join(PROMPT_FORMATS)}")
    device = resolve_device(options.device, options.qlora)
    threads = options.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    bf16 = use_bf16(options.bf16, device)
    records = [r for path in options.data for r in read_dataset(path)]
    dev = read_dataset(options.eval)[: options.eval_limit] if options.eval else []
    if not records:
        raise ConvertError("the training data is empty")
    torch.manual_seed(options.seed)
    base = inspect_base(options.base)
    if options.out is None and not options.benchmark:
        raise ConvertError("training needs an output folder for the adapter (only a benchmark saves nothing)")
    out = Path(options.out or ".")
    ckpt = out / CHECKPOINT_DIR
    if not options.benchmark:
        out.mkdir(parents=True, exist_ok=True)
    if options.resume and not ckpt.exists() and _previous(ckpt).is_dir():
        os.replace(_previous(ckpt), ckpt)  # stopped between _save's two renames

    model, hf_tok = load_base(base, four_bit=options.qlora)
    if options.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=options.gradient_checkpointing)
    elif options.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    tok = PromptTokenizer(base.kind, base.ref, hf_tok)
    builder = PromptBuilder(
        tok.template, [], fmt=options.prompt_format
    )  # fine-tuned models run without few-shot examples
    examples = build_examples(records, builder, tok, options.max_len, options.gate_ratio, options.seed)
    if not examples:
        raise ConvertError(f"no example fits --max-len {options.max_len} tokens (prompt + rewrite); raise --max-len")
    resuming = options.resume and options.out is not None and (ckpt / "adapter_config.json").is_file()
    if resuming:
        model = PeftModel.from_pretrained(model, ckpt, is_trainable=True)
    else:
        cfg = LoraConfig(
            r=options.rank,
            lora_alpha=options.alpha,
            target_modules=options.targets,
            use_dora=not options.lora,
            lora_dropout=0.0,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, cfg)
        if options.init_adapter:
            _init_from_gguf(model, Path(options.init_adapter), base, options)
    if not options.qlora:  # a 4-bit base is placed on the GPU as it loads
        model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=0.0)
    rng = random.Random(options.seed)
    epochs = max(1, math.ceil(options.epochs))
    plan = [(ep, b) for ep in range(epochs) for b in _batches(examples, options.batch, rng)]
    plan = plan[: int(len(plan) * options.epochs / epochs) or 1]
    full_plan = len(plan)
    if options.max_steps:
        plan = plan[: options.max_steps]
    if options.benchmark:
        plan = plan[: options.benchmark]
    total = len(plan)
    warmup = min(20, total // 10 + 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / max(total, 1))
    )
    start_step = 0
    state_file = ckpt / "trainer_state.pt"
    if resuming and state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step = state["step"]
    task = (
        progress.add_task("train", total=total, completed=start_step, loss=float("nan"), rate=0.0)
        if progress is not None
        else None
    )
    losses: list[float] = []
    evals: list[dict[str, Any]] = []
    started = time.perf_counter()
    seen_examples = seen_tokens = 0
    epoch = plan[start_step][0] if start_step < total else epochs
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=bf16)
    for step in range(start_step, total):
        ep, batch_ids = plan[step]
        if ep != epoch and dev:
            evals.append({"epoch": epoch + 1, **evaluate(model, dev, builder, tok, device, options.max_len)})
        epoch = ep
        batch = [examples[i] for i in batch_ids]
        ids, labels, mask = _collate(batch, tok.pad_id, device)
        with autocast:
            loss = labelled_loss(model, ids, labels, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        seen_examples += len(batch)
        seen_tokens += sum(len(e.input_ids) for e in batch)
        if task is not None:
            rate = seen_examples / (time.perf_counter() - started)
            progress.update(task, completed=step + 1, loss=sum(losses[-10:]) / len(losses[-10:]), rate=rate)
        if not options.benchmark and (step + 1) % options.save_every == 0 and step + 1 < total:
            _save(
                model,
                ckpt,
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step + 1},
            )
    seconds = time.perf_counter() - started
    done = total - start_step
    rate = {
        "examples_per_second": round(seen_examples / seconds, 3) if seconds else 0.0,
        "tokens_per_second": round(seen_tokens / seconds, 1) if seconds else 0.0,
        "projected_seconds": round(seconds / max(done, 1) * full_plan, 1),
        "bf16": bf16,
        "device": device,
        "qlora": options.qlora,
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None,
        "threads": threads,
        "cpu_flags": " ".join(sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))),
    }
    meta = {
        "prompt_format_version": options.prompt_format,
        "n_examples": options.n_examples,
        "dataset_sha256": dataset_sha256(records),
        "base": base.name,
        "method": "lora" if options.lora else "dora",
        "steps": total,
        "examples": len(examples),
        "train_seconds": round(seconds, 1),
        **({"init_adapter": Path(options.init_adapter).name} if options.init_adapter else {}),
    }
    if not options.benchmark:
        if dev:
            evals.append({"epoch": epoch + 1, **evaluate(model, dev, builder, tok, device, options.max_len)})
        model.save_pretrained(out)
        write_text_atomic(out / ADAPTER_META_FILE, json.dumps(meta, indent=2, ensure_ascii=False))
    return TrainReport(
        adapter=options.out or "",
        method=meta["method"],
        examples=len(examples),
        examples_trained=sum(len(batch_ids) for _, batch_ids in plan),
        steps=total,
        resumed_at=start_step,
        seconds=round(seconds, 1),
        steps_per_second=round(done / seconds, 4) if seconds else 0.0,
        first_loss=round(losses[0], 4) if losses else float("nan"),
        last_loss=round(sum(losses[-10:]) / max(len(losses[-10:]), 1), 4) if losses else float("nan"),
        evals=evals,
        dataset_sha256=meta["dataset_sha256"],
        **rate,
    )


def _init_from_gguf(model: Any, path: Path, base: Any, options: TrainOptions) -> None:
    """Start from a GGUF LoRA's weights (same rank, alpha and targets), so a run continues a shipped adapter."""
    import torch

    from .lora_export import read_lora_gguf

    if not options.lora:
        raise ConvertError("--init-adapter continues a GGUF LoRA: train with --lora")
    pairs, alpha = read_lora_gguf(path, base, model.config)
    if alpha != options.alpha:
        raise ConvertError(f"{path} has alpha {alpha:g}; train with --alpha {alpha:g}")
    params = dict(model.named_parameters())
    loaded = 0
    for hf_name, ab in pairs.items():
        if hf_name.rsplit(".", 1)[-1] not in options.targets:
            raise ConvertError(f"{path} adapts {hf_name}, which --targets leaves out")
        for side, value in ab.items():
            key = f"base_model.model.{hf_name}.lora_{side}.default.weight"
            if key not in params or tuple(params[key].shape) != value.shape:
                got = tuple(params[key].shape) if key in params else "missing"
                raise ConvertError(f"{path}: {hf_name} lora_{side} is {value.shape}, the new adapter's is {got}")
            with torch.no_grad():
                params[key].copy_(torch.from_numpy(value))
            loaded += 1
    if loaded != sum(1 for k in params if ".lora_" in k):
        raise ConvertError(f"{path} covers {loaded} LoRA weights; the new adapter has more: same --targets")


def _previous(folder: Path) -> Path:
    return folder.with_name(folder.name + ".old")


def _save(model: Any, folder: Path, state: dict[str, Any]) -> None:
    """Write the checkpoint beside ``folder``, then swap it in by renames: a kill at any instant leaves a whole
    checkpoint in ``folder`` or, between the two renames, the previous one in its ``.old`` sibling."""
    import shutil

    import torch

    tmp, old = folder.with_name(folder.name + ".tmp"), _previous(folder)
    model.save_pretrained(tmp)
    torch.save(state, tmp / "trainer_state.pt")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
