"""The I/O-free core shared by :class:`Client` and :class:`AsyncClient`.

Every API call is described once here, as a :class:`Call`: the HTTP request to send (method,
percent-encoded path, query, JSON body, whether it is idempotent) and the function that turns a
successful answer into a typed value. The sync and async clients only send requests and sleep;
what to send, what an answer means, when to retry and when to give up is decided here, so the
two clients cannot drift apart.

Invariants:
- Path segments taken from user data (stream names, keys, ids) are percent-encoded with no safe
  characters, so ``session/42`` is one segment (``session%2F42``), never a path.
- A call is retried only if it is idempotent (reads; appends, whose events carry client-made
  ids) or if the request provably never left (connect failures). Retries are bounded
  (:attr:`RetryPolicy.retries`) and spaced by capped exponential backoff with jitter.
- A subscription resumes after a break with ``Last-Event-ID`` set to the last position it
  delivered, drops anything at or below that position, and gives up after
  ``max_reconnects`` consecutive failed attempts without an event in between.

This module sends nothing and sleeps nowhere.
"""

from __future__ import annotations

import json as _json
import os
import random
import socket
import ssl
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx

from ._errors import CairnError, ProtocolError, Timeout, TransportError, error_from_body
from ._sse import SSEDecoder
from ._types import (
    JSON,
    AppendResult,
    AuditProof,
    AuditReceipt,
    AuditRecord,
    Checkpoint,
    ConfigValue,
    Direction,
    EndOfStream,
    Event,
    ExpectedVersion,
    EraseResult,
    ScavengeJob,
    ForkResult,
    Head,
    KeyPage,
    KvDeleted,
    KvEntry,
    KvVersion,
    LifecycleResult,
    NewEvent,
    Page,
    SchemaVersion,
    ServiceInstance,
    StreamAppend,
    StreamedAppend,
    StreamInfo,
    StreamState,
    TxnResult,
    Validation,
    VerifyReport,
    Written,
    _mapping,
)

T = TypeVar("T")
P = TypeVar("P")

DEFAULT_BASE_URL = "http://127.0.0.1:7070"
"""Where ``cairn serve`` listens by default."""

DEFAULT_TIMEOUT = 10.0
"""Seconds a call may take to connect, send, or wait for the next bytes of its answer."""

DEFAULT_RETRIES = 3
"""Extra attempts for an idempotent call after a failure that may be transient."""

DEFAULT_BACKOFF = 0.1
"""Seconds before the first retry; doubles each attempt (with jitter)."""

BACKOFF_MAX = 5.0
"""Longest pause between two attempts, in seconds."""

DEFAULT_PAGE_SIZE = 100
"""Events (or keys, or entries) asked for per page by the paging iterators."""

SUBSCRIBE_IDLE_TIMEOUT = 45.0
"""Seconds a subscription waits for any bytes before it treats the connection as dead. The
server sends a keep-alive comment every 15 s, so three missed keep-alives mean a dead link."""

DEFAULT_MAX_RECONNECTS = 5
"""Consecutive failed (re)connection attempts after which a subscription gives up."""

RETRY_STATUSES = frozenset({502, 503, 504})
"""Answers that may be transient (a proxy or a server starting or draining)."""

NO_RETRY_CODES = frozenset({"poisoned", "timeout"})
"""503 codes not to retry: a poisoned log stays poisoned until a restart, and a
``min_position`` wait (``timeout``) has already waited the server's documented bound; repeating
it would silently multiply that bound."""

_NO_BODY: Any = object()


@dataclass(frozen=True)
class Request:
    """An HTTP request, not yet sent."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    body: Any = _NO_BODY
    headers: tuple[tuple[str, str], ...] = ()
    idempotent: bool = False
    timeout: float | None = None
    content: bytes | None = None
    """A body sent as these bytes (with its own content-type header) instead of as JSON."""

    @property
    def has_body(self) -> bool:
        return self.body is not _NO_BODY

    def describe(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request and how to read its successful answer."""

    request: Request
    parse: Callable[[httpx.Response], T]
    answers: frozenset[int] = frozenset()
    """Statuses besides 2xx that are answers for ``parse``, not failures (404 for EXISTS)."""


@dataclass(frozen=True)
class Retry:
    """The loop's instruction to wait ``delay`` seconds and send the request again."""

    delay: float


@dataclass(frozen=True)
class Paging(Generic[P]):
    """A paged read: the first page's call, and how to get the call for the page after one."""

    first: Call[P]
    after: Callable[[P], Call[P] | None]


# --- encoding ----------------------------------------------------------------------------------


def segment(value: str) -> str:
    """A user-supplied value as one percent-encoded path segment."""
    if not isinstance(value, str):
        raise TypeError(f"a path segment must be a string, not {type(value).__name__}")
    if value == "":
        raise ValueError("a stream name, key, or id must not be empty")
    return quote(value, safe="")


def _params(**values: Any) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out.append((name, "true" if value else "false"))
        else:
            out.append((name, str(value)))
    return tuple(out)


def expected_version(value: ExpectedVersion) -> str | int:
    """Checks an expected version before it is sent."""
    if isinstance(value, bool):
        raise TypeError("expected_version must be 'any', 'no_stream', 'exists' or a version number, not a bool")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected_version {value} is negative; versions start at 0")
        return value
    if value in ("any", "no_stream", "exists"):
        return value
    raise ValueError(f"expected_version {value!r} is not 'any', 'no_stream', 'exists' or a version number")


