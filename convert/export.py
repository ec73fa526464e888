"""The export pipeline: inspect -> load -> merge (DoRA/LoRA) -> write GGUF -> quantize -> verify -> rename.

Outputs are written to temp files beside their targets and renamed only after verification, so an
interrupted or failed convert leaves nothing at the target paths.
"""

from __future__ import annotations

import contextlib
import gc
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from qr_edge.atomic_file import AtomicOutputs, check_interrupted
from qr_edge.evaluate.bench import peak_rss_mb
from qr_edge.model_meta import (
    ADAPTER_GATE_KEYS,
    META_ADAPTER_METHOD,
    META_ADAPTER_NAME,
    META_ADAPTER_SHA256,
    META_BASE_NAME,
    META_CONFIDENCE_CALIBRATION,
    META_DATASET_SHA256,
    META_N_EXAMPLES,
    META_PROMPT_VERSION,
    PROMPT_FORMAT_VERSION,
)

from .arch import get_arch
from .errors import ConvertError, VerificationError
from .gguf_export import GGUFStream, plan_of
from .quantize import DIRECT_TYPES, parse_quants, quantize
from .report import ConvertOptions, ConvertReport, OutputFile
from .source import AdapterInfo, BaseInfo, check_compatible, inspect_adapter, inspect_base, load_base
from .streaming import LayerwiseModel, has_shards
from .verify import PROBES, gguf_tokenizer, hf_logits, merge_check, parity_row
from .vocab import add_vocab_from_hf, copy_vocab_from_gguf


def output_paths(out: Path, quants: list[str]) -> dict[str, Path]:
    """One quant: exactly ``out``. Several: ``name.Q4_K_M.gguf`` beside it for each."""
    if len(quants) == 1:
        return {quants[0]: out}
    stem = out.name[: -len(".gguf")] if out.name.endswith(".gguf") else out.name
    return {q: out.with_name(f"{stem}.{q}.gguf") for q in quants}


