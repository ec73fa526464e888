"""Batch rewriting past one machine on Ray Data (extra ``ray``): a pool of actors, one ``Rewriter`` each.

The model loads once per actor, not per batch. Each row keeps its input (a Parquet row every column; a JSONL
line its ``path``, ``line``, ``id`` and ``messages``) and gains the result columns (``query``, ``rewrite``,
``changed``, ``decision``, ``reason``, ``error``); a bad row carries its error in ``error`` and the job goes on.
Ray Data restarts an actor that dies and retries its batch, so every row comes out exactly once.

Model files on a cluster: give a path every node can read, or ``ship_files=True`` to send the GGUF (and the
adapter) through Ray's object store to each node once. The embedded default works wherever the package is installed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from pydantic import BaseModel
from ray.data.datasource import FileBasedDatasource

from .adapters import BUNDLED
from .atomic_file import atomic_path
from .batch import answer_item
from .errors import InputFileError
from .messages import BatchItem, batch_item, parse_batch_line

#: The columns every output row gains, with their types (an all-error batch keeps the same schema).
RESULT_SCHEMA = pa.schema(
    [
        ("query", pa.string()),
        ("rewrite", pa.string()),
        ("changed", pa.bool_()),
        ("decision", pa.string()),
        ("reason", pa.string()),
        ("confidence", pa.float64()),
        ("queries", pa.list_(pa.string())),
        ("error", pa.string()),
    ]
)


#: The conversation of a JSONL row, kept in the output beside ``path``, ``line`` and ``id`` (Parquet rows keep
#: every input column as it is).
MESSAGES_FIELD = pa.field("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))


#: CPUs Ray reserves for a read or write task. Reading lines and writing rows is light I/O; with actors holding
#: every CPU (2 actors x 1 CPU on 2 cores), a task that waited for a CPU would wait forever.
IO_CPUS = 0


class JsonlLines(FileBasedDatasource):
    """Raw lines of JSONL files with their 1-based line numbers, parsed later in the actors.

    Ray's ``read_json`` fails the whole read on one bad line and ``read_text`` on one byte that is not UTF-8;
    here a bad line reaches the actor as bytes and becomes an error row, numbered as the plain batch numbers it.
    """

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        lines = f.readall().split(b"\n")
        rows = [(n, raw) for n, raw in enumerate(lines, start=1) if raw.decode("utf-8", "replace").strip()]
        yield pa.table(
            {
                "path": pa.array([path] * len(rows), pa.string()),
                "line": pa.array([n for n, _ in rows], pa.int64()),
                "raw": pa.array([raw for _, raw in rows], pa.binary()),
            }
        )


def read_conversations(paths: str | Sequence[str]) -> ray.data.Dataset:
    """JSONL (one ``{"messages": [...], "id": ...}`` per line) or Parquet files, each a file or a folder."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    if all(str(p).endswith(".parquet") or _only_parquet(p) for p in paths):
        return ray.data.read_parquet(paths, num_cpus=IO_CPUS)
    return ray.data.read_datasource(JsonlLines(paths), num_cpus=IO_CPUS)


def _only_parquet(path: str) -> bool:
    folder = Path(path)
    return folder.is_dir() and any(folder.glob("*.parquet")) and not any(folder.glob("*.json*"))


class RewriteActor:
    """One ``Rewriter`` per actor process; ``__call__`` answers a batch of rows."""

    def __init__(self, settings: dict[str, Any], shipped: dict[str, tuple[str, ray.ObjectRef]]) -> None:
        from .rewriter import Rewriter

        for key, (name, ref) in shipped.items():
            settings = {**settings, key: _materialize(name, ref)}
        self.rewriter = Rewriter(**settings)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        raw_lines = "raw" in batch.column_names
        items = [_item(i, row, raw_lines) for i, row in enumerate(rows)]
        records = [answer_item(lambda it: self.rewriter.rewrite(it.messages), it) for it in items]
        if raw_lines:  # the line's own fields come back as columns: its id and its conversation
            batch = batch.drop_columns(["raw"]).append_column(
                "id", pa.array([None if it.id is None else str(it.id) for it in items], pa.string())
            )
            batch = batch.append_column(
                MESSAGES_FIELD,
                pa.array(
                    [None if it.messages is None else [m.model_dump() for m in it.messages] for it in items],
                    MESSAGES_FIELD.type,
                ),
            )
        for field in RESULT_SCHEMA:
            values = [_result_value(field.name, r) for r in records]
            batch = batch.append_column(field, pa.array(values, field.type))
        return batch


