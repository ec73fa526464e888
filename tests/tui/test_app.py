"""The TUI driven by real key presses (Textual Pilot) against the real embedded model."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("textual")

from qr_edge.tui.app import RewriteApp  # noqa: E402
from qr_edge.tui.widgets import BADGES, TurnView  # noqa: E402


async def wait_for(pilot, condition, timeout: float = 120.0) -> None:
    """Poll instead of a single pause: workers finish when llama.cpp does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.1)


async def type_turn(pilot, text: str) -> None:
    await pilot.click("#input")
    await pilot.press(*text)
    await pilot.press("enter")


def result_text(app: RewriteApp, index: int) -> str:
    view = list(app.query(TurnView))[index]
    return str(view.query_one(".result").render())


async def test_two_turn_conversation_gets_a_badge_and_a_rewrite(rewriter):
    app = RewriteApp(rewriter=rewriter)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_turn(pilot, "Which is faster, NumPy or loops?")
        await pilot.press("f2")
        assert str(app.query_one("#role").render()) == "assistant"
        await type_turn(pilot, "NumPy is usually faster.")
        await pilot.press("f2")
        await type_turn(pilot, "Why is it faster?")
        await wait_for(pilot, lambda: app.session.turns[-1].result is not None and "ms" in result_text(app, 2))
        first, last = app.session.turns[0], app.session.turns[-1]
        assert [t.role for t in app.session.turns] == ["user", "assistant", "user"]
        assert BADGES[first.result.decision][0] == "no history"
        label = BADGES[last.result.decision][0]
        assert f"[{label}]" in result_text(app, 2) and last.result.rewrite in result_text(app, 2)
        assert "reused" in result_text(app, 2)
        await pilot.press("f4")
        assert app.query_one("#inspector").has_class("visible")
        assert "<current_query>Why is it faster?</current_query>" in str(app.query_one("#inspector-text").render())


async def test_legacy_mode_shows_the_gate_result_side_by_side(rewriter):
    app = RewriteApp(rewriter=rewriter)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        assert app.legacy and "legacy" in str(app.query_one("#status").render())
        await type_turn(pilot, "Recommend three laptops.")
        await type_turn(pilot, "How heavy is the second one?")
        await wait_for(
            pilot, lambda: app.session.turns[-1].legacy is not None and "queries only" in result_text(app, 1)
        )
        text = result_text(app, 1)
        assert "full history:" in text and "queries only:" in text
        assert app.session.turns[-1].legacy.gate is not None


async def test_save_clear_and_load_a_conversation(rewriter, tmp_path):
    path = tmp_path / "conv.json"
    app = RewriteApp(rewriter=rewriter)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_turn(pilot, "Hello there")
        await pilot.press("f2")
        await type_turn(pilot, "Hi! How can I help?")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen.query("#path"))
        app.screen.query_one("#path").value = str(path)
        await pilot.press("enter")
        await wait_for(pilot, path.exists, timeout=20)
        assert json.loads(path.read_text())["messages"][1] == {"role": "assistant", "content": "Hi! How can I help?"}
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert not app.session.turns and not list(app.query(TurnView))
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: app.screen.query("#path"))
        app.screen.query_one("#path").value = str(path)
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.query(TurnView)) == 2)
        assert [t.content for t in app.session.turns] == ["Hello there", "Hi! How can I help?"]


async def test_save_to_a_folder_and_clearing_during_answer_mode_are_not_crashes(rewriter, tmp_path):
    app = RewriteApp(rewriter=rewriter)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_turn(pilot, "Hello there")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen.query("#path"))
        app.screen.query_one("#path").value = str(tmp_path)
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("is a folder" in n.message for n in app._notifications))
        assert list(tmp_path.iterdir()) == []
        await pilot.press("f6")  # answer mode: the model answers each user turn
        await type_turn(pilot, "What is the capital of France?")
        await pilot.press("ctrl+l")  # cleared while that turn is being rewritten
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.is_running and not app.session.turns


async def test_bad_files_and_missing_model_are_notifications_not_crashes(tmp_path):
    app = RewriteApp({"model": str(tmp_path / "missing.gguf")})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: any("not found" in n.message for n in app._notifications))
        assert app.rewriter is None and "no model" in str(app.query_one("#status").render())
        await type_turn(pilot, "hello")
        await type_turn(pilot, "and then?")
        await wait_for(pilot, lambda: "error" in result_text(app, 1))
        bad = tmp_path / "bad.json"
        bad.write_text("{nope")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: app.screen.query("#path"))
        app.screen.query_one("#path").value = str(bad)
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("not valid JSON" in n.message for n in app._notifications))


def test_main_screen_snapshot(snap_compare, rewriter):
    """80x24, after a first turn (no history: no model call, so nothing varies between runs)."""

    async def first_turn(pilot):
        await pilot.press(*"Hello there", "enter")  # the input has focus from the start
        await pilot.pause(0.2)

    assert snap_compare(RewriteApp(rewriter=rewriter), terminal_size=(80, 24), run_before=first_turn)


async def test_min_confidence_is_a_setting_and_keeps_an_unsure_rewrite():
    """F5 -> min confidence 1.0 -> Apply: the model reloads with the bar, and a rewrite (never that sure) keeps
    the query with its own badge; an out-of-range bar is a notification, the dialog stays open."""
    from textual.widgets import Button, Input

    from qr_edge.result import Decision

    app = RewriteApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.rewriter is not None)
        await pilot.press("f5")
        field = app.screen.query_one("#min_confidence", Input)
        field.value = "2"
        app.screen.query_one("#apply", Button).press()  # the dialog may be taller than the test terminal
        await pilot.pause(0.2)
        assert app.screen.query_one("#min_confidence", Input) is field  # still open: 2 is not in 0-1
        field.value = "1.0"
        app.screen.query_one("#apply", Button).press()
        await wait_for(pilot, lambda: app.rewriter is not None and app.rewriter.min_confidence == 1.0)
        assert app.settings["min_confidence"] == 1.0
        await type_turn(pilot, "Which is faster, NumPy or loops?")
        await pilot.press("f2")
        await type_turn(pilot, "NumPy is usually faster, its loops run in C.")
        await pilot.press("f2")
        await type_turn(pilot, "Why is it faster?")
        await wait_for(pilot, lambda: app.session.turns[-1].result is not None and "ms" in result_text(app, 2))
        last = app.session.turns[-1].result
        assert last.decision == Decision.KEPT_LOW_CONFIDENCE and "[kept: low confidence]" in result_text(app, 2)
