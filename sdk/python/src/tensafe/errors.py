"""Exceptions of the TenSafe SDK.

Every error the server answers arrives in one envelope,
``{"error": {"code", "message", "field"}}`` (docs/API.md, "Errors"). The SDK
raises the subclass of :class:`APIError` that the code names, so callers catch
what they can act on (``except PrivacyBudgetExceeded``) and still read the
server's ``code``, ``message`` and ``field``. A future that failed on the
server raises the same classes from ``FutureHandle.result()``, with
``future_id`` set.

Messages never contain the API key: the SDK sends it only as a header and never
quotes request headers.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any, Dict, Mapping, Optional, Tuple, Type

__all__ = [
    "TenSafeError",
    "APIError",
    "ValidationError",
    "AuthenticationError",
    "PermissionDenied",
    "NotFound",
    "PrivacyBudgetExceeded",
    "FailedPrecondition",
    "Conflict",
    "RequestTooLarge",
    "RateLimited",
    "ServerError",
    "Unavailable",
    "ServerRestarted",
    "OperationCanceled",
    "TransportError",
    "MalformedResponse",
    "ContentHashMismatch",
    "FutureTimeoutError",
    "error_from_envelope",
]

# Error codes of the envelope (package api in the Go server).
CODE_INVALID_ARGUMENT = "invalid_argument"
CODE_UNAUTHENTICATED = "unauthenticated"
CODE_PERMISSION_DENIED = "permission_denied"
CODE_NOT_FOUND = "not_found"
CODE_PRIVACY_BUDGET_EXCEEDED = "privacy_budget_exceeded"
CODE_FAILED_PRECONDITION = "failed_precondition"
CODE_CONFLICT = "conflict"
CODE_TOO_LARGE = "request_too_large"
CODE_RATE_LIMITED = "rate_limited"
CODE_UNAVAILABLE = "unavailable"
CODE_INTERNAL = "internal"
CODE_SERVER_RESTARTED = "server_restarted"
CODE_CANCELED = "canceled"


class TenSafeError(Exception):
    """Base class of every error the SDK raises."""


class APIError(TenSafeError):
    """An error answered by the server (or carried by a failed future).

    Attributes:
        status: the HTTP status (for a failed future, the status its code maps to).
        code: the envelope's code, e.g. ``"not_found"``.
        message: the server's message.
        field: JSON path of the offending request field (``"dp_config.noise_multiplier"``), or None.
        request_id: the server's ``X-Request-Id``, or None.
        retry_after: seconds the server asked to wait (``Retry-After``), or None.
        future_id: the operation id when a future failed, else None.
        kind: the operation kind (``"optim_step"``…) when a future failed, else None.
    """

    default_code = CODE_INTERNAL

    def __init__(
        self,
        message: str = "",
        *,
        code: Optional[str] = None,
        field: Optional[str] = None,
        status: Optional[int] = None,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
        future_id: Optional[str] = None,
        kind: Optional[str] = None,
    ) -> None:
        self.code = code or self.default_code
        self.message = message
        self.field = field or None
        self.status = status if status is not None else http_status(self.code)
        self.request_id = request_id or None
        self.retry_after = retry_after
        self.future_id = future_id
        self.kind = kind
        super().__init__(self._describe())

    def _describe(self) -> str:
        s = "tensafe: "
        if self.future_id:
            s += "operation %s (%s) failed: " % (self.future_id, self.kind or "?")
        s += "%d %s" % (self.status, self.code)
        if self.field:
            s += " (field %s)" % self.field
        if self.message:
            s += ": " + self.message
        if self.request_id:
            s += " [request %s]" % self.request_id
        return s


class ValidationError(APIError):
    """400 invalid_argument: ``field`` names the offending request field."""

    default_code = CODE_INVALID_ARGUMENT


class RequestTooLarge(ValidationError):
    """413 request_too_large: the request body is over the server's limit."""

    default_code = CODE_TOO_LARGE


class AuthenticationError(APIError):
    """401 unauthenticated: a missing, unknown or revoked API key."""

    default_code = CODE_UNAUTHENTICATED


class PermissionDenied(APIError):
    """403 permission_denied: the key's role may not do this."""

    default_code = CODE_PERMISSION_DENIED


class NotFound(APIError):
    """404 not_found: a missing id, or another tenant's (indistinguishable)."""

    default_code = CODE_NOT_FOUND


class PrivacyBudgetExceeded(APIError):
    """409 privacy_budget_exceeded: the step would spend more than the client's (ε, δ) budget.

    Nothing was changed: the step was refused before it ran.
    """

    default_code = CODE_PRIVACY_BUDGET_EXCEEDED


class FailedPrecondition(APIError):
    """409 failed_precondition, e.g. save_state while un-noised gradients are pending."""

    default_code = CODE_FAILED_PRECONDITION


class Conflict(APIError):
    """409 conflict."""

    default_code = CODE_CONFLICT


class RateLimited(APIError):
    """429 rate_limited that outlasted the retries; ``retry_after`` is the server's wait in seconds."""

    default_code = CODE_RATE_LIMITED


class ServerError(APIError):
    """500 internal (the detail is in the operator's log, never in the answer)."""

    default_code = CODE_INTERNAL


class Unavailable(ServerError):
    """503 unavailable: the server is shutting down or its audit log is failing."""

    default_code = CODE_UNAVAILABLE


class ServerRestarted(Unavailable):
    """A future cut off by a server restart (code server_restarted)."""

    default_code = CODE_SERVER_RESTARTED


class OperationCanceled(Unavailable):
    """A future cut off by a server shutdown (code canceled)."""

    default_code = CODE_CANCELED


class TransportError(TenSafeError):
    """The server could not be reached (after the retries the request allowed)."""