class _Stages:
    """Times each stage and shows it on a rich Progress when one is given."""

    def __init__(self, progress: Any | None) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def run(self, name: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
        check_interrupted()  # a Ctrl-C swallowed inside llama.cpp's log callback stops the job here
        task = self.progress.add_task(name, total=total) if self.progress is not None else None

        def advance(done: int, of: int | None = None) -> None:
            if task is not None:
                self.progress.update(task, completed=done, total=of if of is not None else total)

        start = time.perf_counter()
        yield advance
        self.seconds[name] = round(time.perf_counter() - start, 2)
        if task is not None:
            self.progress.update(task, completed=1, total=1)


def _metadata(options: ConvertOptions, base: BaseInfo, adapter: AdapterInfo | None) -> dict[str, Any]:
    """qr-edge keys the runtime reads: how the model was trained, from which base and adapter."""
    meta: dict[str, Any] = {
        "general.name": options.name or (f"{base.name} + {adapter.name}" if adapter else base.name),
        META_BASE_NAME: base.name,
    }
    if adapter is not None:
        meta[META_ADAPTER_NAME] = adapter.name
        meta[META_ADAPTER_METHOD] = adapter.method
        meta[META_ADAPTER_SHA256] = adapter.sha256
        meta.update(training_metadata(adapter.meta))
    n_examples = (
        options.n_examples if options.n_examples is not None else (adapter.meta.get("n_examples") if adapter else None)
    )
    if n_examples is not None:
        meta[META_N_EXAMPLES] = int(n_examples)
    return meta


def training_metadata(adapter_meta: dict[str, Any]) -> dict[str, str]:
    """What an adapter's qr_edge.json records of its training and its calibrations (prompt format, training data,
    gate thresholds, confidence map), as the GGUF keys the runtime reads: merged exports and GGUF LoRAs alike."""
    meta = {}
    if "prompt_format_version" in adapter_meta:
        meta[META_PROMPT_VERSION] = str(adapter_meta["prompt_format_version"])
    if "dataset_sha256" in adapter_meta:
        meta[META_DATASET_SHA256] = str(adapter_meta["dataset_sha256"])
    meta.update(
        {key: str(float(adapter_meta[name])) for name, key in ADAPTER_GATE_KEYS.items() if name in adapter_meta}
    )
    if "confidence_calibration" in adapter_meta:
        meta[META_CONFIDENCE_CALIBRATION] = json.dumps(adapter_meta["confidence_calibration"], separators=(",", ":"))
    return meta


def _load_layerwise(base: BaseInfo, adapter: AdapterInfo | None) -> tuple[LayerwiseModel, Any]:
    from transformers import AutoTokenizer

    try:
        return LayerwiseModel(base.ref, adapter.path if adapter else None), AutoTokenizer.from_pretrained(base.ref)
    except (OSError, ValueError) as exc:
        raise ConvertError(f"transformers could not load {base.ref}: {exc}") from None


def convert(options: ConvertOptions, progress: Any | None = None) -> ConvertReport:
    """Run the whole export; raises a ``ConvertError`` subclass on any problem, leaving no file at the targets."""
    quants = parse_quants(options.quants)
    targets = output_paths(Path(options.out), quants)
    base = inspect_base(options.base)
    spec = get_arch(base.model_type)
    adapter = inspect_adapter(options.adapter) if options.adapter else None
    warnings = check_compatible(base, adapter) if adapter else []
    if adapter is not None and "prompt_format_version" not in adapter.meta:
        warnings.append(
            f"adapter has no qr_edge.json: its prompt format is unknown (this runtime builds v{PROMPT_FORMAT_VERSION})"
        )
    stages = _Stages(progress)
    report = ConvertReport(
        base=options.base, adapter=options.adapter, architecture=spec.gguf_arch, parameters=0, warnings=warnings
    )

    with AtomicOutputs() as outputs, tempfile.TemporaryDirectory(prefix="qr-edge-tok-") as tokenizer_dir:
        tmp = {q: outputs.reserve(path, force=options.force) for q, path in targets.items()}
        needs_f16 = any(q not in DIRECT_TYPES for q in quants)
        f16 = tmp.get("F16") or (outputs.scratch(targets[quants[0]]) if needs_f16 else None)
        direct = {q: tmp.get(q) or (f16 if q == "F16" else None) for q in DIRECT_TYPES}
        direct = {q: path for q, path in direct.items() if path is not None}
        # an HF folder is merged and written one decoder layer at a time; a GGUF base (transformers dequantizes it
        # whole) is merged in memory
        layerwise = base.kind == "hf" and has_shards(base.ref)

        with stages.run("load"):
            if layerwise:
                model, tokenizer = _load_layerwise(base, adapter)
            else:
                model, tokenizer = load_base(base)
            reference_tokenize = gguf_tokenizer(Path(base.ref)) if base.kind == "gguf" else tokenizer.encode
            ids = [reference_tokenize(p) for p in PROBES]
        config = model.config
        with stages.run("merge"):
            reference = before = None
            if layerwise:
                if adapter is not None and options.verify:
                    before = model.logits(ids, merged=False)  # the adapter applied by peft, layer by layer
            elif adapter is not None:
                from peft import PeftModel

                peft_model = PeftModel.from_pretrained(model, adapter.path)
                peft_model.eval()
                before = hf_logits(peft_model, ids) if options.verify else None
                model = peft_model.merge_and_unload(safe_merge=True)  # DoRA magnitudes included
                del peft_model
                if options.verify:
                    reference = hf_logits(model, ids)
            elif options.verify:
                reference = hf_logits(model, ids)

        if base.kind == "gguf" and options.pre_tokenizer is None:
            add_vocab = lambda writer: copy_vocab_from_gguf(writer, base.ref)  # noqa: E731
        else:
            tokenizer.save_pretrained(tokenizer_dir)
            add_vocab = lambda writer: add_vocab_from_hf(  # noqa: E731
                writer, tokenizer, Path(tokenizer_dir), config.vocab_size, options.pre_tokenizer
            )
        meta = _metadata(options, base, adapter)
        plan = model.plan() if layerwise else plan_of(model)
        # the direct types are written in one pass over the tensors: a layer-by-layer model is walked once
        with stages.run(f"write {'+'.join(direct)}") as advance:
            streams = []
            try:
                for q, path in direct.items():
                    on_tensor = advance if not streams else None
                    streams.append(GGUFStream(path, spec, config, q, plan, add_vocab, meta, on_tensor=on_tensor))

                def write(name: str, tensor: Any) -> None:
                    for stream in streams:
                        stream.write(name, tensor)

                if layerwise and options.verify:
                    reference = model.logits(ids, merged=True, on_tensor=write)
                elif layerwise:
                    for name, tensor in model.tensors():
                        write(name, tensor)
                else:
                    for name, tensor in model.state_dict().items():
                        write(name, tensor.detach().float().numpy())
                for stream in streams:
                    report.parameters = stream.close()
            except OSError as exc:
                raise ConvertError(
                    f"writing {', '.join(str(targets.get(q, p)) for q, p in direct.items())} failed: {exc}"
                ) from None
            finally:
                for stream in streams:
                    stream.abort()
        if before is not None:
            report.merge_check = merge_check(before, reference)
            if not report.merge_check.passed:
                raise VerificationError(f"the merged model differs from the adapter model: {report.merge_check}")
        del model
        gc.collect()

        for q in quants:
            if q not in DIRECT_TYPES:
                with stages.run(f"quantize {q}"):
                    quantize(f16, tmp[q], q)
        if options.verify:
            with stages.run("verify", total=len(quants)) as advance:
                for i, q in enumerate(quants):
                    report.parity.append(parity_row(q, tmp[q], ids, reference, reference_tokenize))
                    advance(i + 1)
            failed = [row for row in report.parity if not row.passed]
            if failed:
                raise VerificationError(
                    "verification failed, nothing written: "
                    + "; ".join(
                        f"{r.quant}: top-1 {r.decisive_top1_agreement:.2%} on {r.decisive_positions} decisive positions"
                        f" (needs {r.min_decisive_top1_agreement:.0%}), {r.top1_agreement:.2%} on all, "
                        f"tokenizer {r.tokenizer_agreement:.0%}"
                        for r in failed
                    )
                )
        outputs.commit()

    report.outputs = [OutputFile(quant=q, path=str(p), bytes=p.stat().st_size) for q, p in targets.items()]
    report.stage_seconds = stages.seconds
    report.peak_rss_mb = peak_rss_mb()
    return report
