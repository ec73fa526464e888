"""Batch rewriting of a JSONL file that loses nothing: streamed output, per-line errors, ``--resume``.

Output line *i* answers input item *i* (blank input lines are skipped), in input order. Each result is
appended and flushed as soon as it exists (fsync every few seconds and at the end), so an interruption
loses at most the line being written. A bad line becomes an error record and the batch goes on.
Resuming drops a torn last line, counts the complete ones and continues with the next input item, so
after any interruption every input line ends up in the output exactly once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .atomic_file import check_target
from .errors import InputFileError, QrEdgeError
from .messages import BatchItem
from .result import RewriteResult

FSYNC_EVERY_S = 2.0


@dataclass
class BatchSummary:
    done: int = 0  # lines written by this run
    resumed: int = 0  # lines already in the output before this run
    rewritten: int = 0
    unchanged: int = 0
    errors: int = 0
    error_types: dict[str, int] = field(default_factory=dict)


def error_record(item_id: Any, line: int, kind: str, message: str) -> dict[str, Any]:
    return {"id": item_id, "line": line, "error": {"type": kind, "message": " ".join(message.split())}}


def completed_lines(path: Path) -> int:
    """Complete JSON lines at the start of ``path``; a torn (partial or invalid) tail is cut off the file."""
    if not path.exists():
        return 0
    good_bytes = count = 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            good_bytes += len(raw)
            count += 1
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return count


def check_output(path: Path, resume: bool) -> None:
    """Refuse an output path that cannot work, before any model is loaded."""
    check_target(path, "--output")
    if path.exists() and not resume:
        raise InputFileError(f"--output {path} exists; pass --resume to continue it, or remove it")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise InputFileError(f"--output {path} is not writable")


def open_output(path: Path, resume: bool) -> tuple[IO[str], int]:
    """The output file for appending and how many items it already answers (0 unless resuming)."""
    check_output(path, resume)
    skip = completed_lines(path) if resume else 0
    try:
        return open(path, "a", encoding="utf-8"), skip
    except OSError as exc:
        raise InputFileError(f"cannot write {path}: {exc.strerror}") from None


def run_batch(
    rewrite: Callable[[BatchItem], RewriteResult],
    items: Iterable[BatchItem],
    out: IO[str],
    skip: int = 0,
    on_item: Callable[[], None] | None = None,
) -> BatchSummary:
    """Rewrite ``items`` after the first ``skip`` into ``out``, one line each, flushed as written."""
    summary = BatchSummary(resumed=skip)
    last_sync = time.monotonic()
    for index, item in enumerate(items):
        if index < skip:
            continue
        record = answer_item(rewrite, item)
        if "error" in record:
            summary.errors += 1
            kind = record["error"]["type"]
            summary.error_types[kind] = summary.error_types.get(kind, 0) + 1
        elif record["changed"]:
            summary.rewritten += 1
        else:
            summary.unchanged += 1
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        summary.done += 1
        if time.monotonic() - last_sync > FSYNC_EVERY_S:
            _sync(out)
            last_sync = time.monotonic()
        if on_item:
            on_item()
    _sync(out)
    return summary


def answer_item(rewrite: Callable[[BatchItem], RewriteResult], item: BatchItem) -> dict[str, Any]:
    """The output record of one item: the result with the item's ``id`` and ``line``, or an error record."""
    if item.error is not None:
        return error_record(item.id, item.line, *item.error)
    try:
        result = rewrite(item)
    except QrEdgeError as exc:
        return error_record(item.id, item.line, type(exc).__name__, str(exc))
    result.id = item.id
    return json.loads(result.to_json()) | {"id": item.id, "line": item.line}


def _sync(out: IO[str]) -> None:
    try:
        os.fsync(out.fileno())
    except (OSError, ValueError, AttributeError):  # stdout or a pipe: nothing to sync
        pass