class MalformedResponse(TenSafeError):
    """A success response that is not JSON of the expected shape, or is over the size limit."""


class ContentHashMismatch(MalformedResponse):
    """A download whose bytes do not hash to the server's ``X-Content-Hash``: nothing was written."""


class FutureTimeoutError(TenSafeError, TimeoutError):
    """``FutureHandle.result(timeout=...)`` ran out of time; the operation goes on on the server."""


_BY_CODE: Dict[str, Type[APIError]] = {
    CODE_INVALID_ARGUMENT: ValidationError,
    CODE_TOO_LARGE: RequestTooLarge,
    CODE_UNAUTHENTICATED: AuthenticationError,
    CODE_PERMISSION_DENIED: PermissionDenied,
    CODE_NOT_FOUND: NotFound,
    CODE_PRIVACY_BUDGET_EXCEEDED: PrivacyBudgetExceeded,
    CODE_FAILED_PRECONDITION: FailedPrecondition,
    CODE_CONFLICT: Conflict,
    CODE_RATE_LIMITED: RateLimited,
    CODE_UNAVAILABLE: Unavailable,
    CODE_INTERNAL: ServerError,
    CODE_SERVER_RESTARTED: ServerRestarted,
    CODE_CANCELED: OperationCanceled,
}

_STATUS_CODES: Dict[int, str] = {
    400: CODE_INVALID_ARGUMENT,
    401: CODE_UNAUTHENTICATED,
    403: CODE_PERMISSION_DENIED,
    404: CODE_NOT_FOUND,
    409: CODE_CONFLICT,
    413: CODE_TOO_LARGE,
    429: CODE_RATE_LIMITED,
    503: CODE_UNAVAILABLE,
}


def http_status(code: str) -> int:
    """The HTTP status the server answers an envelope of ``code`` with (api.HTTPStatus)."""
    return {
        CODE_INVALID_ARGUMENT: 400,
        CODE_UNAUTHENTICATED: 401,
        CODE_PERMISSION_DENIED: 403,
        CODE_NOT_FOUND: 404,
        CODE_PRIVACY_BUDGET_EXCEEDED: 409,
        CODE_FAILED_PRECONDITION: 409,
        CODE_CONFLICT: 409,
        CODE_TOO_LARGE: 413,
        CODE_RATE_LIMITED: 429,
        CODE_UNAVAILABLE: 503,
        CODE_SERVER_RESTARTED: 503,
        CODE_CANCELED: 503,
    }.get(code, 500)


def printable(s: Any, limit: int) -> str:
    """``s`` as text with control characters replaced by ``?``, cut to ``limit`` characters."""
    if not isinstance(s, str):
        return ""
    out = []
    for ch in s:
        o = ord(ch)
        if (o < 0x20 and ch != "\t") or o == 0x7F or ch == "\ufffd":
            ch = "?"
        out.append(ch)
        if len(out) >= limit:
            out.append("…")
            break
    return "".join(out)


MAX_RETRY_AFTER = 300.0  # seconds: a Retry-After never makes the SDK wait longer


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds of a ``Retry-After`` header (delay-seconds or an HTTP date), capped; None if absent or malformed."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(int(value)), MAX_RETRY_AFTER)
    try:
        t = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if t is None or t.tzinfo is None:
        return None
    d = t.timestamp() - (time.time() if now is None else now)
    return min(max(d, 0.0), MAX_RETRY_AFTER)


def error_class(code: str) -> Type[APIError]:
    """The exception class of an envelope code (APIError for codes this SDK does not know)."""
    return _BY_CODE.get(code, APIError)


def _error_fields(err: Mapping[str, Any]) -> Tuple[str, str, Optional[str]]:
    """The code, message and field of an envelope's ``error`` object, printable and cut to size."""
    return (
        printable(err.get("code"), 64),
        printable(err.get("message", ""), 4096),
        printable(err.get("field", ""), 512) or None,
    )


def error_from_envelope(
    status: int,
    body: bytes,
    headers: Optional[Mapping[str, str]] = None,
) -> APIError:
    """Build the exception of a non-2xx answer from its status, headers and (size-limited) body.

    Any bytes are accepted: a body that is not the envelope yields the code the
    status stands for and a short printable excerpt as the message.
    """
    h = headers or {}
    request_id = h.get("X-Request-Id")
    retry_after = parse_retry_after(h.get("Retry-After"))
    code: Optional[str] = None
    message: Optional[str] = None
    field: Optional[str] = None
    try:
        env = json.loads(body.decode("utf-8"))
        err = env.get("error") if isinstance(env, dict) else None
        if isinstance(err, dict) and isinstance(err.get("code"), str) and err["code"]:
            code, message, field = _error_fields(err)
    except (UnicodeDecodeError, ValueError):
        pass
    if code is None:
        code = _STATUS_CODES.get(status, CODE_INTERNAL)
        message = printable(body.decode("utf-8", "replace").strip(), 256) or "HTTP %d" % status
    cls = error_class(code)
    return cls(message or "", code=code, field=field, status=status, request_id=request_id, retry_after=retry_after)


def error_from_future(future: Mapping[str, Any]) -> APIError:
    """The exception of a failed future (its ``error`` object), with ``future_id`` and ``kind`` set."""
    err = future.get("error")
    code, message, field = CODE_INTERNAL, "operation failed without an error", None
    if isinstance(err, dict):
        code, message, field = _error_fields(err)
        code = code or CODE_INTERNAL
    cls = error_class(code)
    return cls(
        message,
        code=code,
        field=field,
        future_id=printable(future.get("id"), 128) or None,
        kind=printable(future.get("kind"), 64) or None,
    )
