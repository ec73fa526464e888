# Two set-up commands (see README): `make demo` and `make test`. Both build .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
QR := $(VENV)/bin/qr-edge
DEMO_ADAPTER := models/smollm2-rewrite-dora
DEMO_MODEL := models/smollm2-rewrite.Q8_0.gguf

.PHONY: demo test clean

$(VENV)/.core: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q -e .
	touch $@

# torch is pinned to the CPU build that pip finds locally; a bare `torch` would pull a multi-GB CUDA build.
$(VENV)/.convert: $(VENV)/.core
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[convert]'
	touch $@

$(VENV)/.all: $(VENV)/.convert
	$(PIP) install -q -e '.[convert,tui,eval,distill,server,dev]'
	touch $@

# First run: merge the committed DoRA adapter into the embedded SmolLM2 and quantize it (cached after).
$(DEMO_MODEL): $(VENV)/.convert $(DEMO_ADAPTER)/adapter_model.safetensors
	$(QR) convert --base "$$($(PY) -c 'from qr_edge.model_source import embedded_model_path as e; print(e())')" \
		--adapter $(DEMO_ADAPTER) --out $@ --quant Q8_0 --force

demo: $(DEMO_MODEL)
	$(QR) rewrite examples/conversation.json --model $(DEMO_MODEL)

test: $(VENV)/.all
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis $(DEMO_MODEL)
