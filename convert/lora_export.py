"""``qr-edge convert --adapter-only``: a peft LoRA adapter as a GGUF LoRA that llama.cpp applies at run time.

The file is what llama.cpp's ``convert_lora_to_gguf.py`` writes: ``general.type=adapter``,
``adapter.type=lora``, ``adapter.lora.alpha`` and, per adapted weight, ``<gguf name>.lora_a`` (r x in)
and ``<gguf name>.lora_b`` (out x r), written with gguf-py. The architecture's weight transform (the
rotary row permutation of llama q/k) is applied to ``lora_b``, whose rows are the weight's rows.
qr-edge keys record the prompt format, the base (name, architecture, sha256) and the training data,
so the runtime can refuse an adapter made for another base. Then the export is checked: base + GGUF
adapter in llama.cpp against the peft model in torch, on fixed probes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from qr_edge.atomic_file import AtomicOutputs
from qr_edge.chat_template import ARCH_TEMPLATES
from qr_edge.model_meta import (
    META_ADAPTER_METHOD,
    META_ADAPTER_NAME,
    META_ADAPTER_SHA256,
    META_BASE_ARCH,
    META_BASE_NAME,
    META_BASE_SHA256,
    META_N_EXAMPLES,
)

from .arch import get_arch
from .errors import ConvertError, VerificationError
from .export import training_metadata
from .report import AdapterExportReport, ConvertOptions
from .source import (
    LINEAR_MODULES,
    AdapterInfo,
    BaseInfo,
    check_compatible,
    file_sha256,
    inspect_adapter,
    inspect_base,
    load_base,
)
from .verify import PROBES, compare, gguf_logits, gguf_tokenizer, hf_logits

_ARCH_ENUM = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}
_KEY = re.compile(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])\.weight$")
#: Where the base is quantized (Q4_1 here) llama.cpp and fp32 torch differ a little anyway.
MIN_TOP1 = {"exact": 0.99, "quantized": 0.85}


def adapter_metadata(base: BaseInfo, adapter: AdapterInfo, spec_arch: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        META_BASE_NAME: base.name,
        META_BASE_ARCH: spec_arch,
        META_ADAPTER_NAME: adapter.name,
        META_ADAPTER_METHOD: adapter.method,
        META_ADAPTER_SHA256: adapter.sha256,
        META_N_EXAMPLES: int(adapter.meta.get("n_examples", 0)),
    }
    if base.kind == "gguf":
        meta[META_BASE_SHA256] = file_sha256(Path(base.ref))
        if not gguf.GGUFReader(base.ref).get_field("tokenizer.chat_template") and spec_arch in ARCH_TEMPLATES:
            meta["tokenizer.chat_template"] = ARCH_TEMPLATES[spec_arch]  # the turn format it was trained in
    meta.update(training_metadata(adapter.meta))
    return meta


def _pairs(adapter: AdapterInfo) -> dict[str, dict[str, np.ndarray]]:
    from safetensors import safe_open

    pairs: dict[str, dict[str, np.ndarray]] = {}
    with safe_open(str(Path(adapter.path) / "adapter_model.safetensors"), framework="np") as f:
        for key in f.keys():
            m = _KEY.match(key)
            if not m:
                raise ConvertError(
                    f"unexpected tensor {key} in the adapter: only lora_A/lora_B weights can be exported"
                )
            pairs.setdefault(m.group(1), {})[m.group(2)] = f.get_tensor(key).astype(np.float32)
    return pairs


def write_lora_gguf(path: Path, base: BaseInfo, adapter: AdapterInfo, config: Any, metadata: dict[str, Any]) -> int:
    """Write the GGUF LoRA; returns the number of adapted weights."""
    spec = get_arch(base.model_type)
    name_map = gguf.get_tensor_name_map(_ARCH_ENUM[spec.gguf_arch], base.num_layers)
    writer = gguf.GGUFWriter(path, spec.gguf_arch)
    pairs = _pairs(adapter)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(adapter.config.get("lora_alpha", 1)))
        writer.add_name(adapter.name)
        for key, value in metadata.items():
            if isinstance(value, int):
                writer.add_uint32(key, value)
            else:
                writer.add_string(key, str(value))
        for hf_name, ab in sorted(pairs.items()):
            if set(ab) != {"A", "B"}:
                raise ConvertError(f"{hf_name}: the adapter has lora_{''.join(ab)} without its pair")
            weight = hf_name + ".weight"
            new = name_map.get_name(weight, try_suffixes=(".weight",))
            if new is None:
                raise ConvertError(f"adapted weight {weight} has no {spec.gguf_arch} GGUF name")
            lora_b = spec.transform(weight, ab["B"], config)  # rows permuted like the weight's rows
            writer.add_tensor(new + ".lora_a", np.ascontiguousarray(ab["A"]).astype(np.float16))
            writer.add_tensor(new + ".lora_b", np.ascontiguousarray(lora_b).astype(np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return len(pairs)


def read_lora_gguf(path: Path, base: BaseInfo, config: Any) -> tuple[dict[str, dict[str, np.ndarray]], float]:
    """The inverse of ``write_lora_gguf``: ``{hf module name: {"A": r x in, "B": out x r}}`` and the alpha.

    ``qr-edge train --init-adapter`` continues a shipped GGUF LoRA from here. The architecture's row
    transform is undone by its own permutation (the transform applied to the row indices, inverted), so
    no architecture needs a second, inverse function.
    """
    spec = get_arch(base.model_type)
    name_map = gguf.get_tensor_name_map(_ARCH_ENUM[spec.gguf_arch], base.num_layers)
    try:
        reader = gguf.GGUFReader(path)
    except (OSError, ValueError) as exc:
        raise ConvertError(f"cannot read {path} as a GGUF LoRA: {exc}") from None
    field = reader.get_field(gguf.Keys.Adapter.LORA_ALPHA)
    if field is None:
        raise ConvertError(f"{path} is not a GGUF LoRA adapter (no {gguf.Keys.Adapter.LORA_ALPHA})")
    alpha = float(field.contents())
    hf_names = {}
    for layer in range(base.num_layers):
        for group in ("self_attn", "mlp"):
            for module in LINEAR_MODULES:
                hf = f"model.layers.{layer}.{group}.{module}"
                new = name_map.get_name(hf + ".weight", try_suffixes=(".weight",))
                if new is not None:
                    hf_names[new] = hf
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for tensor in reader.tensors:
        gguf_name, _, ab = tensor.name.rpartition(".lora_")
        if ab not in ("a", "b") or gguf_name not in hf_names:
            raise ConvertError(f"{path}: tensor {tensor.name} is not a LoRA weight of a {base.model_type} base")
        value = np.array(tensor.data, dtype=np.float32).reshape([int(d) for d in reversed(tensor.shape)])
        if ab == "b":
            rows = np.arange(value.shape[0], dtype=np.float64)[:, None]
            perm = spec.transform(hf_names[gguf_name] + ".weight", rows, config)[:, 0].astype(np.int64)
            value = value[np.argsort(perm)]
        pairs.setdefault(hf_names[gguf_name], {})[ab.upper()] = value
    return pairs, alpha


def export_adapter(options: ConvertOptions, progress: Any | None = None) -> AdapterExportReport:
    """Export ``options.adapter`` as a GGUF LoRA at ``options.out``; verified unless ``options.verify`` is off."""
    if not options.adapter:
        raise ConvertError("--adapter-only needs --adapter DIR")
    base = inspect_base(options.base)
    adapter = inspect_adapter(options.adapter)
    if adapter.method == "dora":
        raise ConvertError(
            f"{options.adapter} is a DoRA adapter: llama.cpp cannot apply DoRA magnitudes at run time. "
            "Merge it into a model (qr-edge convert without --adapter-only) "
            "or train a plain LoRA (qr-edge train --lora)"
        )
    warnings = check_compatible(base, adapter)
    spec = get_arch(base.model_type)
    out = Path(options.out)
    report = AdapterExportReport(base=options.base, adapter=options.adapter, out=str(out), warnings=warnings)
    task = progress.add_task("export adapter", total=3) if progress is not None else None

    def step(n: int) -> None:
        if task is not None:
            progress.update(task, completed=n)

    with AtomicOutputs() as outputs:
        tmp = outputs.reserve(out, force=options.force)
        model, tokenizer = load_base(base)
        step(1)
        report.weights = write_lora_gguf(
            tmp, base, adapter, model.config, adapter_metadata(base, adapter, spec.gguf_arch)
        )
        step(2)
        if options.verify:
            if base.kind != "gguf":
                raise ConvertError(
                    "--adapter-only verification runs the adapter on a GGUF base: pass --base FILE.gguf "
                    "(or --no-verify)"
                )
            from peft import PeftModel

            tokenize = gguf_tokenizer(Path(base.ref))
            ids = [tokenize(p) for p in PROBES]
            peft_model = PeftModel.from_pretrained(model, adapter.path)
            peft_model.eval()
            reference = hf_logits(peft_model, ids)
            top1, kl, max_diff, n = compare(reference, gguf_logits(Path(base.ref), ids, lora_path=tmp))
            exact = base_is_exact(Path(base.ref))
            report.top1_agreement, report.mean_kl, report.max_abs_logit_diff = (
                round(top1, 4),
                round(kl, 6),
                round(max_diff, 4),
            )
            report.positions = n
            threshold = MIN_TOP1["exact" if exact else "quantized"]
            if top1 < threshold:
                raise VerificationError(
                    f"the GGUF adapter disagrees with the peft model: top-1 {top1:.2%} < {threshold:.0%} "
                    f"(max |Δlogit| {max_diff:.3f}); no file written"
                )
        step(3)
        outputs.commit()
    report.bytes = out.stat().st_size
    report.sha256 = hashlib.sha256(out.read_bytes()).hexdigest()
    return report


def base_is_exact(path: Path) -> bool:
    """True when every weight matrix of the GGUF is F32/F16/BF16 (no quantization noise in the comparison)."""
    reader = gguf.GGUFReader(path)
    exact = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16}
    return all(t.tensor_type in exact for t in reader.tensors)
