"""LeakageGuard: the last step before a result. It rejects outputs that are unsafe to use as a query.

Content is compared as *units*: lower-cased Latin words (English content words, with stop words and
plural/possessive endings removed) and CJK character bigrams. A unit that appears in the few-shot
examples but nowhere in the conversation is example leakage; a unit found nowhere in the
conversation at all is unsupported content.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .examples import FewShotExample
from .messages import Message
from .result import Decision

_LATIN = re.compile(r"[a-z0-9]+(?:['’.\-][a-z0-9]+)*")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_MARKUP = re.compile(r"<\s*/?\s*[A-Za-z_|!?]|\|>|```")

EN_STOPWORDS = frozenset(
    """a an the and or but if then so of to in on at by for with about from into onto over under as is are was were be been
    being am do does did done have has had having it its it's this that these those there here what which who whom whose
    when where why how can could should would will shall may might must i me my we our you your he him his she her they them
    their not no yes any some more most other than too very just also only both each either neither one ones s t please tell
    let us get got give know like want need show explain describe compare difference between vs versus same""".split()
)
# CJK characters that carry grammar rather than content: a bigram of two of them is never evidence.
ZH_FUNCTION_CHARS = frozenset("的了吗呢吧啊呀是在有和与或及什么怎样哪谁几多少为如何这那个些它他她们也都还就要会能可以不没对从把被给让到上下中里之其于而又很更最")
_ANSWER_OPENERS = re.compile(r"^(yes|no|sure|certainly|of course|here is|here's|it is|it's|the answer|是的|不是|当然|可以的|好的|答案)\b", re.I)
_EN_QUESTION_START = re.compile(
    r"^(what|which|who|whom|whose|when|where|why|how|is|are|was|were|do|does|did|can|could|should|would|will|may|might|has|have|had)\b",
    re.I,
)
_ZH_QUESTION = re.compile(r"[吗呢么]|什么|怎么|怎样|哪|谁|几|多少|为何|为什么|如何|是否|能否|可否|有没有|是不是|好不好|对不对")


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _stem(word: str) -> str:
    for suffix in ("'s", "’s"):
        if word.endswith(suffix):
            word = word[: -len(suffix)]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def content_units(text: str) -> set[str]:
    """Latin content words and CJK bigrams (single CJK characters stand alone when a run has one)."""
    text = _normalise(text)
    units = {_stem(w) for w in _LATIN.findall(text) if w not in EN_STOPWORDS}
    for run in _CJK_RUN.findall(text):
        if len(run) == 1:
            if run not in ZH_FUNCTION_CHARS:
                units.add(run)
            continue
        for i in range(len(run) - 1):
            bigram = run[i : i + 2]
            if not (bigram[0] in ZH_FUNCTION_CHARS and bigram[1] in ZH_FUNCTION_CHARS):
                units.add(bigram)
    return units


def _units_of(texts: Iterable[str]) -> set[str]:
    units: set[str] = set()
    for t in texts:
        units |= content_units(t)
    return units


def new_content(text: str, conversation: Sequence[str]) -> set[str]:
    """Units of ``text`` that the conversation does not support.

    A CJK bigram also counts as supported when both its characters occur in the conversation: joining
    "热干面" and "热量" creates the bigram "面热", which is no new content.
    """
    conv_units = _units_of(conversation)
    conv_chars = set(_normalise("".join(conversation)))
    return {u for u in content_units(text) - conv_units if not (_CJK_RUN.fullmatch(u) and set(u) <= conv_chars)}


def is_question(text: str) -> bool:
    t = text.strip()
    if t.endswith(("?", "？")):
        return True
    return bool(_EN_QUESTION_START.match(t) or _ZH_QUESTION.search(t))


def _weight(units: Iterable[str]) -> int:
    """Latin words count 2, CJK bigrams 1: one leaked English word is as strong as two Chinese bigrams."""
    return sum(1 if _CJK_RUN.fullmatch(u) else 2 for u in units)


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
        max_unsupported_weight: int = 4,
    ) -> None:
        self.example_units = _units_of(t for ex in examples for t in ex.texts())
        self.max_length_ratio = max_length_ratio
        self.max_extra_chars = max_extra_chars
        self.max_leak_weight = max_leak_weight
        self.max_unsupported_weight = max_unsupported_weight

    def check(self, output: str, messages: Sequence[Message]) -> GuardVerdict:
        query = messages[-1].content
        out = output.strip()
        if not out:
            return GuardVerdict(Decision.REJECTED_INVALID, "empty output")
        if _MARKUP.search(out):
            return GuardVerdict(Decision.REJECTED_INVALID, "output contains markup")
        if "\n" in out:
            return GuardVerdict(Decision.REJECTED_INVALID, "output has several lines")
        if _normalise(out).split() == _normalise(query.strip()).split():
            return GuardVerdict(Decision.UNCHANGED)
        limit = max(self.max_length_ratio * len(query.strip()), len(query.strip()) + self.max_extra_chars)
        if len(out) > limit:
            return GuardVerdict(Decision.REJECTED_INVALID, f"output is {len(out)} characters, over the limit of {int(limit)}")
        new_units = new_content(out, [m.content for m in messages])
        leaked = sorted(new_units & self.example_units)
        if _weight(leaked) > self.max_leak_weight:
            return GuardVerdict(Decision.REJECTED_LEAKAGE, "content from the few-shot examples: " + ", ".join(leaked[:8]))
        if _ANSWER_OPENERS.match(out) and not _ANSWER_OPENERS.match(query.strip()):
            return GuardVerdict(Decision.REJECTED_ANSWER, "output starts like an answer")
        if is_question(query) and not is_question(out):
            return GuardVerdict(Decision.REJECTED_ANSWER, "the query is a question but the output is not")
        if _weight(new_units) > self.max_unsupported_weight:
            return GuardVerdict(Decision.REJECTED_UNSUPPORTED, "content not in the conversation: " + ", ".join(sorted(new_units)[:8]))
        return GuardVerdict(Decision.REWRITTEN)
