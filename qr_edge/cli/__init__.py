"""The ``qr-edge`` command: a thin layer over the library. Each command group has its own module."""

from __future__ import annotations

import signal
import sys

import typer
from rich.console import Console
from rich.markup import escape

from ..atomic_file import interrupted
from ..errors import QrEdgeError
from . import bench as _bench
from . import convert as _convert
from . import data as _data
from . import eval as _eval
from . import rewrite as _rewrite
from . import serve as _serve
from . import train as _train
from . import tui as _tui

app = typer.Typer(
    name="qr-edge",
    help="Offline multi-turn query rewriting on llama.cpp.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("rewrite")(_rewrite.rewrite)
app.command("convert")(_convert.convert)
app.command("train")(_train.train)
app.add_typer(_data.app, name="data")
app.command("eval")(_eval.eval_command)
app.command("tui")(_tui.tui)
app.command("bench")(_bench.bench)
app.command("serve")(_serve.serve)


@app.callback()
def _root() -> None:
    """Offline multi-turn query rewriting on llama.cpp."""


err_console = Console(stderr=True)


def _interrupt(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM unwind as KeyboardInterrupt, so atomic writers remove their temp files before the process
    exits; the flag catches an interrupt whose exception a C callback swallowed."""
    interrupted.set()
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: typed errors become one line on stderr and a non-zero exit code, never a traceback."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        code = app(standalone_mode=False)
    except QrEdgeError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: typer shows them the way click does
        show = getattr(exc, "show", None)
        show() if show else err_console.print(f"error: {escape(str(exc))}")
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
