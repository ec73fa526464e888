"""scripts/full_size.py at its small shape: the same code path as the 3B stand-in (build bf16 shards and a DoRA
adapter, `qr-edge convert` to F16/Q8_0/Q4_K_M with verification, rewrite with the Q4_K_M file, the report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "full_size.py"


def test_the_small_stand_in_converts_and_runs(tmp_path):
    docs = tmp_path / "full-size.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--shape", "small", "--out", str(tmp_path / "fs"), "--docs", str(docs)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "fs" / "result.json").read_text())
    assert not result["convert"].get("failed"), result["convert"]
    quants = {o["quant"] for o in result["convert"]["report"]["outputs"]}
    assert quants == {"F16", "Q8_0", "Q4_K_M"} and all(r["passed"] for r in result["convert"]["report"]["parity"])
    config = json.loads((tmp_path / "fs" / "model" / "config.json").read_text())
    assert config["vocab_size"] == 151936 and config["tie_word_embeddings"] and config["num_key_value_heads"] == 2
    assert set(result["runtime"]) == {"Q4_K_M", "Q8_0"}
    for run in result["runtime"].values():
        assert run["cold"]["generated_tokens"] >= 1 and run["follow_up"]["prompt_tokens_reused"] > 0
        assert run["cold_greedy"]["forward_passes"] >= run["cold_greedy"]["generated_tokens"] > 0
        assert run["cold"]["floor_ms"] > 0
    text = docs.read_text()
    assert (
        "Convert peak RSS / F16 file" in text
        and "| follow_up |" in text
        and "| cold, drafting off |" in text
        and "Machine:" in text
    )

    # the runtime half again on the files it converted: build and convert figures as they were, a new runtime
    again = subprocess.run(
        [sys.executable, str(SCRIPT), "--shape", "small", "--out", str(tmp_path / "fs"), "--runtime-only"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((tmp_path / "fs" / "result.json").read_text())
    assert rerun["build"] == result["build"] and rerun["convert"] == result["convert"]
    assert set(rerun["runtime"]) == {"Q4_K_M", "Q8_0"} and rerun["command"].endswith("--runtime-only")
    missing = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "none"), "--runtime-only"], capture_output=True, text=True
    )
    assert missing.returncode != 0 and "is missing" in missing.stderr and not (tmp_path / "none").exists()
