"""Batch rewriting on a real local Ray (2 CPUs) with the embedded default model: the same rewrites as the plain
batch, bad rows as error values, and every row exactly once when an actor is killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qr_edge.data.synthetic import RewriteGenerator

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from qr_edge.scale import read_conversations, rewrite_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BAD_LINES = {
    25: b'{"id": "bad-surrogate", "messages": [{"role": "user", "content": "lone \\ud800"}]}',
    50: b'{"id": "bad-utf8", "messages": [{"role": "user", "content": "caf\xe9"}]}',
    75: b'{"id": "bad-json", "messages": [',
    100: b'{"id": "bad-role", "messages": [{"role": "robot", "content": "hi"}]}',
}


def _write_batch(path: Path, n: int) -> None:
    records = RewriteGenerator(seed=3, split="golden").generate(n)
    with open(path, "wb") as f:
        for i, r in enumerate(records, start=1):
            line = (
                BAD_LINES.get(i)
                or json.dumps(
                    {"id": f"c{i}", "messages": [m.model_dump() for m in r.messages]}, ensure_ascii=False
                ).encode()
            )
            f.write(line + b"\n")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    yield
    ray.shutdown()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qr_edge", "rewrite", *args], capture_output=True, text=True)


def test_ray_gives_the_plain_batch_rewrites_and_error_rows(local_ray, tmp_path):
    src = tmp_path / "in.jsonl"
    _write_batch(src, 200)
    plain = _cli("--input", str(src), "--output", str(tmp_path / "plain.jsonl"), "--threads", "1")
    assert plain.returncode == 1, plain.stderr  # 1: some lines failed, all written
    expected = {r["line"]: r for r in map(json.loads, (tmp_path / "plain.jsonl").read_text().splitlines())}

    rows = rewrite_dataset(read_conversations(str(src)), concurrency=2, batch_size=10).take_all()

    assert sorted(r["line"] for r in rows) == list(range(1, 201))
    lines = (src).read_bytes().split(b"\n")
    for row in rows:  # a JSONL row keeps its conversation (a bad line has none)
        want = None if row["line"] in BAD_LINES else json.loads(lines[row["line"] - 1])["messages"]
        assert row["messages"] == want, row
    for row in rows:
        want = expected[row["line"]]
        if "error" in want:
            assert row["error"].startswith(want["error"]["type"] + ":") and row["rewrite"] is None, row
        else:
            assert (row["id"], row["rewrite"], row["decision"], row["error"]) == (
                want["id"],
                want["rewrite"],
                want["decision"],
                None,
            ), row
            if want.get("confidence") is None:
                assert row["confidence"] is None, row
            else:  # the same rewrite, the same logits: the same confidence (to rounding)
                assert abs(row["confidence"] - want["confidence"]) < 1e-3, row
            assert list(row["queries"]) == want["queries"], row
    errors = {r["line"]: r["error"].split(":")[0] for r in rows if r["error"]}
    assert errors == {
        25: "InvalidConversationError",
        50: "InputFileError",
        75: "InputFileError",
        100: "InvalidConversationError",
    }


def test_rows_with_messages_columns_from_a_dataset(local_ray):
    good = {"id": "a", "messages": [{"role": "user", "content": "Who wrote Hamlet?"}]}
    bad = {"id": "b", "messages": [{"role": "assistant", "content": "an answer with no question"}]}
    rows = rewrite_dataset(ray.data.from_items([good, bad]), batch_size=2).take_all()
    assert [r["id"] for r in rows] == ["a", "b"] and rows[0]["rewrite"] == "Who wrote Hamlet?"
    assert rows[0]["error"] is None and rows[1]["error"].startswith("InvalidConversationError:")
    assert rows[1]["messages"] == bad["messages"]  # input columns are kept


def test_shipped_model_file_is_written_once_per_node_and_used(local_ray):
    import tempfile

    from qr_edge.model_source import embedded_model_path

    for old in (Path(tempfile.gettempdir()) / "qr-edge-shipped").glob("*-SmolLM2-135M-Instruct.Q4_1.gguf"):
        old.unlink()  # from an earlier run: this one must write its own
    good = {"id": "a", "messages": [{"role": "user", "content": "Who wrote Hamlet?"}]}
    ds = ray.data.from_items([good])
    rows = rewrite_dataset(ds, model=embedded_model_path(), adapter=None, ship_files=True).take_all()
    assert rows[0]["rewrite"] == "Who wrote Hamlet?" and rows[0]["error"] is None
    shipped = list((Path(tempfile.gettempdir()) / "qr-edge-shipped").glob("*-SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert len(shipped) == 1 and shipped[0].stat().st_size == Path(embedded_model_path()).stat().st_size
    assert not list(shipped[0].parent.glob(".*.tmp"))


def _actor_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "RewriteActor" in cmdline and proc.pid != os.getpid():
            found.append(proc)
    return found


def test_an_actor_killed_mid_run_loses_no_row_and_repeats_none(local_ray, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    _write_batch(src, 60)
    killed: list[int] = []

    def kill_one_actor() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            actors = _actor_processes()
            if actors and any(out.glob("*.json")):  # the actor has answered at least one batch
                os.kill(actors[0].pid, signal.SIGKILL)
                killed.append(actors[0].pid)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_actor)
    killer.start()
    rewrite_dataset(read_conversations(str(src)), concurrency=1, batch_size=4).write_json(str(out))
    killer.join()
    assert killed, "no actor process was found to kill"
    lines = [json.loads(x)["line"] for f in sorted(out.glob("*.json")) for x in f.read_text().splitlines()]
    assert sorted(lines) == list(range(1, 61))


def test_cli_ray_batch_and_its_errors(tmp_path):
    src = tmp_path / "in.jsonl"
    _write_batch(src, 30)
    out = tmp_path / "out"
    proc = _cli("--input", str(src), "--output", str(out), "--ray", "--output-format", "parquet")
    assert proc.returncode == 1 and "done 30 rows" in proc.stderr and "errors 1" in proc.stderr, proc.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.num_rows == 30 and table.column("line").to_pylist() == list(range(1, 31))
    again = _cli("--input", str(src), "--output", str(out), "--ray")
    assert again.returncode == 2 and "new or empty folder" in again.stderr and "Traceback" not in again.stderr
    no_out = _cli("--input", str(src), "--ray")
    assert no_out.returncode == 2 and "--ray needs --input and --output" in no_out.stderr


def test_cli_ray_without_the_extra_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None; "
        f"sys.argv = ['qr-edge', 'rewrite', '--input', {str(ROOT / 'README.md')!r}, '--output', 'o', '--ray']; "
        "from qr_edge.cli import main; main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 4 and "pip install 'qr-edge[ray]'" in proc.stderr and "Traceback" not in proc.stderr
