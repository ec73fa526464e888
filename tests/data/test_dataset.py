"""Dataset format, the seeded generator, and the public-corpus importers (on slices written here)."""

import json

import pytest

from qr_edge.data.dataset import RewriteRecord, dataset_sha256, read_dataset, write_dataset
from qr_edge.data.importers import import_corpus
from qr_edge.data.synthetic import SCENARIOS, RewriteGenerator, load_pools
from qr_edge.errors import InputFileError
from qr_edge.examples import load_examples
from qr_edge.text import content_units

CONV = [
    {"role": "user", "content": "Tell me about Rust."},
    {"role": "assistant", "content": "Rust is fast."},
    {"role": "user", "content": "Is it hard?"},
]


def test_record_validation_and_labels():
    r = RewriteRecord(id="a", lang="en", messages=CONV, rewrite="Is Rust hard?", label="rewritten")
    assert r.query == "Is it hard?" and not r.depends_on_assistant()
    with pytest.raises(ValueError, match="requires rewrite == query"):
        RewriteRecord(id="b", lang="en", messages=CONV, rewrite="Is Rust hard?", label="unchanged")
    with pytest.raises(ValueError, match="equals the query"):
        RewriteRecord(id="c", lang="en", messages=CONV, rewrite="Is it hard?", label="rewritten")
    with pytest.raises(ValueError, match="last message"):
        RewriteRecord(id="d", lang="en", messages=CONV[:2], rewrite="x", label="rewritten")


def test_depends_on_assistant():
    conv = [
        {"role": "user", "content": "Recommend a language."},
        {"role": "assistant", "content": "Try Elixir."},
        {"role": "user", "content": "Who made it?"},
    ]
    r = RewriteRecord(id="a", lang="en", messages=conv, rewrite="Who made Elixir?", label="rewritten")
    assert r.depends_on_assistant() and [m.role for m in r.legacy_messages] == ["user", "user"]


def test_bad_lines_are_reported_with_line_numbers(tmp_path):
    good = RewriteRecord(id="a", lang="en", messages=CONV, rewrite="Is Rust hard?", label="rewritten")
    f = tmp_path / "d.jsonl"
    f.write_text(
        good.model_dump_json()
        + "\n{broken\n"
        + json.dumps({"id": "x", "lang": "fr", "messages": CONV, "rewrite": "q", "label": "rewritten"})
        + "\n"
    )
    with pytest.raises(InputFileError, match=r"2 invalid records: line 2: .*; line 3: "):
        read_dataset(f)
    out = tmp_path / "ok.jsonl"
    assert write_dataset([good], out) == 1 and read_dataset(out) == [good]


def test_generator_is_deterministic_and_covers_every_scenario():
    a = RewriteGenerator(seed=3).generate(400)
    b = RewriteGenerator(seed=3).generate(400)
    assert [r.model_dump() for r in a] == [r.model_dump() for r in b]
    assert dataset_sha256(a) != dataset_sha256(RewriteGenerator(seed=4).generate(400))
    assert {r.source.split(":")[1] for r in a} == set(SCENARIOS)
    assert {(r.lang, r.label) for r in a} == {
        (lang, label) for lang in ("en", "zh") for label in ("rewritten", "unchanged", "missing_context")
    }
    assert all(m.role == "user" for r in a if r.label == "missing_context" for m in r.messages)


def test_golden_split_shares_no_entity_with_train_and_none_with_the_examples():
    pools = load_pools()
    for lang in ("en", "zh"):
        for topic in pools[lang]["topics"].values():
            assert len(topic["train"]) >= 3 and len(topic["golden"]) >= 3
            assert not set(topic["train"]) & set(topic["golden"])
    golden = RewriteGenerator(seed=2, split="golden").generate(300)
    train_texts = {json.dumps([m.content for m in r.messages]) for r in RewriteGenerator(seed=0).generate(4000)}
    assert not any(json.dumps([m.content for m in r.messages]) in train_texts for r in golden)
    example_entities = [
        "Python",
        "Java",
        "Christopher Nolan",
        "Inception",
        "Eiffel",
        "Statue of Liberty",
        "西湖",
        "杭州",
        "iPhone 15",
        "小米14",
        "Postgres",
        "MongoDB",
        "对乙酰氨基酚",
    ]
    for r in golden:
        text = " ".join(m.content for m in r.messages) + r.rewrite
        assert not any(e in text for e in example_entities), r
    assert load_examples()  # the examples the check above refers to are the bundled ones


