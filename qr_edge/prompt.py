"""The one prompt formatter, shared by inference and training: XML sections inside the chat template.

Layout (the stable part first, so its KV cache is reused across calls and conversations)::

    system:    <task>...</task> <examples><example>...</example>...</examples>
    user:      <history><user>..</user><assistant>..</assistant></history> <current_query>..</current_query>
    assistant: <rewritten_query>  -> the model continues, and stops at </rewritten_query>

All conversation text is XML-escaped, so a message cannot close or open a section.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from xml.sax.saxutils import escape, unescape

from .chat_template import ChatTemplate
from .examples import FewShotExample
from .messages import Message

#: Bumped whenever the layout changes: a model fine-tuned on one version should be run with it.
PROMPT_FORMAT_VERSION = "1"
#: History turns kept before any token budget applies (runtime and training alike).
MAX_HISTORY_TURNS = 12

REWRITE_OPEN, REWRITE_CLOSE = "<rewritten_query>", "</rewritten_query>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

REWRITE_TASK = """You rewrite the user's latest query so that it can be understood on its own, without the conversation.
- Resolve pronouns, ellipsis and references ("it", "that one", "它", "那个") using only the conversation in <history>.
- If the query is already standalone, or is chit-chat such as thanks or a greeting, copy it unchanged.
- Never answer the query. Never add facts, names or details that are not in <history> or <current_query>.
- The examples only show the format: never copy their content.
- Keep the language of the query. Output only the rewritten query inside <rewritten_query></rewritten_query>."""


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


@dataclass(frozen=True)
class RenderedPrompt:
    """The exact text the model receives, its stable (cacheable) prefix, and where generation stops."""

    text: str
    stable_prefix: str
    stop: str


class PromptBuilder:
    """Builds the rewrite and gate prompts; the same object renders training pairs."""

    def __init__(self, template: ChatTemplate, examples: Sequence[FewShotExample] = ()) -> None:
        if len(examples) > 10:
            raise ValueError(f"at most 10 few-shot examples fit the prompt format, got {len(examples)}")
        self.template = template
        self.examples = list(examples)

    # -- sections --------------------------------------------------------------------------------
    def system_text(self) -> str:
        parts = [f"<task>\n{REWRITE_TASK}\n</task>"]
        if self.examples:
            blocks = [
                f"<example>\n{_query_block(ex.history, ex.query)}\n{REWRITE_OPEN}{xml_escape(ex.rewrite)}{REWRITE_CLOSE}\n</example>"
                for ex in self.examples
            ]
            parts.append("<examples>\n" + "\n".join(blocks) + "\n</examples>")
        return "\n".join(parts)

    @staticmethod
    def split(messages: Sequence[Message]) -> tuple[list[Message], str]:
        """History (every turn before the last) and the query (the last user turn)."""
        return list(messages[:-1]), messages[-1].content

    # -- rendering -------------------------------------------------------------------------------
    def _render(self, system: str, user: str, open_tag: str, stop: str) -> RenderedPrompt:
        chat = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        sentinel = "\x00QR_EDGE_USER\x00"
        probe = self.template.render([chat[0], {"role": "user", "content": sentinel}], add_generation_prompt=True)
        text = self.template.render(chat, add_generation_prompt=True) + open_tag
        cut = probe.find(sentinel)
        stable = text[:cut] if cut >= 0 and text.startswith(probe[:cut]) else ""
        return RenderedPrompt(text=text, stable_prefix=stable, stop=stop)

    def rewrite_prompt(self, messages: Sequence[Message]) -> RenderedPrompt:
        history, query = self.split(messages)
        return self._render(self.system_text(), _query_block(history, query), REWRITE_OPEN, REWRITE_CLOSE)

    def gate_prompt(self, messages: Sequence[Message], question: GateQuestion) -> RenderedPrompt:
        history, query = self.split(messages)
        task = f"<task>\n{GATE_TASKS[question]}\n</task>"
        return self._render(task, _query_block(history, query), ANSWER_OPEN, ANSWER_CLOSE)

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
) -> tuple[list[Message], RenderedPrompt, list[int]] | None:
    """Keep the last ``max_turns`` history turns, then drop the oldest until the prompt is at most ``budget`` tokens.

    Returns the kept messages, the prompt and its tokens; None when even the query alone does not fit.
    The runtime and training both fit prompts here, so a model learns on exactly what it is later shown.
    """
    history = list(messages[:-1][-max_turns:]) if max_turns > 0 else []
    query = messages[-1]
    while True:
        kept = [*history, query]
        prompt = render(kept)
        tokens = tokenize(prompt.text)
        if len(tokens) <= budget:
            return kept, prompt, tokens
        if not history:
            return None
        history = history[1:]
