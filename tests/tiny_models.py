"""Tiny random Qwen2 / Llama / Gemma 3 models with a real byte-level BPE tokenizer, built at test time (no hub)."""

from __future__ import annotations

from pathlib import Path

QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "Python和Java哪个更高效？那它的内存管理怎么样？计算密集型任务中Java通常更快。",
    "How tall is the Eiffel Tower, and when was it finished? It is about 330 metres tall.",
    "Order #12345 costs $67.89, due 2024-03-15 at 09:30. Great job 😀🎉👍 — thanks!",
    "<history><user>Which is faster?</user><assistant>NumPy is faster.</assistant></history>",
    "<current_query>它怎么样？</current_query><rewritten_query>Why is NumPy faster?</rewritten_query>",
    "the quick brown fox jumps over the lazy dog while 西湖 and 北京 are in China",
] * 20


#: Gemma's special tokens in Gemma's order (pad 0, eos 1, bos 2, unk 3), then its turn markers.
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]


def build_tokenizer(folder: Path, regex: str, gemma: bool = False):
    """ChatML specials and template (Qwen-like), or with ``gemma`` Gemma's specials, a BOS on every text and no
    template at all, like the pretrained Gemma 3 270M GGUF."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(regex), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=GEMMA_SPECIALS if gemma else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    if gemma:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)]
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
        )
        fast.save_pretrained(folder)
        return fast
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None, chat_template=CHATML
    )
    fast.save_pretrained(folder)
    return fast


def build_model(folder: Path, arch: str = "qwen2", seed: int = 0) -> Path:
    """A 2-layer model whose weights are random but large enough that its logits are far from ties."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    folder.mkdir(parents=True, exist_ok=True)
    if arch == "gemma3":
        return _build_gemma3(folder, seed)
    tok = build_tokenizer(folder, QWEN2_REGEX if arch == "qwen2" else LLAMA3_REGEX)
    common = dict(
        vocab_size=len(tok) + 12,  # padded past the tokenizer, like Qwen2.5's 151936
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    if arch == "qwen2":
        config = Qwen2Config(**common, tie_word_embeddings=True, rope_theta=1000000.0)
    else:
        config = LlamaConfig(**common, tie_word_embeddings=False, rope_theta=10000.0)
    torch.manual_seed(seed)
    return _save_random(AutoModelForCausalLM.from_config(config, dtype=torch.float32), folder)


def _build_gemma3(folder: Path, seed: int) -> Path:
    """Gemma 3's layout at toy size: heads of 256 as in the 270M (far wider than hidden / heads; transformers'
    GGUF loader assumes that query scale), q/k norms, four norms a layer, a sliding window, tied embeddings
    scaled by sqrt(hidden)."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    tok = build_tokenizer(folder, QWEN2_REGEX, gemma=True)
    config = Gemma3TextConfig(
        vocab_size=len(tok) + 12,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        query_pre_attn_scalar=256,
        sliding_window=512,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return _save_random(AutoModelForCausalLM.from_config(config, dtype=torch.float32), folder)


def _save_random(model, folder: Path) -> Path:
    """Weights large enough for clear logits, drawn after the model's own initialisation (seeded by the caller)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                # Gemma's RMSNorm multiplies by (1 + w): a weight near 0 there is near 1 elsewhere
                p.copy_((0.0 if model.config.model_type.startswith("gemma") else 1.0) + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.save_pretrained(folder)
    return folder


def build_adapter(
    base: Path,
    folder: Path,
    dora: bool = True,
    seed: int = 1,
    targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
) -> Path:
    """A DoRA (or LoRA) adapter with non-zero A, B and magnitude, saved the way peft saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), use_dora=dora, init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(0.3 * torch.randn_like(p))
            elif "magnitude" in name:
                p.mul_(1.0 + 0.2 * torch.rand_like(p))
    peft_model.save_pretrained(folder)
    return folder
