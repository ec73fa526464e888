"""RewriteApp: hold a conversation and watch every user turn get rewritten, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Input, Static

from ..adapters import adapter_choice
from ..errors import QrEdgeError
from ..rewriter import Rewriter
from .screens import PathScreen, SettingsScreen
from .session import Session, Turn
from .widgets import Inspector, TurnView


class RewriteApp(App[None]):
    """Model calls run in thread workers (llama.cpp blocks); widgets are updated from the UI thread."""

    CSS_PATH = "app.tcss"
    TITLE = "qr-edge"
    BINDINGS = [
        Binding("f2", "toggle_role", "User/assistant"),
        Binding("f3", "toggle_legacy", "Legacy mode"),
        Binding("f4", "toggle_inspector", "Prompt"),
        Binding("f5", "settings", "Settings"),
        Binding("f6", "toggle_answer", "Answer mode"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+o", "load", "Load"),
        Binding("ctrl+y", "copy", "Copy rewrite"),
        Binding("ctrl+l", "clear", "Clear"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, settings: dict[str, Any] | None = None, rewriter: Rewriter | None = None) -> None:
        super().__init__()
        self.settings: dict[str, Any] = {
            "model": None,
            "adapter": None,  # None: the default (bundled on the embedded model); "none": no adapter; else a path
            "n_examples": None,  # None: what the model or adapter records
            "example_order": "interleave",
            "temperature": 0.0,
            "threads": None,
            "gpu_layers": 0,
            "min_confidence": None,  # None: the adapter's bar; 0: off
            **(settings or {}),
        }
        self.rewriter = rewriter
        self.session = Session()
        self.role = "user"
        self.legacy = False
        self.answer_mode = False
        self.selected: Turn | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield VerticalScroll(id="conversation")
            with VerticalScroll(id="inspector"):
                yield Inspector(id="inspector-text")
        yield Static("", id="status")
        with Horizontal(id="composer"):
            yield Static("user", id="role")
            yield Input(placeholder="Type a turn and press Enter", id="input")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#inspector-text", Inspector).show(None)
        self.query_one("#input", Input).focus()
        if self.rewriter is None:
            self.load_model()
        else:
            self.update_status()

    # -- status ----------------------------------------------------------------------------------
    def update_status(self, message: str | None = None) -> None:
        if message is None:
            if self.rewriter is None:
                message = "no model loaded: F5 to choose one"
            else:
                mode = "legacy: queries only + gate, side by side" if self.legacy else "full history"
                rw = self.rewriter
                adapter = Path(rw.engine.adapters[rw.default_adapter].path).name if rw.default_adapter else "no adapter"
                message = f"{rw.engine.name} · {adapter} · {len(rw.examples)} examples · {mode}" + (
                    " · answer mode" if self.answer_mode else ""
                )
        self.query_one("#status", Static).update(message)

    # -- workers ---------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="model")
    def load_model(self) -> None:
        self.call_from_thread(self.update_status, "loading model…")
        s = self.settings
        try:
            rewriter = Rewriter(
                s["model"],
                adapter=adapter_choice(s.get("adapter")),
                n_examples=s["n_examples"],
                example_order=s["example_order"],
                temperature=s["temperature"],
                n_threads=s["threads"],
                n_gpu_layers=s["gpu_layers"],
                min_confidence=s.get("min_confidence"),
            )
        except QrEdgeError as exc:
            self.call_from_thread(self.notify, str(exc), title="model", severity="error", timeout=10)
            self.call_from_thread(self.update_status)
            return
        self.rewriter = rewriter
        self.call_from_thread(self.update_status)

    @work(thread=True, group="rewrite")
    def rewrite_turn(self, turn: Turn, view: TurnView) -> None:
        session = self.session  # a clear (or load) replaces it while the model runs: results go nowhere then
        try:
            if self.rewriter is None:
                raise QrEdgeError("no model loaded")
            session.rewrite(self.rewriter, turn, self.legacy)
        except QrEdgeError as exc:
            self.call_from_thread(view.show_error, str(exc))
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.call_from_thread(self._rewritten, turn, view)
        if self.answer_mode and session is self.session and turn is session.turns[-1]:
            answer = session.reply(self.rewriter)
            self.call_from_thread(self._answered, session, answer)

    def _answered(self, session: Session, answer: str) -> None:
        if session is self.session:  # checked on the UI thread, where a clear happens
            self.add_turn("assistant", answer or "…")

    def _rewritten(self, turn: Turn, view: TurnView) -> None:
        view.show_result()
        self.selected = turn
        self.query_one("#inspector-text", Inspector).show(turn)

    # -- conversation ----------------------------------------------------------------------------
    def add_turn(self, role: str, content: str) -> TurnView:
        turn = self.session.add(role, content)  # type: ignore[arg-type]
        view = TurnView(turn)
        pane = self.query_one("#conversation", VerticalScroll)
        pane.mount(view)
        pane.scroll_end(animate=False)
        if role == "user":
            self.rewrite_turn(turn, view)
        return view

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "input":  # inputs of modal screens bubble up here too
            return
        text = event.value.strip()
        if not text:
            return
        event.input.value = ""
        self.add_turn(self.role, text)

    def on_descendant_focus(self, event) -> None:
        if isinstance(event.widget, TurnView):
            self.selected = event.widget.turn
            self.query_one("#inspector-text", Inspector).show(self.selected)

    # -- actions ---------------------------------------------------------------------------------
    def action_toggle_role(self) -> None:
        self.role = "assistant" if self.role == "user" else "user"
        role = self.query_one("#role", Static)
        role.update(self.role)
        role.set_class(self.role == "assistant", "assistant")

    def action_toggle_legacy(self) -> None:
        self.legacy = not self.legacy
        self.update_status()
        self.notify("legacy mode: assistant turns dropped, two-stage gate" if self.legacy else "full history mode")

    def action_toggle_answer(self) -> None:
        self.answer_mode = not self.answer_mode
        self.update_status()

    def action_toggle_inspector(self) -> None:
        self.query_one("#inspector").toggle_class("visible")

    def action_settings(self) -> None:
        def apply(values: dict[str, Any] | None) -> None:
            if values:
                self.settings.update(values)
                self.rewriter = None
                self.load_model()

        self.push_screen(SettingsScreen(dict(self.settings)), apply)

    def action_save(self) -> None:
        def save(path: str | None) -> None:
            if not path:
                return
            try:
                self.session.save(path)
                self.notify(f"saved {len(self.session.turns)} turns to {path}")
            except QrEdgeError as exc:
                self.notify(str(exc), severity="error")

        self.push_screen(PathScreen("Save conversation as JSON", "conversation.json"), save)

    def action_load(self) -> None:
        async def load(path: str | None) -> None:
            if not path:
                return
            try:
                session = Session.load(Path(path))
            except QrEdgeError as exc:
                self.notify(str(exc), title="load", severity="error")
                return
            await self.action_clear()
            for turn in session.turns:
                self.add_turn(turn.role, turn.content)
            self.notify(f"loaded {len(session.turns)} turns from {path}")

        self.push_screen(PathScreen("Load conversation JSON", "conversation.json"), load)

    def action_copy(self) -> None:
        turn = self.selected
        if turn is None or turn.result is None:
            self.notify("no rewrite selected", severity="warning")
            return
        self.copy_to_clipboard(turn.result.rewrite)
        self.notify(f"copied: {turn.result.rewrite}")

    async def action_clear(self) -> None:
        self.session = Session()
        self.selected = None
        await self.query_one("#conversation", VerticalScroll).remove_children()
        self.query_one("#inspector-text", Inspector).show(None)
