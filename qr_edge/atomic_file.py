"""Atomic output: write beside the target, rename when complete, remove the temp file on any failure."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputFileError


@contextlib.contextmanager
def atomic_path(target: str | Path, *, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``target``.

    Ctrl-C, an exception or a full disk leaves ``target`` as it was and no temp file behind.
    With ``force=False`` an existing target is an error before any work starts.
    """
    target = Path(target)
    if target.exists() and not force:
        raise InputFileError(f"{target} exists; pass --force to overwrite it")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InputFileError(f"output folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
