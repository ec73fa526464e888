"""Forward passes and greedy decoding on the engine's llama.cpp context: the part of ``LlamaEngine`` that turns a
prepared context into tokens (drafts from prompt lookup verified in one pass each, the split-invariance probe
that decides whether drafting is exact, and stopping between passes when a caller gives up).

``Decoding`` is a base class of ``LlamaEngine``, not used alone: it works on the engine's context and the
adapter the engine has active.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CancelledError
from .lookup import PromptLookup

if TYPE_CHECKING:  # pragma: no cover
    from llama_cpp import Llama

#: Tokens drafted per verify pass when drafting is on (a rewrite copies runs of this length and more).
DRAFT_TOKENS = 3
#: The probe text whose logits ``pass_rows`` compares across splits into passes.
_PROBE_TEXT = "<history>\n<user>Why is NumPy faster than Python lists?</user>\n</history>\n"


class DraftPolicy:
    """Whether the next pass should verify a prompt-lookup draft: only while drafts pay for themselves.

    A pass that verifies a draft of k tokens computes 1 + k positions. On a small model that costs about what one
    position does, so drafting is nearly free; on a 3B model on a laptop CPU it costs up to twice as much, and a
    draft nobody accepts (an unfamiliar domain, random weights) makes decoding slower than plain greedy. The policy
    keeps running means of what a drafting pass yields (1 + accepted tokens) and of what each kind of pass costs,
    and while drafting yields fewer tokens per millisecond than a plain pass it drafts only once per 2, 4, 8 ... 64
    passes, or per 4, 16, 64 when far from paying (to notice when drafts start to pay again). The first drafting
    pass is the first measure of acceptance (no optimistic prior to unlearn: on the 3B stand-in that prior and a
    back-off doubling from 1 cost 5.5% over plain greedy). One policy per adapter, kept across calls. Outputs never
    depend on it: drafting is exact (``Decoding.pass_rows``)."""

    MAX_SKIP = 63  # plain passes between two tries at most
    SMOOTHING = 0.3
    FAR = 1.25  # a drafting pass this many times what would pay is far from paying

    def __init__(self) -> None:
        self.accepted: float | None = None  # mean draft tokens accepted per drafting pass
        self.plain_ms: float | None = None
        self.draft_ms: float | None = None
        self.skip = 0  # passes left before the next draft is tried
        self.misses = 0  # drafting passes in a row that did not pay
        self.drafted = 0  # drafting passes verified so far (read by benchmarks and tests)

    def allow(self) -> bool:
        if self.skip > 0:
            self.skip -= 1
            return False
        return True

    def _mean(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.SMOOTHING * (new - old)

    def observe(self, drafted: bool, accepted: int, ms: float) -> None:
        """A pass's outcome: whether it verified a draft, how many draft tokens were accepted, what it took."""
        if not drafted:
            self.plain_ms = self._mean(self.plain_ms, ms)
            return
        self.drafted += 1
        self.accepted = mean = self._mean(self.accepted, float(accepted))
        self.draft_ms = self._mean(self.draft_ms, ms)
        if self.plain_ms is None:  # nothing to compare with yet: the next pass is a plain one, to measure
            self.skip = 1
            return
        worth = (1.0 + mean) * self.plain_ms  # what the drafting pass would have to cost to pay
        self.misses = 0 if worth >= self.draft_ms else self.misses + 1
        # far from paying (a 3B model's wide pass): back off fourfold; near it (timing noise on a small one): twofold
        base = 4 if self.draft_ms > self.FAR * worth else 2
        self.skip = min(base**self.misses - 1, self.MAX_SKIP)


def _logprob(row: np.ndarray, token: int) -> float:
    """log softmax(row)[token], in float64 (a vocabulary of 262k float32 terms sums with rounding error)."""
    top = float(row.max())
    return float(row[token]) - top - float(np.log(np.exp(row - top, dtype=np.float64).sum()))


