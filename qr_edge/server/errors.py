"""The errors the service itself raises, and how any refusal becomes its HTTP status and JSON body."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from ..errors import QrEdgeError
from .json_response import SafeJSONResponse


class ServerError(QrEdgeError):
    """A request the service refuses for its own reasons (key, size, load); ``status`` is the HTTP code."""

    status: int = 400
    headers: dict[str, str] | None = None


class InvalidJSONError(ServerError):
    """The body is not JSON at all."""


class InvalidRequestError(ServerError):
    """The JSON does not have the request's shape (missing or mistyped fields, unknown keys)."""

    status = 422


class UnauthorizedError(ServerError):
    """No API key, or the wrong one."""

    status = 401
    headers = {"WWW-Authenticate": "Bearer"}


class PayloadTooLargeError(ServerError):
    """The body is larger than the service accepts."""

    status = 413


class BatchTooLargeError(ServerError):
    """A batch has more items than the service accepts in one request."""

    status = 413


class ServerBusyError(ServerError):
    """Every rewriter is busy and the queue is full: retry after ``Retry-After`` seconds."""

    status = 503
    headers = {"Retry-After": "1"}


class RequestTimeoutError(ServerError):
    """No result within the request's time budget (waiting included)."""

    status = 504


class BodyTimeoutError(ServerError):
    """The client did not finish sending its body in time."""

    status = 408


def http_status(exc: QrEdgeError) -> tuple[int, dict[str, str] | None]:
    """HTTP status and headers of a refusal: a server error's own, else 422 for the library's errors."""
    return (exc.status, exc.headers) if isinstance(exc, ServerError) else (422, None)


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message}}


def error_response(exc: QrEdgeError) -> JSONResponse:
    status, headers = http_status(exc)
    return SafeJSONResponse(error_body(type(exc).__name__, str(exc)), status_code=status, headers=headers)
