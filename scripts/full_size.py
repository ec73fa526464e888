"""The card's own model at full size, simulated: a seeded random model with Qwen2.5-3B-Instruct's exact shapes,
a DoRA adapter of the card's shape, converted by `qr-edge convert` and then run, with every stage measured.

The weights cannot be downloaded here; the shapes are public. The stand-in: hidden 2048, 36 layers, 16 query
and 2 KV heads, intermediate 11008, vocabulary 151,936, tied embeddings, rope theta 1e6, bf16 safetensors in
shards as the hub ships them; random weights at the scale of the model's own initialisation (std 0.02, norms 1),
so activations stay finite. The tokenizer is SmolLM2's 49k byte-level BPE from the embedded GGUF (the closest
Qwen-like tokenizer a package brings; the vocabulary is padded to 151,936 as Qwen pads its own) with Qwen2.5's
ChatML layout and default system prompt (without its tools branch). The adapter: DoRA, r 16, alpha 32, every
linear layer, random non-zero A, B and magnitudes.

    python scripts/full_size.py --out build/full-size --docs docs/benchmarks-full-size.md    # about 3B: long
    python scripts/full_size.py --shape small --out /tmp/fs                                  # the same path, tiny
    python scripts/full_size.py --out build/full-size --runtime-only --docs ...   # the runtime half again

Random weights accept no drafts (nothing in them predicts a copy), so the runtime figures are plain greedy.
A benchmark, not a CI test; the test suite runs ``--shape small``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

QWEN25_3B = dict(
    hidden_size=2048,
    intermediate_size=11008,
    num_hidden_layers=36,
    num_attention_heads=16,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    rope_theta=1000000.0,
    tie_word_embeddings=True,
)
SMALL = {**QWEN25_3B, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4}
#: Weight scale: the model's own initialisation at full size; at the small shape larger, so that its logits are far
#: from ties and the converter's quantized-parity check has decisive positions to compare (as the test models).
STD = {"full": 0.02, "small": 0.15}
CHATML_QWEN = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message['role'] != 'system' %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
QUANTS = "F16,Q8_0,Q4_K_M"
RUN_QUANTS = ("Q4_K_M", "Q8_0")  # the files a desktop would run
CONVERSATION = [
    {"role": "user", "content": "Which is faster for numeric code, NumPy or plain Python loops?"},
    {"role": "assistant", "content": "NumPy is usually much faster, because its loops run in compiled C."},
    {"role": "user", "content": "Why is it faster?"},
]


def build_stand_in(folder: Path, shape: dict, std: float, seed: int = 0) -> dict:
    """The model folder (bf16 shards, tokenizer, ChatML template) and the DoRA adapter beside it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from qr_edge.evaluate.bench import peak_rss_mb
    from qr_edge.model_source import embedded_model_path

    started = time.perf_counter()
    model_dir, adapter_dir = folder / "model", folder / "dora"
    source = Path(embedded_model_path())
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    tokenizer.chat_template = CHATML_QWEN
    tokenizer.save_pretrained(model_dir)
    config = Qwen2Config(
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, std)
    model.save_pretrained(model_dir, max_shard_size="2GB")
    cfg = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", use_dora=True, init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.02)
            elif "magnitude" in name:
                p.mul_(1.0 + 0.05 * torch.rand_like(p))
    peft_model.save_pretrained(adapter_dir)
    (adapter_dir / "qr_edge.json").write_text(json.dumps({"prompt_format_version": "2", "n_examples": 0}))
    del peft_model, model
    params = sum(
        os.path.getsize(p) for p in model_dir.glob("*.safetensors")
    )  # bytes of bf16 weights, about 2 per parameter
    return {
        "model": str(model_dir),
        "adapter": str(adapter_dir),
        "build_s": round(time.perf_counter() - started, 1),
        "build_peak_rss_mb": peak_rss_mb(),
        "safetensors_bytes": params,
        "shards": len(list(model_dir.glob("*.safetensors"))),
    }


