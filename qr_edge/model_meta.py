"""The one home of model metadata: GGUF keys qr-edge writes and reads, prompt format versions, defaults.

Runtime, training and export all read these, so a model is run exactly the way it was trained.
"""

from __future__ import annotations

#: Prompt format "1": the full task text plus few-shot examples (for base models and the first demo).
FULL_PROMPT_FORMAT = "1"
#: Prompt format "2": a one-line task, no examples, long assistant turns clipped (for fine-tuned adapters).
COMPACT_PROMPT_FORMAT = "2"
#: Prompt format "3": format 2 made append-only (for fine-tuned adapters): the current query is the last
#: ``<user>`` turn of ``<history>`` and every assistant turn is clipped alike, so the prompt of turn n is the
#: prefix of turn n+1's up to a closing part (``</history>``, the template's turn switch, ``<rewritten_query>``),
#: and a follow-up evaluates little more than its new turns.
APPEND_PROMPT_FORMAT = "3"
PROMPT_FORMATS = (FULL_PROMPT_FORMAT, COMPACT_PROMPT_FORMAT, APPEND_PROMPT_FORMAT)
#: What ``qr-edge train`` teaches unless told otherwise: format 2, the bundled adapter's. Format 3 continued from it
#: for 1,600 examples scored 0.5 BLEU below it on dev (docs/default-adapter.md), so it is not the default yet.
TRAIN_PROMPT_FORMAT = COMPACT_PROMPT_FORMAT
#: What a model without qr-edge metadata is shown.
PROMPT_FORMAT_VERSION = FULL_PROMPT_FORMAT

#: Few-shot examples for a model that records none (a base model).
DEFAULT_N_EXAMPLES = 4
#: History turns kept before any token budget applies (runtime and training alike).
MAX_HISTORY_TURNS = 12

# GGUF metadata keys (model files and adapter files alike).
META_PROMPT_VERSION = "qr_edge.prompt_format_version"
META_N_EXAMPLES = "qr_edge.n_examples"
META_BASE_NAME = "qr_edge.base.name"
META_BASE_ARCH = "qr_edge.base.architecture"
META_BASE_SHA256 = "qr_edge.base.sha256"
META_ADAPTER_NAME = "qr_edge.adapter.name"
META_ADAPTER_METHOD = "qr_edge.adapter.method"
META_ADAPTER_SHA256 = "qr_edge.adapter.sha256"
META_DATASET_SHA256 = "qr_edge.train.dataset_sha256"
#: P(yes) above which the gate's answer counts as yes, chosen on dev for each adapter (scripts/calibrate_gate.py,
#: a step of ``make adapter``) and recorded in its GGUF; 0.5 where none is recorded.
META_GATE_NEED_THRESHOLD = "qr_edge.gate.need_threshold"
META_GATE_DEPEND_THRESHOLD = "qr_edge.gate.depend_threshold"
DEFAULT_GATE_THRESHOLD = 0.5
#: The map from a rewrite's confidence scores to P(right), fitted on dev for each adapter
#: (scripts/calibrate_confidence.py, a step of ``make adapter``): JSON, see ``confidence.Calibration``.
META_CONFIDENCE_CALIBRATION = "qr_edge.confidence.calibration"
#: qr_edge.json keys (written by training or calibration) -> the GGUF keys an export records them under.
ADAPTER_GATE_KEYS = {
    "gate_need_threshold": META_GATE_NEED_THRESHOLD,
    "gate_depend_threshold": META_GATE_DEPEND_THRESHOLD,
}


def output_budget(query_tokens: int) -> int:
    """Tokens a rewrite of a query of ``query_tokens`` tokens may take (closing tag included)."""
    return min(256, 2 * query_tokens + 48)