def _events(events: NewEvent | Iterable[NewEvent]) -> list[NewEvent]:
    items = [events] if isinstance(events, NewEvent) else list(events)
    if not items:
        raise ValueError("an append needs at least one event")
    for item in items:
        if not isinstance(item, NewEvent):
            raise TypeError(f"events must be NewEvent values, not {type(item).__name__}")
    return items


# --- decoding ----------------------------------------------------------------------------------


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON of an answer; an empty body decodes as ``{}``."""
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError as e:
        raise ProtocolError(
            f"the answer to {response.request.method} {response.request.url.path} is not JSON: {e}",
            code="bad_response",
            status=response.status_code,
        ) from e


def _json_of(decode: Callable[[Any], T]) -> Callable[[httpx.Response], T]:
    return lambda response: decode(json_body(response))


def _raw(value: Any) -> Mapping[str, JSON]:
    return dict(_mapping(value, "answer"))


def _list_of(decode: Callable[[Any], T], *keys: str) -> Callable[[Any], list[T]]:
    """A list answer, given either as a bare JSON array or wrapped in an object under one of
    ``keys`` (the contract leaves some of these shapes open)."""

    def parse(value: Any) -> list[T]:
        if isinstance(value, Mapping):
            for key in keys:
                if isinstance(value.get(key), list):
                    value = value[key]
                    break
        if not isinstance(value, list):
            raise ProtocolError(
                f"the server answered {type(value).__name__} where a list was expected", code="bad_response"
            )
        return [decode(item) for item in value]

    return parse


def _int_field(name: str, what: str) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        obj = _mapping(value, what)
        result = obj.get(name)
        if not isinstance(result, int) or isinstance(result, bool):
            raise ProtocolError(f"the server's {what} has no integer field {name!r}", code="bad_response")
        return result

    return parse


def _written(name: str, what: str, kind: type[T]) -> Callable[[Any], Written[T]]:
    def parse(value: Any) -> Written[T]:
        obj = _mapping(value, what)
        if name not in obj or not isinstance(obj[name], kind) or (kind is int and isinstance(obj[name], bool)):
            raise ProtocolError(f"the server's {what} has no {kind.__name__} field {name!r}", code="bad_response")
        position = obj.get("position")
        return Written(
            value=obj[name],
            position=position if isinstance(position, int) and not isinstance(position, bool) else None,
            raw=dict(obj),
        )

    return parse


def error_from_response(response: httpx.Response) -> CairnError:
    """The exception for a non-2xx answer (its body must already be read)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    return error_from_body(response.status_code, body, response.text[:500])


# --- retries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and how far apart, a failed call is tried again."""

    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    backoff_max: float = BACKOFF_MAX
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more, not {self.retries}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be 0 or more seconds, not {self.backoff}")

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None:
            try:
                return min(self.backoff_max, max(0.0, float(retry_after)))
            except ValueError:
                pass
        base = min(self.backoff_max, self.backoff * float(2 ** min(attempt, 32)))
        # Jitter keeps many clients that failed together from retrying together.
        return base * (0.5 + self.rng.random() / 2)


_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def transport_error(request: Request, error: httpx.TransportError, attempts: int) -> CairnError:
    """The client's exception for a request that got no answer."""
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    message = f"{request.describe()} got no answer{tries}: {type(error).__name__}: {error}"
    if isinstance(error, httpx.TimeoutException):
        return Timeout(message, code="timeout")
    return TransportError(message, code="transport")


def settle(
    call: Call[T],
    policy: RetryPolicy,
    attempt: int,
    response: httpx.Response | None = None,
    error: httpx.TransportError | None = None,
) -> T | Retry:
    """Decides what one attempt (``attempt`` counts from 0) came to: the parsed value, a
    :class:`Retry`, or (raised) the call's exception. Exactly one of ``response`` (with its
    body read) and ``error`` is given."""
    request = call.request
    can_retry = attempt < policy.retries
    if error is not None:
        if can_retry and (request.idempotent or isinstance(error, _NEVER_SENT)):
            return Retry(policy.delay(attempt))
        raise transport_error(request, error, attempt + 1) from error
    assert response is not None, "settle needs a response or an error"
    if 200 <= response.status_code < 300 or response.status_code in call.answers:
        return call.parse(response)
    failure = error_from_response(response)
    if (
        can_retry
        and request.idempotent
        and response.status_code in RETRY_STATUSES
        and failure.code not in NO_RETRY_CODES
    ):
        return Retry(policy.delay(attempt, response.headers.get("retry-after")))
    raise failure


# --- the log -------------------------------------------------------------------------------------


def append(
    stream: str, events: NewEvent | Iterable[NewEvent], expected: ExpectedVersion = "any"
) -> Call[AppendResult]:
    body = {"expected_version": expected_version(expected), "events": [e.to_json() for e in _events(events)]}
    # Idempotent: every event carries its client-made id, so a retry of a request that did
    # land is answered with the original positions and writes nothing.
    request = Request("POST", f"/v1/streams/{segment(stream)}/events", body=body, idempotent=True)
    return Call(request, _json_of(AppendResult.from_json))


def append_ndjson(stream: str, events: Iterable[NewEvent]) -> Call[StreamedAppend]:
    content = b"".join(_json.dumps(e.to_json(), separators=(",", ":")).encode() + b"\n" for e in _events(events))
    # Idempotent like append: the server cuts the same body into the same batches, and every
    # event carries its id, so a retry answers the durable batches with their original positions.
    request = Request(
        "POST",
        f"/v1/streams/{segment(stream)}/events",
        headers=(("content-type", "application/x-ndjson"),),
        idempotent=True,
        content=content,
    )
    return Call(request, _json_of(StreamedAppend.from_json))


