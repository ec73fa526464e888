"""The importers of the public corpora in ../shared/data, each on a small fixture of its shape, and the filters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qr_edge.data.dataset import read_dataset
from qr_edge.data.importers import FORMATS, PERSONA_ONLY, UNSUPPORTED_TITLE, import_corpus
from qr_edge.data.mix import build_mix, split_overlap
from qr_edge.errors import InputFileError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_canard_test_rows_keep_title_answers_and_conversation(tmp_path):
    rows = [
        "Anna Politkovskaya\tThe murder\tDid they have any clues?\tDid investigators have any clues about Anna Politkovskaya?",
        "Anna Politkovskaya\tThe murder\tDid they have any clues?\tFSB targeted her webmail.\tHow did they target her?\tHow did FSB target Anna Politkovskaya?",
        "Anna Politkovskaya\tThe murder\tDid they have any clues?\tFSB targeted her webmail.\tIs it solved?\tIs it solved?",
        "too\tfew",
    ]
    result = import_corpus("canard-tsv", _write(tmp_path / "c.tsv", "\n".join(rows) + "\n"))
    assert [r.label for r in result.records] == ["rewritten", "rewritten", "unchanged"]
    second = result.records[1]
    assert [m.role for m in second.messages] == ["user", "user", "assistant", "user"]
    assert second.messages[0].content == "Anna Politkovskaya: The murder"
    assert second.messages[2].content == "FSB targeted her webmail."
    assert len({r.conversation for r in result.records}) == 1  # one dialogue: split as one
    assert sum(result.skipped.values()) == 1


def test_canard_train_questions_drop_rewrites_that_name_the_missing_title(tmp_path):
    rows = [
        "C_d1_q#0\twhat team did unitas play for\twhat team did Johnny Unitas play for?",
        "C_d1_q#1\thow many games did the colts win\thow many games did the colts win",
        "C_d1_q#2\twho did they play in the playoffs\twho did the colts play in the playoffs?",
        "C_d1_q#3\twhen did he retire\twhen did Johnny Unitas retire?",  # "johnny" is only in the rewrites
        "C_d2_q#0\twhat is x\twhat is x",
        "bad line",
    ]
    result = import_corpus("canard-questions", _write(tmp_path / "q.tsv", "\n".join(rows)))
    kept = {r.id: r for r in result.records}
    assert set(kept) == {"canard-train-C_d1-1", "canard-train-C_d1-2"}
    assert kept["canard-train-C_d1-2"].rewrite == "who did the colts play in the playoffs?"
    assert all(m.role == "user" for m in kept["canard-train-C_d1-2"].messages)  # earlier questions only
    assert result.skipped[UNSUPPORTED_TITLE] == 1
    assert result.skipped["first turn (no history)"] == 2
    assert sum(result.skipped.values()) == 4


def test_qrecc_both_files_name_the_same_conversation(tmp_path):
    turns = [
        {"Conversation_no": 7, "Turn_no": 1, "Question": "where did the cone sisters live?", "NewContext": []},
        {
            "Conversation_no": 7,
            "Turn_no": 2,
            "Question": "were they married?",
            "Truth_rewrite": "were the cone sisters married?",
            "Truth_answer": "No.",
            "NewContext": ["where did the cone sisters live?", "In Baltimore."],
        },
    ]
    turns[0]["Truth_rewrite"] = turns[0]["Question"]
    two = import_corpus("qrecc", _write(tmp_path / "2k.json", json.dumps(turns)))
    line = {
        "conversation": "Q: where did the cone sisters live? A: In Baltimore.\nQ: were they married? A: No.",
        "question": "what did they collect?",
        "label": "what did the cone sisters collect?",
    }
    four = import_corpus("qrecc-jsonl", _write(tmp_path / "4k.jsonl", json.dumps(line) + "\nnot json\n"))
    assert len(two.records) == 1 and two.skipped["first turn (no history)"] == 1
    assert [m.role for m in four.records[0].messages] == ["user", "assistant", "user", "assistant", "user"]
    assert two.records[0].conversation == four.records[0].conversation
    assert sum(four.skipped.values()) == 1


def test_cast22_paths_share_turns_once(tmp_path):
    def turn(n, q, rw, resp="an answer"):
        return {"number": n, "utterance": q, "manual_rewritten_utterance": rw, "response": resp}

    paths = [
        {
            "number": 132,
            "turn": [turn("1-1", "Tell me about COP26", "Tell me about COP26"), turn("1-2", "Why?", "Why COP26?")],
        },
        {
            "number": 132,
            "turn": [
                turn("1-1", "Tell me about COP26", "Tell me about COP26"),
                turn("1-2", "Why?", "Why COP26?"),
                turn("2-3", "And the results?", "And the results of COP26?"),
            ],
        },
    ]
    result = import_corpus("cast22", _write(tmp_path / "cast22.json", json.dumps(paths)))
    assert [r.rewrite for r in result.records] == ["Why COP26?", "And the results of COP26?"]
    assert result.records[1].messages[-2].role == "assistant"
    assert result.skipped["turn shared with an earlier path of the topic"] == 1
    assert {r.conversation for r in result.records} == {"cast22-132"}
    assert [r.passage for r in result.records] == ["an answer", "an answer"]


def test_ikat_drops_rewrites_that_only_the_persona_explains(tmp_path):
    topic = {
        "number": "3-1",
        "title": "travel",
        "ptkb": {"1": "I am an American citizen.", "2": "I like Indian food."},
        "turns": [
            {
                "turn_id": 1,
                "utterance": "I want to visit Egypt.",
                "resolved_utterance": "I want to visit Egypt.",
                "response": "Egypt is lovely.",
            },
            {
                "turn_id": 2,
                "utterance": "Do I need a visa?",
                "resolved_utterance": "Do I need a visa to visit Egypt as an American citizen?",
                "response": "Yes.",
            },
            {
                "turn_id": 3,
                "utterance": "How long is it valid?",
                "resolved_utterance": "How long is the Egypt visa valid?",
                "response": "30 days.",
            },
        ],
    }
    result = import_corpus("ikat", _write(tmp_path / "ikat.json", json.dumps([topic])))
    assert [r.rewrite for r in result.records] == ["How long is the Egypt visa valid?"]
    assert result.skipped[PERSONA_ONLY] == 1
    assert result.records[0].conversation == "ikat-3"
    assert result.records[0].passage == "30 days."  # the turn's own answer: what a search should find


def test_restoration_restores_the_fifth_turn_and_drops_the_reply_after_it(tmp_path):
    rows = [  # two real rows of restoration200k-valid.tsv: the rewrite restores c5; the sixth column comes after
        "大晚上的乃们不睡觉想干吗\t气炸了气的我真的有在咬牙\t喜闻乐见\t头没有迅速去火的办法气着睡不着\t出去跑几圈真的"
        "\t黑灯瞎火的我在床上走两步算了\t1\t睡不着出去跑几圈真的",
        "发个帖\t最近挺背\t怎么啦\t点背这种事呵呵一言难尽\t心态放好即可人都有点背的时候不要太在\t什么破事儿都集中在一起\t0\t",
        "c1\tc2\tc3\tc4\tc5\tu\t1\t",  # label 1 without a rewrite
        "only\tthree\tcols",
    ]
    result = import_corpus("restoration-tsv", _write(tmp_path / "r.tsv", "\n".join(rows)))
    rewritten, unchanged = result.records
    assert (rewritten.query, rewritten.rewrite, rewritten.label) == (
        "出去跑几圈真的",
        "睡不着出去跑几圈真的",
        "rewritten",
    )
    assert unchanged.rewrite == unchanged.query == "心态放好即可人都有点背的时候不要太在"
    assert unchanged.label == "unchanged"
    # c4 is the other side; turns alternate back to c1; the reply after c5 is never history
    assert [m.role for m in rewritten.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert all("黑灯瞎火" not in m.content for m in rewritten.messages)
    assert rewritten.lang == "zh"
    assert sum(result.skipped.values()) == 2


def test_cqr_reformulations_unchanged_turns_and_every_reference(tmp_path):
    def driver(text):
        return {"turn": "driver", "data": {"utterance": text}}

    def assistant(text, reformulation=None):
        t = {"turn": "assistant", "data": {"utterance": text}}
        if reformulation is not None:
            t["reformulation"] = reformulation
        return t

    dialogue = {
        "dialogue": [
            driver("Where is the nearest gas station?"),
            assistant("Valero is 4 miles away at 200 Alester Ave."),
            driver("Give me directions there."),
            assistant(
                "Directions are on your screen.",
                {
                    "base_utt_idx": 2,
                    "reformulated_utt": "Give me directions to the gas station Valero 4 miles away at 200 Alester Ave.",
                    "mturk_reformulations": [
                        "Give me directions to Valero.",
                        "Directions to the Valero gas station please.",
                    ],
                },
            ),
            driver("Thanks."),
            assistant("You're welcome.", {"base_utt_idx": 4, "reformulated_utt": None}),
        ],
        "scenario": {},
    }
    result = import_corpus("cqr", _write(tmp_path / "cqr-dev.json", json.dumps([dialogue, {"no": 1}])))
    first, second = result.records
    assert first.rewrite == "Give me directions to Valero."  # the candidate that adds least
    assert len(first.all_references) == 3
    assert second.label == "unchanged" and second.rewrite == "Thanks."
    assert first.conversation == second.conversation
    assert result.skipped["no dialogue turns"] == 1


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f not in ("canard", "rewrite-tsv")])
def test_every_format_refuses_a_missing_or_broken_file(tmp_path, fmt):
    with pytest.raises(InputFileError):
        import_corpus(fmt, tmp_path / "missing.json")
    broken = _write(tmp_path / "broken", "{not json")
    try:
        result = import_corpus(fmt, broken)  # line formats read the line and skip it, with its reason
    except InputFileError:
        return
    assert not result.records and sum(result.skipped.values()) == 1


def test_a_conversation_held_out_by_one_source_never_trains_through_another(tmp_path):
    """QReCC's two files share dialogues: held out through one, they are dropped from the other's train share."""
    turns, lines = [], []
    for c in range(6):
        first = f"where did family {c} live?"
        turns.append(
            {
                "Conversation_no": c,
                "Turn_no": 2,
                "Question": "were they rich?",
                "Truth_rewrite": f"was family {c} rich?",
                "NewContext": [first, "In Baltimore."],
            }
        )
        lines.append(
            json.dumps(
                {
                    "conversation": f"Q: {first} A: In Baltimore.",
                    "question": "what did they own?",
                    "label": f"what did family {c} own?",
                }
            )
        )
    _write(tmp_path / "2k.json", json.dumps(turns))
    _write(tmp_path / "4k.jsonl", "\n".join(lines))
    _write(
        tmp_path / "recipe.toml",
        """seed = 1
[[sources]]
name = "a"
kind = "qrecc"
path = "2k.json"
style = "qrecc"
dev = 2
test = 2
[[sources]]
name = "b"
kind = "qrecc-jsonl"
path = "4k.jsonl"
style = "qrecc"
""",
    )
    build_mix(tmp_path / "recipe.toml", tmp_path / "out")
    files = {p.name: read_dataset(p) for p in sorted((tmp_path / "out").glob("*.jsonl"))}
    assert split_overlap(files) == []
    held = {r.conversation for name in ("dev-qrecc.jsonl", "test-qrecc.jsonl") for r in files[name]}
    assert len(held) == 4
    assert {r.conversation for r in files["train.jsonl"]}.isdisjoint(held)
    assert len(files["train.jsonl"]) == 4  # the two conversations nobody held out, one turn from each file