def run_build(folder: Path, shape: str) -> dict:
    """``build_stand_in`` in a process of its own: this one stays small, so the convert it starts next measures
    only its own memory."""
    cmd = [sys.executable, __file__, "--out", str(folder), "--shape", shape, "--build-only"]
    subprocess.run(cmd, check=True)
    return json.loads((folder / "build.json").read_text())


def run_convert(model: str, adapter: str, out: Path) -> dict:
    """``qr-edge convert`` as a user runs it, with its own report (stages, its peak RSS)."""
    cmd = [str(Path(sys.executable).with_name("qr-edge")), "convert", "--base", model, "--adapter", adapter]
    cmd += ["--out", str(out), "--quant", QUANTS, "--json", "--force"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode:
        return {"failed": True, "exit_code": proc.returncode, "stderr": proc.stderr[-2000:], "wall_s": round(wall, 1)}
    return {"wall_s": round(wall, 1), "report": json.loads(proc.stdout)}


def run_rewrites(path: str, threads: int | None) -> dict:
    """Load, a cold rewrite, and a follow-up turn that reuses the conversation's saved KV state, each with the
    floor (llama.cpp alone for the same token counts, as `qr-edge bench` measures it), with drafting as the
    engine chose it and then with drafting off (random weights accept no drafts: what trying costs)."""
    import gc

    from qr_edge import Rewriter

    follow_up = [
        *CONVERSATION,
        {"role": "assistant", "content": "Its loops are compiled."},
        {"role": "user", "content": "And memory?"},
    ]
    row: dict = {}
    for mode in ("drafting", "greedy"):  # a fresh engine each, so both start cold
        started = time.perf_counter()
        rw = Rewriter(path, n_ctx=2048, n_threads=threads)
        if mode == "greedy":
            rw.engine.draft_tokens = 0  # one token per pass
        else:
            row.update(load_s=round(time.perf_counter() - started, 2), max_cache_bytes=rw.engine.max_cache_bytes)
            row["drafting"] = rw.engine.drafting
        for name, messages in (("cold", CONVERSATION), ("follow_up", follow_up)):
            t = rw.rewrite(messages).timings
            floor = rw.engine.floor_ms(t.prompt_tokens_reused, t.prompt_tokens_evaluated, t.generated_tokens)
            row[f"{name}_greedy" if mode == "greedy" else name] = {
                "ms": t.total_ms,
                "prompt_ms": t.prompt_ms,
                "generation_ms": t.generation_ms,
                "floor_ms": round(floor, 1),
                "prompt_tokens_evaluated": t.prompt_tokens_evaluated,
                "prompt_tokens_reused": t.prompt_tokens_reused,
                "generated_tokens": t.generated_tokens,
                "forward_passes": t.forward_passes,
                "cache_bytes": t.cache_bytes,
            }
        del rw
        gc.collect()
    return row


def markdown(result: dict) -> str:
    from qr_edge.evaluate.bench import machine

    build, conv, run = result["build"], result["convert"], result["runtime"]
    lines = [
        "# The card's model at full size: a Qwen2.5-3B-shaped stand-in, converted and run",
        "",
        f"Machine: {machine()}",
        "",
        f"Command: `{result['command']}` (shape: {result['shape']})",
        "",
        "| stage | seconds | peak RSS, MB |",
        "|---|---|---|",
        f"| build the stand-in (bf16, {build['shards']} shards, {build['safetensors_bytes'] / 2**30:.2f} GiB) | "
        f"{build['build_s']} | {build['build_peak_rss_mb']} |",
    ]
    if conv.get("failed"):
        lines.append(f"| convert | failed (exit {conv['exit_code']}) after {conv['wall_s']} s | - |")
    else:
        report = conv["report"]
        for stage, seconds in report["stage_seconds"].items():
            lines.append(f"| convert: {stage} | {seconds} | |")
        lines.append(f"| convert, whole (`qr-edge convert`) | {conv['wall_s']} | {report['peak_rss_mb']} |")
        lines += ["", "| output | bytes |", "|---|---|"]
        f16 = 0
        for out in report["outputs"]:
            lines.append(f"| {out['quant']} | {out['bytes']:,} |")
            f16 = out["bytes"] if out["quant"] == "F16" else f16
        if f16:
            ratio = report["peak_rss_mb"] * 2**20 / f16
            lines += [
                "",
                f"Convert peak RSS / F16 file: **{ratio:.2f}×** (the goal: ≤ 1.5×; at the small shape the"
                " fixed cost of torch and transformers, about 0.5 GB, dominates and the ratio means nothing).",
            ]
    for quant, r in (run or {}).items():
        lines += [
            "",
            f"Runtime on the {quant} file ({r['file_bytes'] / 2**30:.2f} GiB; load {r['load_s']} s; drafting "
            f"{'on' if r['drafting'] else 'off'}; KV snapshot budget {r['max_cache_bytes']:,} bytes); the floor is "
            "llama.cpp alone for the same token counts, measured right after each turn:",
            "",
            "| rewrite | ms | floor ms | efficiency (floor / ms) | prompt tokens new | reused | prompt tokens/s "
            "| generated | generated tokens/s | passes | KV snapshots, bytes |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name in ("cold", "follow_up", "cold_greedy", "follow_up_greedy"):
            t = r[name]
            label = name.replace("_greedy", ", drafting off")
            lines.append(
                f"| {label} | {t['ms']} | {t['floor_ms']} | {t['floor_ms'] / t['ms']:.2f} | "
                f"{t['prompt_tokens_evaluated']} | {t['prompt_tokens_reused']} | "
                f"{1000 * t['prompt_tokens_evaluated'] / max(t['prompt_ms'], 1e-9):.1f} | {t['generated_tokens']} | "
                f"{1000 * t['generated_tokens'] / max(t['generation_ms'], 1e-9):.1f} | "
                f"{t['forward_passes']} | {t['cache_bytes']:,} |"
            )
        if r["drafting"]:
            cost = sum(r[n]["ms"] for n in ("cold", "follow_up")) / sum(
                r[n]["ms"] for n in ("cold_greedy", "follow_up_greedy")
            )
            lines.append(f"\nDrafting on / off, both turns: **{cost:.3f}×** the time (the goal: ≤ 1.05×).")
    lines += ["", "Random weights accept no prompt-lookup drafts: these are plain greedy figures."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="a folder for the stand-in and its outputs")
    parser.add_argument("--shape", choices=("full", "small"), default="full")
    parser.add_argument("--docs", type=Path, help="write the markdown report here")
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--runtime-only",
        action="store_true",
        help="run the files an earlier run converted into --out again (its build and convert figures are kept)",
    )
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.runtime_only:
        args.out.mkdir(parents=True, exist_ok=True)
    shape = QWEN25_3B if args.shape == "full" else SMALL
    if args.build_only:
        (args.out / "build.json").write_text(json.dumps(build_stand_in(args.out, shape, STD[args.shape])))
        return
    command = " ".join(["python", "scripts/full_size.py", *sys.argv[1:]])
    if args.runtime_only:
        earlier = args.out / "result.json"
        if not earlier.is_file():
            raise SystemExit(f"--runtime-only: {earlier} is missing; run without it first")
        result = json.loads(earlier.read_text())
        result["command"] = result["command"].split("; then ")[0] + f"; then {command}"
    else:
        result = {"shape": args.shape, "command": command}
        result["build"] = run_build(args.out, args.shape)
        result["convert"] = run_convert(result["build"]["model"], result["build"]["adapter"], args.out / "standin.gguf")
    result["runtime"] = {}
    for quant in RUN_QUANTS:
        path = args.out / f"standin.{quant}.gguf"
        if path.is_file():
            result["runtime"][quant] = run_rewrites(str(path), args.threads)
            result["runtime"][quant]["file_bytes"] = path.stat().st_size
    from qr_edge.atomic_file import write_text_atomic

    write_text_atomic(args.out / "result.json", json.dumps(result, indent=2))  # a rerun never leaves half of it
    text = markdown(result)
    if args.docs:
        write_text_atomic(args.docs, text)
    print(text)


if __name__ == "__main__":
    main()
