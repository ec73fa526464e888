"""Prompt-lookup drafting: a rewrite mostly copies the conversation, so the next tokens can be guessed from it.

The last few tokens (prompt + output) are searched for in the prompt; the tokens that followed their most
recent earlier occurrence are the draft. The model verifies a draft in one forward pass; with greedy
decoding the accepted output is exactly what token-by-token decoding gives.
"""

from __future__ import annotations

from collections.abc import Sequence


class PromptLookup:
    """Index of the prompt's n-grams (n = 1..max_ngram) -> the position right after their last occurrence."""

    def __init__(self, prompt: Sequence[int], max_ngram: int = 3, max_draft: int = 8) -> None:
        self.prompt = list(prompt)
        self.max_ngram = max_ngram
        self.max_draft = max_draft
        self._next: dict[tuple[int, ...], int] = {}
        for n in range(1, max_ngram + 1):
            for end in range(n, len(self.prompt)):  # the n-gram prompt[end-n:end] is followed by prompt[end]
                self._next[tuple(self.prompt[end - n : end])] = end

    def draft(self, context: Sequence[int], limit: int) -> list[int]:
        """Up to ``min(limit, max_draft)`` tokens that followed the longest matching tail of ``context``."""
        k = min(limit, self.max_draft)
        if k <= 0:
            return []
        for n in range(min(self.max_ngram, len(context)), 0, -1):
            start = self._next.get(tuple(context[-n:]))
            if start is not None:
                return self.prompt[start : start + k]
        return []
