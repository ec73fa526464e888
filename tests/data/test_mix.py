"""`qr-edge data mix`: a recipe gives the same files for the same seed, and no conversation crosses splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qr_edge.data.dataset import read_dataset
from qr_edge.data.mix import build_mix, split_overlap
from qr_edge.data.slotdialog import SlotDialogGenerator
from qr_edge.data.taskdialog import AssistantDialogGenerator, TaskDialogGenerator
from qr_edge.errors import InputFileError
from qr_edge.text import content_units

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


def _corpora(folder: Path) -> None:
    """Small corpora in the public formats: 6 REWRITE lines (one duplicate), 4 CAsT topics of 3 turns."""
    lines = [f"问题{i}\t回答{i}是北京\t它在哪\t{'北京' if i % 2 else '回答'}{i}在哪" for i in range(5)]
    (folder / "rw.tsv").write_text("\n".join([*lines, lines[0]]) + "\n", encoding="utf-8")
    topics = [
        {
            "conv_id": c,
            "turns": [
                {
                    "turn_id": t,
                    "question": f"q{c}-{t} about topic {c}",
                    "response": f"answer {c}-{t}",
                    "manual_rewrite": f"q{c}-{t} about topic {c}" if t == 1 else f"q{c}-{t} about topic {c} rewritten",
                }
                for t in (1, 2, 3)
            ],
        }
        for c in (1, 2, 3, 4)
    ]
    (folder / "cast.json").write_text(json.dumps(topics), encoding="utf-8")
    (folder / "recipe.toml").write_text(
        """seed = 3
[[sources]]
name = "zh"
kind = "rewrite-tsv"
path = "rw.tsv"
style = "zh"
dev = 1
test = 1
rewrite_as_query = 1.0
[[sources]]
name = "cast"
kind = "cast"
path = "cast.json"
style = "cast"
dev = 1
test = 1
repeat = 2
legacy = 1.0
[[sources]]
name = "gen"
kind = "synthetic"
style = "gen"
train = 30
dev = 5
test = 5
[[sources]]
name = "task"
kind = "taskdialog"
style = "task"
train = 30
dev = 10
test = 10
""",
        encoding="utf-8",
    )


def _files(out: Path) -> dict[str, list]:
    return {p.name: read_dataset(p) for p in sorted(out.glob("*.jsonl"))}


def test_same_recipe_same_files_and_no_overlap(tmp_path):
    _corpora(tmp_path)
    card1 = build_mix(tmp_path / "recipe.toml", tmp_path / "a")
    card2 = build_mix(tmp_path / "recipe.toml", tmp_path / "b")
    assert {k: v["sha256"] for k, v in card1.files.items()} == {k: v["sha256"] for k, v in card2.files.items()}
    files = _files(tmp_path / "a")
    assert set(files) >= {
        "train.jsonl",
        "dev-zh.jsonl",
        "test-zh.jsonl",
        "dev-cast.jsonl",
        "test-cast.jsonl",
        "dev-task.jsonl",
    }
    assert split_overlap(files) == []
    train = files["train.jsonl"]
    # augmentations: the reference rewrite as an unchanged query; a queries-only case that needs the answer
    assert any(r.source.endswith("+asq") and r.label == "unchanged" for r in train)
    cast_train = [r for r in train if r.source == "cast:cast"]
    assert len(cast_train) == 2 * len({r.id for r in cast_train})  # repeat = 2
    # a CAsT topic goes whole to one split
    held = {r.id.rsplit("-", 1)[0] for name in ("dev-cast.jsonl", "test-cast.jsonl") for r in files[name]}
    assert not held & {r.id.rsplit("-", 1)[0] for r in cast_train}


def test_overlap_is_detected(tmp_path):
    _corpora(tmp_path)
    build_mix(tmp_path / "recipe.toml", tmp_path / "a")
    files = _files(tmp_path / "a")
    files["dev-zh.jsonl"] = [*files["dev-zh.jsonl"], files["train.jsonl"][0]]
    assert split_overlap(files)


def test_a_different_seed_changes_the_mix(tmp_path):
    _corpora(tmp_path)
    card1 = build_mix(tmp_path / "recipe.toml", tmp_path / "a")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(recipe.read_text().replace("seed = 3", "seed = 4"))
    card2 = build_mix(recipe, tmp_path / "b")
    assert card1.files["train.jsonl"]["sha256"] != card2.files["train.jsonl"]["sha256"]


def test_a_recipe_extends_another_by_source_name(tmp_path):
    _corpora(tmp_path)
    base = build_mix(tmp_path / "recipe.toml", tmp_path / "base")
    (tmp_path / "more.toml").write_text(
        'extends = "recipe.toml"\n[[sources]]\nname = "gen"\ntrain = 40\n'
        '[[sources]]\nname = "assistant"\nkind = "assistantdialog"\nstyle = "assistant"\ntrain = 10\ndev = 4\n',
        encoding="utf-8",
    )
    more = build_mix(tmp_path / "more.toml", tmp_path / "more")
    held = {name: card["sha256"] for name, card in base.files.items() if name != "train.jsonl"}
    assert {name: more.files[name]["sha256"] for name in held} == held  # the sources keep their places and seeds
    assert set(more.files) - set(base.files) == {"dev-assistant.jsonl", "test-assistant.jsonl"}
    train = _files(tmp_path / "more")["train.jsonl"]
    assert sum(r.source.startswith("synthetic:") and r.id.startswith("train-") for r in train) > sum(
        r.source.startswith("synthetic:") and r.id.startswith("train-")
        for r in _files(tmp_path / "base")["train.jsonl"]
    )
    for text, message in (
        ('extends = "../recipe.toml"\n', "same folder"),
        ('extends = "loop.toml"\n', "extends itself"),
    ):
        (tmp_path / "loop.toml").write_text(text)
        with pytest.raises(InputFileError, match=message):
            build_mix(tmp_path / "loop.toml", tmp_path / "out")


def test_a_source_can_select_the_rewrites_that_take_from_an_answer(tmp_path):
    """A second source on a corpus adds its answer-referring rewrites once more, and never a held-out topic's."""
    topics = [
        {
            "conv_id": c,
            "turns": [
                {"turn_id": 1, "question": f"tell me about topic{c}", "response": f"topic{c} lives with zebras{c}"},
                {"turn_id": 2, "question": "where do they live", "manual_rewrite": f"where do zebras{c} live"},
                {"turn_id": 3, "question": "how old is it", "manual_rewrite": f"how old is topic{c}"},
            ],
        }
        for c in range(6)
    ]
    for t in topics:
        t["turns"][0]["manual_rewrite"] = t["turns"][0]["question"]
    (tmp_path / "cast.json").write_text(json.dumps(topics), encoding="utf-8")
    (tmp_path / "recipe.toml").write_text(
        '[[sources]]\nname = "cast"\nkind = "cast"\npath = "cast.json"\nstyle = "s"\ndev = 1\ntest = 1\n'
        '[[sources]]\nname = "cast-answer"\nkind = "cast"\npath = "cast.json"\nstyle = "s"\n'
        'select = "depends_on_assistant"\n',
        encoding="utf-8",
    )
    build_mix(tmp_path / "recipe.toml", tmp_path / "out")
    files = _files(tmp_path / "out")
    train = [r.id for r in files["train.jsonl"]]
    held = {r.conversation for name in ("dev-s.jsonl", "test-s.jsonl") for r in files[name]}
    assert len(held) == 2 and not {r.conversation for r in files["train.jsonl"]} & held
    # four training topics: each "where do they live" (zebras come from the answer) twice, "how old is it" once
    assert sorted(train) == sorted(
        [f"cast-{c}-2" for c in range(6) if f"cast-{c}" not in held] * 2
        + [f"cast-{c}-3" for c in range(6) if f"cast-{c}" not in held]
    )
    (tmp_path / "gen.toml").write_text(
        '[[sources]]\nname = "g"\nkind = "synthetic"\nstyle = "g"\nselect = "depends_on_assistant"\n'
    )
    with pytest.raises(InputFileError, match="select applies to a corpus"):
        build_mix(tmp_path / "gen.toml", tmp_path / "out2")


