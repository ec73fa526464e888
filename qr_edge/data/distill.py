"""Distillation: a teacher writes conversations with their rewrites and reasoning (``synth``), a judge scores
and filters them after free deterministic checks, refining borderline ones (``judge``).

Both are resumable: records go to the output JSONL one flushed line at a time, and a rerun skips the
ids already there (or already rejected). A server that goes away mid-run loses nothing written.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, PrivateAttr, ValidationError

from ..atomic_file import write_text_atomic
from ..text import MARKUP, content_units
from .dataset import RewriteRecord, read_dataset
from .teacher import Teacher

SCENARIO_TEXT = {
    "pronoun": "the last user query uses a pronoun ('it', 'they', '它', '他') for something named earlier by the user",
    "ellipsis": "the last user query is elliptical ('And X?', 'What about X?', '那X呢？') and reuses the previous question",
    "assistant_dependent": "the last user query refers to something that only the assistant's previous answer named",
    "topic_switch": "the last user query starts a new, unrelated topic and is already standalone",
    "standalone": "the last user query is already fully standalone although it follows the same topic",
    "chitchat": "the last user turn is chit-chat (thanks, greeting, acknowledgement) that must stay unchanged",
    "missing_context": "the conversation shows ONLY the user's turns (no assistant turns) and the last query depends on an answer that is not shown, so it must stay unchanged",
    "colloquial": "the last user query is colloquial or has a typo but still refers to earlier turns",
}
LABEL_OF = {
    "topic_switch": "unchanged",
    "standalone": "unchanged",
    "chitchat": "unchanged",
    "missing_context": "missing_context",
}
DEFAULT_TOPICS = [
    "travel",
    "consumer electronics",
    "programming",
    "cooking",
    "health",
    "history",
    "sports",
    "personal finance",
    "science",
    "movies",
]

RECORD_SCHEMA = {
    "type": "object",
    "properties": {
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "role": {"type": "string", "enum": ["user", "assistant"]},
                    "content": {"type": "string"},
                },
                "required": ["role", "content"],
            },
        },
        "analysis": {"type": "string"},
        "rewrite": {"type": "string"},
    },
    "required": ["messages", "analysis", "rewrite"],
}
JUDGE_CRITERIA = ("task", "faithful", "resolved", "unchanged_ok", "fluent")
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {
        **{c: {"type": "integer", "minimum": 1, "maximum": 5} for c in JUDGE_CRITERIA},
        "rationale": {"type": "string"},
    },
    "required": [*JUDGE_CRITERIA, "rationale"],
}
REFINE_SCHEMA = {"type": "object", "properties": {"rewrite": {"type": "string"}}, "required": ["rewrite"]}


class StageStats(BaseModel):
    stage: str
    requested: int = 0
    skipped_existing: int = 0
    written: int = 0
    malformed: int = 0
    failed: int = 0
    rejected: dict[str, int] = {}
    refined: int = 0
    usage: dict[str, int] = {}
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def count(self, name: str, reason: str | None = None) -> None:
        """Thread-safe increment of a counter (or of one rejection reason)."""
        with self._lock:
            if reason is None:
                setattr(self, name, getattr(self, name) + 1)
            else:
                self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def save(self, out: Path) -> None:
        write_text_atomic(f"{out}.stats.json", self.model_dump_json(indent=2))


class _JsonlSink:
    """Append-only JSONL with one flushed, fsynced line per record; a torn last line is dropped on open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids: set[str] = set()
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            good = [line for line in lines if line.endswith("\n") and _loads(line) is not None]
            if len(good) != len(lines):
                write_text_atomic(path, "".join(good))
            self.ids = {_loads(line)["id"] for line in good}
        self._handle = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.ids.add(record["id"])

    def close(self) -> None:
        self._handle.close()


def _loads(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and "id" in value else None


def _run(items: list[Any], work: Callable[[Any], None], concurrency: int, on_done: Callable[[], None] | None) -> None:
    def wrapped(item: Any) -> None:
        work(item)
        if on_done:
            on_done()

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(wrapped, items))


