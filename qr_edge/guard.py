"""LeakageGuard: the last step before a result. It rejects outputs that are unsafe to use as a query.

Content is compared as *units*: lower-cased Latin words (English content words, with stop words and
plural/possessive endings removed) and CJK character bigrams. A unit that appears in the few-shot
examples but nowhere in the conversation is example leakage; a unit found nowhere in the
conversation at all is unsupported content. Two outputs are no rewrite at all: one stuck in a loop (rejected), and one
that brings nothing of the conversation into the query, only respelling it (the query is kept, as unchanged).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .examples import FewShotExample
from .messages import Message
from .result import Decision
from .text import CJK_RUN, MARKUP, adds_from, copied_chars, fold, is_question, new_content, new_loop, units_of

_ANSWER_OPENERS = re.compile(
    r"^(yes|no|sure|certainly|of course|here is|here's|it is|it's|the answer|是的|不是|当然|可以的|好的|答案)\b"
)  # matched on fold(): "It’s" with a typographic apostrophe is "it's"


def _weight(units: Iterable[str]) -> int:
    """Latin words count 2, CJK bigrams 1: one leaked English word is as strong as two Chinese bigrams.

    A rewrite may add content of weight 2 the conversation lacks (one English word such as "children" for "kids",
    or two Chinese bigrams), no more: on v2's test outputs a bar of 4 let 2.1% of them carry unsupported content,
    2 lets 1.9% through and costs 0.2 BLEU (`scripts/guard_rules.py` counts what each bar rejects)."""
    return sum(1 if CJK_RUN.fullmatch(u) else 2 for u in units)


@dataclass(frozen=True)
class GuardVerdict:
    decision: Decision
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.decision in (Decision.REWRITTEN, Decision.UNCHANGED)


class LeakageGuard:
    """Checks one model output against the conversation it came from and the examples in the prompt."""

    def __init__(
        self,
        examples: Sequence[FewShotExample] = (),
        *,
        max_length_ratio: float = 3.0,
        max_extra_chars: int = 40,
        max_leak_weight: int = 1,
        max_unsupported_weight: int = 2,
    ) -> None:
        self.example_units = units_of(t for ex in examples for t in ex.texts())
        self.max_length_ratio = max_length_ratio
        self.max_extra_chars = max_extra_chars
        self.max_leak_weight = max_leak_weight
        self.max_unsupported_weight = max_unsupported_weight

    def check(self, output: str, messages: Sequence[Message]) -> GuardVerdict:
        query = messages[-1].content
        out = output.strip()
        if not out:
            return GuardVerdict(Decision.REJECTED_INVALID, "empty output")
        if MARKUP.search(out):
            return GuardVerdict(Decision.REJECTED_INVALID, "output contains markup")
        if "\n" in out:
            return GuardVerdict(Decision.REJECTED_INVALID, "output has several lines")
        if fold(out).split() == fold(query.strip()).split():
            return GuardVerdict(Decision.UNCHANGED)
        loop = new_loop(out, query)
        if loop:
            return GuardVerdict(Decision.REJECTED_INVALID, f"output repeats itself: {loop[:40]}")
        limit = max(self.max_length_ratio * len(query.strip()), len(query.strip()) + self.max_extra_chars)
        history = [m.content for m in messages[:-1]]
        own = len(out) - copied_chars(out, query, history)
        if own > limit:
            return GuardVerdict(
                Decision.REJECTED_INVALID,
                f"output is {len(out)} characters, {own} of them not copied from earlier turns: "
                f"over the limit of {int(limit)}",
            )
        new_units = new_content(out, [m.content for m in messages])
        leaked = sorted(new_units & self.example_units)
        if _weight(leaked) > self.max_leak_weight:
            return GuardVerdict(
                Decision.REJECTED_LEAKAGE, "content from the few-shot examples: " + ", ".join(leaked[:8])
            )
        if _ANSWER_OPENERS.match(fold(out)) and not _ANSWER_OPENERS.match(fold(query.strip())):
            return GuardVerdict(Decision.REJECTED_ANSWER, "output starts like an answer")
        if is_question(query) and not is_question(out):
            return GuardVerdict(Decision.REJECTED_ANSWER, "the query is a question but the output is not")
        if _weight(new_units) > self.max_unsupported_weight:
            return GuardVerdict(
                Decision.REJECTED_UNSUPPORTED, "content not in the conversation: " + ", ".join(sorted(new_units)[:8])
            )
        if not adds_from(out, query, history):
            return GuardVerdict(Decision.UNCHANGED, "the output adds nothing from the conversation to the query")
        return GuardVerdict(Decision.REWRITTEN)
