"""A seeded, programmatic generator of bilingual rewrite conversations (the bundled training data).

Entity and template pools live in ``data/synthetic_pools.json``. Each topic's entities are split into
``train`` and ``golden``: the golden dev/test split is generated only from entities the training
split never contains, so no golden record is ever produced verbatim for training. No pool holds an
entity of the bundled few-shot examples, so example leakage in the golden split is measurable.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from importlib import resources
from typing import Any, Literal

from .dataset import RewriteRecord, record_from_turns

Split = Literal["train", "golden"]

#: Scenario -> share of the mix. Every scenario is generated in both languages.
SCENARIOS: dict[str, float] = {
    "pronoun": 0.20,
    "ellipsis": 0.12,
    "multi_turn": 0.08,
    "assistant_ref": 0.10,
    "ordinal": 0.06,
    "comparison": 0.10,
    "topic_switch": 0.08,
    "standalone": 0.06,
    "chitchat": 0.06,
    "missing_context": 0.08,
    "colloquial": 0.06,
}


def load_pools() -> dict[str, Any]:
    return json.loads(resources.files("qr_edge.assets").joinpath("synthetic_pools.json").read_text(encoding="utf-8"))


class Entity:
    """An entity string with optional pronouns (``Name|she|her`` in the pools)."""

    def __init__(self, raw: str, lang: str) -> None:
        parts = raw.split("|")
        self.name = parts[0]
        default = ("it", "it") if lang == "en" else ("它", "它")
        self.subject = parts[1] if len(parts) > 1 else default[0]
        self.object = parts[2] if len(parts) > 2 else self.subject

    def fill(self, template: str) -> str:
        return template.replace("{e}", self.name).replace("{p}", self.subject).replace("{o}", self.object)


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _colloquial(text: str, lang: str, rng: random.Random) -> str:
    """Lower-case, no question mark, a contraction or a swapped-letter typo (en); a particle instead of ？ (zh)."""
    if lang == "zh":
        return text.rstrip("？?") + rng.choice(["啊", "呀", "", "呢"])
    t = text.rstrip("?").lower()
    for a, b in (("what is", "whats"), ("how is", "hows"), ("how long", "how long"), ("does it", "does it")):
        t = t.replace(a, b)
    words = t.split()
    candidates = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
    if candidates and rng.random() < 0.6:
        i = rng.choice(candidates)
        w = words[i]
        j = rng.randrange(1, len(w) - 2)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


class RewriteGenerator:
    """``generate(n)`` returns ``n`` records, identical for the same seed, split and pools."""

    def __init__(self, seed: int = 0, split: Split = "train", langs: tuple[str, ...] = ("en", "zh")) -> None:
        self.rng = random.Random(f"{seed}-{split}")
        self.split = split
        self.langs = langs
        self.pools = load_pools()
        self._builders: dict[str, Callable[[str], tuple[list[tuple[str, str]], str, str]]] = {
            name: getattr(self, f"_{name}") for name in SCENARIOS
        }

    # -- helpers ---------------------------------------------------------------------------------
    def _topic(self, lang: str) -> dict[str, Any]:
        return self.pools[lang]["topics"][self.rng.choice(sorted(self.pools[lang]["topics"]))]

    def _entities(self, topic: dict[str, Any], lang: str, k: int) -> list[Entity]:
        return [Entity(raw, lang) for raw in self.rng.sample(topic[self.split], k)]

    def _pool(self, lang: str, key: str) -> list[Any]:
        """A template pool; request and ordinal templates differ between the train and golden splits."""
        pool = self.pools[lang][key]
        return pool[self.split] if isinstance(pool, dict) else pool

    def _intro(self, topic: dict[str, Any], e: Entity) -> list[tuple[str, str]]:
        return [("user", capitalise(e.fill(self.rng.choice(topic["intros"])))), ("assistant", self._answer(topic, e))]

    def _answer(self, topic: dict[str, Any], e: Entity) -> str:
        return capitalise(e.fill(self.rng.choice(topic["answers"])))

    # -- scenarios: each returns (turns, rewrite, label) --------------------------------------------
    def _pronoun(self, lang: str):
        topic = self._topic(lang)
        (e,) = self._entities(topic, lang, 1)
        full, short = self.rng.choice(topic["questions"])
        return [*self._intro(topic, e), ("user", capitalise(e.fill(short)))], capitalise(e.fill(full)), "rewritten"

    def _colloquial(self, lang: str):
        turns, rewrite, label = self._pronoun(lang)
        turns[-1] = ("user", _colloquial(turns[-1][1], lang, self.rng))
        return turns, rewrite, label

    def _ellipsis(self, lang: str):
        topic = self._topic(lang)
        a, b = self._entities(topic, lang, 2)
        full, _ = self.rng.choice(topic["questions"])
        turns = [
            ("user", capitalise(a.fill(full))),
            ("assistant", self._answer(topic, a)),
            ("user", b.fill(self.rng.choice(self.pools[lang]["ellipsis"]))),
        ]
        return turns, capitalise(b.fill(full)), "rewritten"

    def _multi_turn(self, lang: str):
        topic = self._topic(lang)
        (e,) = self._entities(topic, lang, 1)
        (q1, _), (full, short) = self.rng.sample(topic["questions"], 2)
        turns = [
            *self._intro(topic, e),
            ("user", capitalise(e.fill(q1))),
            ("assistant", self._answer(topic, e)),
            ("user", capitalise(e.fill(short))),
        ]
        return turns, capitalise(e.fill(full)), "rewritten"

    def _assistant_ref(self, lang: str):
        pools = self.pools[lang]
        topic = self._topic(lang)
        (e,) = self._entities(topic, lang, 1)
        full, short = self.rng.choice(topic["questions"])
        turns = [
            ("user", self.rng.choice(self._pool(lang, "recommend")).replace("{category}", topic["category"])),
            ("assistant", capitalise(e.fill(self.rng.choice(pools["recommend_answers"])))),
            ("user", capitalise(e.fill(short))),
        ]
        return turns, capitalise(e.fill(full)), "rewritten"

    def _ordinal(self, lang: str):
        pools = self.pools[lang]
        topic = self._topic(lang)
        names = dict(zip("abc", (x.name for x in self._entities(topic, lang, 3)), strict=False))
        query, rewrite, _ = self.rng.choice(self._pool(lang, "ordinals"))
        answer = self.rng.choice(pools["list_answers"]).format(**names)
        turns = [
            ("user", self.rng.choice(self._pool(lang, "list_requests")).replace("{category}", topic["category"])),
            ("assistant", answer),
            ("user", query),
        ]
        return turns, rewrite.format(**names), "rewritten"

    def _comparison(self, lang: str):
        pools = self.pools[lang]
        topic = self._topic(lang)
        a, b = (x.name for x in self._entities(topic, lang, 2))
        adj = self.rng.choice(topic["adjectives"])
        query, rewrite = self.rng.choice(pools["comparison_queries"])
        turns = [
            ("user", self.rng.choice(pools["comparison_intros"]).format(a=a, b=b)),
            ("assistant", self.rng.choice(pools["comparison_answers"]).format(a=a, b=b)),
            ("user", query.format(adj=adj)),
        ]
        return turns, capitalise(rewrite.format(a=a, b=b, adj=adj)), "rewritten"

    def _topic_switch(self, lang: str):
        topics = self.pools[lang]["topics"]
        t1, t2 = self.rng.sample(sorted(topics), 2)
        (e1,) = self._entities(topics[t1], lang, 1)
        (e2,) = self._entities(topics[t2], lang, 1)
        query = capitalise(e2.fill(self.rng.choice(topics[t2]["questions"])[0]))
        return [*self._intro(topics[t1], e1), ("user", query)], query, "unchanged"

    def _standalone(self, lang: str):
        topic = self._topic(lang)
        (e,) = self._entities(topic, lang, 1)
        query = capitalise(e.fill(self.rng.choice(topic["questions"])[0]))
        return [*self._intro(topic, e), ("user", query)], query, "unchanged"

    def _chitchat(self, lang: str):
        topic = self._topic(lang)
        (e,) = self._entities(topic, lang, 1)
        query = self.rng.choice(self.pools[lang]["chitchat"])
        return [*self._intro(topic, e), ("user", query)], query, "unchanged"

    def _missing_context(self, lang: str):
        """Queries only: the follow-up needs the list or recommendation that was never sent."""
        turns, _, _ = (self._ordinal if self.rng.random() < 0.5 else self._assistant_ref)(lang)
        users = [t for t in turns if t[0] == "user"]
        return users, users[-1][1], "missing_context"

    # -- public ----------------------------------------------------------------------------------
    def generate(self, n: int) -> list[RewriteRecord]:
        names = list(SCENARIOS)
        weights = [SCENARIOS[s] for s in names]
        records = []
        for i in range(n):
            lang = self.langs[i % len(self.langs)]
            scenario = self.rng.choices(names, weights)[0]
            turns, rewrite, label = self._builders[scenario](lang)
            records.append(
                record_from_turns(f"{self.split}-{lang}-{i:05d}", lang, turns, rewrite, label, f"synthetic:{scenario}")
            )
        return records