def test_bad_recipe_is_a_typed_error(tmp_path):
    (tmp_path / "r.toml").write_text("seed = [unclosed")
    with pytest.raises(InputFileError, match="r.toml"):
        build_mix(tmp_path / "r.toml", tmp_path / "out")
    (tmp_path / "r.toml").write_text('[[sources]]\nname = "x"\nkind = "nope"\nstyle = "s"\n')
    with pytest.raises(InputFileError, match="kind"):
        build_mix(tmp_path / "r.toml", tmp_path / "out")


def test_task_dialogues_are_half_unchanged_and_deterministic():
    records = TaskDialogGenerator(seed=1).generate(400)
    unchanged = sum(r.label == "unchanged" for r in records) / len(records)
    assert 0.4 < unchanged < 0.65
    assert [r.model_dump() for r in records[:20]] == [r.model_dump() for r in TaskDialogGenerator(seed=1).generate(20)]


def test_assistant_dialogues_resolve_the_offered_entity_and_hold_out_their_entities():
    train, held = (
        AssistantDialogGenerator(seed=0).generate(600),
        AssistantDialogGenerator(seed=0, split="held").generate(200),
    )
    assert 0.4 < sum(r.label == "unchanged" for r in train) / len(train) < 0.6
    assert [r.model_dump() for r in train[:20]] == [
        r.model_dump() for r in AssistantDialogGenerator(seed=0).generate(20)
    ]
    for record in train + held:
        if record.label == "rewritten":  # what the rewrite adds comes from the conversation, never invented
            history = " ".join(m.content for m in record.messages[:-1])
            assert content_units(record.rewrite) - content_units(record.query) <= content_units(history), record
    picked = [r for r in train if r.query == "The second one."]
    assert picked and all(r.rewrite.split()[-1].rstrip(".") in r.messages[-2].content.split(" or ")[1] for r in picked)

    def names(records):
        return {m.content for r in records for m in r.messages[:1] if m.content.startswith(("Call ", "Text "))}

    assert names(train) and names(held) and not names(train) & names(held)
    assert not {r.id for r in train} & {r.id for r in held}


