# Two set-up commands (see README): `make demo` and `make test`. Both build .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test clean

$(VENV)/.core: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q -e .
	touch $@

# torch is pinned to the CPU build that pip finds locally; a bare `torch` would pull a multi-GB CUDA build.
$(VENV)/.all: $(VENV)/.core
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[convert,tui,eval,distill,server,dev]'
	touch $@

demo: $(VENV)/.core
	$(VENV)/bin/qr-edge rewrite examples/conversation.json

test: $(VENV)/.all
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
