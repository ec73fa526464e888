"""The one prompt formatter, shared by inference and training: XML sections inside the chat template.

Layout (the stable part first, so its KV cache is reused across calls and conversations)::

    system:    <task>...</task> <examples><example>...</example>...</examples>
    user:      <history><user>..</user><assistant>..</assistant></history> <current_query>..</current_query>
    assistant: <rewritten_query>  -> the model continues, and stops at </rewritten_query>

Format "4" (append-only) writes the conversation after the template's turn switch, as the start of the model's
own reply, one ``user:`` or ``assistant:`` line per turn with the current query last::

    system:    <task>...</task>
    user:      The conversation follows.
    assistant: <history>\nuser:..\nassistant:..\nuser:<query></history><rewritten_query>  -> the model continues

so the next turn's prompt extends this one's, and a follow-up evaluates its two new lines (7 tokens of role
markers on SmolLM2's tokenizer) and the 9-token closing part ``</history><rewritten_query>`` again.

All conversation text is XML-escaped, so a message cannot close or open a section.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from xml.sax.saxutils import escape, unescape

from .chat_template import ChatTemplate
from .examples import FewShotExample
from .messages import Message
from .model_meta import (
    APPEND_PROMPT_FORMAT,
    FULL_PROMPT_FORMAT,
    MAX_HISTORY_TURNS,
    PROMPT_FORMAT_VERSION,
    PROMPT_FORMATS,
)

REWRITE_OPEN, REWRITE_CLOSE = "<rewritten_query>", "</rewritten_query>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
#: Where rewrite generation stops: content is XML-escaped both ways (a "<" in a query is "&lt;" in the prompt
#: and in the rewrite the model learned), so a raw "</" can only open the closing tag; stopping there saves
#: the tag's other six tokens ("rew", "rit", "ten", "_", "query", ">") on every rewrite.
REWRITE_STOP = "</"

REWRITE_TASK = """You rewrite the user's latest query so that it can be understood on its own, without the conversation.
- Resolve pronouns, ellipsis and references ("it", "that one", "它", "那个") using only the conversation in <history>.
- If the query is already standalone, or is chit-chat such as thanks or a greeting, copy it unchanged.
- Never answer the query. Never add facts, names or details that are not in <history> or <current_query>.
- The examples only show the format: never copy their content.
- Keep the language of the query. Output only the rewritten query inside <rewritten_query></rewritten_query>."""


#: Format "2": the adapter learnt the task, so the instruction is one line (fewer tokens per call and per
#: training example) and few-shot examples are never shown.
COMPACT_REWRITE_TASK = (
    "Rewrite <current_query> as a standalone query using <history>; copy it unchanged if it already stands alone."
)
#: Format "2" clips assistant turns (characters): the last answer keeps more, since follow-ups point at it.
LAST_ANSWER_CHARS = 480
EARLIER_ANSWER_CHARS = 160
#: Format "4": the current query is the last user line of <history>; every assistant turn is clipped alike (a
#: turn's text never changes as the conversation grows, so the prompt only grows).
CURRENT_QUERY_PLACE = "the last user: line of <history>"
APPEND_REWRITE_TASK = (
    f"Rewrite the current query, {CURRENT_QUERY_PLACE}, as a standalone query; "
    "copy it unchanged if it already stands alone."
)
#: Format "4"'s user turn: the same for every call, so the whole template part is a cacheable prefix.
APPEND_REQUEST = "The conversation follows."
APPEND_ANSWER_CHARS = 400
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def clip_answer(text: str, limit: int) -> str:
    """The first ``limit`` characters of an assistant turn, cut at a word boundary when there is one."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut) + "…"


class GateQuestion(str, Enum):
    """The two yes/no questions of the gate for queries-only (legacy) histories."""

    NEEDS_REWRITE = "needs_rewrite"
    DEPENDS_ON_ANSWER = "depends_on_answer"


GATE_TASKS = {
    GateQuestion.NEEDS_REWRITE: """You judge a search query in a conversation.
Question: does the user's latest query in <current_query> need a rewrite to be understood on its own, because it refers to earlier turns (a pronoun, an ellipsis, "that", "它", "那个")?
Answer with one word inside <answer></answer>: yes or no.""",
    GateQuestion.DEPENDS_ON_ANSWER: """You judge a search query in a conversation. Only the user's earlier queries are shown in <history>; the assistant's answers are missing.
Question: does the latest query in <current_query> refer to something that only the assistant's missing answer would contain (for example "the second one", "that method", "它的缺点" after a question that asked for options)?
Answer with one word inside <answer></answer>: yes or no.""",
}