def append_multi(appends: Sequence[StreamAppend]) -> Call[list[AppendResult]]:
    if not appends:
        raise ValueError("an atomic append needs at least one stream")
    body = {
        "appends": [
            {
                "stream": a.stream,
                "expected_version": expected_version(a.expected_version),
                "events": [e.to_json() for e in _events(a.events)],
            }
            for a in appends
        ]
    }
    request = Request("POST", "/v1/append", body=body, idempotent=True)
    return Call(request, _json_of(_list_of(AppendResult.from_json, "results")))


def _check_direction(direction: Direction) -> Direction:
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', not {direction!r}")
    return direction


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive number, not {limit!r}")
    return limit


def read_stream_page(
    stream: str, from_version: int | None = None, limit: int | None = None, direction: Direction = "forward"
) -> Call[Page]:
    request = Request(
        "GET",
        f"/v1/streams/{segment(stream)}/events",
        params=_params(**{"from": from_version})
        + _params(limit=_check_limit(limit), direction=_check_direction(direction)),
        idempotent=True,
    )
    return Call(request, _json_of(Page.from_json))


def _follow_next(make: Callable[[int], Call[Page]], start: int | None) -> Callable[[Page], Call[Page] | None]:
    """Continues a read at the page's ``next`` cursor; a cursor that does not move would loop
    forever, so it is a protocol error."""
    state = {"cursor": start}

    def after(page: Page) -> Call[Page] | None:
        if page.next is None:
            return None
        if page.next == state["cursor"]:
            raise ProtocolError(f"the server's next cursor {page.next} does not advance", code="bad_response")
        state["cursor"] = page.next
        return make(page.next)

    return after


def read_stream(
    stream: str, from_version: int | None, page_size: int, direction: Direction
) -> Paging[Page]:
    def make(cursor: int | None) -> Call[Page]:
        return read_stream_page(stream, cursor, page_size, direction)

    return Paging(make(from_version), _follow_next(make, from_version))


def read_all_page(
    from_position: int | None = None,
    limit: int | None = None,
    stream_prefix: str | None = None,
    type_prefix: str | None = None,
) -> Call[Page]:
    params = _params(**{"from": from_position}) + _params(
        limit=_check_limit(limit), stream_prefix=stream_prefix, type_prefix=type_prefix
    )
    return Call(Request("GET", "/v1/events", params=params, idempotent=True), _json_of(Page.from_json))


def read_all(
    from_position: int | None, page_size: int, stream_prefix: str | None, type_prefix: str | None
) -> Paging[Page]:
    def make(cursor: int | None) -> Call[Page]:
        return read_all_page(cursor, page_size, stream_prefix, type_prefix)

    return Paging(make(from_position), _follow_next(make, from_position))


@dataclass(frozen=True)
class StreamsPage:
    """A page of the stream listing; pass ``next`` as ``after`` to continue (``None``: the last
    page)."""

    streams: tuple[StreamInfo, ...]
    next: str | None

    @staticmethod
    def from_json(value: Any) -> StreamsPage:
        # Servers before the paged listing answered a bare list (cut at 10,000 rows, unsaid).
        if isinstance(value, list):
            return StreamsPage(tuple(StreamInfo.from_json(row) for row in value), None)
        obj = _mapping(value, "stream listing")
        rows = obj.get("streams")
        if not isinstance(rows, list):
            raise ProtocolError("the server's stream listing has no list 'streams'", code="bad_response")
        cursor = obj.get("next")
        if cursor is not None and not isinstance(cursor, str):
            raise ProtocolError(f"the stream listing's next cursor {cursor!r} is not a name", code="bad_response")
        return StreamsPage(tuple(StreamInfo.from_json(row) for row in rows), cursor)


def streams_page(prefix: str | None = None, after: str | None = None, limit: int | None = None) -> Call[StreamsPage]:
    params = _params(prefix=prefix, after=after, limit=_check_limit(limit))
    return Call(Request("GET", "/v1/streams", params=params, idempotent=True), _json_of(StreamsPage.from_json))


def streams(prefix: str | None = None, page_size: int | None = None) -> Paging[StreamsPage]:
    state: dict[str, str | None] = {"cursor": None}

    def after(page: StreamsPage) -> Call[StreamsPage] | None:
        if page.next is None:
            return None
        if page.next == state["cursor"]:
            raise ProtocolError(f"the server's stream cursor {page.next!r} does not advance", code="bad_response")
        state["cursor"] = page.next
        return streams_page(prefix, page.next, page_size)

    return Paging(streams_page(prefix, None, page_size), after)


# --- the stream lifecycle ---------------------------------------------------------------------


def stream_info(stream: str) -> Call[StreamInfo]:
    return Call(Request("GET", f"/v1/streams/{segment(stream)}", idempotent=True), _json_of(StreamInfo.from_json))


def delete_stream(stream: str, tombstone: bool = False) -> Call[LifecycleResult]:
    # Not retried once sent: a repeated tombstone would answer 410 for a delete that worked.
    params = _params(mode="tombstone") if tombstone else ()
    request = Request("DELETE", f"/v1/streams/{segment(stream)}", params=params)
    return Call(request, _json_of(LifecycleResult.from_json))


