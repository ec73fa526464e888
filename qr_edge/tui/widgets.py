"""Widgets: one turn of the conversation with its rewrite, and the inspector with the exact prompt."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import LoadingIndicator, Static

from ..result import Decision, RewriteResult
from .session import Turn

BADGES = {
    Decision.REWRITTEN: ("rewritten", "green"),
    Decision.UNCHANGED: ("unchanged", "cyan"),
    Decision.NO_HISTORY: ("no history", "bright_black"),
    Decision.REJECTED_LEAKAGE: ("rejected: leakage", "red"),
    Decision.REJECTED_UNSUPPORTED: ("rejected: unsupported", "red"),
    Decision.REJECTED_ANSWER: ("rejected: answer", "red"),
    Decision.REJECTED_INVALID: ("rejected: invalid", "red"),
    Decision.SKIPPED_MISSING_CONTEXT: ("skipped: missing context", "yellow"),
    Decision.KEPT_LOW_CONFIDENCE: ("kept: low confidence", "yellow"),
}


def badge(result: RewriteResult) -> str:
    label, colour = BADGES[result.decision]
    return f"[bold {colour}]{escape(f'[{label}]')}[/]"


def describe(result: RewriteResult, prefix: str = "") -> str:
    t = result.timings
    cost = (
        f"{t.total_ms:.0f} ms, {t.prompt_tokens_evaluated} new / {t.prompt_tokens_reused} reused tokens"
        if t.model_calls
        else "no model call"
    )
    return f"{prefix}{badge(result)} {escape(result.rewrite)}  [dim]({cost})[/]"


class TurnView(Vertical, can_focus=True):
    """A user or assistant turn; a user turn shows its rewrite (and the queries-only one in legacy mode)."""

    def __init__(self, turn: Turn) -> None:
        super().__init__(classes=turn.role)
        self.turn = turn

    def compose(self) -> ComposeResult:
        yield Static(self.turn.role, classes="who")
        yield Static(escape(self.turn.content), classes="content")
        if self.turn.role == "user":
            yield LoadingIndicator()
            yield Static("", classes="result")

    def show_result(self) -> None:
        for spinner in self.query(LoadingIndicator):
            spinner.remove()
        lines = []
        if self.turn.result is not None:
            lines.append(describe(self.turn.result, "full history: " if self.turn.legacy else "→ "))
        if self.turn.legacy is not None:
            lines.append(describe(self.turn.legacy, "queries only: "))
        self.query_one(".result", Static).update("\n".join(lines))

    def show_error(self, message: str) -> None:
        for spinner in self.query(LoadingIndicator):
            spinner.remove()
        self.query_one(".result", Static).update(f"[red]error: {escape(message)}[/]")


class Inspector(Static):
    """The exact prompt sent (chat template + XML) and the raw model output for the selected turn."""

    def show(self, turn: Turn | None) -> None:
        if turn is None or turn.result is None:
            self.update("[dim]Select a rewritten user turn (Tab) to see its prompt and raw output.[/]")
            return
        raw = turn.result.raw_output if turn.result.raw_output is not None else "(no model call)"
        reason = f"\n[b]reason[/b]: {escape(turn.result.reason)}" if turn.result.reason else ""
        self.update(
            f"[b u]prompt[/]\n{escape(turn.prompt or '(no prompt: no history)')}\n\n"
            f"[b u]raw output[/]\n{escape(raw)}{reason}"
        )