# -- synth ------------------------------------------------------------------------------------------
def synth_plan(n: int, seed: int, langs: tuple[str, ...], topics: list[str]) -> list[tuple[str, str, str, str]]:
    """(id, lang, scenario, topic) for each sample: deterministic, so a rerun asks for the same ids."""
    rng = random.Random(seed)
    scenarios = sorted(SCENARIO_TEXT)
    return [
        (f"synth-{seed}-{i:05d}", langs[i % len(langs)], scenarios[i % len(scenarios)], rng.choice(topics))
        for i in range(n)
    ]


def _synth_prompt(lang: str, scenario: str, topic: str) -> tuple[str, str]:
    language = "Chinese" if lang == "zh" else "English"
    system = (
        "You write training data for a model that rewrites the user's latest query in a conversation into a standalone search "
        "query. Answer with one JSON object only."
    )
    user = (
        f"Write a short, natural conversation in {language} about {topic} (2 to 5 turns, ending with a user turn) where "
        f"{SCENARIO_TEXT[scenario]}. Then give: 'analysis', your step-by-step reasoning about what the last query refers to; "
        "'rewrite', the standalone rewrite of the last query (exactly equal to the last query when it must stay unchanged). "
        "Use only entities that appear in the conversation. JSON keys: messages (list of {role, content}), analysis, rewrite."
    )
    return system, user


def synth(
    teacher: Teacher,
    out: Path,
    n: int,
    seed: int = 0,
    langs: tuple[str, ...] = ("en", "zh"),
    topics: list[str] | None = None,
    retries: int = 2,
    on_done: Callable[[], None] | None = None,
) -> StageStats:
    stats = StageStats(stage="synth", requested=n)
    sink = _JsonlSink(out)
    plan = [p for p in synth_plan(n, seed, langs, topics or DEFAULT_TOPICS) if p[0] not in sink.ids]
    stats.skipped_existing = n - len(plan)
    gone = threading.Event()  # after the client's own retries fail, the server is gone: stop asking

    def work(item: tuple[str, str, str, str]) -> None:
        rec_id, lang, scenario, topic = item
        system, user = _synth_prompt(lang, scenario, topic)
        for _ in range(retries + 1):
            if gone.is_set():
                stats.count("failed")
                return
            try:
                obj, _raw = teacher.ask_json(system, user, RECORD_SCHEMA)
            except teacher.connection_errors:
                gone.set()
                stats.count("failed")
                return
            record = _to_record(obj, rec_id, lang, scenario, teacher.config.model)
            if record is not None:
                sink.write(json.loads(record.model_dump_json(exclude_none=True)))
                stats.count("written")
                return
            stats.count("malformed")

    try:
        _run(plan, work, teacher.config.concurrency, on_done)
    finally:
        sink.close()
        stats.usage = teacher.usage()
        stats.save(out)
    return stats


def _to_record(obj: dict[str, Any] | None, rec_id: str, lang: str, scenario: str, model: str) -> RewriteRecord | None:
    """A valid record from the teacher's answer, or None (malformed: counted, never written)."""
    if not obj or not isinstance(obj.get("messages"), list) or not isinstance(obj.get("rewrite"), str):
        return None
    messages = [m for m in obj["messages"] if isinstance(m, dict)]
    if scenario == "missing_context":
        messages = [m for m in messages if m.get("role") == "user"]
    query = messages[-1].get("content", "") if messages else ""
    rewrite = obj["rewrite"].strip()
    label = LABEL_OF.get(scenario, "rewritten")
    if label != "rewritten" and rewrite != str(query).strip():
        return None
    try:
        return RewriteRecord(
            id=rec_id,
            lang=lang,
            messages=messages,
            rewrite=rewrite,
            label=label,
            source=f"teacher:{model}:{scenario}",
            analysis=str(obj.get("analysis") or "") or None,
        )
    except (ValidationError, ValueError):
        return None


# -- judge ------------------------------------------------------------------------------------------
def deterministic_check(record: RewriteRecord) -> str | None:
    """Free checks before any judge call: markup, and added content that the conversation does not contain."""
    if MARKUP.search(record.rewrite):
        return "markup in rewrite"
    conversation = set().union(*(content_units(m.content) for m in record.messages))
    unsupported = content_units(record.rewrite) - conversation
    if len(unsupported) > 2:
        return "rewrite content not in the conversation"
    return None


