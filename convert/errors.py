"""Converter errors: typed like the runtime's, so the CLI prints one line and exits non-zero."""

from __future__ import annotations

from qr_edge.errors import QrEdgeError


class ConvertError(QrEdgeError):
    """The export could not be done (unsupported architecture, unreadable input, disk full...)."""


class AdapterMismatchError(ConvertError):
    """The adapter was not trained for this base model (architecture, sizes or target modules differ)."""


class VerificationError(ConvertError):
    """The exported model does not reproduce the merged model: a conversion bug, not quantization loss."""

    exit_code = 5
