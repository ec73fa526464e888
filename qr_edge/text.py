"""The one home of text handling shared by the guard, the data tools and evaluation.

Content is compared as *units*: lower-cased Latin words (English content words, with stop words and
plural/possessive endings removed) and CJK character bigrams.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'})
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)
_LATIN = re.compile(r"[a-z0-9]+(?:['.\-][a-z0-9]+)*")  # on folded text: quotes are straight
CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
MARKUP = re.compile(r"<\s*/?\s*[A-Za-z_|!?]|\|>|```")

EN_STOPWORDS = frozenset(
    """a an the and or but if then so of to in on at by for with about from into onto over under as is are was were be been
    being am do does did done have has had having it its it's this that these those there here what which who whom whose
    when where why how can could should would will shall may might must i me my we our you your he him his she her they them
    their not no yes any some more most other than too very just also only both each either neither one ones s t please tell
    let us get got give know like want need show explain describe compare difference between vs versus same besides beside
    after before around during through throughout against among without within since until while near across behind beyond
    toward towards upon via per off out up down again still even ever such own much many few all every another whether
    because regarding instead else""".split()
)
# CJK characters that carry grammar rather than content: a bigram of two of them is never evidence.
ZH_FUNCTION_CHARS = frozenset(
    "的了吗呢吧啊呀是在有和与或及什么怎样哪谁几多少为如何这那个些它他她们也都还就要会能可以不没对从把被给让到上下中里之其于而又很更最"
)
_EN_QUESTION_START = re.compile(
    r"^(what|which|who|whom|whose|when|where|why|how|is|are|was|were|do|does|did|can|could|should|would|will|may|might|has|have|had)\b",
    re.I,
)
_ZH_QUESTION = re.compile(
    r"[吗呢么]|什么|怎么|怎样|哪|谁|几|多少|为何|为什么|如何|是否|能否|可否|有没有|是不是|好不好|对不对"
)


def fold(text: str) -> str:
    """NFKC, lower case and straight quotes: how content is compared ("I’d" in a rewrite is the query's "I'd")."""
    return unicodedata.normalize("NFKC", text).lower().translate(_QUOTES)


def normalise(text: str) -> str:
    """Folded, whitespace and punctuation removed: what "exact match" and "unchanged" compare."""
    return _PUNCT.sub("", fold(text))


def _stem(word: str) -> str:
    """A light suffix stemmer, the same on both sides of a comparison: "organizes", "organized" and "organize" are
    one unit, as are "opening" and "open" (a rewrite that inflects a word of the conversation adds nothing)."""
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]  # "running" -> "runn" -> "run"
    return word


def content_units(text: str) -> set[str]:
    """Latin content words and CJK bigrams (single CJK characters stand alone when a run has one)."""
    text = fold(text)
    units = {_stem(w) for w in _LATIN.findall(text) if w not in EN_STOPWORDS}
    for run in CJK_RUN.findall(text):
        if len(run) == 1:
            if run not in ZH_FUNCTION_CHARS:
                units.add(run)
            continue
        for i in range(len(run) - 1):
            bigram = run[i : i + 2]
            if not (bigram[0] in ZH_FUNCTION_CHARS and bigram[1] in ZH_FUNCTION_CHARS):
                units.add(bigram)
    return units


def units_of(texts: Iterable[str]) -> set[str]:
    units: set[str] = set()
    for t in texts:
        units |= content_units(t)
    return units


def new_content(text: str, conversation: Sequence[str]) -> set[str]:
    """Units of ``text`` that the conversation does not support.

    A CJK bigram also counts as supported when each of its characters occurs in the conversation or is a function
    character: joining "热干面" and "热量" creates the bigram "面热", and "鲁滨逊漂流记" + "的" + "作者" the
    bigrams "记的" and "的作", none of them new content.
    """
    conv_units = units_of(conversation)
    conv_chars = set(fold("".join(conversation))) | ZH_FUNCTION_CHARS
    return {u for u in content_units(text) - conv_units if not (CJK_RUN.fullmatch(u) and set(u) <= conv_chars)}


_LOOP = re.compile(r"([^\W\d_].+?)\1{2,}")


def new_loop(text: str, query: str) -> str | None:
    """A stretch of ``text`` that repeats one piece of two or more characters three times or more in a row and that
    the query lacks: a small model stuck in a loop ("寄过去的寄过去的寄过去的…"), never a rewrite."""
    squeezed = re.sub(r"\s+", " ", fold(text))
    plain_query = re.sub(r"\s+", " ", fold(query))
    return next((m.group(0) for m in _LOOP.finditer(squeezed) if m.group(0) not in plain_query), None)


def adds_from(text: str, query: str, history: Sequence[str]) -> bool:
    """Whether ``text`` brings a content unit of the earlier turns that the query lacks: what resolving a reference
    or an ellipsis from the conversation does. An output that only respells the query ("a Irish" -> "an Irish",
    "Adelson" -> "Adelsons") or adds nothing the conversation holds is no rewrite of it."""
    return bool((content_units(text) - content_units(query)) & units_of(history))


def is_question(text: str) -> bool:
    t = text.strip()
    if t.endswith(("?", "？")):
        return True
    return bool(_EN_QUESTION_START.match(t) or _ZH_QUESTION.search(t))


def copied_chars(text: str, query: str, history: Sequence[str]) -> int:
    """Characters of the Latin words ``text`` copies from earlier turns that the query lacks, each word once
    (with its space).

    The guard's length rule subtracts them: a rewrite that names "Winnie Madikizela-Mandela" from the
    history is not too long for it; what it invents, or a phrase repeated, still is. Chinese text is dense
    enough for the rule's own allowance of extra characters, so CJK copies are not subtracted.
    """
    earlier = set(_LATIN.findall(fold(" ".join(history)))) - set(_LATIN.findall(fold(query)))
    return sum(len(w) + 1 for w in set(_LATIN.findall(fold(text))) & earlier)
