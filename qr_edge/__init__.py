"""qr-edge: offline multi-turn query rewriting on llama.cpp.

>>> from qr_edge import Rewriter
>>> Rewriter().rewrite([{"role": "user", "content": "..."}, ...]).rewrite
"""

from .errors import (
    AdapterError,
    ContextOverflowError,
    InputFileError,
    InvalidConversationError,
    MissingExtraError,
    ModelLoadError,
    ModelNotFoundError,
    QrEdgeError,
)
from .examples import FewShotExample, load_examples
from .guard import LeakageGuard
from .messages import Message, parse_messages
from .model_meta import PROMPT_FORMAT_VERSION
from .prompt import PromptBuilder
from .result import Decision, GateVerdict, RewriteResult, Timings
from .rewriter import BUNDLED, Rewriter

__version__ = "0.1.0"

__all__ = [
    "BUNDLED",
    "PROMPT_FORMAT_VERSION",
    "AdapterError",
    "ContextOverflowError",
    "Decision",
    "FewShotExample",
    "GateVerdict",
    "InputFileError",
    "InvalidConversationError",
    "LeakageGuard",
    "Message",
    "MissingExtraError",
    "ModelLoadError",
    "ModelNotFoundError",
    "PromptBuilder",
    "QrEdgeError",
    "RewriteResult",
    "Rewriter",
    "Timings",
    "load_examples",
    "parse_messages",
]
