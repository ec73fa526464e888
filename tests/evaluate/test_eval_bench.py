"""`qr-edge eval`, `qr-edge bench` and `qr-edge data` run for real on tiny inputs (timing goals live in bench, not here)."""

from __future__ import annotations

import json

import pytest

from qr_edge.data.dataset import RewriteRecord, write_dataset
from qr_edge.evaluate.bench import requests
from qr_edge.evaluate.quality import CaseResult, metric_rows, normalise

from ..cli.test_cli import run

CONV = [
    {"role": "user", "content": "Tell me about Rust."},
    {"role": "assistant", "content": "Rust is fast."},
    {"role": "user", "content": "Is it hard to learn?"},
]


def _case(id_, label, query, reference, out, lang="en"):
    return CaseResult(
        id=id_,
        lang=lang,
        label=label,
        query=query,
        reference=reference,
        outputs={"qr-edge": out, "raw": out, "never-rewrite": query},
        decision="rewritten",
        guard_rejected=False,
        ms=1.0,
    )


def test_metrics_on_known_outputs():
    recs = {
        "a": RewriteRecord(id="a", lang="en", messages=CONV, rewrite="Is Rust hard to learn?", label="rewritten"),
        "b": RewriteRecord(id="b", lang="en", messages=CONV, rewrite="Is it hard to learn?", label="unchanged"),
        "c": RewriteRecord(id="c", lang="en", messages=CONV, rewrite="Is it hard to learn?", label="unchanged"),
    }
    cases = [
        _case(
            "a", "rewritten", "Is it hard to learn?", "Is Rust hard to learn?", "is rust hard to learn"
        ),  # exact after normalising
        _case(
            "b", "unchanged", "Is it hard to learn?", "Is it hard to learn?", "Is Python hard to learn?"
        ),  # leaked example entity
        _case("c", "unchanged", "Is it hard to learn?", "Is it hard to learn?", "Is it hard to learn?"),
    ]
    rows = {(r.system, r.slice): r for r in metric_rows(cases, recs)}
    ours = rows[("qr-edge", "all")]
    assert ours.n == 3 and abs(ours.exact_match - 2 / 3) < 1e-3
    assert ours.unchanged_accuracy == 0.5 and ours.rewrote_when_not_needed == 0.5
    assert abs(ours.leakage_rate - 1 / 3) < 1e-3 and abs(ours.unsupported_rate - 1 / 3) < 1e-3
    never = rows[("never-rewrite", "all")]
    assert never.unchanged_accuracy == 1.0 and abs(never.exact_match - 2 / 3) < 1e-3 and never.leakage_rate == 0
    assert rows[("qr-edge", "rewritten")].bleu4 > 0.3 and rows[("qr-edge", "rewritten")].rouge_l == 1.0
    assert normalise("Is Rust hard?") == normalise("is rust  hard")


