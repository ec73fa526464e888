"""Rewriter: the public entry point. messages -> prompt -> engine -> guard -> result."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from .engine import LlamaEngine
from .errors import ContextOverflowError
from .examples import FewShotExample, load_examples, select_examples
from .gate import QueryGate
from .guard import LeakageGuard
from .messages import Message, MessagesLike, messages_from_queries, parse_messages
from .model_source import resolve_model
from .prompt import MAX_HISTORY_TURNS, PROMPT_FORMAT_VERSION, PromptBuilder, RenderedPrompt, fit_to_budget
from .result import Decision, GateVerdict, RewriteResult, Timings

#: GGUF metadata keys qr-edge's converter writes; read here to run a model the way it was trained.
META_PROMPT_VERSION = "qr_edge.prompt_format_version"
META_N_EXAMPLES = "qr_edge.n_examples"
DEFAULT_N_EXAMPLES = 4


class PromptFormatWarning(UserWarning):
    """The model was fine-tuned for another prompt format version than this runtime builds."""


class Rewriter:
    """Rewrites the last user query of a conversation into a standalone query, or keeps it.

    One instance holds one model in memory and may be shared by several threads (calls are serialised).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        hf_file: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        examples: Sequence[FewShotExample] | str | Path | None = None,
        n_examples: int | None = None,
        example_order: str = "interleave",
        temperature: float = 0.0,
        max_history_turns: int = MAX_HISTORY_TURNS,
        guard: LeakageGuard | None = None,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.model_path = resolve_model(model, hf_file)
        self.engine = LlamaEngine(
            self.model_path, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers, seed=seed, verbose=verbose
        )
        meta = self.engine.metadata
        trained_version = meta.get(META_PROMPT_VERSION)
        if trained_version and trained_version != PROMPT_FORMAT_VERSION:
            warnings.warn(
                f"{self.engine.name} was fine-tuned for prompt format {trained_version}, this runtime builds {PROMPT_FORMAT_VERSION}",
                PromptFormatWarning,
                stacklevel=2,
            )
        if n_examples is None:
            n_examples = int(meta.get(META_N_EXAMPLES, DEFAULT_N_EXAMPLES))
        pool = list(examples) if isinstance(examples, Sequence) and not isinstance(examples, str) else load_examples(examples)
        self.examples = select_examples(pool, n_examples, example_order)
        self.builder = PromptBuilder(self.engine.chat_template, self.examples)
        self.guard = guard or LeakageGuard(self.examples)
        self.gate = QueryGate(self.engine, self.builder)
        self.temperature = temperature
        self.max_history_turns = max_history_turns

    # -- prompt ----------------------------------------------------------------------------------
    def _fit(self, messages: list[Message]) -> tuple[list[Message], RenderedPrompt, list[int], int]:
        """Kept messages, prompt, its tokens and the output budget, fitted to the context window."""
        max_tokens = min(256, 2 * len(self.engine.token_ids(messages[-1].content)) + 48)
        budget = self.engine.n_ctx - max_tokens
        fitted = fit_to_budget(messages, self.builder.rewrite_prompt, self.engine.tokenize, budget, self.max_history_turns)
        if fitted is None:
            raise ContextOverflowError(
                f"the query alone does not fit the model's context of {self.engine.n_ctx} tokens; "
                "shorten it, use fewer examples, or raise n_ctx"
            )
        return (*fitted, max_tokens)

    def render_prompt(self, messages: MessagesLike) -> str:
        """The exact text the model receives for ``messages`` (chat template + XML), after fitting."""
        return self._fit(parse_messages(messages))[1].text

    # -- rewrite ---------------------------------------------------------------------------------
    def rewrite(self, messages: MessagesLike) -> RewriteResult:
        """Rewrite the last user message of a full conversation (user and assistant turns)."""
        return self._rewrite(parse_messages(messages), time.perf_counter(), Timings(), None)

    def rewrite_queries(self, queries: Sequence[str]) -> RewriteResult:
        """Legacy input, user queries only: the two-stage gate runs first."""
        start = time.perf_counter()
        messages = messages_from_queries(queries)
        if len(messages) == 1:
            return self._finish(messages[0].content, Decision.NO_HISTORY, "", start, Timings(), None)
        verdict, timings = self.gate.decide(messages)
        if not verdict.needs_rewrite:
            return self._finish(messages[-1].content, Decision.UNCHANGED, "gate: no rewrite needed", start, timings, verdict)
        if verdict.depends_on_answer:
            reason = "gate: the query depends on an assistant answer that was not given"
            return self._finish(messages[-1].content, Decision.SKIPPED_MISSING_CONTEXT, reason, start, timings, verdict)
        return self._rewrite(messages, start, timings, verdict)

    def _rewrite(self, messages: list[Message], start: float, timings: Timings, verdict: GateVerdict | None) -> RewriteResult:
        query = messages[-1].content
        if not any(m.role in ("user", "assistant") for m in messages[:-1]):
            return self._finish(query, Decision.NO_HISTORY, "", start, timings, verdict)
        kept, prompt, tokens, max_tokens = self._fit(messages)
        generation = self.engine.generate(prompt, max_tokens=max_tokens, temperature=self.temperature, tokens=tokens)
        timings.add(generation.timings)
        output = self.builder.parse_output(generation.text)
        verdict_g = self.guard.check(output, kept)
        rewrite = output if verdict_g.decision == Decision.REWRITTEN else query
        return RewriteResult(
            query=query,
            rewrite=rewrite,
            changed=rewrite != query,
            decision=verdict_g.decision,
            reason=verdict_g.reason,
            raw_output=generation.text,
            gate=verdict,
            timings=self._total(timings, start),
        )

    @staticmethod
    def _total(timings: Timings, start: float) -> Timings:
        timings.total_ms = round((time.perf_counter() - start) * 1000, 2)
        timings.prompt_ms = round(timings.prompt_ms, 2)
        timings.generation_ms = round(timings.generation_ms, 2)
        return timings

    def _finish(
        self, query: str, decision: Decision, reason: str, start: float, timings: Timings, verdict: GateVerdict | None
    ) -> RewriteResult:
        """A result that keeps the query, without (further) model calls."""
        return RewriteResult(
            query=query, rewrite=query, changed=False, decision=decision, reason=reason,
            gate=verdict, timings=self._total(timings, start),
        )
