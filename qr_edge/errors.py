"""Typed errors: every failure a caller can fix has its own class and a message that says how."""

from __future__ import annotations


class QrEdgeError(Exception):
    """Base class for every error qr-edge raises on bad input or a missing resource."""

    exit_code: int = 2


class InvalidConversationError(QrEdgeError, ValueError):
    """The messages are not a conversation qr-edge can rewrite (empty, bad role, last turn not user...)."""


class ContextOverflowError(QrEdgeError):
    """Even with every old turn dropped, the prompt does not fit the model's context window."""


class CancelledError(QrEdgeError):
    """A model call stopped between forward passes because its caller gave up (a service request past its time)."""


class ModelNotFoundError(QrEdgeError, FileNotFoundError):
    """The model file, environment variable or hub reference points at nothing loadable."""

    exit_code = 3


class ModelLoadError(QrEdgeError):
    """llama.cpp could not load the file (not a GGUF, corrupt, unsupported architecture)."""

    exit_code = 3


class AdapterError(QrEdgeError):
    """An adapter file is missing, corrupt, not a LoRA, made for another base, or not loaded under that name."""

    exit_code = 3


class InputFileError(QrEdgeError):
    """A conversation, batch or examples file could not be read or parsed."""


class MissingExtraError(QrEdgeError):
    """An optional feature needs an extra that is not installed."""

    exit_code = 4
