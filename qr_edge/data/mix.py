"""``qr-edge data mix``: the bundled adapter's data, rebuilt from a recipe, seeded, with honest splits.

A recipe (TOML) names the public corpora (read through the importers) and the generators, how many
records of each go to train, and how many conversations are held out for dev and test. Splits are made
by *conversation* (a CAsT topic, a REWRITE dialogue), never by turn, and a held-out conversation
that is identical to a training one is dropped, so no conversation is in two splits.
Augmentations:
- ``rewrite_as_query``: a rewritten case whose query is replaced by its reference rewrite becomes an
  ``unchanged`` case (the standalone form must be left alone);
- ``legacy``: a case whose rewrite needs the assistant's answer, shown queries-only, becomes a
  ``missing_context`` case (keep the query rather than guess).
A source with ``select = "depends_on_assistant"`` trains only on the rewrites that take content from an assistant
turn (a second source on a corpus that is already in the mix, to weight the follow-ups that point at the answer).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ..atomic_file import write_text_atomic
from ..errors import InputFileError
from .dataset import RewriteRecord, dataset_sha256, write_dataset
from .importers import FORMATS, import_corpus
from .slotdialog import SlotDialogGenerator
from .synthetic import RewriteGenerator
from .taskdialog import AssistantDialogGenerator, TaskDialogGenerator

#: Generators whose dev/test split is drawn apart, from entities training never saw (``split="held"``).
HELD_OUT_GENERATORS = {"assistantdialog": AssistantDialogGenerator, "slotdialog": SlotDialogGenerator}
GENERATORS = ("synthetic", "taskdialog", *HELD_OUT_GENERATORS)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class SourceSpec(BaseModel):
    """One ingredient of the mix."""

    name: str
    kind: str  # an importer format (``qr_edge.data.importers.FORMATS``), or one of GENERATORS
    path: str | None = None  # corpora: relative to the recipe file
    paths: list[str] = Field(default_factory=list)  # several files of one corpus (one pool, split together)
    style: str  # the dev/test file this source's held-out part goes to
    train: int = 0  # records for training (0: all that are not held out); generators: how many to make
    repeat: int = 1  # times each training record is used
    dev: int = 0  # held-out conversations (corpora) or records (generators)
    test: int = 0
    rewrite_as_query: float = 0.0
    legacy: float = 0.0
    select: Literal["all", "depends_on_assistant"] = "all"  # which of the corpus's training records to draw from

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in (*FORMATS, *GENERATORS):
            raise ValueError(f"unknown kind {value!r}; use one of: {', '.join((*FORMATS, *GENERATORS))}")
        return value

    @property
    def is_corpus(self) -> bool:
        return self.kind in FORMATS

    @model_validator(mode="after")
    def _select_needs_a_corpus(self) -> SourceSpec:
        if self.select != "all" and not self.is_corpus:
            raise ValueError(f"source {self.name}: select applies to a corpus, not to the generator {self.kind!r}")
        return self


class Recipe(BaseModel):
    seed: int = 0
    sources: list[SourceSpec] = Field(default_factory=list)


class MixCard(BaseModel):
    recipe: str
    recipe_sha256: str
    seed: int
    files: dict[str, dict[str, Any]]  # file name -> {records, sha256, labels, sources}


def _raw_recipe(path: Path, seen: frozenset[Path] = frozenset()) -> dict[str, Any]:
    """The recipe's TOML with ``extends = "other.toml"`` resolved: the other recipe's sources in their order (their
    seeds follow their positions), each updated by this recipe's source of the same name, then this recipe's new
    sources; this recipe's other keys win."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str) or Path(parent).name != parent:
        raise InputFileError(f"recipe {path}: extends names a recipe file in the same folder, not {parent!r}")
    if path.resolve() in seen:
        raise InputFileError(f"recipe {path}: extends itself, through {', '.join(p.name for p in seen)}")
    base = _raw_recipe(path.parent / parent, seen | {path.resolve()})
    sources = [dict(source) for source in base.get("sources", [])]
    position = {source.get("name"): i for i, source in enumerate(sources)}
    for source in raw.get("sources", []):
        if source.get("name") in position:
            sources[position[source["name"]]] |= source
        else:
            sources.append(source)
    return base | raw | {"sources": sources}