def xml_escape(text: str) -> str:
    return escape(text)


def xml_unescape(text: str) -> str:
    return unescape(text)


def _history_block(history: Sequence[Message]) -> str:
    turns = "\n".join(f"<{m.role}>{xml_escape(m.content)}</{m.role}>" for m in history)
    return f"<history>\n{turns}\n</history>" if turns else "<history>\n</history>"


def _query_block(history: Sequence[Message], query: str) -> str:
    return f"{_history_block(history)}\n<current_query>{xml_escape(query)}</current_query>"


def _turn_line(text: str) -> str:
    """A turn's text as format 4 shows it: escaped, on one line (a line break inside a message cannot start a
    forged ``user:`` line)."""
    return _LINE_BREAKS.sub(" ", xml_escape(text))


def _append_block(history: Sequence[Message], query: str) -> str:
    """Format 4's body: every turn a line, the query last; what follows it is only the closing part."""
    turns = [*history, Message(role="user", content=query)]
    return "<history>" + "".join(f"\n{m.role}:{_turn_line(m.content)}" for m in turns) + "</history>"


@dataclass(frozen=True)
class RenderedPrompt:
    """The exact text the model receives, its stable (cacheable) prefix, and where generation stops."""

    text: str
    stable_prefix: str
    stop: str
    opening: str = ""  # how the output probably starts (a rewrite, as the query): drafted in the prompt's pass


