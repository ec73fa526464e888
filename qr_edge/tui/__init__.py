"""``qr-edge tui``: an interactive multi-turn rewrite session (Textual; the ``tui`` extra)."""
