"""``qr-edge serve``: the library as a local HTTP service. FastAPI and uvicorn are imported only when it runs."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from typing import Annotated, Any

import typer
from rich.console import Console

from ..adapters import BUNDLED, BundledAdapter, adapter_choice
from ..errors import MissingExtraError
from ..rewriter import Rewriter
from .options import GpuOpt, MinConfidenceOpt, ModelOpt, NCtxOpt, NExamplesOpt, ThreadsOpt

err_console = Console(stderr=True)

AdapterSpecOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--adapter",
        help='GGUF LoRA adapter, repeatable: NAME=PATH loads it under NAME (requests pick it with "adapter"); '
        "a bare PATH is the default adapter; 'none' for no default adapter "
        "(default: the adapter bundled for an embedded model, none on any other)",
    ),
]


def _split_adapters(specs: list[str] | None) -> tuple[str | None | BundledAdapter, dict[str, str]]:
    """``--adapter`` values as the Rewriter's ``adapter=`` (the default) and ``adapters=`` (named ones)."""
    default: str | None | BundledAdapter = BUNDLED
    named: dict[str, str] = {}
    bare: str | None = None
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if sep and name and "/" not in name and "\\" not in name:
            if not path:
                raise typer.BadParameter(f"{spec!r} has no path: use NAME=PATH", param_hint="--adapter")
            if name in named:
                raise typer.BadParameter(f"adapter name {name!r} is given twice", param_hint="--adapter")
            named[name] = path
            continue
        if bare is not None:
            raise typer.BadParameter(
                f"only one default adapter (a bare PATH or 'none'): got {bare!r} and {spec!r}", param_hint="--adapter"
            )
        bare = spec
        default = adapter_choice(spec)
    return default, named


def _load_server() -> tuple[Any, Any]:
    """uvicorn and ``qr_edge.server``, or a typed error saying which extra to install."""
    if any(importlib.util.find_spec(name) is None for name in ("fastapi", "uvicorn")):
        raise MissingExtraError("qr-edge serve needs the server extra: pip install 'qr-edge[server]'")
    import uvicorn

    from .. import server

    return uvicorn, server


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option("--host", help="address to bind (loopback only by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free port)")] = 8088,
    model: ModelOpt = None,
    adapter: AdapterSpecOpt = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Rewriters in the pool, each with its own model context")
    ] = 1,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="QR_EDGE_API_KEY",
            show_default=False,
            help="require 'Authorization: Bearer KEY' or 'X-API-Key: KEY' on every request but /healthz",
        ),
    ] = None,
    n_examples: NExamplesOpt = None,
    n_ctx: NCtxOpt = 4096,
    threads: ThreadsOpt = None,
    gpu_layers: GpuOpt = 0,
    max_body: Annotated[int, typer.Option("--max-body", min=1, help="largest request body in bytes (413 above)")] = (
        1 << 20
    ),
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="most items in one batch request")] = 64,
    queue_size: Annotated[
        int, typer.Option("--queue-size", min=0, help="requests that may wait for a busy pool (503 above)")
    ] = 16,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="seconds per rewrite, waiting included (504 after)")
    ] = 30.0,
    min_confidence: MinConfidenceOpt = None,
) -> None:
    """Serve rewrites over HTTP: POST /v1/rewrite, /v1/rewrite/batch and /v1/chat/completions (OpenAI's API),
    GET /v1/models and /healthz; docs at /docs."""
    if api_key is not None and not api_key.strip():
        # `--api-key "$KEY"` with KEY unset would otherwise serve with no authentication at all
        raise typer.BadParameter("the key is empty (is the variable you passed unset?)", param_hint="--api-key")
    uvicorn, server = _load_server()
    default, named = _split_adapters(adapter)
    if threads is None and workers > 1:  # N contexts sharing the cores: do not oversubscribe them
        threads = max(1, (os.cpu_count() or 1) // workers)

    def build() -> Rewriter:
        return Rewriter(
            model,
            adapter=default,
            adapters=named,
            n_examples=n_examples,
            n_ctx=n_ctx,
            n_threads=threads,
            n_gpu_layers=gpu_layers,
            min_confidence=min_confidence,
        )

    pool = server.RewriterPool.load(build, workers)
    app = server.create_app(
        pool,
        api_key=api_key or None,
        max_body_bytes=max_body,
        max_batch=max_batch,
        timeout_s=timeout,
        queue_size=queue_size,
    )
    first = pool.primary
    adapters = ", ".join(first.adapter_names) or "none"
    err_console.print(
        f"qr-edge serve: {first.engine.name} (adapters: {adapters}; default: {first.default_adapter or 'none'}), "
        f"{workers} worker(s), docs at http://{host}:{port}/docs",
        highlight=False,
        soft_wrap=True,
    )
    if not api_key and not _is_loopback(host):
        err_console.print(f"[yellow]warning:[/] {host} is not loopback and no --api-key is set", highlight=False)
    # SIGTERM drains: requests in flight finish (up to the timeout), new ones get 503, the process exits 0
    config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
    server.DrainingServer(config, app.state.drain, grace_s=timeout + 5).run()