def test_eval_command_on_a_tiny_dataset(tmp_path):
    data = tmp_path / "d.jsonl"
    write_dataset(
        [
            RewriteRecord(id="en1", lang="en", messages=CONV, rewrite="Is Rust hard to learn?", label="rewritten"),
            RewriteRecord(
                id="zh1",
                lang="zh",
                messages=[{"role": "user", "content": "推荐一个城市。"}, {"role": "user", "content": "第二个怎么样？"}],
                rewrite="第二个怎么样？",
                label="missing_context",
            ),
        ],
        data,
    )
    report, cases = tmp_path / "r.json", tmp_path / "c.jsonl"
    proc = run(
        "eval", "--data", str(data), "--baselines", "--out", str(report), "--cases", str(cases), "--n-examples", "1"
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(report.read_text())["rows"]
    assert {r["system"] for r in rows} == {"qr-edge", "raw", "never-rewrite"}
    assert {r["slice"] for r in rows} >= {"all", "en", "zh", "rewritten", "missing_context"}
    assert [json.loads(line)["id"] for line in cases.read_text().splitlines()] == ["en1", "zh1"]
    assert "EM" in proc.stdout and "leak" in proc.stdout


def test_eval_reports_calibration_writes_plots_and_ranks_passages(tmp_path):
    """Confidence figures and SVG plots from one eval; --passages ranks each turn's own passage with BM25."""
    import xml.etree.ElementTree as ET

    passages = {
        "r1": "Rust is hard to learn at first because of its borrow checker and ownership rules.",
        "r2": "The Eiffel Tower was finished in 1889 and is 330 metres tall.",
    }
    eiffel = [
        {"role": "user", "content": "How tall is the Eiffel Tower?"},
        {"role": "assistant", "content": "It is about 330 metres tall."},
        {"role": "user", "content": "When was it finished?"},
    ]
    data = tmp_path / "search.jsonl"
    write_dataset(
        [
            RewriteRecord(
                id="r1",
                lang="en",
                messages=CONV,
                rewrite="Is Rust hard to learn?",
                label="rewritten",
                passage=passages["r1"],
            ),
            RewriteRecord(
                id="r2",
                lang="en",
                messages=eiffel,
                rewrite="When was the Eiffel Tower finished?",
                label="rewritten",
                passage=passages["r2"],
            ),
        ],
        data,
    )
    report, plots = tmp_path / "r.json", tmp_path / "plots"
    proc = run("eval", "--data", str(data), "--out", str(report), "--plots", str(plots), "--passages")
    assert proc.returncode == 0, proc.stderr
    body = json.loads(report.read_text())
    assert body["calibration"][0]["slice"] == "all" and body["calibration"][0]["n"] == 2
    assert len(body["tradeoff"]) == 20 and body["tradeoff"][0]["threshold"] == 0.0
    for name in ("reliability.svg", "tradeoff.svg"):
        assert ET.parse(plots / name).getroot().tag.endswith("svg")
    retrieval = {(r["system"], r["slice"]): r for r in body["retrieval"]}
    assert retrieval[("reference", "all")]["recall_at_1"] == 1.0 and retrieval[("raw query", "all")]["n"] == 2
    assert "MRR@10" in proc.stdout and "AUROC" in proc.stdout
    plain = tmp_path / "plain.jsonl"
    write_dataset([RewriteRecord(id="p", lang="en", messages=CONV, rewrite="Is Rust hard?", label="rewritten")], plain)
    refused = run("eval", "--data", str(plain), "--passages")
    assert refused.returncode != 0 and "no record has a passage" in refused.stderr and "Traceback" not in refused.stderr


def test_bench_command_runs_on_a_tiny_input(tmp_path):
    docs = tmp_path / "bench.md"
    proc = run(
        "bench",
        "--turns",
        "2",
        "--repeat",
        "1",
        "--system",
        "qr-edge",
        "--system",
        "peer",
        "--scenario",
        "stream",
        "--n-examples",
        "1",
        "--docs",
        str(docs),
        "--out",
        str(tmp_path / "b.json"),
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "b.json").read_text())
    assert [(r["system"], r["rewrites"]) for r in rows] == [("qr-edge", 1), ("floor", 1), ("peer", 1)]
    ours, floor = rows[0], rows[1]
    assert ours["p50_ms"] > 0 and ours["peak_rss_mb"] > 0
    assert "merged into" in ours["note"]  # without --model: Rewriter() as users get it
    # the floor is llama.cpp alone for the same token counts, measured in the same process
    # one turn: efficiency is its floor / actual (from unrounded times, so within rounding of the rounded ones)
    assert (
        0 < floor["p50_ms"] == ours["floor_ms"] and abs(ours["efficiency"] - ours["floor_ms"] / ours["p50_ms"]) < 0.01
    )
    assert (
        ours["tokens_per_pass"] >= 1.0 and floor["mean_prompt_tokens_evaluated"] == ours["mean_prompt_tokens_evaluated"]
    )
    text = docs.read_text()
    assert "Machine:" in text and "| qr-edge | stream |" in text and "| floor | stream |" in text
    assert "its copy with the adapter merged in" in text
    assert ("faster per rewrite" in text or "slower per rewrite" in text) and "than floor" not in text


def test_bench_measures_what_a_follow_up_adds_around_its_new_turns(tmp_path):
    """The follow-up turn's wrapping (tokens evaluated minus its new turns' own) is what the prompt format predicts:
    the tokens after the part this turn's prompt shares with the previous turn's, minus the new turns' tokens."""
    from qr_edge import Rewriter
    from qr_edge.engine import _common_prefix
    from qr_edge.messages import parse_messages

    out = tmp_path / "b.json"
    args = ("bench", "--turns", "3", "--repeat", "1", "--system", "qr-edge", "--scenario", "stream", "--out", str(out))
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())[0]
    first, follow_up = requests("stream", turns=3, repeat=1)
    rw = Rewriter()
    before, after = (rw.engine.tokenize(rw.render_prompt(parse_messages(m))) for m in (first, follow_up))
    own = sum(len(rw.engine.token_ids(rw.builder.turn_text(m["content"]))) for m in follow_up[len(first) :])
    assert (
        row["follow_up_wrapping"] == len(after) - _common_prefix(before, after) - own > 16
    )  # format 2 (the bundled adapter's) wraps more


def test_bench_requests_arrive_in_order():
    stream = requests("stream", turns=3, repeat=1)
    assert [len(m) for m in stream] == [3, 5] and stream[1][:3] == stream[0]
    inter = requests("interleaved", turns=2, repeat=1)
    assert len(inter) == 3 and len({m[0]["content"] for m in inter}) >= 2


