"""Modal screens: settings, and a path prompt for saving and loading conversations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

EMBEDDED = "embedded SmolLM2-135M (default)"


def model_choices(folder: Path = Path("models")) -> list[tuple[str, str]]:
    """The default, the other embedded models whose package is installed, then the GGUF files in ``folder``."""
    import importlib.util

    from ..model_source import DEFAULT_MODEL, EMBEDDED_MODELS

    others = [
        (f"embedded {m.name}", m.name)
        for m in EMBEDDED_MODELS.values()
        if m is not DEFAULT_MODEL and importlib.util.find_spec(m.package) is not None
    ]
    files = sorted(folder.glob("*.gguf")) if folder.is_dir() else []
    return [(EMBEDDED, ""), *others] + [(p.name, str(p)) for p in files]


class SettingsScreen(ModalScreen[dict[str, Any] | None]):
    """Model file, few-shot examples, sampling and hardware settings; returns them, or None on cancel."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, current: dict[str, Any]) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        c = self.current
        choices = model_choices()
        if c["model"] and c["model"] not in [v for _, v in choices]:
            choices.append((Path(c["model"]).name, c["model"]))
        with Vertical(id="dialog"):
            yield Label("Model")
            yield Select(choices, value=c["model"] or "", allow_blank=False, id="model")
            yield Label(
                "Adapter: empty = default (bundled on the embedded model), none = bare model, or a .lora.gguf path"
            )
            yield Input(c.get("adapter") or "", id="adapter", placeholder="default")
            yield Label("Few-shot examples (0-10; empty = what the model records) and order")
            with Horizontal():
                yield Input(
                    "" if c["n_examples"] is None else str(c["n_examples"]),
                    id="n_examples",
                    type="integer",
                    placeholder="auto",
                )
                yield Select(
                    [("interleave zh/en", "interleave"), ("file order", "file")],
                    value=c["example_order"],
                    allow_blank=False,
                    id="order",
                )
            yield Label("Temperature, threads, GPU layers, min confidence (0-1; empty: the adapter's bar, 0: off)")
            with Horizontal():
                yield Input(str(c["temperature"]), id="temperature", type="number")
                yield Input(str(c["threads"] or ""), id="threads", type="integer", placeholder="auto")
                yield Input(str(c["gpu_layers"]), id="gpu_layers", type="integer")
                yield Input(
                    "" if c.get("min_confidence") is None else str(c["min_confidence"]),
                    id="min_confidence",
                    type="number",
                    placeholder="adapter's",
                )
            with Horizontal():
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        try:
            values = {
                "model": self.query_one("#model", Select).value or None,
                "adapter": self.query_one("#adapter", Input).value.strip() or None,
                "n_examples": _n_examples(self.query_one("#n_examples", Input).value),
                "example_order": self.query_one("#order", Select).value,
                "temperature": float(self.query_one("#temperature", Input).value or 0),
                "threads": int(self.query_one("#threads", Input).value)
                if self.query_one("#threads", Input).value
                else None,
                "gpu_layers": int(self.query_one("#gpu_layers", Input).value or 0),
                "min_confidence": _min_confidence(self.query_one("#min_confidence", Input).value),
            }
        except ValueError as exc:
            self.notify(f"invalid setting: {exc}", severity="error")
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PathScreen(ModalScreen[str | None]):
    """Ask for a file path (save or load a conversation JSON)."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, title: str, default: str) -> None:
        super().__init__()
        self.title_text = title
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text)
            yield Input(self.default, id="path")
            with Horizontal():
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.query_one("#path", Input).value.strip() or None if event.button.id == "ok" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _n_examples(value: str) -> int | None:
    """Empty: what the model or adapter records; else 0-10."""
    return max(0, min(10, int(value))) if value.strip() else None


def _min_confidence(text: str) -> float | None:
    if not text.strip():
        return None
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"min confidence {value} is not in 0-1")
    return value