def test_import_rewrite_tsv(tmp_path):
    f = tmp_path / "r.tsv"
    f.write_text(
        "西安天气\t多云\t明天有雨吗\t西安明天有雨吗\n西安天气\t多云\t明天有雨吗\t西安明天有雨吗\nbad line\n好\t是\t谢谢\t谢谢\n",
        encoding="utf-8",
    )
    result = import_corpus("rewrite-tsv", f)
    assert [r.label for r in result.records] == ["rewritten", "unchanged"]
    assert result.records[0].lang == "zh" and [m.role for m in result.records[0].messages] == [
        "user",
        "assistant",
        "user",
    ]
    assert result.skipped == {"duplicate conversation": 1, "expected 4 tab-separated columns, got 1": 1}
    assert result.examples[0].startswith("line 2")


def test_import_cast_with_and_without_responses(tmp_path):
    data = [
        {
            "conv_id": 1,
            "turns": [
                {
                    "turn_id": 1,
                    "question": "What is throat cancer?",
                    "response": "",
                    "manual_rewrite": "What is throat cancer?",
                },
                {
                    "turn_id": 2,
                    "question": "Is it treatable?",
                    "response": "",
                    "manual_rewrite": "Is throat cancer treatable?",
                },
                {
                    "turn_id": 3,
                    "question": "Tell me about lung cancer.",
                    "response": "",
                    "manual_rewrite": "Tell me about lung cancer.",
                },
            ],
        },
        {
            "conv_id": 2,
            "turns": [
                {
                    "turn_id": 1,
                    "question": "Types of breast cancer?",
                    "response": "Ductal and lobular.",
                    "manual_rewrite": "Types of breast cancer?",
                },
                {
                    "turn_id": 2,
                    "question": "Is the second one deadly?",
                    "response": "Rarely.",
                    "manual_rewrite": "Is lobular breast cancer deadly?",
                },
            ],
        },
    ]
    f = tmp_path / "cast.json"
    f.write_text(json.dumps(data))
    result = import_corpus("cast", f)
    assert [r.label for r in result.records] == ["rewritten", "unchanged", "rewritten"]
    assert all(m.role == "user" for m in result.records[0].messages)  # CAsT-19 style: queries only
    assert [m.role for m in result.records[2].messages] == ["user", "assistant", "user"] and result.records[
        2
    ].depends_on_assistant()
    assert result.skipped == {"first turn (no history)": 2}


def test_import_canard_and_qrecc(tmp_path):
    canard = tmp_path / "canard.json"
    canard.write_text(
        json.dumps(
            [
                {
                    "History": ["Ada Lovelace", "Early life", "Where was she born?", "London."],
                    "Question": "When?",
                    "Rewrite": "When was Ada Lovelace born?",
                    "QuAC_dialog_id": "d1",
                    "Question_no": 2,
                },
                {"History": [], "Question": "x", "Rewrite": "x"},
            ]
        )
    )
    r = import_corpus("canard", canard)
    assert (
        len(r.records) == 1
        and r.records[0].messages[0].content == "Ada Lovelace: Early life"
        and r.records[0].id == "canard-d1-2"
    )
    assert r.skipped == {"missing History/Question/Rewrite": 1}
    qrecc = tmp_path / "qrecc.json"
    qrecc.write_text(
        json.dumps(
            [
                {
                    "Context": [],
                    "Question": "What is DoRA?",
                    "Rewrite": "What is DoRA?",
                    "Conversation_no": 1,
                    "Turn_no": 1,
                },
                {
                    "Context": ["What is DoRA?", "A LoRA variant."],
                    "Question": "Who proposed it?",
                    "Rewrite": "Who proposed DoRA?",
                    "Conversation_no": 1,
                    "Turn_no": 2,
                },
            ]
        )
    )
    r = import_corpus("qrecc", qrecc)
    assert [m.role for m in r.records[0].messages] == ["user", "assistant", "user"] and r.records[
        0
    ].rewrite == "Who proposed DoRA?"


def test_import_errors(tmp_path):
    with pytest.raises(InputFileError, match="unknown format"):
        import_corpus("squad", tmp_path / "x")
    with pytest.raises(InputFileError, match="no such file"):
        import_corpus("cast", tmp_path / "missing.json")


def test_leakage_units_see_example_entities():
    assert "python" in set().union(*(content_units(t) for ex in load_examples() for t in ex.texts()))
