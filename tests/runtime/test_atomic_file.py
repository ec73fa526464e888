"""Whole-file writes are atomic: a writer killed with SIGKILL leaves the old file or the new one, never half."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from qr_edge.atomic_file import write_text_atomic
from qr_edge.errors import InputFileError

WRITER = """
import sys
from qr_edge.atomic_file import write_text_atomic
target, n = sys.argv[1], 0
print("ready", flush=True)
while True:
    n += 1
    write_text_atomic(target, (f"version {n}\\n" + "x" * 79 + "\\n") * 20000 + "end\\n")
"""


def _whole(text: str) -> bool:
    lines = text.split("\n")
    return text == "old\n" or (len(lines) == 40002 and lines[-2] == "end" and lines[0].startswith("version "))


@pytest.mark.parametrize("seed", range(4))
def test_sigkill_mid_write_leaves_old_or_new_file(tmp_path, seed):
    target = tmp_path / "data.txt"
    target.write_text("old\n")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(random.Random(seed).uniform(0.05, 0.6))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert _whole(target.read_text())


def test_write_into_a_missing_folder_is_a_typed_error(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        write_text_atomic(tmp_path / "nope" / "x.txt", "x")
    with pytest.raises(InputFileError, match="is a folder"):
        write_text_atomic(tmp_path, "x")
    write_text_atomic(tmp_path / "x.txt", "ü")
    assert (tmp_path / "x.txt").read_text(encoding="utf-8") == "ü" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_an_interrupt_whose_exception_was_swallowed_still_stops_the_commit(tmp_path):
    """The CLI's signal handler sets the flag; a KeyboardInterrupt lost inside a C callback cannot let a job commit."""
    from qr_edge.atomic_file import AtomicOutputs, interrupted

    target = tmp_path / "out.txt"
    target.write_text("old")
    try:
        with AtomicOutputs() as outputs:
            outputs.reserve(target).write_text("new")
            interrupted.set()
            with pytest.raises(KeyboardInterrupt):
                outputs.commit()
    finally:
        interrupted.clear()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