def test_bad_arguments_exit_non_zero():
    assert run("bench", "--system", "vllm").returncode == 2
    assert run("eval", "--data", "missing.jsonl").returncode == 2


def test_data_generate_and_import_commands(tmp_path):
    out = tmp_path / "g.jsonl"
    proc = run("data", "generate", "--out", str(out), "--n", "20", "--seed", "3")
    assert proc.returncode == 0 and len(out.read_text().splitlines()) == 20 and "en/" in proc.stderr
    tsv = tmp_path / "r.tsv"
    tsv.write_text("西安天气\t多云\t明天有雨吗\t西安明天有雨吗\nbroken\n")
    proc = run("data", "import", str(tsv), "--format", "rewrite-tsv", "--out", str(tmp_path / "i.jsonl"))
    assert proc.returncode == 0 and "skipped 1" in proc.stderr and "line 2" in proc.stderr
    proc = run("data", "import", str(tsv), "--format", "squad", "--out", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 2 and "unknown format" in proc.stderr


def test_data_commands_refuse_to_overwrite_and_an_empty_import_fails(tmp_path):
    """One rule for every whole-file output: an existing one is replaced only with --force; a corpus read with the
    wrong --format (no record) is an error, not an empty file and exit 0."""
    out = tmp_path / "g.jsonl"
    assert run("data", "generate", "--out", str(out), "--n", "5").returncode == 0
    before = out.read_text()
    proc = run("data", "generate", "--out", str(out), "--n", "7", "--seed", "9")
    assert proc.returncode == 2 and "--force" in proc.stderr and out.read_text() == before
    assert run("data", "generate", "--out", str(out), "--n", "7", "--force").returncode == 0
    assert len(out.read_text().splitlines()) == 7
    cast = tmp_path / "cast.json"
    cast.write_text('[{"conv_id": 1, "turns": [{"turn_id": 1, "question": "q", "manual_rewrite": "q"}]}]')
    proc = run("data", "import", str(cast), "--format", "canard", "--out", str(tmp_path / "c.jsonl"))
    assert proc.returncode == 2 and "another format" in proc.stderr and not (tmp_path / "c.jsonl").exists()
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[sources]]\nname = "g"\nkind = "synthetic"\nstyle = "s"\ntrain = 4\ndev = 1\ntest = 1\n')
    assert run("data", "mix", "--recipe", str(recipe), "--out", str(tmp_path / "mix")).returncode == 0
    proc = run("data", "mix", "--recipe", str(recipe), "--out", str(tmp_path / "mix"))
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert run("data", "mix", "--recipe", str(recipe), "--out", str(tmp_path / "mix"), "--force").returncode == 0


def test_bench_says_slower_when_qr_edge_is_slower():
    from qr_edge.cli.bench import _ratio

    assert _ratio(200.0, 100.0) == "2.0x faster" and _ratio(70.0, 100.0) == "1.4x slower"


def test_eval_and_bench_refuse_an_output_in_a_missing_folder_before_they_run(tmp_path):
    """The output folder is checked first: the model here does not even exist, and the refusal names the folder
    (an evaluation of 886 cases used to run for minutes and then fail on its --out)."""
    data = tmp_path / "d.jsonl"
    write_dataset([RewriteRecord(id="a", lang="en", messages=CONV, rewrite="Is Rust hard?", label="rewritten")], data)
    target = tmp_path / "missing" / "r.json"
    model = ("--model", str(tmp_path / "none.gguf"))
    for args in (
        ("eval", "--data", str(data), *model, "--out", str(target)),
        ("eval", "--data", str(data), *model, "--cases", str(target)),
        ("bench", *model, "--out", str(target)),
        ("bench", *model, "--docs", str(target)),
    ):
        proc = run(*args)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert f"{args[-2]} {target}: folder {target.parent} does not exist" in proc.stderr, proc.stderr


