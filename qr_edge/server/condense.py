"""The two most common condense-question prompts, recognised so their history reaches qr-edge as turns.

LangChain's ``CONDENSE_QUESTION_PROMPT`` (ConversationalRetrievalChain) and LlamaIndex's
``CondenseQuestionChatEngine`` default put the whole conversation inside one user message. Sent to
``/v1/chat/completions`` as it is, the rewriter would see one standalone "query" (the instructions) and
no history; parsed here, it gets the turns and the follow-up, as a framework's own model would.
The template strings are copies of the frameworks' own (tests compare them with the installed packages'),
so the service recognises them without importing either framework.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: langchain_classic.chains.conversational_retrieval.prompts.CONDENSE_QUESTION_PROMPT.template
LANGCHAIN_CONDENSE_TEMPLATE = (
    "Given the following conversation and a follow up question, rephrase the follow up question to be a "
    "standalone question, in its original language.\n\nChat History:\n{chat_history}\nFollow Up Input: "
    "{question}\nStandalone question:"
)
#: llama_index.core.chat_engine.condense_question.DEFAULT_TEMPLATE
LLAMA_INDEX_CONDENSE_TEMPLATE = (
    "Given a conversation (between Human and Assistant) and a follow up message from Human, rewrite the message "
    "to be a standalone question that captures all relevant context from the conversation.\n\n<Chat History>\n"
    "{chat_history}\n\n<Follow Up Message>\n{question}\n\n<Standalone question>\n"
)

# How each framework writes a turn of the history: LangChain "Human: ..." / "Assistant: ..." (one per line,
# after a leading newline), LlamaIndex "user: ..." / "assistant: ..." (MessageRole values).
_ROLES = {"human": "user", "user": "user", "assistant": "assistant", "ai": "assistant"}
_TURN = re.compile(r"^(Human|Assistant|AI|user|assistant|system): ?", re.M)


@dataclass(frozen=True)
class CondensePrompt:
    name: str
    pattern: re.Pattern[str]


def _compile(name: str, template: str) -> CondensePrompt:
    literal = re.split(r"(\{chat_history\}|\{question\})", template)
    parts = []
    for piece in literal:
        if piece == "{chat_history}":
            parts.append(r"(?P<chat_history>.*?)")
        elif piece == "{question}":
            parts.append(r"(?P<question>.+?)")
        else:
            parts.append(re.escape(piece))
    return CondensePrompt(name, re.compile(r"\s*" + "".join(parts) + r"\s*", re.S))


PROMPTS = (
    _compile("langchain", LANGCHAIN_CONDENSE_TEMPLATE),
    _compile("llama-index", LLAMA_INDEX_CONDENSE_TEMPLATE),
)


def parse_history(text: str) -> list[dict[str, str]]:
    """Turns of a history written one per line as "Role: content"; a line without a role continues the turn."""
    turns: list[dict[str, str]] = []
    starts = list(_TURN.finditer(text))
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        role = _ROLES.get(m.group(1).lower())
        content = text[m.end() : end].strip()
        if role and content:  # system lines in a history are instructions, not conversation
            turns.append({"role": role, "content": content})
    return turns


def match_condense_prompt(text: str) -> tuple[str, list[dict[str, str]]] | None:
    """``(template name, messages)`` when ``text`` is a recognised condense prompt, else None."""
    for prompt in PROMPTS:
        m = prompt.pattern.fullmatch(text)
        if m:
            question = m.group("question").strip()
            return prompt.name, [*parse_history(m.group("chat_history")), {"role": "user", "content": question}]
    return None
