"""A few documents and a bag-of-words embedding, so retrieval in the framework tests is real and offline."""

from __future__ import annotations

import math
import re

DOCUMENTS = {
    "numpy": "NumPy arrays: NumPy is faster because NumPy runs vectorized loops in compiled C code.",
    "trains": "Why is it faster to take the train? It is faster because trains skip traffic jams.",
    "eiffel": "The Eiffel Tower in Paris is 330 metres tall.",
}
CONVERSATION = [
    {"role": "user", "content": "Which is faster for numeric code, NumPy or plain Python loops?"},
    {"role": "assistant", "content": "NumPy is usually much faster, because its loops run in compiled C."},
]
FOLLOW_UP = "Why is it faster?"
DIM = 256


def embed(text: str) -> list[float]:
    """Word counts hashed into DIM buckets (stable across processes), L2-normalised."""
    vec = [0.0] * DIM
    for word in re.findall(r"\w+", text.lower()):
        vec[sum(ord(c) * 31**i for i, c in enumerate(word)) % DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]