def test_slot_dialogues_complete_the_fragment_from_the_conversation_and_hold_out_their_entities():
    train, held = SlotDialogGenerator(seed=0).generate(1500), SlotDialogGenerator(seed=0, split="held").generate(300)
    assert 0.4 < sum(r.label == "unchanged" for r in train) / len(train) < 0.6
    assert [r.model_dump() for r in train[:20]] == [r.model_dump() for r in SlotDialogGenerator(seed=0).generate(20)]
    for record in train + held:
        if record.label == "rewritten":  # what the rewrite adds comes from the conversation, never invented
            history = " ".join(m.content for m in record.messages[:-1])
            assert content_units(record.rewrite) - content_units(record.query) <= content_units(history), record
    # an area given as a fragment becomes the full request: the opening's wording, every constraint, the new area
    fragments = [r for r in train if r.label == "rewritten" and r.query in ("The west.", "West, please.")]
    assert fragments and all(
        r.rewrite.endswith(("in the west.", "in the west?", "in the west, please.")) for r in fragments
    )
    # histories of more than one exchange, and standalone queries that name the venue just offered
    assert any(len(r.messages) >= 5 for r in train)
    assert any(r.label == "unchanged" and r.query.startswith("What is the phone number of") for r in train)

    def mentions(records, name):
        return any(name in m.content for r in records for m in r.messages)

    # pools alternate between the splits: the first venue and contact train, the second ones are held out
    for trained, unseen in (("the Golden Curry", "Pipasha"), ("Rachel", "Omar")):
        assert mentions(train, trained) and not mentions(train, unseen)
        assert mentions(held, unseen) and not mentions(held, trained)
    assert not {r.id for r in train} & {r.id for r in held}


@pytest.mark.skipif(not SHARED.is_dir(), reason="the public corpora folder ../shared/data is not beside this checkout")
@pytest.mark.parametrize("recipe", ["default.toml", "v7.toml", "v8.toml", "v9.toml", "trial-answer.toml"])
def test_shipped_recipe_splits_do_not_overlap(tmp_path, recipe):
    card = build_mix(ROOT / "recipes" / recipe, tmp_path)
    assert card.files["train.jsonl"]["records"] >= 4500
    assert {
        "dev-task-cqr.jsonl",
        "test-en-qa.jsonl",
        "test-zh-restoration.jsonl",
        "test-en-answer-search.jsonl",
    } <= set(card.files)
    assert split_overlap(_files(tmp_path)) == []
    # every source's rewrites restore *their* query: on average they keep most of its content words (all sources
    # keep 0.85-0.96; Restoration-200K read one column off, rewriting the turn before the query, kept 0.03)
    kept: dict[str, list[float]] = {}
    for record in read_dataset(tmp_path / "train.jsonl"):
        units = content_units(record.query)
        if record.label == "rewritten" and units:
            source = record.source.split("+")[0].split(":")[0]
            kept.setdefault(source, []).append(len(units & content_units(record.rewrite)) / len(units))
    assert len(kept) >= 8
    assert {source: round(sum(v) / len(v), 2) for source, v in kept.items() if sum(v) / len(v) < 0.7} == {}


@pytest.mark.skipif(not SHARED.is_dir(), reason="the public corpora folder ../shared/data is not beside this checkout")
@pytest.mark.parametrize(
    ("before", "after", "style"),
    [
        ("default.toml", "v7.toml", "task-assistant"),
        ("v7.toml", "v8.toml", "task-slot"),
        ("v8.toml", "v9.toml", None),
        ("v9.toml", "trial-answer.toml", None),
    ],
)
def test_a_recipe_keeps_every_held_out_file_of_the_recipe_it_extends(tmp_path, before, after, style):
    """Adapters are compared on the same files: a later recipe only adds its new style's dev and test files."""
    old = build_mix(ROOT / "recipes" / before, tmp_path / "old")
    new = build_mix(ROOT / "recipes" / after, tmp_path / "new")
    held = {name for name in old.files if name != "train.jsonl"}
    assert {name: new.files[name]["sha256"] for name in held} == {name: old.files[name]["sha256"] for name in held}
    assert set(new.files) - set(old.files) == ({f"dev-{style}.jsonl", f"test-{style}.jsonl"} if style else set())


def test_corpora_elsewhere_are_found_with_data_dir(tmp_path):
    _corpora(tmp_path)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(recipe.read_text().replace('path = "rw.tsv"', 'path = "../../shared/data/rw.tsv"'))
    with pytest.raises(InputFileError, match="--data-dir"):
        build_mix(recipe, tmp_path / "a")
    card = build_mix(recipe, tmp_path / "b", data_dir=tmp_path)
    assert card.files["dev-zh.jsonl"]["records"] > 0
