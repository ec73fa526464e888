"""`qr-edge data synth | judge | build` against a real OpenAI-compatible server on loopback (llama-cpp-python's
server with the embedded model), not a mock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from qr_edge.data.dataset import RewriteRecord, read_dataset, write_dataset
from qr_edge.data.synthetic import RewriteGenerator
from qr_edge.model_source import embedded_model_path

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

SECRET = "sk-qredge-test-SECRET-7f3a"
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log: Path | None = None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = log or Path(tempfile.gettempdir()) / f"qr-edge-teacher-{port}.log"
    log_file = log.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            embedded_model_path(),
            "--model_alias",
            "teacher",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--api_key",
            SECRET,
            "--n_ctx",
            "2048",
            "--verbose",
            "False",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log_file.close()
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            req = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {SECRET}"})
            urllib.request.urlopen(req, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"llama_cpp.server did not start (exit {proc.poll()}):\n{tail}")


@pytest.fixture(scope="module")
def server():
    proc, url = start_server()
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def qr(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "QR_TEACHER_KEY": SECRET, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "qr_edge", "data", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


TEACHER = ["--model", "teacher", "--api-key-env", "QR_TEACHER_KEY", "--max-tokens", "160", "--concurrency", "2"]


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text


def test_synth_writes_valid_records_or_counts_malformed_and_resumes(server, tmp_path):
    out = tmp_path / "synth.jsonl"
    proc = qr("synth", "--out", str(out), "--base-url", server, "--n", "4", *TEACHER)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(Path(f"{out}.stats.json").read_text())
    assert stats["failed"] == 0 and stats["usage"]["requests"] >= 4 and stats["usage"]["completion_tokens"] > 0
    written = read_dataset(out) if out.read_text().strip() else []  # every written line is a valid record
    assert len(written) == stats["written"] and stats["written"] + stats["malformed"] >= 4 - stats["written"]
    assert all(r.source.startswith("teacher:teacher:") for r in written)

    again = qr("synth", "--out", str(out), "--base-url", server, "--n", "5", *TEACHER)
    assert again.returncode == 0, again.stderr
    stats2 = json.loads(Path(f"{out}.stats.json").read_text())
    assert stats2["skipped_existing"] == len(written)  # finished ids are not asked again
    _no_secret(
        proc.stdout, proc.stderr, again.stdout, again.stderr, out.read_text(), Path(f"{out}.stats.json").read_text()
    )


def test_judge_scores_filters_and_never_leaks_the_key(server, tmp_path):
    src = tmp_path / "in.jsonl"
    records = RewriteGenerator(seed=9).generate(3)
    records.append(
        RewriteRecord(
            id="markup", lang="en", messages=records[0].messages, rewrite="<b>" + records[0].query, label="rewritten"
        )
    )
    write_dataset(records, src)
    out = tmp_path / "judged.jsonl"
    proc = qr("judge", "--in", str(src), "--out", str(out), "--base-url", server, *TEACHER)
    assert proc.returncode == 0, proc.stderr
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    rejected = [json.loads(line) for line in Path(f"{out}.rejected.jsonl").read_text().splitlines()]
    assert len(kept) + len(rejected) == 4
    assert {"id": "markup", "reason": "markup in rewrite"} in rejected  # deterministic check, no judge call
    for row in kept:
        assert all(1 <= row["judge"][c] <= 5 for c in ("task", "faithful", "resolved", "unchanged_ok", "fluent"))
    _no_secret(proc.stdout, proc.stderr, out.read_text())


def test_server_going_away_mid_run_loses_nothing_written(tmp_path):
    proc_server, url = start_server()
    out = tmp_path / "synth.jsonl"
    env = {**os.environ, "QR_TEACHER_KEY": SECRET}
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qr_edge",
            "data",
            "synth",
            "--out",
            str(out),
            "--base-url",
            url,
            "--n",
            "40",
            "--model",
            "teacher",
            "--api-key-env",
            "QR_TEACHER_KEY",
            "--max-tokens",
            "120",
            "--concurrency",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (Path(f"{out}").exists() and Path(f"{out}").stat().st_size > 0):
        time.sleep(0.5)
    os.killpg(proc_server.pid, signal.SIGKILL)
    proc_server.wait()
    _, err = run.communicate(timeout=600)
    assert run.returncode != 0 and "rerun the same command to resume" in err and "Traceback" not in err
    lines = out.read_text().splitlines()
    assert lines and all(RewriteRecord.model_validate_json(line) for line in lines)
    _no_secret(err)


def test_build_dedups_splits_mixes_golden_and_writes_a_card(tmp_path):
    base = RewriteGenerator(seed=11).generate(60)
    dup = base[0].model_copy(update={"id": "dup"})
    near = base[1].model_copy(update={"id": "near", "rewrite": base[1].rewrite + " "})  # same after normalising: exact
    src = tmp_path / "judged.jsonl"
    write_dataset([*base, dup, near], src)
    Path(f"{src}.stats.json").write_text(
        json.dumps({"stage": "judge", "requested": 70, "written": 62, "rejected": {"judged below 4": 8}})
    )
    golden = tmp_path / "golden.jsonl"
    write_dataset(RewriteGenerator(seed=12, split="golden").generate(20), golden)
    out_dir = tmp_path / "built"
    proc = qr(
        "build",
        str(src),
        "--out-dir",
        str(out_dir),
        "--golden",
        str(golden),
        "--golden-ratio",
        "0.2",
        "--dev-ratio",
        "0.1",
    )
    assert proc.returncode == 0, proc.stderr
    card = json.loads((out_dir / "card.json").read_text())
    assert card["loaded"] == 62 and card["exact_duplicates"] + card["near_duplicates"] >= 2
    train, dev = read_dataset(out_dir / "train.jsonl"), read_dataset(out_dir / "dev.jsonl")
    assert len(train) == card["train"] and len(dev) == card["dev"] and card["golden_added"] > 0
    assert not {r.id for r in train} & {r.id for r in dev}
    assert "judged below 4" in (out_dir / "card.md").read_text()
