"""The real ``qr-edge`` executable, as a user runs it: exit codes, stdout, files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qr_edge import Decision

from ..conftest import CONVERSATION

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "qr_edge"]


def run(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "QR_EDGE_MODEL"}
    env["HF_HUB_OFFLINE"] = "1"
    env["COLUMNS"] = "200"
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def _no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def test_single_conversation_file_prints_decision_and_timings():
    proc = run("rewrite", "examples/conversation.json", "--n-examples", "2")
    assert proc.returncode == 0, proc.stderr
    assert "decision" in proc.stdout and "reused" in proc.stdout and "Why is it faster?" in proc.stdout


def test_stdin_json_with_prompt():
    proc = run("rewrite", "-", "--json", "--show-prompt", "--n-examples", "1", stdin=json.dumps(CONVERSATION))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["query"] == "Why is it faster?" and data["decision"] in {d.value for d in Decision}
    assert (
        data["prompt"].endswith("<rewritten_query>")
        and "<current_query>Why is it faster?</current_query>" in data["prompt"]
    )
    assert data["timings"]["prompt_tokens"] > 0


def test_legacy_queries():
    proc = run(
        "rewrite", "--queries", "Python和Java哪个更好？", "--queries", "它怎么样？", "--json", "--n-examples", "1"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["query"] == "它怎么样？" and "gate" in data


def test_batch_keeps_order_and_ids_and_reports_bad_lines(tmp_path):
    src = tmp_path / "in.jsonl"
    rows = [
        {"id": "first", "messages": CONVERSATION},
        {"id": 2, "messages": [{"role": "user", "content": "Standalone question?"}]},
        {"id": "bad", "messages": [{"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": "Who wrote Dune?"}, {"role": "user", "content": "When?"}]},
    ]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    proc = run("rewrite", "--input", str(src), "--output", str(out), "--n-examples", "1")
    assert proc.returncode == 1  # one bad line: reported, the rest written
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.get("id") for line in lines] == ["first", 2, "bad", None]
    assert lines[1]["decision"] == "no_history" and "error" in lines[2] and lines[2]["line"] == 3
    assert lines[3]["query"] == "When?"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    _no_traceback(proc)


def test_batch_to_stdout(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "messages": [{"role": "user", "content": "hi"}]}) + "\n")
    proc = run("rewrite", "-i", str(src), "--n-examples", "0")
    assert proc.returncode == 0 and json.loads(proc.stdout)["id"] == 1


@pytest.mark.parametrize(
    "args, stdin, code, message",
    [
        (["rewrite"], None, 2, "exactly one"),
        (["rewrite", "missing.json"], None, 2, "cannot read"),
        (["rewrite", "-"], "{not json", 2, "not valid JSON"),
        (["rewrite", "-"], "[]", 2, "empty"),
        (
            ["rewrite", "-"],
            '[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]',
            2,
            "last message",
        ),
        (["rewrite", "-"], '[{"role": "robot", "content": "a"}]', 2, "role 'robot'"),
        (["rewrite", "-"], '[{"role": "user", "content": 5}]', 2, "must be a string"),
        (["rewrite", "examples/conversation.json", "--model", "nope.gguf"], None, 3, "not found"),
        (["rewrite", "examples/conversation.json", "--output", "x.jsonl"], None, 2, "--input"),
        (["rewrite", "--input", "missing.jsonl"], None, 2, "cannot read"),
        (["rewrite", "examples/conversation.json", "--examples", "missing.jsonl"], None, 2, "examples file"),
        (["rewrite", "examples/conversation.json", "--bogus"], None, 2, "No such option"),
    ],
)
def test_error_paths_exit_non_zero_without_traceback(args, stdin, code, message):
    proc = run(*args, stdin=stdin)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    _no_traceback(proc)


def test_context_overflow_exit_code(tmp_path):
    conv = tmp_path / "long.json"
    conv.write_text(json.dumps([{"role": "user", "content": "a"}, {"role": "user", "content": "word " * 3000}]))
    proc = run("rewrite", str(conv), "--n-ctx", "512")
    assert proc.returncode == 2 and "context" in proc.stderr
    _no_traceback(proc)


def test_help_lists_rewrite():
    proc = run("--help")
    assert proc.returncode == 0 and "rewrite" in proc.stdout


def test_markup_in_user_text_is_printed_literally(tmp_path):
    conv = tmp_path / "c.json"
    conv.write_text(json.dumps([{"role": "user", "content": "[bold]hi[/bold]"}]))
    proc = run("rewrite", str(conv))
    assert proc.returncode == 0 and "[bold]hi[/bold]" in proc.stdout


def test_n_examples_outside_0_to_10_is_a_usage_error():
    for value in ("11", "-1"):
        proc = run("rewrite", "examples/conversation.json", "--n-examples", value)
        assert proc.returncode == 2 and "--n-examples" in proc.stderr, proc.stderr
        _no_traceback(proc)
    ignored = run("rewrite", "examples/conversation.json", "--n-examples", "3")  # the default: format 2, 0-shot
    assert ignored.returncode == 0 and "--n-examples 3 has no effect" in ignored.stderr, ignored.stderr


def test_first_use_says_on_stderr_that_it_makes_the_run_copy_once(tmp_path):
    """The merge of the bundled adapter into the run copy takes seconds: one line says so, the first time only."""
    code = "from qr_edge import Rewriter; Rewriter(n_ctx=512)"
    env = {**{k: v for k, v in os.environ.items() if k != "QR_EDGE_MODEL"}, "QR_EDGE_CACHE": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("qr-edge: first use: merging the bundled adapter") == 1, first.stderr
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "first use" not in again.stderr, again.stderr


def test_show_prompt_prints_the_exact_prompt_unwrapped():
    proc = subprocess.run(
        [*CLI, "rewrite", "examples/conversation.json", "--show-prompt"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "40", "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    from qr_edge import Rewriter
    from qr_edge.messages import read_conversation

    prompt = Rewriter(n_ctx=1024).render_prompt(read_conversation(ROOT / "examples" / "conversation.json"))
    assert prompt in proc.stdout and max(len(line) for line in prompt.splitlines()) > 40


def test_error_messages_point_the_right_way(tmp_path):
    """An adapter GGUF given as --model, a missing local base folder (not a hub id), a missing --adapter folder."""
    from qr_edge.model_source import bundled_adapter_path, embedded_model_path

    proc = run("rewrite", "examples/conversation.json", "--model", bundled_adapter_path())
    assert proc.returncode == 3 and "is a LoRA adapter, not a model" in proc.stderr, proc.stderr
    _no_traceback(proc)
    pytest.importorskip("torch")
    proc = run("convert", "--base", "./Qwen2.5-3B-Instruct", "--out", str(tmp_path / "x.gguf"))
    assert proc.returncode != 0 and "no such file or folder" in proc.stderr and "download" not in proc.stderr
    proc = run("convert", "--base", embedded_model_path(), "--adapter", str(tmp_path / "nope"), "--out", "x.gguf")
    assert proc.returncode != 0 and "no such folder" in proc.stderr, proc.stderr
