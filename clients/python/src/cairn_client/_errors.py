"""The exceptions of the client, and the mapping from cairn's error answers to them.

Every error the server answers has the body ``{"error": "<snake_case code>", "message":
"<sentence>"}``; each exception carries that ``code`` and ``message`` plus the HTTP ``status``.
The class is chosen by status first (the contract fixes the statuses) and, for 409, by code:
a ``wrong_expected_version`` conflict becomes :class:`WrongExpectedVersion` with the
``expected`` and ``actual`` versions the server reported. The stream lifecycle's codes have their
own classes, each a subclass of its status's (:class:`StreamDeleted` is a :class:`NotFound`,
:class:`StreamClosed` a :class:`Conflict`, ...), so code written for the status still works.

Failures that never produced an answer (connection refused, timeouts) are
:class:`TransportError`; an answer that is not what the contract describes is
:class:`ProtocolError`. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "CairnError",
    "Conflict",
    "Forbidden",
    "EraseOutOfRange",
    "ForkPastEnd",
    "Gone",
    "Invalid",
    "InvalidStreamMetadata",
    "NotFound",
    "ProtocolError",
    "ServerError",
    "StreamClosed",
    "StreamDeleted",
    "StreamExists",
    "StreamTombstoned",
    "Timeout",
    "TooLarge",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "WrongExpectedVersion",
    "error_from_body",
]


class CairnError(Exception):
    """Base of every error this client raises.

    ``code`` is the server's snake_case error code (``"stream_not_found"``), ``message`` its
    sentence, ``status`` the HTTP status (``None`` when no answer arrived), ``body`` the whole
    decoded error body (empty when there was none).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status: int | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.body: Mapping[str, Any] = dict(body) if body is not None else {}

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"


class TransportError(CairnError):
    """No answer: the connection failed or broke (after the allowed retries)."""


class Timeout(TransportError):
    """No answer within the client's timeout (after the allowed retries)."""


class ProtocolError(CairnError):
    """The server answered something the contract does not describe."""


class Invalid(CairnError):
    """400: the request was refused as invalid; nothing was written."""


class TooLarge(Invalid):
    """413: an event, a request body, or a batch is above one of the server's limits."""


class Unauthorized(CairnError):
    """401: no bearer token, or one the server does not know."""


class Forbidden(CairnError):
    """403: the token's principal lacks the permission for this resource."""


class NotFound(CairnError):
    """404: the stream, key, entry or endpoint does not exist."""


class Conflict(CairnError):
    """409: the request conflicts with the current state (for example ``id_conflict``)."""


class WrongExpectedVersion(Conflict):
    """409 ``wrong_expected_version``: the stream (or key) was not at the expected version.

    ``expected`` is what the request asked for (``"any"``, ``"no_stream"``, ``"exists"`` or a
    version), ``actual`` the current last version (``None`` when the stream has no events),
    ``stream`` the stream or key that did not match, when the server names it.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "wrong_expected_version",
        status: int | None = 409,
        body: Mapping[str, Any] | None = None,
        expected: str | int | None = None,
        actual: int | None = None,
        stream: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, body=body)
        self.expected = expected
        self.actual = actual
        self.stream = stream


class StreamDeleted(NotFound):
    """404 ``stream_deleted``: the stream was (soft-)deleted or expired, and nothing was written
    to it since. Appending to it starts it again."""


class Gone(CairnError):
    """410: the resource is gone for good."""


class StreamTombstoned(Gone):
    """410 ``stream_tombstoned``: the stream was deleted for good; it takes no more appends or
    changes."""


class StreamClosed(Conflict):
    """409 ``stream_closed``: the stream is closed and takes no more appends."""


class StreamExists(Conflict):
    """409 ``stream_exists``: a fork's target stream has events already."""


class ForkPastEnd(Invalid):
    """400 ``fork_past_end``: the fork's ``at_version`` is beyond the source's last version."""


class EraseOutOfRange(Invalid):
    """400 ``erase_out_of_range``: an erasure names versions the stream does not have."""


class InvalidStreamMetadata(Invalid):
    """400 ``invalid_stream_metadata``: a retention limit the server refuses (a zero count, say)."""


class Unavailable(CairnError):
    """503: the server cannot serve now (log poisoned, shutting down, too many subscribers)."""


class ServerError(CairnError):
    """Any other 5xx: the server failed (its message says what and where)."""


_BY_STATUS: dict[int, type[CairnError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: TooLarge,
    503: Unavailable,
}

# Codes with a class of their own (each a subclass of its status's class).
_LIFECYCLE: dict[str, type[CairnError]] = {
    "stream_deleted": StreamDeleted,
    "stream_tombstoned": StreamTombstoned,
    "stream_closed": StreamClosed,
    "stream_exists": StreamExists,
    "fork_past_end": ForkPastEnd,
    "erase_out_of_range": EraseOutOfRange,
    "invalid_stream_metadata": InvalidStreamMetadata,
}

# Codes that can arrive without a status (an SSE `error` event mid-stream).
_BY_CODE: dict[str, type[CairnError]] = {
    "poisoned": Unavailable,
    "unavailable": Unavailable,
    "too_many_subscribers": Unavailable,
    "stream_not_found": NotFound,
    "position_not_found": NotFound,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
}


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _expected(value: Any) -> str | int | None:
    if isinstance(value, str):
        return value
    return _optional_int(value)


def error_from_body(status: int | None, body: Any, fallback_text: str = "") -> CairnError:
    """The exception for an error answer: ``status`` and its decoded JSON ``body``.

    A body that is not the contract's error object still yields an exception of the status's
    class, with ``code`` ``"http_<status>"`` and the raw text (``fallback_text``) as message.
    """
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        code: str = body["error"]
        message = body.get("message")
        text = message if isinstance(message, str) and message else code
    else:
        code = f"http_{status}" if status is not None else "error"
        text = fallback_text.strip() or f"the server answered HTTP {status} without an error body"
        body = {}
    if code == "wrong_expected_version":
        stream = body.get("stream")
        return WrongExpectedVersion(
            text,
            status=status,
            body=body,
            expected=_expected(body.get("expected")),
            actual=_optional_int(body.get("actual")),
            stream=stream if isinstance(stream, str) else None,
        )
    cls: type[CairnError]
    if code in _LIFECYCLE:
        cls = _LIFECYCLE[code]
    elif status is None:
        cls = _BY_CODE.get(code, CairnError)
    elif status in _BY_STATUS:
        cls = _BY_STATUS[status]
    elif status >= 500:
        cls = ServerError
    elif 400 <= status < 500:
        cls = Invalid
    else:
        cls = ProtocolError
    return cls(text, code=code, status=status, body=body)