def _judge_prompt(record: RewriteRecord) -> tuple[str, str]:
    convo = "\n".join(f"{m.role}: {m.content}" for m in record.messages)
    system = "You are a strict judge of query-rewriting data. Answer with one JSON object only."
    user = (
        f"Conversation:\n{convo}\n\nProposed standalone rewrite of the last user query: {record.rewrite}\n"
        f"Expected label: {record.label}.\nScore 1-5 each: task (a rewrite, not an answer), faithful (every added entity is in the "
        "conversation), resolved (all references resolved), unchanged_ok (a standalone or unresolvable query is left unchanged), "
        "fluent (fluent and in the query's language). Add a short rationale."
    )
    return system, user


def judge(
    teacher: Teacher,
    source: Path,
    out: Path,
    threshold: int = 4,
    refine: bool = True,
    on_done: Callable[[], None] | None = None,
) -> StageStats:
    records = read_dataset(source)
    stats = StageStats(stage="judge", requested=len(records))
    sink = _JsonlSink(out)
    rejects = _JsonlSink(Path(f"{out}.rejected.jsonl"))
    pending = [r for r in records if r.id not in sink.ids and r.id not in rejects.ids]
    stats.skipped_existing = len(records) - len(pending)
    gone = threading.Event()

    def reject(record: RewriteRecord, reason: str) -> None:
        rejects.write({"id": record.id, "reason": reason})
        stats.count("rejected", reason)

    def scores_of(record: RewriteRecord) -> dict[str, Any] | None:
        for _ in range(2):
            obj, _raw = teacher.ask_json(*_judge_prompt(record), JUDGE_SCHEMA, temperature=0.0)
            if obj and all(isinstance(obj.get(c), int) and 1 <= obj[c] <= 5 for c in JUDGE_CRITERIA):
                return obj
            stats.count("malformed")
        return None

    def work(record: RewriteRecord) -> None:
        reason = deterministic_check(record)
        if reason:
            reject(record, reason)
            return
        if gone.is_set():
            stats.count("failed")
            return
        try:
            scores = scores_of(record)
            if scores is None:
                reject(record, "judge answer malformed")
                return
            low = min(scores[c] for c in JUDGE_CRITERIA)
            if low == threshold - 1 and refine and record.label == "rewritten":
                record, scores = _refine(teacher, record, scores) or (record, scores)
                low = min(scores[c] for c in JUDGE_CRITERIA)
                if low >= threshold:
                    stats.count("refined")
        except teacher.connection_errors:
            gone.set()
            stats.count("failed")
            return
        if low < threshold:
            reject(record, f"judged below {threshold}")
            return
        data = json.loads(record.model_dump_json(exclude_none=True))
        data["judge"] = {c: scores[c] for c in JUDGE_CRITERIA} | {"rationale": str(scores.get("rationale", ""))[:500]}
        sink.write(data)
        stats.count("written")

    try:
        _run(pending, work, teacher.config.concurrency, on_done)
    finally:
        sink.close()
        rejects.close()
        stats.usage = teacher.usage()
        stats.save(out)
    return stats


def _refine(
    teacher: Teacher, record: RewriteRecord, scores: dict[str, Any]
) -> tuple[RewriteRecord, dict[str, Any]] | None:
    """Ask for a corrected rewrite against the original conversation, then judge it again."""
    system, user = _judge_prompt(record)
    obj, _ = teacher.ask_json(
        system,
        f"{user}\n\nThe judge said: {scores.get('rationale', '')}\nReturn a corrected 'rewrite'.",
        REFINE_SCHEMA,
        temperature=0.0,
    )
    if not obj or not isinstance(obj.get("rewrite"), str):
        return None
    try:
        fixed = record.model_copy(update={"rewrite": obj["rewrite"].strip()})
        RewriteRecord.model_validate(fixed.model_dump())
    except (ValidationError, ValueError):
        return None
    if deterministic_check(fixed):
        return None
    obj2, _ = teacher.ask_json(*_judge_prompt(fixed), JUDGE_SCHEMA, temperature=0.0)
    if not obj2 or not all(isinstance(obj2.get(c), int) for c in JUDGE_CRITERIA):
        return None
    return fixed, obj2
