"""Rewriter: the public entry point. messages -> prompt -> engine -> guard -> result."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .adapters import BUNDLED, BundledAdapter, PromptFormatWarning, check_adapter, gate_thresholds, prompt_spec
from .confidence import (
    QUERIES_BOTH_BELOW,
    Calibration,
    confidence_scores,
    read_calibration,
    search_queries,
    uncalibrated_confidence,
)
from .engine import LlamaEngine
from .errors import AdapterError, ContextOverflowError
from .examples import FewShotExample, load_examples, select_examples
from .gate import QueryGate
from .guard import LeakageGuard
from .messages import Message, MessagesLike, messages_from_queries, parse_messages
from .model_meta import MAX_HISTORY_TURNS, META_PROMPT_VERSION, PROMPT_FORMATS, output_budget
from .model_source import bundled_adapter_path, embedded_choice, embedded_merged_path, embedded_of, resolve_model
from .prompt import PromptBuilder, RenderedPrompt, fit_to_budget
from .result import Decision, GateVerdict, RewriteResult, Timings

__all__ = ["BUNDLED", "PromptFormatWarning", "Rewriter"]


DEFAULT_ADAPTER_NAME = "default"


@dataclass
class _Profile:
    """Everything that depends on the adapter a call runs under: its prompt, guard and gate."""

    adapter: str | None
    builder: PromptBuilder
    guard: LeakageGuard
    gate: QueryGate
    calibration: Calibration | None = None  # the adapter's confidence map; None: uncalibrated


class Rewriter:
    """Rewrites the last user query of a conversation into a standalone query, or keeps it.

    One instance holds one model in memory, with any number of GGUF LoRA adapters loaded on it and
    chosen per call; it may be shared by several threads (calls are serialised). Out of the box (the
    embedded model, the bundled adapter, no others) the adapter is merged into the run copy's weights,
    so calls for the bare base need ``Rewriter(adapter=None)``.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        adapter: str | os.PathLike[str] | None | BundledAdapter = BUNDLED,
        adapters: Mapping[str, str | os.PathLike[str]] | None = None,
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
        max_cache_bytes: int | None = None,
        min_confidence: float | None = None,
        queries_both_below: float = QUERIES_BOTH_BELOW,
        verbose: bool = False,
    ) -> None:
        if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence}")
        #: A rewrite whose confidence is below this keeps the query (``Decision.KEPT_LOW_CONFIDENCE``); None: the bar
        #: the adapter's confidence map records (chosen on dev; none for an uncalibrated adapter); 0: off.
        self.min_confidence = min_confidence
        #: A changed rewrite below this confidence is searched together with the query (``RewriteResult.queries``).
        self.queries_both_below = queries_both_below
        # Out of the box (the embedded model with the bundled adapter alone) the adapter runs merged into a
        # copy of the weights: the same model without llama.cpp's run-time LoRA products.
        named_model = None if hf_file else embedded_choice(model)
        bundled = bundled_adapter_path(named_model) if named_model else None
        out_of_the_box = named_model is not None and isinstance(adapter, BundledAdapter) and not adapters
        merged = embedded_merged_path(bundled, named_model) if out_of_the_box and bundled else None
        #: The GGUF file the engine runs (with the default adapter merged in, out of the box).
        self.model_path = merged or resolve_model(model, hf_file)
        if isinstance(adapter, BundledAdapter):
            # an embedded model named by its path (or whose merged copy could not be made) gets its adapter at run time
            owner = named_model if merged else embedded_of(self.model_path)
            adapter = bundled_adapter_path(owner) if owner else None
        self.engine = LlamaEngine(
            self.model_path,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_gpu_layers=n_gpu_layers,
            seed=seed,
            max_cache_bytes=max_cache_bytes,
            verbose=verbose,
        )
        named = {str(k): str(v) for k, v in (adapters or {}).items()}
        if adapter is not None:
            if DEFAULT_ADAPTER_NAME in named:
                raise AdapterError(f"adapter name {DEFAULT_ADAPTER_NAME!r} is taken by adapter=; pick another name")
            named = {DEFAULT_ADAPTER_NAME: str(adapter), **named}
        self._pool = (
            list(examples)
            if isinstance(examples, Sequence) and not isinstance(examples, str)
            else load_examples(examples)
        )
        self._custom_guard = guard
        self._n_examples = n_examples
        self._example_order = example_order
        base_meta = self.engine.metadata
        # the bare base is not on a model with the adapter merged into its weights
        self._profiles: dict[str | None, _Profile] = (
            {} if merged else {None: self._profile(None, base_meta, self.engine.name)}
        )
        for name, path in named.items():
            loaded = (self.engine.add_merged_adapter if merged else self.engine.load_adapter)(name, path)
            check_adapter(loaded.metadata, base_meta, path)
            self._profiles[name] = self._profile(name, loaded.metadata, path)
        #: The adapter a call uses when it names none: ``adapter=``, else the only one of ``adapters=``, else none.
        self.default_adapter: str | None = next(iter(named)) if len(named) == 1 or adapter is not None else None
        self.temperature = temperature
        self.max_history_turns = max_history_turns
        self.engine.warm(self.default_adapter)

    def _profile(self, name: str | None, metadata: dict[str, str], source: str) -> _Profile:
        fmt = metadata.get(META_PROMPT_VERSION)
        if name is None and fmt and fmt not in PROMPT_FORMATS:
            warnings.warn(
                f"{source} was fine-tuned for prompt format {fmt}, this runtime builds {', '.join(PROMPT_FORMATS)}",
                PromptFormatWarning,
                stacklevel=3,
            )
            metadata = {k: v for k, v in metadata.items() if k != META_PROMPT_VERSION}
        spec = prompt_spec(metadata, source, self._n_examples)
        examples = select_examples(self._pool, spec.n_examples, self._example_order)
        builder = PromptBuilder(self.engine.chat_template, examples, fmt=spec.fmt)
        guard = self._custom_guard or LeakageGuard(builder.examples)
        need, depend = gate_thresholds(metadata)
        gate = QueryGate(self.engine, builder, need_threshold=need, depend_threshold=depend, adapter=name)
        return _Profile(adapter=name, builder=builder, guard=guard, gate=gate, calibration=read_calibration(metadata))

    # -- which adapter ---------------------------------------------------------------------------
    @property
    def adapter_names(self) -> list[str]:
        return [name for name in self._profiles if name is not None]

    def require_adapter(self, adapter: str | None | BundledAdapter) -> None:
        """Raise ``AdapterError`` when a call cannot run under ``adapter`` (not loaded, or the bare base of a model
        with an adapter merged in): a service checks this before a request waits for a busy model."""
        self._select(adapter)

    def _select(self, adapter: str | None | BundledAdapter) -> _Profile:
        name = self.default_adapter if isinstance(adapter, BundledAdapter) else adapter
        if name is None:
            self.engine.check_not_merged(None)  # a model with the adapter merged in has no bare-base profile
        if name not in self._profiles:
            raise AdapterError(
                f"no adapter named {name!r} is loaded; loaded: {', '.join(self.adapter_names) or 'none'}"
            )
        return self._profiles[name]

    @property
    def builder(self) -> PromptBuilder:
        """The prompt builder of the default adapter (what ``render_prompt`` shows)."""
        return self._select(BUNDLED).builder

    @property
    def examples(self) -> list[FewShotExample]:
        return self.builder.examples

    @property
    def guard(self) -> LeakageGuard:
        return self._select(BUNDLED).guard

    @property
    def gate(self) -> QueryGate:
        """The two-stage gate of the default adapter (its thresholds can be tuned here)."""
        return self._select(BUNDLED).gate

    # -- prompt ----------------------------------------------------------------------------------
    def fit_prompt(
        self, messages: MessagesLike, adapter: str | None | BundledAdapter = BUNDLED
    ) -> tuple[list[Message], RenderedPrompt, list[int], int]:
        """Kept messages, prompt, its tokens and the output budget for ``messages``, fitted to the context."""
        return self._fit(parse_messages(messages), self._select(adapter))

    def _fit(self, messages: list[Message], profile: _Profile) -> tuple[list[Message], RenderedPrompt, list[int], int]:
        per_token = self.engine.max_token_chars
        if len(messages[-1].content) > self.engine.n_ctx * per_token:  # refused before tokenizing megabytes
            fitted = None
        else:
            max_tokens = output_budget(len(self.engine.token_ids(messages[-1].content)))
            budget = self.engine.n_ctx - max_tokens
            fitted = fit_to_budget(
                messages,
                profile.builder.rewrite_prompt,
                self.engine.tokenize,
                budget,
                self.max_history_turns,
                per_token,
            )
        if fitted is None:
            raise ContextOverflowError(
                f"the query alone does not fit the model's context of {self.engine.n_ctx} tokens; "
                "shorten it, use fewer examples, or raise n_ctx"
            )
        return (*fitted, max_tokens)

    def render_prompt(self, messages: MessagesLike, adapter: str | None | BundledAdapter = BUNDLED) -> str:
        """The exact text the model receives for ``messages`` (chat template + XML), after fitting."""
        return self._fit(parse_messages(messages), self._select(adapter))[1].text

    # -- rewrite ---------------------------------------------------------------------------------
    def rewrite(self, messages: MessagesLike, adapter: str | None | BundledAdapter = BUNDLED) -> RewriteResult:
        """Rewrite the last user message of a full conversation (user and assistant turns).

        ``adapter``: a loaded adapter's name, None for the bare base; by default the rewriter's default adapter.
        """
        profile = self._select(adapter)
        return self._rewrite(parse_messages(messages), profile, time.perf_counter(), Timings(), None)

    def rewrite_queries(self, queries: Sequence[str], adapter: str | None | BundledAdapter = BUNDLED) -> RewriteResult:
        """Legacy input, user queries only: the two-stage gate runs first."""
        profile = self._select(adapter)
        start = time.perf_counter()
        messages = messages_from_queries(queries)
        if len(messages) == 1:
            return self._finish(messages[0].content, Decision.NO_HISTORY, "", start, Timings(), None)
        verdict, timings = profile.gate.decide(messages)
        if not verdict.needs_rewrite:
            return self._finish(
                messages[-1].content, Decision.UNCHANGED, "gate: no rewrite needed", start, timings, verdict
            )
        if verdict.depends_on_answer:
            reason = "gate: the query depends on an assistant answer that was not given"
            return self._finish(messages[-1].content, Decision.SKIPPED_MISSING_CONTEXT, reason, start, timings, verdict)
        return self._rewrite(messages, profile, start, timings, verdict)

    def _rewrite(
        self, messages: list[Message], profile: _Profile, start: float, timings: Timings, verdict: GateVerdict | None
    ) -> RewriteResult:
        query = messages[-1].content
        if not any(m.role in ("user", "assistant") for m in messages[:-1]):
            return self._finish(query, Decision.NO_HISTORY, "", start, timings, verdict)
        kept, prompt, tokens, max_tokens = self._fit(messages, profile)
        generation = self.engine.generate(
            prompt, max_tokens=max_tokens, temperature=self.temperature, tokens=tokens, adapter=profile.adapter
        )
        timings.add(generation.timings)
        output = profile.builder.parse_output(generation.text)
        verdict_g = profile.guard.check(output, kept)
        rewrite = output if verdict_g.decision == Decision.REWRITTEN else query
        decision, reason = verdict_g.decision, verdict_g.reason
        scores = confidence_scores(generation.tokens, generation.logprobs, self.engine.token_ids(query))
        confidence = None if scores is None else (profile.calibration or uncalibrated_confidence)(scores)
        bar = self.min_confidence
        if bar is None and profile.calibration is not None:
            bar = profile.calibration.min_confidence
        held_back = None  # the rewrite the bar keeps from the result, still searched beside the query
        if bar is not None and confidence is not None and confidence < bar and rewrite != query:
            held_back, rewrite, decision = rewrite, query, Decision.KEPT_LOW_CONFIDENCE
            # rounded down, so that a confidence just under the bar never reads as equal to it
            reason = f"confidence {math.floor(confidence * 1000) / 1000:.3f} is below min_confidence {bar:g}"
        return RewriteResult(
            query=query,
            rewrite=rewrite,
            changed=rewrite != query,
            decision=decision,
            reason=reason,
            raw_output=generation.text,
            gate=verdict,
            confidence=confidence,
            confidence_scores=scores,
            queries=search_queries(query, rewrite, confidence, self.queries_both_below, held_back),
            timings=self._total(timings, start),
        )

    def _total(self, timings: Timings, start: float) -> Timings:
        timings.cache_bytes = self.engine.cache_bytes
        timings.total_ms = round((time.perf_counter() - start) * 1000, 2)
        timings.prompt_ms = round(timings.prompt_ms, 2)
        timings.generation_ms = round(timings.generation_ms, 2)
        return timings

    def _finish(
        self, query: str, decision: Decision, reason: str, start: float, timings: Timings, verdict: GateVerdict | None
    ) -> RewriteResult:
        """A result that keeps the query, without (further) model calls."""
        return RewriteResult(
            query=query,
            rewrite=query,
            changed=False,
            decision=decision,
            reason=reason,
            gate=verdict,
            queries=[query],
            timings=self._total(timings, start),
        )