def _item(index: int, row: dict[str, Any], raw_lines: bool) -> BatchItem:
    if raw_lines:  # JsonlLines keeps no blank line, so there is always an item
        return parse_batch_line(row["line"], row["raw"])  # type: ignore[return-value]
    return batch_item(row.get("line") or index + 1, row)


def _result_value(name: str, record: dict[str, Any]) -> Any:
    if "error" in record:
        return f"{record['error']['type']}: {record['error']['message']}" if name == "error" else None
    return record.get(name)


def _materialize(name: str, ref: ray.ObjectRef) -> str:
    """Write a shipped file once per node (content-addressed in the temp folder) and return its path."""
    data: bytes = ray.get(ref)
    folder = Path(tempfile.gettempdir()) / "qr-edge-shipped"
    folder.mkdir(exist_ok=True)
    target = folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{name}"
    if not target.exists():
        with atomic_path(target) as tmp:  # actors on one node may race: each writes whole, one rename wins
            tmp.write_bytes(data)
    return str(target)


def rewrite_dataset(
    ds: ray.data.Dataset,
    *,
    model: str | os.PathLike[str] | None = None,
    adapter: Any = BUNDLED,
    concurrency: int = 1,
    batch_size: int = 16,
    num_cpus_per_actor: float = 1,
    ship_files: bool = False,
    **rewriter_options: Any,
) -> ray.data.Dataset:
    """``ds`` with the result columns added. Rows have ``messages`` (and optionally ``id``), or are raw JSONL lines
    from :func:`read_conversations`. ``rewriter_options`` go to ``Rewriter`` (``n_threads`` defaults to the actor's
    CPUs so actors do not fight over cores)."""
    settings: dict[str, Any] = {"model": model, "adapter": adapter, **rewriter_options}
    if settings.get("n_threads") is None:
        settings["n_threads"] = max(1, int(num_cpus_per_actor))
    shipped: dict[str, tuple[str, ray.ObjectRef]] = {}
    if ship_files:
        for key in ("model", "adapter"):
            value = settings[key]
            if isinstance(value, (str, os.PathLike)) and Path(value).is_file():
                shipped[key] = (Path(value).name, ray.put(Path(value).read_bytes()))
    return ds.map_batches(
        RewriteActor,
        fn_constructor_kwargs={"settings": settings, "shipped": shipped},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=num_cpus_per_actor,
    )


class RayBatchSummary(BaseModel):
    """What a ``--ray`` batch wrote: rows, rewritten, unchanged, error rows, and where."""

    output: str
    rows: int
    rewritten: int
    unchanged: int
    errors: int
    seconds: float


def run_ray_batch(
    inputs: str | Sequence[str],
    output: str | os.PathLike[str],
    *,
    output_format: str = "jsonl",
    address: str | None = None,
    concurrency: int = 1,
    num_cpus_per_actor: float = 1,
    **options: Any,
) -> RayBatchSummary:
    """Read, rewrite and write a batch on Ray (a local Ray on this machine's CPUs unless ``address`` is given),
    rows in input order, then count what was written."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputFileError(f"--output {output} must be a new or empty folder with --ray")
    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ds = rewrite_dataset(
        read_conversations(inputs), concurrency=concurrency, num_cpus_per_actor=num_cpus_per_actor, **options
    )
    if output_format == "parquet":
        ds.write_parquet(str(output), ray_remote_args={"num_cpus": IO_CPUS})
        written = ray.data.read_parquet(str(output), columns=["changed", "error"])
    else:
        ds.write_json(str(output), ray_remote_args={"num_cpus": IO_CPUS})
        written = ray.data.read_json(str(output)).select_columns(["changed", "error"])
    rows = rewritten = errors = 0
    for batch in written.iter_batches(batch_format="pyarrow"):
        rows += batch.num_rows
        errors += batch.num_rows - batch.column("error").null_count
        rewritten += sum(1 for v in batch.column("changed").to_pylist() if v)
    return RayBatchSummary(
        output=str(output),
        rows=rows,
        rewritten=rewritten,
        unchanged=rows - rewritten - errors,
        errors=errors,
        seconds=round(time.perf_counter() - started, 1),
    )
