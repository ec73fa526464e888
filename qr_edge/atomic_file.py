"""Atomic outputs: write beside the target, rename when complete, remove temp files on any failure."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import InputFileError

#: Set by the CLI's SIGINT/SIGTERM handler. The KeyboardInterrupt that handler raises is lost when the signal lands
#: while Python runs inside a C callback (llama.cpp's log hook swallows exceptions), so long jobs also check this.
interrupted = threading.Event()


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if an interrupt arrived, even one whose exception was swallowed."""
    if interrupted.is_set():
        raise KeyboardInterrupt


def check_target(target: Path, option: str) -> None:
    """Refuse, before any long work, an output path that the final write would refuse."""
    if target.is_dir():
        raise InputFileError(f"{option} {target} is a folder; give a file path")
    if not target.parent.is_dir():
        raise InputFileError(f"{option} {target}: folder {target.parent} does not exist")


class AtomicOutputs:
    """Temp files reserved beside their targets; ``commit()`` renames them all, exit removes what was not committed.

    Ctrl-C, an exception or a full disk leaves every target as it was and no temp file behind.
    """

    def __init__(self) -> None:
        self._pending: dict[Path, Path] = {}
        self._scratch: list[Path] = []

    @staticmethod
    def _temp_in(folder: Path, name: str) -> Path:
        if not folder.is_dir():
            raise InputFileError(f"output folder {folder} does not exist")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise InputFileError(f"cannot write in {folder}: {exc.strerror}") from None
        os.close(fd)
        return Path(tmp)

    def reserve(self, target: str | Path, *, force: bool = True) -> Path:
        target = Path(target)
        if target.is_dir():
            raise InputFileError(f"{target} is a folder; give a file path")
        if target.exists() and not force:
            raise InputFileError(f"{target} exists; pass --force to overwrite it")
        tmp = self._temp_in(target.parent, target.name)
        self._pending[tmp] = target
        return tmp

    def scratch(self, beside: str | Path) -> Path:
        """An intermediate file in the same folder (same disk) that is always removed, never committed."""
        beside = Path(beside)
        tmp = self._temp_in(beside.parent, beside.name + ".scratch")
        self._scratch.append(tmp)
        return tmp

    def commit(self) -> None:
        """fsync each temp file, rename it over its target, fsync the folder: a crash leaves old or new, whole."""
        check_interrupted()  # an interrupted job never replaces its targets
        umask = os.umask(0)
        os.umask(umask)
        for tmp, target in list(self._pending.items()):
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual permissions
            _fsync(tmp, os.O_RDONLY)
            os.replace(tmp, target)
            _fsync(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            del self._pending[tmp]

    def discard(self) -> None:
        for tmp in [*self._pending, *self._scratch]:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._pending.clear()
        self._scratch.clear()

    def __enter__(self) -> AtomicOutputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path, *, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; when the block completes it replaces ``target``."""
    with AtomicOutputs() as outputs:
        tmp = outputs.reserve(target, force=force)
        yield tmp
        outputs.commit()


def write_text_atomic(target: str | Path, text: str) -> None:
    """Replace ``target`` with ``text`` (UTF-8) so that readers and crashes see the old file or the new, whole."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