class Decoding:
    """Passes and decoding over ``_llm``, for the adapter ``_active`` (set by the engine)."""

    _llm: Llama
    _llama_cpp: Any
    _active: str | None
    _lock: threading.RLock
    #: Prompt-lookup draft length for greedy decoding; None: ``DRAFT_TOKENS`` where drafting is exact
    #: (see ``pass_rows``), 0: one token per forward pass.
    draft_tokens: int | None = None

    def _init_decoding(self, draft_tokens: int | None) -> None:
        self.draft_tokens = draft_tokens
        self.draft_policies: dict[str | None, DraftPolicy] = {}  # per adapter, kept across calls
        self._invariance: dict[str | None, int] = {}  # probe results per adapter
        self._stop: threading.Event | None = None  # see ``stop_when``

    tokenize: Callable[[str], list[int]]  # the engine's: rendered text, special tokens parsed
    token_ids: Callable[[str], list[int]]  # the engine's: plain text

    @contextlib.contextmanager
    def stop_when(self, event: threading.Event) -> Iterator[None]:
        """Calls made in this block raise ``CancelledError`` between forward passes once ``event`` is set, so a
        caller that gave up (a timed-out service request) frees the model instead of holding it to the end."""
        with self._lock:
            previous, self._stop = self._stop, event
            try:
                yield
            finally:
                self._stop = previous

    def _check_stop(self) -> None:
        if self._stop is not None and self._stop.is_set():
            llm = self._llm
            llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)  # the context stays consistent for the next call
            raise CancelledError("the call was cancelled by its caller")

    def _logits(self, rows: int) -> np.ndarray:
        """The logits of the last ``rows`` outputs of the last decode (a view of llama.cpp's buffer, no copy)."""
        n_vocab = self._llm.n_vocab()
        ptr = self._llama_cpp.llama_get_logits_ith(self._llm.ctx, -rows)
        return np.ctypeslib.as_array(ptr, shape=(rows, n_vocab))

    def _decode(self, batch: list[int], outputs: int | None = None) -> np.ndarray:
        """Evaluate ``batch`` after the context in one pass; logits at its last ``outputs`` positions (None: all)."""
        llm = self._llm
        n_past = llm.n_tokens
        rows = len(batch) if outputs is None else outputs
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
        llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=False)
        flags = llm._batch.batch.logits
        for i in range(len(batch) - rows, len(batch)):
            flags[i] = True
        llm._ctx.decode(llm._batch)
        llm.input_ids[n_past : n_past + len(batch)] = batch
        llm.n_tokens = n_past + len(batch)
        return self._logits(rows)

    def _eval(self, tokens: list[int], outputs: int = 1) -> np.ndarray:
        """Evaluate ``tokens`` after the context in passes of at most ``n_batch``, none shorter than ``pass_rows``
        (and the last holding the ``outputs`` positions) when avoidable; the logits at the last ``outputs``."""
        n_batch, last = self._llm.n_batch, max(self.pass_rows, outputs)
        logits = np.empty((0, self._llm.n_vocab()), dtype=np.float32)
        start = 0
        while start < len(tokens):
            end = min(len(tokens), start + n_batch)
            if 0 < len(tokens) - end < last:
                end = len(tokens) - last  # leave the last pass enough positions
            if start:
                self._check_stop()  # a long prompt is several passes: a caller that gave up stops between them
            logits = self._decode(tokens[start:end], outputs=outputs if end == len(tokens) else 1)
            start = end
        return logits

    @property
    def pass_rows(self) -> int:
        """Positions every forward pass evaluates at least (1 or 2), so logits never depend on the split into passes.

        On CPU llama.cpp multiplies one position with vector kernels and two or more with matrix kernels
        (llamafile's sgemm); their sums differ in the last bits, and quantized activations turn that into
        logit differences of up to ~1 on the embedded model, so a draft verified in one pass could differ from
        token-by-token decoding. ``_split_invariance`` finds out which splits agree on this model and adapter.
        """
        return 2 if self._split_invariance() == 2 else 1

    @property
    def drafting(self) -> bool:
        """Whether greedy decoding verifies prompt-lookup drafts: only where that is exact (and not switched off)."""
        return self.draft_tokens != 0 and self._split_invariance() > 0

    @property
    def draft_length(self) -> int:
        """Tokens drafted per verify pass (0: no drafting)."""
        return (self.draft_tokens if self.draft_tokens is not None else DRAFT_TOKENS) if self.drafting else 0

    def _split_invariance(self) -> int:
        """1: logits agree bitwise however tokens are split into passes; 2: they agree for passes of two or more
        positions; 0: not even that (drafting stays off). Probed once per adapter: a short text is evaluated in
        one pass, in two-to-three-position passes and in one-position passes, and the logits compared."""
        found = self._invariance.get(self._active)
        if found is not None:
            return found
        llm = self._llm
        probe = self.tokenize(_PROBE_TEXT)[:14]
        head, body = probe[:4], probe[4:]

        def logits(splits: list[int]) -> np.ndarray:
            llm.n_tokens = 0
            self._decode(head, outputs=1)
            rows, start = [], 0
            for size in splits:
                rows.append(self._decode(body[start : start + size]).copy())
                start += size
            return np.concatenate(rows)

        whole = logits([len(body)])
        batched = np.array_equal(whole, logits([2, 3, 2, len(body) - 7]))
        single = batched and np.array_equal(whole, logits([1] * len(body)))
        llm.n_tokens = 0
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        found = self._invariance[self._active] = 1 if single else 2 if batched else 0
        return found

    def _greedy(
        self, tokens: list[int], reused: int, max_tokens: int, stop: str, opening: str = ""
    ) -> tuple[list[int], int, float, list[float]]:
        """Greedy decoding, prompt-lookup drafts verified in one pass each: (output, passes, first-token time,
        the log-probability of each output token before the stop tag).

        No per-token Python sampling: one argmax per verified position; the stop tag is looked for in the
        new bytes only. Rejected draft tokens are removed from the KV cache. The prompt's own pass already
        verifies a draft of the output's first tokens (``opening``: a rewrite mostly starts as the query
        does). Where one-position passes compute other logits than longer ones (``pass_rows`` 2), a pass
        without a draft still evaluates a second position (a guess), so the output never depends on
        whether drafts were found. ``passes`` counts the forward passes that produced output, the prompt's
        included (one per token without drafting). The log-probabilities come from the logits the passes computed
        anyway (a log-sum-exp per emitted token, no extra pass): what a result's confidence is made of.
        """
        llm, lc = self._llm, self._llama_cpp
        vocab = llm._model.vocab
        k = self.draft_length
        lookup = PromptLookup(tokens, max_draft=k) if k > 0 else None
        padded = self.pass_rows >= 2
        draft = (self.token_ids(opening)[:k] if k > 0 and opening else []) or ([tokens[-1]] if padded else [])
        llm.n_tokens = reused
        self._check_stop()
        # the prompt's pass verifies the draft too: logits at its last position and at each draft token
        rows = self._eval([*tokens[reused:], *draft], outputs=1 + len(draft))
        predicted = np.argmax(rows, axis=1)
        first_at = time.perf_counter()
        base = len(tokens) - 1  # the position of the pass's first row
        stop_b = stop.encode("utf-8")
        out: list[int] = []
        logprobs: list[float] = []
        starts: list[int] = []  # each output token's first byte in ``text``
        text = b""

        def emit(token: int, row: int) -> bool:
            """Append ``token`` (the argmax of ``rows[row]``) to the output; True when generation ends (end of
            generation, stop tag, budget)."""
            nonlocal text
            if lc.llama_vocab_is_eog(vocab, token):
                return True
            out.append(token)
            logprobs.append(_logprob(rows[row], token))
            starts.append(len(text))
            text += llm.detokenize([token])
            return stop_b in text[-len(stop_b) - 16 :] or len(out) >= max_tokens

        policy = self.draft_policies.setdefault(self._active, DraftPolicy())
        passes, drafted, pass_ms = 1, False, 0.0  # the prompt's pass is no measure of either kind of pass
        while True:
            accepted = 0
            while accepted < len(draft) and int(predicted[accepted]) == draft[accepted]:
                accepted += 1
            if passes > 1:
                policy.observe(drafted, accepted, pass_ms)
            if any(emit(token, i) for i, token in enumerate(draft[:accepted])):
                break
            llm.n_tokens = base + 1 + accepted  # drop the rejected draft tokens (removed from KV at the next decode)
            nxt = int(predicted[accepted])
            if emit(nxt, accepted):
                break
            draft = []
            if lookup is not None and policy.allow():
                tail = [*tokens[-lookup.max_ngram :], *out][-lookup.max_ngram :]
                draft = lookup.draft(tail, max_tokens - len(out) - 1)
            drafted = bool(draft)
            draft = draft or ([nxt] if padded else [])  # any token: its logits are not used unless it is right
            base = llm.n_tokens
            self._check_stop()
            started = time.perf_counter()
            rows = self._decode([nxt, *draft])
            pass_ms = (time.perf_counter() - started) * 1000
            predicted = np.argmax(rows, axis=1)
            passes += 1
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        cut = text.find(stop_b)
        content = len(out) if cut < 0 else sum(1 for start in starts if start < cut)
        return out, passes, first_at, logprobs[:content]

    def _sample(
        self, tokens: list[int], max_tokens: int, temperature: float, stop: str
    ) -> tuple[list[int], int, float]:
        """Sampled decoding through llama-cpp-python (only for chat replies; rewrites are greedy)."""
        llm = self._llm
        vocab = llm._model.vocab
        out: list[int] = []
        first_at = 0.0
        for token in llm.generate(tokens, temp=temperature, top_k=40, reset=True):
            first_at = first_at or time.perf_counter()
            if self._llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            out.append(token)
            if stop in self.detokenize(out) or len(out) >= max_tokens:
                break
        return out, len(out), first_at
