"""The 10,000-line batch check of issue 14: 1% bad lines, kill -9 at a random point, --resume.

Builds the input from the held-out split files of ``make mix`` (build/mix/test-*.jsonl, cycled, fresh ids), with
every 100th line bad in one of four ways, runs ``qr-edge rewrite --input --output``, kills it with SIGKILL after
``--kill-after`` seconds, resumes, and prints what the output holds.

    python scripts/batch_10k.py --lines 10000 --kill-after 600 --first-turn-share 0.75
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

BAD = (
    b'{"id": "bad-%d", "messages": [{"role": "user", "content": "lone \\ud800 surrogate"}]}',
    b'{"id": "bad-%d", "messages": [{"role": "user", "content": "caf\xe9 latin-1"}]}',
    b'{"id": "bad-%d", "messages": [{"role": "robot", "content": "wrong role"}]}',
    b'{"id": "bad-%d", "messages": [ torn json',
)


def build(src_dir: Path, path: Path, n: int, first_turn_share: float) -> None:
    """Every 100th line bad; of the rest, ``first_turn_share`` are opening queries (no history: no model call),
    as in a query log, and the others full follow-up conversations."""
    convs = [json.loads(x) for f in sorted(src_dir.glob("test-*.jsonl")) for x in f.read_text().splitlines()]
    rng = random.Random(0)
    with open(path, "wb") as f:
        for i in range(n):
            if i % 100 == 57:
                f.write(BAD[(i // 100) % len(BAD)] % i + b"\n")
                continue
            messages = convs[i % len(convs)]["messages"]
            if rng.random() < first_turn_share:
                messages = messages[:1]
            f.write(json.dumps({"id": f"row-{i}", "messages": messages}, ensure_ascii=False).encode() + b"\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--kill-after", type=float, default=600)
    ap.add_argument("--first-turn-share", type=float, default=0.75)
    ap.add_argument("--mix", type=Path, default=Path("build/mix"))
    ap.add_argument("--work", type=Path, default=Path("build/batch-10k"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    src, out = args.work / "in.jsonl", args.work / "out.jsonl"
    out.unlink(missing_ok=True)
    build(args.mix, src, args.lines, args.first_turn_share)
    cmd = [sys.executable, "-m", "qr_edge", "rewrite", "--input", str(src), "--output", str(out)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_at = random.uniform(0.5, 1.0) * args.kill_after
    try:
        proc.wait(timeout=kill_at)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    first = out.read_bytes().count(b"\n") if out.exists() else 0
    t1 = time.time()
    again = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    t2 = time.time()
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    ids = [x["id"] for x in lines]
    errors = collections.Counter(x["error"]["type"] for x in lines if "error" in x)
    good = [x for x in lines if "error" not in x]
    report = {
        "input_lines": args.lines,
        "first_turn_share": args.first_turn_share,
        "killed_after_s": round(kill_at, 1),
        "lines_before_kill": first,
        "resume_exit_code": again.returncode,
        "resume_summary": again.stderr.strip().splitlines()[-1:],
        "output_lines": len(lines),
        "distinct_ids": len(set(ids)),
        "in_input_order": [x["line"] for x in lines] == list(range(1, len(lines) + 1)),
        "results": len(good),
        "rewritten": sum(x.get("changed", False) for x in good),
        "error_records": dict(errors),
        "first_run_rows_per_s": round(first / (t1 - t0), 2),
        "resume_rows_per_s": round((len(lines) - first) / (t2 - t1), 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
