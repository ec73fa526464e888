"""What a rewrite returns: the decision, the text, and where the time went."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from .confidence import ConfidenceScores


class Decision(str, Enum):
    """Why the result's ``rewrite`` is what it is."""

    NO_HISTORY = "no_history"  # nothing to resolve against: the query is returned, the model is not called
    REWRITTEN = "rewritten"  # the model's rewrite passed the guard
    UNCHANGED = "unchanged"  # the model kept the query as it was
    REJECTED_LEAKAGE = "rejected_leakage"  # the output copied few-shot example content absent from the conversation
    REJECTED_UNSUPPORTED = "rejected_unsupported"  # the output added content found nowhere in the conversation
    REJECTED_ANSWER = "rejected_answer"  # the output answered the query instead of rewriting it
    REJECTED_INVALID = "rejected_invalid"  # empty, markup, or far too long
    SKIPPED_MISSING_CONTEXT = (
        "skipped_missing_context"  # legacy input: the query depends on an answer we were not given
    )
    KEPT_LOW_CONFIDENCE = "kept_low_confidence"  # the rewrite's confidence was below ``min_confidence``


class Timings(BaseModel):
    """Per-call cost. ``prompt_tokens = prompt_tokens_reused + prompt_tokens_evaluated`` summed over model calls."""

    prompt_tokens: int = 0
    prompt_tokens_reused: int = 0
    prompt_tokens_evaluated: int = 0
    generated_tokens: int = 0
    forward_passes: int = 0  # passes that produced output, the prompt's included; tokens / passes > 1 with drafting
    model_calls: int = 0
    prompt_ms: float = 0.0
    generation_ms: float = 0.0
    total_ms: float = 0.0
    cache_bytes: int = 0  # saved KV states held by the engine after the call (bounded by max_cache_bytes)

    def add(self, other: Timings) -> None:
        for name in (
            "prompt_tokens",
            "prompt_tokens_reused",
            "prompt_tokens_evaluated",
            "generated_tokens",
            "forward_passes",
            "model_calls",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.prompt_ms += other.prompt_ms
        self.generation_ms += other.generation_ms


class GateVerdict(BaseModel):
    """The two-stage gate's answers for a queries-only history (probabilities of "yes")."""

    needs_rewrite: bool
    needs_rewrite_p: float
    depends_on_answer: bool | None = None
    depends_on_answer_p: float | None = None


class RewriteResult(BaseModel):
    """The outcome of one rewrite. ``rewrite`` is always safe to use: on any rejection it is the query."""

    query: str
    rewrite: str
    changed: bool
    decision: Decision
    reason: str = ""
    raw_output: str | None = None
    gate: GateVerdict | None = None
    #: How sure the model was of its output, 0-1 (``confidence.py``); None where no model wrote the result.
    confidence: float | None = None
    confidence_scores: ConfidenceScores | None = None
    #: What to search with: the rewrite alone, or (a changed rewrite the model was not sure of) the rewrite and
    #: the query, or (``KEPT_LOW_CONFIDENCE``) the query and the rewrite the bar held back: retrieve with each and
    #: merge the rankings.
    queries: list[str] = Field(default_factory=list)
    timings: Timings = Field(default_factory=Timings)
    id: Any = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)