class PromptBuilder:
    """Builds the rewrite and gate prompts; the same object renders training pairs."""

    def __init__(
        self, template: ChatTemplate, examples: Sequence[FewShotExample] = (), fmt: str = PROMPT_FORMAT_VERSION
    ) -> None:
        if len(examples) > 10:
            raise ValueError(f"at most 10 few-shot examples fit the prompt format, got {len(examples)}")
        if fmt not in PROMPT_FORMATS:
            raise ValueError(f"unknown prompt format {fmt!r}; this runtime builds {', '.join(PROMPT_FORMATS)}")
        self.template = template
        self.fmt = fmt
        self.examples = [] if self.compact else list(examples)
        self._prefixes: dict[str, str] = {}  # system text -> rendered text before the user turn's content
        self._system = self._system_text()

    @property
    def compact(self) -> bool:
        """Formats for fine-tuned adapters: a one-line task, no few-shot examples, assistant turns clipped."""
        return self.fmt != FULL_PROMPT_FORMAT

    @property
    def append_only(self) -> bool:
        return self.fmt == APPEND_PROMPT_FORMAT

    # -- sections --------------------------------------------------------------------------------
    def system_text(self) -> str:
        return self._system

    def _system_text(self) -> str:
        if self.compact:
            return f"<task>{APPEND_REWRITE_TASK if self.append_only else COMPACT_REWRITE_TASK}</task>"
        parts = [f"<task>\n{REWRITE_TASK}\n</task>"]
        if self.examples:
            blocks = [
                f"<example>\n{_query_block(ex.history, ex.query)}\n{REWRITE_OPEN}{xml_escape(ex.rewrite)}{REWRITE_CLOSE}\n</example>"
                for ex in self.examples
            ]
            parts.append("<examples>\n" + "\n".join(blocks) + "\n</examples>")
        return "\n".join(parts)

    def turn_text(self, text: str) -> str:
        """A turn's text as this format shows it: escaped, and in format 4 on one line."""
        return _turn_line(text) if self.append_only else xml_escape(text)

    def split(self, messages: Sequence[Message]) -> tuple[list[Message], str]:
        """History (every turn before the last; in the compact format with assistant turns clipped) and the query."""
        history = list(messages[:-1])
        if self.compact:
            last = max((i for i, m in enumerate(history) if m.role == "assistant"), default=-1)

            def limit(i: int) -> int:
                if self.append_only:
                    return APPEND_ANSWER_CHARS
                return LAST_ANSWER_CHARS if i == last else EARLIER_ANSWER_CHARS

            history = [
                m.model_copy(update={"content": clip_answer(m.content, limit(i))}) if m.role == "assistant" else m
                for i, m in enumerate(history)
            ]
        return history, messages[-1].content

    # -- rendering -------------------------------------------------------------------------------
    def _render(self, system: str, user: str, open_tag: str, stop: str, opening: str = "") -> RenderedPrompt:
        """One template render per prompt; the stable prefix (everything before the user turn's content) is
        found once per system text by rendering a sentinel user turn, then cached.

        Format 4 renders the template once per system text (its user turn never changes) and writes ``user``,
        the conversation, after the turn switch: the whole template part is the stable prefix."""
        if self.append_only:
            head = self._prefixes.get(system)
            if head is None:
                chat = [{"role": "system", "content": system}, {"role": "user", "content": APPEND_REQUEST}]
                head = self._prefixes[system] = self.template.render(chat, add_generation_prompt=True)
            return RenderedPrompt(text=head + user + open_tag, stable_prefix=head, stop=stop, opening=opening)
        prefix = self._prefixes.get(system)
        if prefix is None:
            sentinel = "\x00QR_EDGE_USER\x00"
            probe = self.template.render(
                [{"role": "system", "content": system}, {"role": "user", "content": sentinel}],
                add_generation_prompt=True,
            )
            cut = probe.find(sentinel)
            prefix = self._prefixes[system] = probe[:cut] if cut >= 0 else ""
        chat = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        text = self.template.render(chat, add_generation_prompt=True) + open_tag
        stable = prefix if prefix and text.startswith(prefix) else ""
        return RenderedPrompt(text=text, stable_prefix=stable, stop=stop, opening=opening)

    def _body(self, messages: Sequence[Message]) -> str:
        history, query = self.split(messages)
        return (_append_block if self.append_only else _query_block)(history, query)

    def rewrite_prompt(self, messages: Sequence[Message]) -> RenderedPrompt:
        opening = xml_escape(messages[-1].content)
        return self._render(self.system_text(), self._body(messages), REWRITE_OPEN, REWRITE_STOP, opening=opening)

    def gate_prompt(self, messages: Sequence[Message], question: GateQuestion) -> RenderedPrompt:
        task = f"<task>\n{GATE_TASKS[question]}\n</task>"
        if self.append_only:
            task = task.replace("<current_query>", CURRENT_QUERY_PLACE)
        return self._render(task, self._body(messages), ANSWER_OPEN, ANSWER_CLOSE)

    # -- training pairs --------------------------------------------------------------------------
    @staticmethod
    def rewrite_completion(rewrite: str) -> str:
        """The model's target continuation after the prompt's ``<rewritten_query>``."""
        return f"{xml_escape(rewrite)}{REWRITE_CLOSE}"

    @staticmethod
    def gate_completion(answer: bool) -> str:
        return f"{'yes' if answer else 'no'}{ANSWER_CLOSE}"

    @staticmethod
    def parse_output(raw: str) -> str:
        """Model text up to the closing tag, unescaped and trimmed."""
        text = raw.split(REWRITE_CLOSE, 1)[0]
        return xml_unescape(text).strip()


def fit_to_budget(
    messages: Sequence[Message],
    render: Callable[[list[Message]], RenderedPrompt],
    tokenize: Callable[[str], list[int]],
    budget: int,
    max_turns: int = MAX_HISTORY_TURNS,
    max_token_chars: int | None = None,
) -> tuple[list[Message], RenderedPrompt, list[int]] | None:
    """Keep the last ``max_turns`` history turns, then drop the oldest until the prompt is at most ``budget`` tokens.

    Returns the kept messages, the prompt and its tokens; None when even the query alone does not fit.
    The runtime and training both fit prompts here, so a model learns on exactly what it is later shown.
    ``max_token_chars`` (the most characters one token of the vocabulary stands for): a prompt longer than
    ``budget`` times it cannot fit, so it is cut without being tokenized (a 2 MB turn costs no seconds).
    """
    history = list(messages[:-1][-max_turns:]) if max_turns > 0 else []
    query = messages[-1]
    max_chars = budget * max_token_chars if max_token_chars else None
    while True:
        kept = [*history, query]
        prompt = render(kept)
        if max_chars is None or len(prompt.text) <= max_chars:
            tokens = tokenize(prompt.text)
            if len(tokens) <= budget:
                return kept, prompt, tokens
        if not history:
            return None
        history = history[1:]