def test_replay_bar_reproduces_the_eval_at_bar_0_and_keeps_every_query_at_bar_1(tmp_path):
    """scripts/replay_bar.py on a real eval's cases: bar 0 gives the eval's own rows, a bar above every confidence
    gives the never-rewrite figures, --map with the adapter the eval ran changes nothing (and without --bar applies
    that adapter's own bar), and cases from a file not given are refused with a non-zero exit."""
    import subprocess
    import sys
    from pathlib import Path

    from qr_edge.confidence import file_calibration
    from qr_edge.model_source import bundled_adapter_path

    data = tmp_path / "d.jsonl"
    write_dataset(
        [RewriteRecord(id="en1", lang="en", messages=CONV, rewrite="Is Rust hard to learn?", label="rewritten")], data
    )
    report, cases = tmp_path / "r.json", tmp_path / "c.jsonl"
    proc = run("eval", "--data", str(data), "--out", str(report), "--cases", str(cases), "--min-confidence", "0")
    assert proc.returncode == 0, proc.stderr
    script = Path(__file__).resolve().parents[2] / "scripts" / "replay_bar.py"

    def replay(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), "--cases", str(cases), *extra], capture_output=True, text=True
        )

    def qr_edge_rows(path):
        return [r for r in json.loads(path.read_text())["rows"] if r["system"] == "qr-edge"]

    at0, at1, mapped = tmp_path / "0.json", tmp_path / "1.json", tmp_path / "m.json"
    assert replay("--data", str(data), "--bar", "0", "--out", str(at0)).returncode == 0
    assert qr_edge_rows(at0) == qr_edge_rows(report)
    assert replay("--data", str(data), "--bar", "1.01", "--out", str(at1)).returncode == 0
    rows = json.loads(at1.read_text())["rows"]
    never = {r["slice"]: r["bleu4"] for r in rows if r["system"] == "never-rewrite"}
    assert qr_edge_rows(report)[0]["bleu4"] != never["all"]  # the default rewrites this follow-up
    assert {r["slice"]: r["bleu4"] for r in rows if r["system"] == "qr-edge"} == never
    proc = replay("--data", str(data), "--bar", "0", "--map", bundled_adapter_path(), "--out", str(mapped))
    assert proc.returncode == 0, proc.stderr
    assert qr_edge_rows(mapped) == qr_edge_rows(report)
    # without --bar, --map's own bar: the rows Rewriter() gives by default; with neither, a usage error
    own = tmp_path / "own.json"
    assert replay("--data", str(data), "--map", bundled_adapter_path(), "--out", str(own)).returncode == 0
    assert json.loads(own.read_text())["bar"] == file_calibration(bundled_adapter_path()).min_confidence > 0
    no_bar = replay("--data", str(data), "--out", str(tmp_path / "nobar.json"))
    assert no_bar.returncode == 2 and "--bar is needed" in no_bar.stderr
    not_gguf = replay("--data", str(data), "--map", str(data), "--out", str(tmp_path / "nogguf.json"))
    assert not_gguf.returncode == 1 and "not a readable GGUF adapter" in not_gguf.stderr
    assert "Traceback" not in not_gguf.stderr
    other = tmp_path / "other.jsonl"
    write_dataset([RewriteRecord(id="zz", lang="en", messages=CONV, rewrite="x", label="rewritten")], other)
    refused = replay("--data", str(other), "--bar", "0", "--out", str(tmp_path / "no.json"))
    assert refused.returncode != 0 and "in none of the --data files" in refused.stderr
    assert not (tmp_path / "no.json").exists()


def test_sample_ceiling_scores_every_way_of_choosing_among_the_candidates(tmp_path):
    """scripts/sample_ceiling.py with the default Rewriter(): full conversations only, the greedy rewrite and N samples
    per case, the consensus one of them, and an oracle no choice among them can beat; a missing file is a clear error."""
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "dev-en-x.jsonl"
    queries_only = [{"role": "user", "content": "Tell me about Rust."}, {"role": "user", "content": "Is it hard?"}]
    write_dataset(
        [
            RewriteRecord(id="full", lang="en", messages=CONV, rewrite="Is Rust hard to learn?", label="rewritten"),
            RewriteRecord(id="legacy", lang="en", messages=queries_only, rewrite="Is Rust hard?", label="rewritten"),
        ],
        data,
    )
    script = Path(__file__).resolve().parents[2] / "scripts" / "sample_ceiling.py"
    out = tmp_path / "ceiling.json"
    proc = subprocess.run(
        [sys.executable, str(script), str(data), "--samples", "3", "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    cases = json.loads(out.read_text())["dev-en-x"]
    assert [c["id"] for c in cases] == ["full"]  # the queries-only record goes through the gate, not here
    (case,) = cases
    assert len(case["candidates"]) == 4 and case["candidates"][0] == case["greedy"]
    assert case["consensus"] in case["candidates"]
    scores = case["bleu"]
    assert scores["never"] < scores["greedy"] == scores["oracle"] == pytest.approx(1.0)  # "it" resolved to Rust
    assert all(scores["oracle"] >= scores[s] for s in ("never", "greedy", "greedy_bar", "consensus"))
    assert proc.stdout.startswith("| style |") and "| dev-en-x | 1 |" in proc.stdout  # the progress bar is on stderr
    missing = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "nope.jsonl" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "x.json").exists()