def load_recipe(path: str | Path) -> Recipe:
    try:
        return Recipe.model_validate(_raw_recipe(Path(path)))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputFileError(f"cannot read recipe {path}: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputFileError(f"recipe {path}: {err['msg']} at {'.'.join(map(str, err['loc']))}") from None


def conversation_key(record: RewriteRecord) -> str:
    """Identity of a conversation for overlap checks: its turns, roles included."""
    return json.dumps([[m.role, m.content] for m in record.messages], ensure_ascii=False)


def _group(record: RewriteRecord) -> str:
    """The conversation a record belongs to (an importer names it: a CAsT topic, a CQR dialogue), else the record."""
    if record.conversation:
        return f"{record.source.split('+')[0]}|{record.conversation}"
    return record.id.removesuffix("-asq").removesuffix("-legacy")


def _as_unchanged(record: RewriteRecord) -> RewriteRecord | None:
    if record.label != "rewritten":
        return None
    messages = [*record.messages[:-1], record.messages[-1].model_copy(update={"content": record.rewrite})]
    return record.model_copy(
        update={"id": record.id + "-asq", "messages": messages, "label": "unchanged", "source": record.source + "+asq"}
    )


def as_legacy(record: RewriteRecord) -> RewriteRecord | None:
    if not record.depends_on_assistant():
        return None
    users = record.legacy_messages
    if len(users) < 2:
        return None
    return record.model_copy(
        update={
            "id": record.id + "-legacy",
            "messages": users,
            "rewrite": record.query,
            "label": "missing_context",
            "source": record.source + "+legacy",
        }
    )


def _records(
    spec: SourceSpec, base: Path, seed: int, data_dir: Path | None = None
) -> tuple[list[RewriteRecord], list[RewriteRecord]]:
    """(pool for train, pool for dev/test): the held-out pool is generated apart for generators. ``data_dir``
    replaces the folder of every corpus file the recipe names (the corpora are somewhere else on this machine)."""
    if spec.is_corpus:
        paths = ([spec.path] if spec.path else []) + spec.paths
        if not paths:
            raise InputFileError(f"source {spec.name}: a corpus needs a path")
        files = [data_dir / Path(p).name if data_dir else base / p for p in paths]
        for f in files:
            if not f.is_file():
                raise InputFileError(
                    f"source {spec.name}: {f} not found; point --data-dir at the folder that holds the public "
                    "corpora (../shared/data beside the project, see its README)"
                )
        records = [r for f in files for r in import_corpus(spec.kind, f).records]
        return records, records
    total = spec.train + spec.dev + spec.test
    if spec.kind == "synthetic":
        return RewriteGenerator(seed=seed, split="train").generate(spec.train), RewriteGenerator(
            seed=seed, split="golden"
        ).generate(spec.dev + spec.test)
    if spec.kind in HELD_OUT_GENERATORS:
        generator = HELD_OUT_GENERATORS[spec.kind]
        return generator(seed=seed).generate(spec.train), generator(seed=seed, split="held").generate(
            spec.dev + spec.test
        )
    records = TaskDialogGenerator(seed=seed).generate(total)
    return records[: spec.train], records[spec.train :]


def build_mix(recipe_path: str | Path, out_dir: str | Path, data_dir: str | Path | None = None) -> MixCard:
    """Write ``train.jsonl``, ``dev-<style>.jsonl``, ``test-<style>.jsonl`` and ``card.json``; deterministic."""
    recipe_path = Path(recipe_path)
    recipe = load_recipe(recipe_path)
    base = recipe_path.parent
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out} exists and is not a folder")
    train: list[RewriteRecord] = []
    held: dict[str, list[RewriteRecord]] = defaultdict(list)
    for i, spec in enumerate(recipe.sources):
        rng = random.Random(f"{recipe.seed}-{spec.name}")
        pool, held_pool = _records(spec, base, recipe.seed + i, Path(data_dir) if data_dir else None)
        if spec.is_corpus:
            groups = sorted({_group(r) for r in pool})
            rng.shuffle(groups)
            dev_g, test_g = set(groups[: spec.dev]), set(groups[spec.dev : spec.dev + spec.test])
            held[f"dev-{spec.style}"] += [r for r in held_pool if _group(r) in dev_g]
            held[f"test-{spec.style}"] += [r for r in held_pool if _group(r) in test_g]
            pool = [r for r in pool if _group(r) not in dev_g | test_g]
            if spec.select == "depends_on_assistant":
                pool = [r for r in pool if r.depends_on_assistant()]
            rng.shuffle(pool)
            if spec.train:
                pool = pool[: spec.train]
        else:
            held[f"dev-{spec.style}"] += held_pool[: spec.dev]
            held[f"test-{spec.style}"] += held_pool[spec.dev :]
        extra = []
        for r in pool:
            if spec.rewrite_as_query and rng.random() < spec.rewrite_as_query:
                extra.append(_as_unchanged(r))
            if spec.legacy and rng.random() < spec.legacy:
                extra.append(as_legacy(r))
        train += [r for r in pool for _ in range(spec.repeat)] + [r for r in extra if r is not None]
    # A conversation held out by one source (QReCC's two files share dialogues) never trains through another.
    held_groups = {_group(r) for records in held.values() for r in records if r.conversation}
    train = [r for r in train if not (r.conversation and _group(r) in held_groups)]
    random.Random(recipe.seed).shuffle(train)

    owner = dict.fromkeys((conversation_key(r) for r in train), "train")
    files = {"train.jsonl": train}
    for name, records in sorted(held.items()):  # dev-* before test-*: a repeated conversation stays in the first
        for r in records:
            owner.setdefault(conversation_key(r), name)
        files[f"{name}.jsonl"] = [r for r in records if owner[conversation_key(r)] == name]
    out.mkdir(parents=True, exist_ok=True)
    card = MixCard(
        recipe=str(recipe_path),
        recipe_sha256=hashlib.sha256(recipe_path.read_bytes()).hexdigest(),
        seed=recipe.seed,
        files={},
    )
    for name, records in files.items():
        write_dataset(records, out / name)
        card.files[name] = {
            "records": len(records),
            "sha256": dataset_sha256(records),
            "labels": dict(Counter(r.label for r in records)),
            "sources": dict(Counter(r.source for r in records)),
        }
    write_text_atomic(out / "card.json", card.model_dump_json(indent=2))
    return card


def split_overlap(files: dict[str, list[RewriteRecord]]) -> list[str]:
    """Conversations (or CAsT topics) found in more than one file: each is a leak between splits."""
    seen: dict[str, str] = {}
    problems = []
    for name, records in files.items():
        for key in {conversation_key(r) for r in records} | {_group(r) for r in records if r.conversation}:
            if key in seen and seen[key] != name:
                problems.append(f"{key[:80]} in {seen[key]} and {name}")
            seen.setdefault(key, name)
    return problems
