"""``qr-edge serve``: the library as a local HTTP service (FastAPI + uvicorn, the ``server`` extra).

Importing this package imports fastapi; ``qr_edge`` and ``qr_edge.cli`` never import it, so the base install
stays light and the CLI imports this lazily.
"""

from .app import create_app
from .drain import DrainingServer, DrainState
from .errors import (
    BatchTooLargeError,
    BodyTimeoutError,
    InvalidJSONError,
    InvalidRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServerBusyError,
    ServerError,
    UnauthorizedError,
)
from .openai_api import OpenAIRequestError
from .pool import RewriterPool

__all__ = [
    "BatchTooLargeError",
    "BodyTimeoutError",
    "DrainState",
    "DrainingServer",
    "InvalidJSONError",
    "InvalidRequestError",
    "OpenAIRequestError",
    "PayloadTooLargeError",
    "RequestTimeoutError",
    "RewriterPool",
    "ServerBusyError",
    "ServerError",
    "UnauthorizedError",
    "create_app",
]
