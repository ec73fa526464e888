"""Packaging promises: a light import, and a README whose commands exist."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_loads_no_torch_and_no_llama_cpp():
    code = "import sys, qr_edge, qr_edge.cli; print(sorted(m for m in ('torch', 'transformers', 'peft', 'llama_cpp') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_readme_cli_examples_use_real_commands_and_options():
    readme = (ROOT / "README.md").read_text()
    lines = [line.split("#")[0] for line in re.findall(r"^(?:.*\| )?(qr-edge .*)$", readme, re.M)]
    assert lines
    for line in lines:
        words = line.split()
        command = words[1:3] if words[1] == "data" else words[1:2]  # `data` is a command group
        help_text = subprocess.run(
            [sys.executable, "-m", "qr_edge", *command, "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "300"},
        ).stdout
        assert "Usage" in help_text, f"unknown command in README: {line}"
        for option in (w for w in words if w.startswith("--")):
            assert option in help_text, f"README uses {option} which `qr-edge {command}` lacks"


def test_readme_set_up_commands_are_the_ci_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