def close_stream(stream: str) -> Call[LifecycleResult]:
    return Call(Request("POST", f"/v1/streams/{segment(stream)}/close"), _json_of(LifecycleResult.from_json))


def fork_stream(stream: str, to: str, at_version: int) -> Call[ForkResult]:
    if isinstance(at_version, bool) or not isinstance(at_version, int) or at_version < 0:
        raise ValueError(f"at_version must be a stream version (0 or more), not {at_version!r}")
    body = {"to": to, "at_version": at_version}
    # Not retried once sent: a repeated fork would answer stream_exists for a fork that worked.
    request = Request("POST", f"/v1/streams/{segment(stream)}/fork", body=body)
    return Call(request, _json_of(ForkResult.from_json))


def erase(stream: str, reason: str, from_version: int | None, to_version: int | None) -> Call[EraseResult]:
    body: dict[str, Any] = {"stream": stream, "reason": reason}
    for name, value in (("from_version", from_version), ("to_version", to_version)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a stream version (0 or more), not {value!r}")
        body[name] = value
    # Erasing the same range again changes nothing a reader sees: safe to repeat.
    request = Request("POST", "/v1/erase", body=body, idempotent=True)
    return Call(request, _json_of(EraseResult.from_json))


def scavenge() -> Call[ScavengeJob]:
    # Not retried once sent: a repeated start would answer scavenge_running for one that started.
    return Call(Request("POST", "/v1/admin/scavenge", body={}), _json_of(ScavengeJob.from_json))


SCAVENGE_WAIT_MS_MAX = 30_000
"""The longest the server waits in one ``GET /v1/admin/scavenge/{id}?wait_ms=`` (its
``SCAVENGE_WAIT_MAX``)."""


def scavenge_job(job_id: int, wait_ms: int | None = None) -> Call[ScavengeJob]:
    if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 0:
        raise ValueError(f"job_id must be a scavenge job's id, not {job_id!r}")
    params = _params(wait_ms=None if wait_ms is None else min(max(wait_ms, 0), SCAVENGE_WAIT_MS_MAX))
    # A long poll: the request may take up to wait_ms before the server answers.
    timeout = None if wait_ms is None else 30.0 + SCAVENGE_WAIT_MS_MAX / 1000
    request = Request("GET", f"/v1/admin/scavenge/{job_id}", params=params, idempotent=True, timeout=timeout)
    return Call(request, _json_of(ScavengeJob.from_json))


def stream_metadata(stream: str) -> Call[StreamState]:
    request = Request("GET", f"/v1/streams/{segment(stream)}/metadata", idempotent=True)
    return Call(request, _json_of(StreamState.from_json))


def set_stream_metadata(
    stream: str,
    max_age_ms: int | None = None,
    max_count: int | None = None,
    truncate_before: int | None = None,
    ttl_ms: int | None = None,
    closed: bool | None = None,
) -> Call[LifecycleResult]:
    body: dict[str, Any] = {}
    for name, value in (
        ("max_age_ms", max_age_ms),
        ("max_count", max_count),
        ("truncate_before", truncate_before),
        ("ttl_ms", ttl_ms),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        body[name] = value
    if closed is not None:
        body["closed"] = bool(closed)
    # Replacing the metadata with the same metadata changes nothing a reader sees: safe to repeat.
    request = Request("PUT", f"/v1/streams/{segment(stream)}/metadata", body=body, idempotent=True)
    return Call(request, _json_of(LifecycleResult.from_json))


def head() -> Call[Head]:
    return Call(Request("GET", "/v1/head", idempotent=True), _json_of(Head.from_json))


def verify(from_position: int | None = None, timeout: float | None = None) -> Call[VerifyReport]:
    # Verification only reads, so it is safe to repeat.
    request = Request(
        "POST", "/v1/verify", params=_params(**{"from": from_position}), idempotent=True, timeout=timeout
    )
    return Call(request, _json_of(VerifyReport.from_json))


CheckpointKind = Literal["full", "incremental"]


def create_checkpoint(kind: CheckpointKind | None = None, timeout: float | None = None) -> Call[Checkpoint]:
    if kind is not None and kind not in ("full", "incremental"):
        raise ValueError(f"a checkpoint kind is 'full' or 'incremental', not {kind!r}")
    # Without a kind the server's policy decides (full when there is nothing to build on).
    body = _NO_BODY if kind is None else {"kind": kind}
    request = Request("POST", "/v1/checkpoints", body=body, timeout=timeout)
    return Call(request, _json_of(lambda v: Checkpoint.from_json(_unwrap(v, "checkpoint"))))


def list_checkpoints() -> Call[list[Checkpoint]]:
    request = Request("GET", "/v1/checkpoints", idempotent=True)
    return Call(request, _json_of(_list_of(Checkpoint.from_json, "checkpoints")))


def _unwrap(value: Any, key: str) -> Any:
    if isinstance(value, Mapping) and isinstance(value.get(key), Mapping):
        return value[key]
    return value


def healthz() -> Call[Mapping[str, JSON]]:
    return Call(Request("GET", "/healthz", idempotent=True), _json_of(_raw))


def tls_verify(ca_file: str | os.PathLike[str] | None) -> ssl.SSLContext | bool:
    """What httpx's ``verify=`` gets: the system's trusted CAs (``True``), or a context that
    trusts only the CA certificates in ``ca_file`` (PEM), for a server with a private CA."""
    if ca_file is None:
        return True
    return ssl.create_default_context(cafile=os.fspath(ca_file))


def sync_transport(verify: ssl.SSLContext | bool) -> httpx.HTTPTransport:
    """The blocking client's transport: httpx's, with ``TCP_NODELAY`` on its connections.

    httpx writes a request's head and body in separate writes; with Nagle's algorithm on, the
    body waits for the server to acknowledge the head, which a server may delay by tens of
    milliseconds. Small request/answer exchanges are what this client makes, so nothing is held
    back."""
    return httpx.HTTPTransport(
        verify=verify,
        limits=httpx.Limits(max_connections=POOL_CONNECTIONS_MAX, max_keepalive_connections=POOL_CONNECTIONS_MAX),
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )


POOL_CONNECTIONS_MAX = 100
"""Connections a client keeps open to its server at most, each kept alive between calls (httpx
keeps only 20 alive by default: beyond that every call paid for a new connection)."""


def metrics() -> Call[str]:
    return Call(Request("GET", "/metrics", idempotent=True), lambda r: r.text)


# --- subscriptions ---------------------------------------------------------------------------------


class SubscribeState:
    """The state of one subscription across reconnections.

    The client loop: ``request()`` → send; ``opened(response)`` (raises for a refusal that a
    retry cannot fix, or returns a :class:`Retry`); then for each text chunk ``feed(chunk)``
    yields events; when the connection ends or breaks, ``disconnected(error)`` returns the
    :class:`Retry` to wait before reconnecting, or raises once the attempts are used up.
    """

    def __init__(
        self,
        from_position: int | Literal["end"] = "end",
        stream: str | None = None,
        stream_prefix: str | None = None,
        type_prefix: str | None = None,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
        policy: RetryPolicy | None = None,
    ) -> None:
        if from_position != "end" and (
            isinstance(from_position, bool) or not isinstance(from_position, int) or from_position < 0
        ):
            raise ValueError(f"from_position must be a position (0 or more) or 'end', not {from_position!r}")
        if max_reconnects < 0:
            raise ValueError(f"max_reconnects must be 0 or more, not {max_reconnects}")
        self.from_position = from_position
        self.stream = stream
        self.stream_prefix = stream_prefix
        self.type_prefix = type_prefix
        self.max_reconnects = max_reconnects
        self.policy = policy or RetryPolicy()
        self.last_position: int | None = None
        """The position of the last event delivered; a reconnection resumes after it."""
        self.failures = 0
        """Consecutive failed attempts since the last delivered event."""
        self.connections = 0
        """Connections opened so far (1 + successful reconnections)."""
        self.ended: EndOfStream | None = None
        """Set when the server sent the end-of-stream marker: the subscribed stream is closed and
        every event of it was delivered; the subscription ends and never reconnects."""
        self._decoder = SSEDecoder()

    def request(self) -> Request:
        params = _params(**{"from": self.from_position}) + _params(
            stream=self.stream, stream_prefix=self.stream_prefix, type_prefix=self.type_prefix
        )
        headers: tuple[tuple[str, str], ...] = (("accept", "text/event-stream"),)
        if self.last_position is not None:
            headers += (("last-event-id", str(self.last_position)),)
        return Request("GET", "/v1/subscribe", params=params, headers=headers, idempotent=True)

    def opened(self, response: httpx.Response) -> Retry | None:
        """Checks the answer's status (for a failure, its body must already be read). ``None``
        means the event stream is open."""
        if 200 <= response.status_code < 300:
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                raise ProtocolError(
                    f"GET /v1/subscribe answered {content_type or 'no content type'}, not text/event-stream",
                    code="bad_response",
                    status=response.status_code,
                )
            self.connections += 1
            self._decoder = SSEDecoder()
            return None
        failure = error_from_response(response)
        if response.status_code in RETRY_STATUSES and failure.code not in NO_RETRY_CODES:
            return self._failed(failure)
        raise failure

    def feed(self, chunk: str) -> Iterator[Event]:
        """The events completed by ``chunk``, in order; at an ``error`` event (after the events
        before it) raises the server's error; at an ``end`` event sets :attr:`ended` and stops."""
        for message in self._decoder.feed(chunk):
            if message.event == "end":
                try:
                    self.ended = EndOfStream.from_json(_json.loads(message.data))
                except ValueError as e:
                    raise ProtocolError(f"an end-of-stream marker is not JSON: {e}", code="bad_response") from e
                return
            if message.event == "error":
                try:
                    body: Any = _json.loads(message.data)
                except ValueError:
                    body = None
                raise error_from_body(None, body, message.data)
            if message.event != "message":
                continue
            try:
                event = Event.from_json(_json.loads(message.data))
            except ValueError as e:
                raise ProtocolError(f"a subscription event is not JSON: {e}", code="bad_response") from e
            # The SSE id is the position; a resumed stream never goes back, but if it did, the
            # caller must not see an event twice.
            if self.last_position is not None and event.position <= self.last_position:
                continue
            self.last_position = event.position
            self.failures = 0
            yield event

    def disconnected(self, error: BaseException | None = None) -> Retry:
        """The connection ended (``error`` is why, ``None`` for a clean end of the stream)."""
        if isinstance(error, CairnError):
            return self._failed(error)
        reason = f"{type(error).__name__}: {error}" if error is not None else "the server ended the event stream"
        failure: CairnError = (
            Timeout(f"GET /v1/subscribe: {reason}", code="timeout")
            if isinstance(error, httpx.TimeoutException)
            else TransportError(f"GET /v1/subscribe: {reason}", code="transport")
        )
        return self._failed(failure)

    def _failed(self, failure: CairnError) -> Retry:
        if self.failures >= self.max_reconnects:
            resume = f" (last delivered position {self.last_position})" if self.last_position is not None else ""
            raise type(failure)(
                f"the subscription gave up after {self.failures} reconnection attempts{resume}: {failure.message}",
                code=failure.code,
                status=failure.status,
                body=failure.body,
            )
        delay = self.policy.delay(self.failures)
        self.failures += 1
        return Retry(delay)


# --- key-value view --------------------------------------------------------------------------------


def _kv(key: str, suffix: str = "") -> str:
    return f"/v1/kv/{segment(key)}{suffix}"


def kv_get(key: str, min_position: int | None = None, version: int | None = None) -> Call[KvEntry]:
    params = _params(version=version, min_position=min_position)
    return Call(Request("GET", _kv(key), params=params, idempotent=True), _json_of(KvEntry.from_json))


def kv_exists(key: str, min_position: int | None = None) -> Call[bool]:
    # HEAD answers 200 or 404 without a body: both are answers, for a key of any kind.
    request = Request("HEAD", _kv(key), params=_params(min_position=min_position), idempotent=True)
    return Call(request, lambda response: response.status_code == 200, answers=frozenset({404}))


def kv_set(
    key: str, value: JSON, ttl_ms: int | None = None, expected: ExpectedVersion | None = None
) -> Call[Written[int]]:
    body: dict[str, Any] = {"value": value}
    if ttl_ms is not None:
        body["ttl_ms"] = ttl_ms
    if expected is not None:
        body["expected_version"] = expected_version(expected)
    return Call(Request("PUT", _kv(key), body=body), _json_of(_written("version", "set result", int)))


def kv_delete(key: str, expected_version: int | None = None) -> Call[KvDeleted]:
    body: dict[str, Any] = {} if expected_version is None else {"expected_version": expected_version}
    return Call(Request("DELETE", _kv(key), body=body), _json_of(KvDeleted.from_json))


def kv_incr(key: str, delta: int = 1) -> Call[Written[int]]:
    request = Request("POST", _kv(key, "/incr"), body={"delta": delta})
    return Call(request, _json_of(_written("value", "incr result", int)))


def kv_append(key: str, value: str) -> Call[Written[int]]:
    request = Request("POST", _kv(key, "/append"), body={"value": value})
    return Call(request, _json_of(_written("length", "append result", int)))


def _end(end: Literal["left", "right"]) -> str:
    if end not in ("left", "right"):
        raise ValueError(f"end must be 'left' or 'right', not {end!r}")
    return end


def kv_push(key: str, values: Sequence[JSON], end: Literal["left", "right"] = "right") -> Call[Written[int]]:
    request = Request("POST", _kv(key, "/push"), body={"values": list(values), "end": _end(end)})
    return Call(request, _json_of(_written("length", "push result", int)))


def kv_pop(key: str, end: Literal["left", "right"] = "left", count: int | None = None) -> Call[Written[list[JSON]]]:
    body: dict[str, Any] = {"end": _end(end)}
    if count is not None:
        body["count"] = count
    return Call(Request("POST", _kv(key, "/pop"), body=body), _json_of(_written("values", "pop result", list)))


def kv_range(key: str, start: int = 0, stop: int = -1, min_position: int | None = None) -> Call[list[JSON]]:
    request = Request(
        "GET", _kv(key, "/range"), params=_params(start=start, stop=stop, min_position=min_position), idempotent=True
    )
    return Call(request, _json_of(_list_of(lambda v: v, "values")))


def kv_sadd(key: str, members: Sequence[str]) -> Call[Written[int]]:
    request = Request("POST", _kv(key, "/sadd"), body={"members": list(members)})
    return Call(request, _json_of(_written("added", "sadd result", int)))


def kv_srem(key: str, members: Sequence[str]) -> Call[Written[int]]:
    request = Request("POST", _kv(key, "/srem"), body={"members": list(members)})
    return Call(request, _json_of(_written("removed", "srem result", int)))


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"the server answered {type(value).__name__} where a string was expected", code="bad_response")
    return value


def kv_members(key: str, min_position: int | None = None) -> Call[list[str]]:
    request = Request("GET", _kv(key, "/members"), params=_params(min_position=min_position), idempotent=True)
    return Call(request, _json_of(_list_of(_string, "members")))


def kv_history(key: str, limit: int | None = None) -> Call[list[KvVersion]]:
    request = Request("GET", _kv(key, "/history"), params=_params(limit=_check_limit(limit)), idempotent=True)
    return Call(request, _json_of(_list_of(KvVersion.from_json, "versions")))


def kv_keys_page(
    prefix: str | None = None, after: str | None = None, limit: int | None = None, min_position: int | None = None
) -> Call[KeyPage]:
    params = _params(prefix=prefix, after=after, limit=_check_limit(limit), min_position=min_position)
    return Call(Request("GET", "/v1/kv", params=params, idempotent=True), _json_of(KeyPage.from_json))


def kv_keys(prefix: str | None, page_size: int, min_position: int | None) -> Paging[KeyPage]:
    def after(page: KeyPage) -> Call[KeyPage] | None:
        if page.next is None:
            return None
        return kv_keys_page(prefix, page.next, page_size, min_position)

    return Paging(kv_keys_page(prefix, None, page_size, min_position), after)


def kv_get_many(keys: Sequence[str], min_position: int | None = None) -> Call[dict[str, JSON]]:
    def parse(value: Any) -> dict[str, JSON]:
        values = _mapping(value, "get-many result").get("values")
        return dict(_mapping(values, "get-many values"))

    # A read, though it is a POST (the keys travel in the body): safe to repeat.
    request = Request(
        "POST", "/v1/kv:get", params=_params(min_position=min_position), body={"keys": list(keys)}, idempotent=True
    )
    return Call(request, _json_of(parse))


def kv_txn(ops: Sequence[Mapping[str, JSON]], watch: Mapping[str, int | None] | None = None) -> Call[TxnResult]:
    body: dict[str, Any] = {"ops": [dict(op) for op in ops]}
    if watch is not None:
        body["watch"] = dict(watch)
    return Call(Request("POST", "/v1/kv:txn", body=body), _json_of(TxnResult.from_json))


# --- audit view ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditPage:
    """A page of audit entries; pass ``next`` as ``after`` to continue."""

    entries: tuple[AuditRecord, ...]
    next: str | None

    @staticmethod
    def from_json(value: Any) -> AuditPage:
        obj = _mapping(value, "audit page")
        entries = obj.get("entries")
        if not isinstance(entries, list):
            raise ProtocolError("the server's audit page has no list 'entries'", code="bad_response")
        cursor = obj.get("next")
        return AuditPage(
            entries=tuple(AuditRecord.from_json(e) for e in entries),
            next=None if cursor is None else str(cursor),
        )


AUDIT_FILTERS = frozenset(
    {"actor", "category", "level", "target", "trace_id", "agent_id", "workflow_id", "task_id", "since", "until", "order", "limit"}
)
"""The audit query's filter parameters, as the contract names them."""


def audit_filters(filters: Mapping[str, Any], min_position: int | None) -> dict[str, Any]:
    unknown = sorted(set(filters) - AUDIT_FILTERS)
    if unknown:
        raise TypeError(f"unknown audit filter(s) {', '.join(unknown)}; known: {', '.join(sorted(AUDIT_FILTERS))}")
    order = filters.get("order")
    if order is not None and order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
    return {**filters, "min_position": min_position}


def audit_entry(
    level: str,
    category: str,
    event: str,
    actor: Mapping[str, JSON],
    target: Mapping[str, JSON] | None,
    context: Mapping[str, JSON] | None,
    outcome: str | None,
    metadata: Mapping[str, JSON] | None,
    extra: Mapping[str, JSON],
) -> dict[str, JSON]:
    entry: dict[str, JSON] = {"level": level, "category": category, "event": event, "actor": dict(actor)}
    for name, value in (("target", target), ("context", context), ("metadata", metadata)):
        if value is not None:
            entry[name] = dict(value)
    if outcome is not None:
        entry["outcome"] = outcome
    entry.update(extra)
    return entry


def audit_append(entry: Mapping[str, JSON], entry_id: uuid.UUID | str | None = None) -> Call[AuditReceipt]:
    for required in ("level", "category", "event", "actor"):
        if required not in entry:
            raise ValueError(f"an audit entry needs {required!r}")
    # The entry carries a client-made id, so a retry of an append that did land is recognised
    # and answered with the original position: the append is idempotent.
    body = {**entry, "id": str(entry_id if entry_id is not None else uuid.uuid4())}
    return Call(Request("POST", "/v1/audit", body=body, idempotent=True), _json_of(AuditReceipt.from_json))


def _time(value: int | str | datetime | None) -> int | str | None:
    """A time parameter: unix ms or RFC 3339 text as given; a ``datetime`` as unix ms (a naive
    one is taken as local time, as ``datetime.timestamp`` does)."""
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    return value


def audit_query_page(filters: Mapping[str, Any], after: str | None = None) -> Call[AuditPage]:
    values = dict(filters)
    for name in ("since", "until"):
        values[name] = _time(values.get(name))
    request = Request("GET", "/v1/audit", params=_params(**values, after=after), idempotent=True)
    return Call(request, _json_of(AuditPage.from_json))


AUDIT_PAGE_MAX = 1000
"""The most entries the server answers in one audit page."""


def audit_total(filters: Mapping[str, Any]) -> int | None:
    """The total an iterating audit query stops at: its ``limit`` (``None``: every match)."""
    limit = filters.get("limit")
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be 0 or a positive number of entries, not {limit!r}")
    return limit


def audit_query(filters: Mapping[str, Any], after: str | None = None) -> Paging[AuditPage]:
    """Pages of an audit query whose ``limit`` is the total wanted, not a page size: each page
    asks for what is still missing (at most :data:`AUDIT_PAGE_MAX`), and paging stops once the
    total is reached. The caller trims the last page to the total as well."""
    total = audit_total(filters)
    state: dict[str, Any] = {"cursor": after, "remaining": total}

    def page_call(cursor: str | None) -> Call[AuditPage]:
        remaining = state["remaining"]
        page_filters = dict(filters)
        if remaining is not None:
            page_filters["limit"] = max(1, min(remaining, AUDIT_PAGE_MAX))
        return audit_query_page(page_filters, cursor)

    def next_page(page: AuditPage) -> Call[AuditPage] | None:
        if state["remaining"] is not None:
            state["remaining"] -= len(page.entries)
            if state["remaining"] <= 0:
                return None
        if page.next is None:
            return None
        if page.next == state["cursor"]:
            raise ProtocolError(f"the server's audit cursor {page.next!r} does not advance", code="bad_response")
        state["cursor"] = page.next
        return page_call(page.next)

    return Paging(page_call(after), next_page)


def audit_proof(entry_id: str) -> Call[AuditProof]:
    request = Request("GET", f"/v1/audit/{segment(entry_id)}/proof", idempotent=True)
    return Call(request, _json_of(AuditProof.from_json))


# --- metadata view ---------------------------------------------------------------------------------


def _meta(*parts: str) -> str:
    return "/v1/meta/" + "/".join(parts)


def schema_register(subject: str, schema: JSON) -> Call[int]:
    request = Request("POST", _meta("schemas", segment(subject), "versions"), body={"schema": schema})
    return Call(request, _json_of(_int_field("version", "schema registration")))


_COMPAT_MODES = ("none", "backward", "forward", "full")


def schema_compatibility(subject: str, mode: Literal["none", "backward", "forward", "full"]) -> Call[Mapping[str, JSON]]:
    if mode not in _COMPAT_MODES:
        raise ValueError(f"compatibility mode must be one of {', '.join(_COMPAT_MODES)}, not {mode!r}")
    request = Request("PUT", _meta("schemas", segment(subject), "compatibility"), body={"mode": mode})
    return Call(request, _json_of(_raw))


def schema_get(subject: str, version: int | Literal["latest"] = "latest", min_position: int | None = None) -> Call[SchemaVersion]:
    which = "latest" if version == "latest" else str(int(version))
    request = Request(
        "GET",
        _meta("schemas", segment(subject), "versions", which),
        params=_params(min_position=min_position),
        idempotent=True,
    )
    return Call(request, _json_of(SchemaVersion.from_json))


def schema_validate(subject: str, payload: JSON, version: int | None = None) -> Call[Validation]:
    body: dict[str, Any] = {"payload": payload}
    if version is not None:
        body["version"] = version
    # Validation changes nothing: safe to repeat.
    request = Request("POST", _meta("schemas", segment(subject), "validate"), body=body, idempotent=True)
    return Call(request, _json_of(Validation.from_json))


def service_register(
    name: str,
    instance_id: str,
    endpoints: JSON = None,
    tags: Sequence[str] | None = None,
    capabilities: JSON = None,
    ttl_ms: int | None = None,
) -> Call[Mapping[str, JSON]]:
    body: dict[str, Any] = {}
    if endpoints is not None:
        body["endpoints"] = endpoints
    if tags is not None:
        body["tags"] = list(tags)
    if capabilities is not None:
        body["capabilities"] = capabilities
    if ttl_ms is not None:
        body["ttl_ms"] = ttl_ms
    request = Request("PUT", _meta("services", segment(name), "instances", segment(instance_id)), body=body)
    return Call(request, _json_of(_raw))


def service_deregister(name: str, instance_id: str) -> Call[Mapping[str, JSON]]:
    request = Request("DELETE", _meta("services", segment(name), "instances", segment(instance_id)))
    return Call(request, _json_of(_raw))


def services(name: str | None = None, tag: str | None = None, min_position: int | None = None) -> Call[list[ServiceInstance]]:
    request = Request(
        "GET", "/v1/meta/services", params=_params(name=name, tag=tag, min_position=min_position), idempotent=True
    )
    return Call(request, _json_of(_list_of(ServiceInstance.from_json, "instances", "services")))


def config_set(key: str, value: JSON, scope: str | None = None) -> Call[int]:
    body: dict[str, Any] = {"value": value}
    if scope is not None:
        body["scope"] = scope
    request = Request("PUT", _meta("config", segment(key)), body=body)
    return Call(request, _json_of(_int_field("version", "configuration write")))


def config_get(
    key: str,
    version: int | None = None,
    as_of: int | str | datetime | None = None,
    scope: str | None = None,
    min_position: int | None = None,
) -> Call[ConfigValue]:
    params = _params(scope=scope, version=version, as_of=_time(as_of), min_position=min_position)
    request = Request("GET", _meta("config", segment(key)), params=params, idempotent=True)
    return Call(request, _json_of(ConfigValue.from_json))


def config_history(key: str, scope: str | None = None, min_position: int | None = None) -> Call[list[ConfigValue]]:
    request = Request(
        "GET",
        _meta("config", segment(key), "history"),
        params=_params(scope=scope, min_position=min_position),
        idempotent=True,
    )
    return Call(request, _json_of(_list_of(ConfigValue.from_json, "versions", "history")))


def relation_add(
    from_: str, to: str, type: str, properties: Mapping[str, JSON] | None = None
) -> Call[Mapping[str, JSON]]:
    body: dict[str, Any] = {"from": from_, "to": to, "type": type}
    if properties is not None:
        body["properties"] = dict(properties)
    return Call(Request("POST", "/v1/meta/relations", body=body), _json_of(_raw))


def relation_remove(from_: str, to: str, type: str) -> Call[Mapping[str, JSON]]:
    body = {"from": from_, "to": to, "type": type}
    return Call(Request("DELETE", "/v1/meta/relations", body=body), _json_of(_raw))


def relations(
    entity: str,
    direction: Literal["out", "in", "both"] = "out",
    type: str | None = None,
    depth: int | None = None,
    min_position: int | None = None,
) -> Call[list[Mapping[str, JSON]]]:
    if direction not in ("out", "in", "both"):
        raise ValueError(f"direction must be 'out', 'in' or 'both', not {direction!r}")
    params = _params(direction=direction, type=type, depth=depth, min_position=min_position)
    request = Request("GET", f"/v1/meta/relations/{segment(entity)}", params=params, idempotent=True)
    return Call(request, _json_of(_list_of(_raw, "relations", "edges")))
