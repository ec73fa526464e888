"""Inputs of the export: the base model (HF folder, GGUF file or hub id) and a peft adapter.

Everything here up to ``load_base`` is cheap (config files and safetensors headers): a mismatched
adapter fails before any weight is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AdapterMismatchError, ConvertError

LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_META_FILE = "qr_edge.json"  # written by `qr-edge train`: prompt format version, n_examples, dataset hash


@dataclass
class BaseInfo:
    kind: str  # "hf" | "gguf" | "hub"
    ref: str
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    name: str

    def linear_shape(self, module: str) -> tuple[int, int]:
        """(in_features, out_features) of a projection in this architecture."""
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        return {
            "q_proj": (self.hidden_size, q),
            "k_proj": (self.hidden_size, kv),
            "v_proj": (self.hidden_size, kv),
            "o_proj": (q, self.hidden_size),
            "gate_proj": (self.hidden_size, self.intermediate_size),
            "up_proj": (self.hidden_size, self.intermediate_size),
            "down_proj": (self.intermediate_size, self.hidden_size),
        }[module]


@dataclass
class AdapterInfo:
    path: str
    config: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def method(self) -> str:
        return "dora" if self.config.get("use_dora") else "lora"


def _from_config(kind: str, ref: str, cfg: dict[str, Any], name: str) -> BaseInfo:
    heads = cfg["num_attention_heads"]
    return BaseInfo(
        kind=kind,
        ref=ref,
        model_type=cfg["model_type"],
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"],
        num_layers=cfg["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
        name=name,
    )


def inspect_base(ref: str) -> BaseInfo:
    from qr_edge.errors import ModelNotFoundError
    from qr_edge.model_source import EMBEDDED_MODELS, embedded_model_path

    if ref in EMBEDDED_MODELS and not os.path.exists(ref):  # an embedded model by name: the GGUF its package ships
        try:
            ref = embedded_model_path(EMBEDDED_MODELS[ref])
        except ModelNotFoundError as exc:
            raise ConvertError(str(exc)) from None
    path = Path(ref)
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConvertError(
                f"--base {ref} is a file but not a .gguf; give a Hugging Face model folder or a GGUF file"
            )
        return _inspect_gguf(path)
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.is_file():
            raise ConvertError(f"--base {ref} has no config.json; is it a Hugging Face model folder?")
        cfg = json.loads(cfg_path.read_text())
        return _from_config("hf", ref, cfg, cfg.get("_name_or_path") or path.name)
    if ref.startswith((".", "/", "~")) or os.sep + os.sep in ref or ref.endswith(os.sep):
        raise ConvertError(f"--base {ref}: no such file or folder")  # a path, not a hub id: never "download it"
    if re.fullmatch(r"[\w.\-]+/[\w.\-]+", ref):
        try:
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(ref).to_dict()
        except Exception as exc:  # offline, unknown repo, gated
            raise ConvertError(
                f"cannot read hub model {ref!r} ({type(exc).__name__}): download it and pass its folder"
            ) from None
        return _from_config("hub", ref, cfg, ref)
    raise ConvertError(f"--base {ref} is neither a folder, a .gguf file nor a hub id")


def _inspect_gguf(path: Path) -> BaseInfo:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:
        raise ConvertError(f"cannot read GGUF {path}: {exc}") from None

    def get(key: str, default: Any = None) -> Any:
        f = reader.fields.get(key)
        return f.contents() if f is not None else default

    arch = get("general.architecture")
    heads = get(f"{arch}.attention.head_count")
    emb = get(f"{arch}.embedding_length")
    cfg = {
        "model_type": arch,
        "hidden_size": emb,
        "intermediate_size": get(f"{arch}.feed_forward_length"),
        "num_hidden_layers": get(f"{arch}.block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": get(f"{arch}.attention.head_count_kv", heads),
        # Gemma's heads are wider than hidden / heads: the key length says so where it is written
        "head_dim": get(f"{arch}.attention.key_length")
        or get(f"{arch}.rope.dimension_count", emb // heads if emb and heads else None),
    }
    if None in cfg.values():
        raise ConvertError(f"{path} lacks the hyper-parameters of a {arch!r} model")
    return _from_config("gguf", str(path), cfg, get("general.name") or path.stem)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inspect_adapter(ref: str) -> AdapterInfo:
    path = Path(ref)
    cfg_path = path / "adapter_config.json"
    if not path.exists():
        raise ConvertError(f"--adapter {ref}: no such folder")
    if not cfg_path.is_file():
        raise ConvertError(f"--adapter {ref} has no adapter_config.json; give the folder peft's save_pretrained wrote")
    cfg = json.loads(cfg_path.read_text())
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        raise ConvertError(f"--adapter {ref} has no adapter_model.safetensors")
    from safetensors import safe_open

    with safe_open(str(weights), framework="np") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    meta_path = path / ADAPTER_META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return AdapterInfo(path=str(path), config=cfg, shapes=shapes, sha256=file_sha256(weights), meta=meta)


def check_compatible(base: BaseInfo, adapter: AdapterInfo) -> list[str]:
    """Raise ``AdapterMismatchError`` when the adapter cannot apply to the base; return soft warnings."""
    cfg = adapter.config
    if cfg.get("peft_type", "LORA") != "LORA":
        raise AdapterMismatchError(
            f"adapter type {cfg.get('peft_type')!r} is not supported; train a LoRA or DoRA adapter"
        )
    targets = cfg.get("target_modules") or []
    if isinstance(targets, list):
        # peft saves "all-linear" as every module's full name (model.layers.0.mlp.up_proj): judge the last part
        unknown = sorted({t for t in targets if t.rsplit(".", 1)[-1] not in LINEAR_MODULES})
        if unknown:
            raise AdapterMismatchError(f"adapter targets {unknown}, which a {base.model_type} model does not have")
    problems = []
    layer_re = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")
    for key, shape in adapter.shapes.items():
        m = layer_re.search(key)
        if not m:
            continue
        layer, module, ab = int(m.group(1)), m.group(2), m.group(3)
        if layer >= base.num_layers:
            problems.append(f"{key}: layer {layer} but the base has {base.num_layers} layers")
            continue
        if module not in LINEAR_MODULES:
            continue
        fan_in, fan_out = base.linear_shape(module)
        got = shape[1] if ab == "A" else shape[0]
        want = fan_in if ab == "A" else fan_out
        if got != want:
            problems.append(f"{key}: {'in' if ab == 'A' else 'out'} features {got}, base has {want}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise AdapterMismatchError("adapter does not fit the base model: " + "; ".join(problems[:3]) + more)
    warnings = []
    recorded = cfg.get("base_model_name_or_path")
    known = {_norm_name(base.name), _norm_name(base.ref), _norm_name(os.path.dirname(os.path.abspath(base.ref)))}
    if recorded and _norm_name(recorded) not in known:
        warnings.append(f"adapter was trained on {recorded!r}, base is {base.name!r} (shapes match, so it was merged)")
    return warnings


def _norm_name(name: str) -> str:
    stem = os.path.basename(str(name).rstrip("/")).lower()
    return re.sub(r"(\.gguf|[.\-_](q\d\w*|f16|f32|bf16))+$", "", stem)


def load_base(base: BaseInfo, four_bit: bool = False):
    """The base model in fp32 (so a merge loses nothing) and its tokenizer; transformers dequantizes GGUF bases.

    ``four_bit`` (QLoRA training): the linear weights in NF4 through bitsandbytes, on the first CUDA GPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": torch.float32, "low_cpu_mem_usage": True}
    if four_bit:
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs = {
            "dtype": compute,
            "device_map": {"": 0},
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=compute,
                bnb_4bit_use_double_quant=True,
            ),
        }
    where = base.ref
    if base.kind == "gguf":
        where, kwargs["gguf_file"] = os.path.dirname(os.path.abspath(base.ref)), os.path.basename(base.ref)
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
        tok_kwargs = {"gguf_file": kwargs["gguf_file"]} if "gguf_file" in kwargs else {}
        tokenizer = AutoTokenizer.from_pretrained(where, **tok_kwargs)
    except (OSError, ValueError) as exc:
        raise ConvertError(f"transformers could not load {base.ref}: {exc}") from None
    model.eval()
    return model, tokenizer
