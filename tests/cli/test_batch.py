"""Batch rewriting loses nothing: streamed output, per-line error records, kill -9 and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from ..conftest import CONVERSATION
from .test_cli import CLI, ROOT, run


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        if i % 7 == 3:
            rows.append({"id": i, "messages": [{"role": "user", "content": "bad \ud800 surrogate"}]})
        else:
            follow = {"role": "user", "content": f"Why is it faster? ({i})"}
            rows.append({"id": i, "messages": [*CONVERSATION[:2], follow]})
    return rows


def _write(path, rows, extra: bytes = b"") -> None:
    with open(path, "wb") as f:
        for r in rows:
            f.write(json.dumps(r).encode() + b"\n")
        f.write(extra)


def test_bad_lines_become_error_records_and_the_batch_goes_on(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, _rows(5), extra=b'{"id": "latin1", "messages": [{"role": "user", "content": "caf\xe9"}]}\n')
    proc = run("rewrite", "--input", str(src), "--output", str(out), "--adapter", "none", "--n-examples", "0")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 3, 4, 5, 6]
    bad = lines[3]
    assert (
        bad["id"] == 3 and bad["error"]["type"] == "InvalidConversationError" and "surrogate" in bad["error"]["message"]
    )
    assert lines[5]["error"]["type"] == "InputFileError" and "not UTF-8" in lines[5]["error"]["message"]
    assert all("error" not in x and x["id"] == i for i, x in enumerate(lines) if i not in (3, 5))
    assert all(0.0 <= x["confidence"] <= 1.0 for x in lines if x.get("decision") not in (None, "no_history"))
    assert "errors 2" in proc.stderr


def test_kill_minus_nine_then_resume_gives_every_line_exactly_once(tmp_path):
    rows = _rows(24)
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, rows)
    args = [*CLI, "rewrite", "--input", str(src), "--output", str(out), "--adapter", "none", "--n-examples", "0"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 5):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(out, "a") as f:
        f.write('{"id": 99, "torn')  # what a kill in the middle of a write leaves
    again = run(
        "rewrite", "--input", str(src), "--output", str(out), "--resume", "--adapter", "none", "--n-examples", "0"
    )
    assert again.returncode == 1 and "Traceback" not in again.stderr  # 1: the surrogate lines are errors
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == list(range(24))
    refused = run("rewrite", "--input", str(src), "--output", str(out), "--adapter", "none")
    assert refused.returncode == 2 and "--resume" in refused.stderr


def test_output_path_problems_are_one_line_errors(tmp_path):
    src = tmp_path / "in.jsonl"
    _write(src, _rows(1))
    for target, message in ((tmp_path, "is a folder"), (tmp_path / "no" / "out.jsonl", "does not exist")):
        proc = run("rewrite", "--input", str(src), "--output", str(target), "--adapter", "none")
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    proc = run("rewrite", "--input", str(src), "--resume", "--adapter", "none")
    assert proc.returncode == 2 and "--resume needs --output" in proc.stderr


def test_api_rejects_lone_surrogates_naming_the_message(rewriter):
    import pytest

    from qr_edge import InvalidConversationError

    with pytest.raises(InvalidConversationError, match="message 2"):
        rewriter.rewrite([*CONVERSATION[:2], {"role": "user", "content": "x\udfffy"}])


def test_python_module_runs_without_a_console_script():
    assert subprocess.run([sys.executable, "-m", "qr_edge", "--help"], capture_output=True, timeout=60).returncode == 0


def test_batch_progress_rate_is_rounded_and_never_none():
    from rich.progress import Progress

    from qr_edge.cli.rewrite import RateColumn

    progress = Progress()
    progress.add_task("rewrite", total=10)
    task = progress.tasks[0]
    assert RateColumn().render(task).plain == "– lines/s"  # nothing timed yet, or a finished --resume
    task.finished_speed = 1.8952269691455976
    assert RateColumn().render(task).plain == "1.9 lines/s"


def test_a_small_context_drops_old_turns_or_is_a_typed_error_per_line(tmp_path):
    """--n-ctx 64 or 100: llama.cpp pads the context it allocates (to 256) but the token buffer keeps the size asked
    for; the runtime fits prompts to the smaller, so a line that does not fit is a ContextOverflowError record,
    never a numpy broadcast traceback that loses the batch."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    long_query = {"role": "user", "content": "Why is it faster than the loops " + "and " * 40 + "?"}
    _write(src, [{"id": 0, "messages": CONVERSATION}, {"id": 1, "messages": [*CONVERSATION[:2], long_query]}])
    for n_ctx in ("64", "100"):
        single = run("rewrite", "examples/conversation.json", "--n-ctx", n_ctx)
        assert single.returncode == 0 or (single.returncode == 2 and "does not fit" in single.stderr), single.stderr
        assert "Traceback" not in single.stderr and "broadcast" not in single.stderr
        out.unlink(missing_ok=True)
        proc = run("rewrite", "--input", str(src), "--output", str(out), "--n-ctx", n_ctx)
        assert "Traceback" not in proc.stderr, proc.stderr
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert [x["line"] for x in lines] == [1, 2]
        assert lines[1]["error"]["type"] == "ContextOverflowError"


def test_input_mistakes_are_named_before_the_model_loads(tmp_path):
    """A single conversation file, or a folder without --ray, given to --input: one clear line, exit 2."""
    proc = run("rewrite", "--input", "examples/conversation.json")
    assert proc.returncode == 2 and "one JSON document" in proc.stderr and "qr-edge rewrite examples/" in proc.stderr
    proc = run("rewrite", "--input", str(tmp_path))
    assert proc.returncode == 2 and "--ray" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_says_how_many_lines_are_written_and_how_to_resume(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, _rows(40))
    args = [*CLI, "rewrite", "--input", str(src), "--output", str(out), "--adapter", "none", "--n-examples", "0"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    written = out.read_text().count("\n")
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert f"interrupted: {written} of 40 lines written to {out}" in stderr and "--resume" in stderr
