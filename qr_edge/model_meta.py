"""The one home of model metadata: GGUF keys qr-edge writes and reads, prompt format versions, defaults.

Runtime, training and export all read these, so a model is run exactly the way it was trained.
"""

from __future__ import annotations

#: Prompt format "1": the full task text plus few-shot examples (for base models and the first demo).
FULL_PROMPT_FORMAT = "1"
#: Prompt format "2": a one-line task, no examples, long assistant turns clipped (for fine-tuned adapters).
COMPACT_PROMPT_FORMAT = "2"
#: Prompt format "4": format 2 made append-only (for fine-tuned adapters): the conversation follows the template's
#: turn switch, a ``user:``/``assistant:`` line per turn with the current query last, every assistant turn clipped
#: alike, so the prompt of turn n is the prefix of turn n+1's up to the closing ``</history><rewritten_query>``,
#: and a follow-up evaluates little more than its new turns. (Format "3", its first trial, kept the XML turn tags
#: and the turn switch in the closing part: 16 tokens more a turn; it is gone.)
APPEND_PROMPT_FORMAT = "4"
PROMPT_FORMATS = (FULL_PROMPT_FORMAT, COMPACT_PROMPT_FORMAT, APPEND_PROMPT_FORMAT)
#: What ``qr-edge train`` teaches unless told otherwise: format 2, the bundled adapter's. Format 4 continued from it
#: (v10: 4,824 examples, then 3,224 more) stayed 0.3 BLEU below it on dev and 2.9 held out (docs/default-adapter.md).
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
