"""The two-stage gate for callers that can send only the user's queries.

Stage 1: does the query need a rewrite at all? Stage 2: does it depend on an assistant answer that
was not sent? A query that needs a rewrite *and* depends on the missing answer is kept as it is:
guessing what "the second one" was is how a small model hallucinates.
"""

from __future__ import annotations

from collections.abc import Sequence

from .engine import LlamaEngine
from .errors import ContextOverflowError
from .messages import Message
from .prompt import GateQuestion, PromptBuilder, fit_to_budget
from .result import GateVerdict, Timings


class QueryGate:
    """Both stages are yes/no prompts on the rewriter's own model, answered from next-token logits."""

    def __init__(
        self,
        engine: LlamaEngine,
        builder: PromptBuilder,
        need_threshold: float = 0.5,
        depend_threshold: float = 0.5,
        adapter: str | None = None,
    ) -> None:
        self.engine = engine
        self.builder = builder
        self.adapter = adapter
        self.need_threshold = need_threshold
        self.depend_threshold = depend_threshold

    def probability(self, messages: Sequence[Message], question: GateQuestion) -> tuple[float, Timings]:
        """P(yes) for one question, fitted to the context as training fits it (calibration reads it too)."""
        fitted = fit_to_budget(
            messages,
            lambda m: self.builder.gate_prompt(m, question),
            self.engine.tokenize,
            self.engine.n_ctx - 1,
            max_token_chars=self.engine.max_token_chars,
        )
        if fitted is None:
            raise ContextOverflowError(f"the query alone does not fit the context of {self.engine.n_ctx} tokens")
        _, prompt, tokens = fitted
        return self.engine.yes_probability(prompt, adapter=self.adapter, tokens=tokens)

    def decide(self, messages: Sequence[Message]) -> tuple[GateVerdict, Timings]:
        timings = Timings()
        p_need, t = self.probability(messages, GateQuestion.NEEDS_REWRITE)
        timings.add(t)
        verdict = GateVerdict(needs_rewrite=p_need >= self.need_threshold, needs_rewrite_p=round(p_need, 4))
        if verdict.needs_rewrite:
            p_dep, t = self.probability(messages, GateQuestion.DEPENDS_ON_ANSWER)
            timings.add(t)
            verdict.depends_on_answer = p_dep >= self.depend_threshold
            verdict.depends_on_answer_p = round(p_dep, 4)
        return verdict, timings
