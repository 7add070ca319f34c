"""The blocking client: sends the core's requests with ``httpx.Client`` and sleeps between retries.

Everything about what to send and what an answer means lives in :mod:`cairn_client._core`;
this module only moves bytes. Its twin is :mod:`cairn_client._async`; a test keeps their
public signatures identical.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Literal, TypeVar

import httpx

from . import _core as core
from ._core import Call, Paging, Request, Retry, RetryPolicy, SubscribeState
from ._errors import CairnError
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
)

T = TypeVar("T")
P = TypeVar("P")


def _headers(token: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"accept": "application/json", "user-agent": "cairn-client-python"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if extra:
        headers.update(extra)
    return headers


class Subscription(Iterator[Event]):
    """A live feed of events (``GET /v1/subscribe``): iterate it; it never ends by itself.

    The connection opens when the ``with`` block is entered, at :meth:`open`, or at the first
    ``next()``; ``from_position="end"`` means the events committed after that moment.
    After a break it reconnects with ``Last-Event-ID`` set to :attr:`last_position`, so no event
    is skipped or repeated; it raises once ``max_reconnects`` reconnection attempts in a row
    have failed. Close it (or leave the ``with`` block) to drop the connection.
    """

    def __init__(self, http: httpx.Client, state: SubscribeState, connect_timeout: float, idle_timeout: float):
        self._http = http
        self._state = state
        self._timeout = httpx.Timeout(connect_timeout, read=idle_timeout)
        self._response: httpx.Response | None = None
        self._chunks: Iterator[str] | None = None
        self._pending: deque[Event] = deque()
        self._error: CairnError | None = None
        self._closed = False

    @property
    def last_position(self) -> int | None:
        """The position of the last event delivered (``None`` before the first)."""
        return self._state.last_position

    @property
    def ended(self) -> EndOfStream | None:
        """The end-of-stream marker, once a subscription of one stream (``stream=``) has
        delivered every event of that stream and the stream is closed (or tombstoned):
        iteration then ends. ``None`` until then, and always for other subscriptions."""
        return self._state.ended

    @property
    def connections(self) -> int:
        """Connections opened so far: 1, plus one per successful reconnection."""
        return self._state.connections

    def open(self) -> Subscription:
        """Connects now (if not yet connected); returns once the server has accepted."""
        if self._closed:
            raise ValueError("the subscription is closed")
        while self._chunks is None:
            self._connect()
        return self

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Event:
        while not self._pending:
            if self._error is not None:
                error, self._error = self._error, None
                self.close()
                raise error
            if self._state.ended is not None:
                # The stream is closed and every event of it was delivered: end, for good.
                self.close()
            if self._closed:
                raise StopIteration
            self.open()
            assert self._chunks is not None
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._reconnect_after(None)
                continue
            except httpx.TransportError as e:
                self._reconnect_after(e)
                continue
            try:
                self._pending.extend(self._state.feed(chunk))
            except CairnError as e:
                # Deliver the events that came before the server's error, then raise it.
                self._error = e
        return self._pending.popleft()

    def close(self) -> None:
        """Drops the connection; iteration ends."""
        self._closed = True
        self._drop()

    def __enter__(self) -> Subscription:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _connect(self) -> None:
        request = self._state.request()
        try:
            response = self._http.send(
                self._http.build_request(
                    request.method,
                    request.path,
                    params=list(request.params),
                    headers=dict(request.headers),
                    timeout=self._timeout,
                ),
                stream=True,
            )
        except httpx.TransportError as e:
            time.sleep(self._state.disconnected(e).delay)
            return
        if not 200 <= response.status_code < 300:
            response.read()
            response.close()
        try:
            retry = self._state.opened(response)
        except BaseException:
            response.close()
            raise
        if retry is not None:
            time.sleep(retry.delay)
            return
        self._response = response
        self._chunks = response.iter_text()

    def _reconnect_after(self, error: httpx.TransportError | None) -> None:
        self._drop()
        retry = self._state.disconnected(error)
        time.sleep(retry.delay)

    def _drop(self) -> None:
        response, self._response, self._chunks = self._response, None, None
        if response is not None:
            response.close()


class Client:
    """A blocking client of ``cairn serve``.

    ``token`` is sent as ``Authorization: Bearer``. ``timeout`` (seconds) bounds connecting,
    sending, and each wait for answer bytes of every call. Idempotent calls (reads, appends,
    audit appends: their client-made ids make a repeat harmless)
    are retried up to ``retries`` times with exponential backoff starting at ``backoff``
    seconds; other calls are retried only if the request never reached the server. For an
    ``https://`` URL the server's certificate is checked against the system's trusted CAs, or
    only against the CA certificates (PEM) in ``ca_file`` when given.
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str = core.DEFAULT_BASE_URL,
        *,
        token: str | None = None,
        timeout: float = core.DEFAULT_TIMEOUT,
        retries: int = core.DEFAULT_RETRIES,
        backoff: float = core.DEFAULT_BACKOFF,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self._policy = RetryPolicy(retries=retries, backoff=backoff)
        self._timeout = timeout
        verify = core.tls_verify(ca_file)
        self._http = httpx.Client(
            base_url=base_url,
            headers=_headers(token, headers),
            timeout=timeout,
            transport=transport if transport is not None else core.sync_transport(verify),
            verify=verify,
        )
        self.kv = KeyValue(self)
        """The key-value view."""
        self.audit = Audit(self)
        """The audit view."""
        self.meta = Meta(self)
        """The metadata view: schemas, services, configuration, relations."""

    # -- plumbing ----------------------------------------------------------------------------

    def _send(self, request: Request) -> httpx.Response:
        return self._http.request(
            request.method,
            request.path,
            params=list(request.params),
            json=request.body if request.has_body else None,
            content=request.content,
            headers=dict(request.headers),
            timeout=request.timeout if request.timeout is not None else self._timeout,
        )

    def _call(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._send(call.request)
            except httpx.TransportError as e:
                outcome = core.settle(call, self._policy, attempt, error=e)
            else:
                outcome = core.settle(call, self._policy, attempt, response=response)
            if not isinstance(outcome, Retry):
                return outcome
            time.sleep(outcome.delay)
            attempt += 1

    def _pages(self, paging: Paging[P]) -> Iterator[P]:
        call: Call[P] | None = paging.first
        while call is not None:
            page = self._call(call)
            yield page
            call = paging.after(page)

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- the log -----------------------------------------------------------------------------

    def append(
        self, stream: str, events: NewEvent | Iterable[NewEvent], *, expected_version: ExpectedVersion = "any"
    ) -> AppendResult:
        """Appends events to ``stream`` atomically (all or none), durably.

        Raises :class:`WrongExpectedVersion` if the stream is not as ``expected_version`` says.
        Retried on transient failures: the events' ids make a repeated append return the
        original positions instead of writing twice.
        """
        return self._call(core.append(stream, events, expected_version))

    def append_ndjson(self, stream: str, events: Iterable[NewEvent]) -> StreamedAppend:
        """Appends many events to ``stream`` as one NDJSON request: the server appends them in
        batches (of 1,000) as the body arrives, each batch atomic and durable, and answers once.

        If it fails partway, the batches before the failing one are durable and the rest is not
        written: the exception's ``body`` has ``line`` and ``durable`` (what was written). Retried
        like :meth:`append`: the events' ids make the durable batches answer as they were.
        """
        return self._call(core.append_ndjson(stream, events))

    def append_multi(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Appends to several streams atomically: all become visible, or none. One result per
        stream, in order. A :class:`WrongExpectedVersion` names the stream that did not match."""
        return self._call(core.append_multi(appends))

    def read_stream_page(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        limit: int | None = None,
        direction: Direction = "forward",
    ) -> Page:
        """One page of ``stream``'s events; ``page.next`` is the version to continue from."""
        return self._call(core.read_stream_page(stream, from_version, limit, direction))

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        direction: Direction = "forward",
        page_size: int = core.DEFAULT_PAGE_SIZE,
    ) -> Iterator[Event]:
        """Every event of ``stream`` (from ``from_version``), page by page; ends at the stream's
        current end. Raises :class:`NotFound` if the stream does not exist."""
        for page in self._pages(core.read_stream(stream, from_version, page_size, direction)):
            yield from page.events

    def read_all_page(
        self,
        *,
        from_position: int | None = None,
        limit: int | None = None,
        stream_prefix: str | None = None,
        type_prefix: str | None = None,
    ) -> Page:
        """One page of the global log; ``page.next`` is the position to continue from. A
        filtered page may be empty and still have a ``next``."""
        return self._call(core.read_all_page(from_position, limit, stream_prefix, type_prefix))

    def read_all(
        self,
        *,
        from_position: int | None = None,
        stream_prefix: str | None = None,
        type_prefix: str | None = None,
        page_size: int = core.DEFAULT_PAGE_SIZE,
    ) -> Iterator[Event]:
        """Every event of the global log in position order (optionally filtered), up to the
        current head."""
        for page in self._pages(core.read_all(from_position, page_size, stream_prefix, type_prefix)):
            yield from page.events

    def subscribe(
        self,
        *,
        from_position: int | Literal["end"] = "end",
        stream: str | None = None,
        stream_prefix: str | None = None,
        type_prefix: str | None = None,
        max_reconnects: int = core.DEFAULT_MAX_RECONNECTS,
        idle_timeout: float = core.SUBSCRIBE_IDLE_TIMEOUT,
    ) -> Subscription:
        """Follows the log live: the events from ``from_position`` (or only new ones, ``"end"``),
        then each new one as it is committed. See :class:`Subscription`."""
        state = SubscribeState(from_position, stream, stream_prefix, type_prefix, max_reconnects, self._policy)
        return Subscription(self._http, state, self._timeout, idle_timeout)

    def streams(self, *, prefix: str | None = None, page_size: int | None = None) -> list[StreamInfo]:
        """Every stream (optionally those whose names start with ``prefix``), sorted by name:
        the listing is read page by page (``page_size`` rows each, the server's maximum by
        default) until the server says it is done, so nothing is cut off."""
        return [row for page in self._pages(core.streams(prefix, page_size)) for row in page.streams]

    def streams_page(
        self, *, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> core.StreamsPage:
        """One page of the listing, after the stream named ``after``; its ``next`` is the
        ``after`` of the next page (``None`` on the last)."""
        return self._call(core.streams_page(prefix, after, limit))


    def stream(self, stream: str) -> StreamInfo:
        """One stream as a listing row: last version, event count, and whether it is closed,
        deleted or tombstoned. Raises :class:`NotFound` if the log does not know it."""
        return self._call(core.stream_info(stream))

    def delete_stream(self, stream: str, tombstone: bool = False) -> LifecycleResult:
        """Deletes a stream. Soft (the default): reads raise :class:`StreamDeleted` until the
        stream is written again, versions continue, and reads then show only the events after
        the delete. ``tombstone=True``: for good; later appends raise :class:`StreamTombstoned`.
        Needs the ``delete`` permission on the stream."""
        return self._call(core.delete_stream(stream, tombstone))

    def close_stream(self, stream: str) -> LifecycleResult:
        """Closes a stream: later appends raise :class:`StreamClosed`, and subscriptions of it end
        (:attr:`Subscription.ended`) once they have delivered its every event."""
        return self._call(core.close_stream(stream))

    def fork_stream(self, stream: str, to: str, at_version: int) -> ForkResult:
        """Makes ``to`` a fork of ``stream``: its versions ``0..=at_version`` read the source's
        events (shared, not copied), and its own appends continue at ``at_version + 1``.
        Raises :class:`StreamExists` if ``to`` has events, :class:`ForkPastEnd` past the
        source's last version."""
        return self._call(core.fork_stream(stream, to, at_version))

    def erase(
        self, stream: str, reason: str, from_version: int | None = None, to_version: int | None = None
    ) -> EraseResult:
        """Erases the payloads (data and metadata) of versions ``from_version..=to_version`` of
        ``stream`` (default: all of them), for ``reason``: they read as their header with
        ``erased`` True from now on, everywhere. Versions a fork shares with its source are
        erased for both. Raises :class:`EraseOutOfRange` for versions the stream does not have,
        :class:`NotFound` for an unknown stream, :class:`StreamTombstoned`."""
        return self._call(core.erase(stream, reason, from_version, to_version))

    def scavenge(self, *, wait: bool = True) -> ScavengeJob:
        """Scavenges the server's log: rewrites its sealed segments with deleted, expired,
        truncated and erased events as husks (header and digests kept, payload gone; the chain
        still verifies) and gives the space back. Starts the job; with ``wait`` (the default)
        follows it until it ends and returns it ended (``state`` ``"done"`` with ``report``, or
        ``"failed"`` with ``failure``); without, returns it running (see :meth:`scavenge_job`).
        Needs ``admin`` on the whole log. Raises :class:`Conflict` (``scavenge_running``) while
        another scavenge runs."""
        job = self._call(core.scavenge())
        while wait and job.state == "running":
            job = self._call(core.scavenge_job(job.id, core.SCAVENGE_WAIT_MS_MAX))
        return job

    def scavenge_job(self, job_id: int, *, wait_ms: int | None = None) -> ScavengeJob:
        """A scavenge job by its id: now, or once it has ended if that comes within ``wait_ms``
        (the server waits at most 30 s). Raises :class:`NotFound` (``scavenge_not_found``) for a
        job the server does not remember (it keeps the newest 16, none across a restart)."""
        return self._call(core.scavenge_job(job_id, wait_ms))

    def stream_metadata(self, stream: str) -> StreamState:
        """The stream's retention limits and lifecycle state."""
        return self._call(core.stream_metadata(stream))

    def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age_ms: int | None = None,
        max_count: int | None = None,
        truncate_before: int | None = None,
        ttl_ms: int | None = None,
        closed: bool | None = None,
    ) -> LifecycleResult:
        """Replaces the stream's retention metadata (a limit left ``None`` is no limit); reads
        honour it at once, ages measured by the log's clock. ``closed=True`` closes the stream;
        ``None`` keeps it as it is (a closed stream cannot be reopened)."""
        return self._call(core.set_stream_metadata(stream, max_age_ms, max_count, truncate_before, ttl_ms, closed))

    def head(self) -> Head:
        """The log's last position and chain hash."""
        return self._call(core.head())

    def verify(self, *, from_position: int | None = None, timeout: float | None = None) -> VerifyReport:
        """Checks every record's CRC and the whole hash chain (from ``from_position``).
        ``timeout`` overrides the client's for this long-running call."""
        return self._call(core.verify(from_position, timeout))

    def create_checkpoint(
        self, *, kind: Literal["full", "incremental"] | None = None, timeout: float | None = None
    ) -> Checkpoint:
        """Takes a checkpoint of every view now: ``"full"``, ``"incremental"`` (only what changed
        since the last one), or, by default, what the server's policy asks for next.
        ``timeout`` overrides the client's for this long-running call."""
        return self._call(core.create_checkpoint(kind, timeout))

    def list_checkpoints(self) -> list[Checkpoint]:
        """The checkpoints the server holds, oldest first, each with its ``status``."""
        return self._call(core.list_checkpoints())

    def healthz(self) -> Mapping[str, JSON]:
        """The server's health answer; raises :class:`Unavailable` when it cannot serve."""
        return self._call(core.healthz())

    def metrics(self) -> str:
        """The server's Prometheus metrics text."""
        return self._call(core.metrics())


class KeyValue:
    """The key-value view (``client.kv``): Redis-like operations over cairn's log.

    Reads take ``min_position`` to wait (bounded, on the server) until the view has applied that
    log position: pass a write's ``position`` to read your own write.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, key: str, *, version: int | None = None, min_position: int | None = None) -> KvEntry:
        """The key's value and version; raises :class:`NotFound` if it is absent or expired.
        With ``version``, the key as it stood right after that version was written (a version
        ``get``, ``history`` or a write answered); :class:`NotFound` if it held nothing then or
        has no such version."""
        return self._client._call(core.kv_get(key, min_position, version))

    def exists(self, key: str, *, min_position: int | None = None) -> bool:
        """Whether the key holds anything, of any kind (value, counter, string, list or set),
        and has not expired: Redis EXISTS."""
        return self._client._call(core.kv_exists(key, min_position))

    def set(
        self,
        key: str,
        value: JSON,
        *,
        ttl_ms: int | None = None,
        expected_version: ExpectedVersion | None = None,
    ) -> Written[int]:
        """Sets the key (``value`` of the answer is the key's new version). With
        ``expected_version`` (the version ``get`` answered, or ``"no_stream"`` for "never
        written") it is a compare-and-set: :class:`WrongExpectedVersion` if the key moved."""
        return self._client._call(core.kv_set(key, value, ttl_ms, expected_version))

    def delete(self, key: str, *, expected_version: int | None = None) -> KvDeleted:
        """Deletes the key; ``deleted`` says whether it existed."""
        return self._client._call(core.kv_delete(key, expected_version))

    def incr(self, key: str, delta: int = 1) -> Written[int]:
        """Adds ``delta`` to an integer value (absent counts as 0); answers the new value.
        Raises :class:`Invalid` (``not_an_integer``) for a value that is not an integer."""
        return self._client._call(core.kv_incr(key, delta))

    def append(self, key: str, value: str) -> Written[int]:
        """Appends to a string value; answers the new length."""
        return self._client._call(core.kv_append(key, value))

    def push(self, key: str, values: Sequence[JSON], *, end: Literal["left", "right"] = "right") -> Written[int]:
        """Pushes onto a list; answers the new length."""
        return self._client._call(core.kv_push(key, values, end))

    def pop(
        self, key: str, *, end: Literal["left", "right"] = "left", count: int | None = None
    ) -> Written[list[JSON]]:
        """Pops from a list; answers the popped values."""
        return self._client._call(core.kv_pop(key, end, count))

    def range(self, key: str, start: int = 0, stop: int = -1, *, min_position: int | None = None) -> list[JSON]:
        """A list's items from ``start`` to ``stop`` inclusive (LRANGE index rules)."""
        return self._client._call(core.kv_range(key, start, stop, min_position))

    def sadd(self, key: str, members: Sequence[str]) -> Written[int]:
        """Adds members to a set; answers how many were new."""
        return self._client._call(core.kv_sadd(key, members))

    def srem(self, key: str, members: Sequence[str]) -> Written[int]:
        """Removes members from a set; answers how many were there."""
        return self._client._call(core.kv_srem(key, members))

    def members(self, key: str, *, min_position: int | None = None) -> list[str]:
        """A set's members, sorted."""
        return self._client._call(core.kv_members(key, min_position))

    def history(self, key: str, *, limit: int | None = None) -> list[KvVersion]:
        """The key's past versions (each operation, value, time and log position)."""
        return self._client._call(core.kv_history(key, limit))

    def keys_page(
        self,
        *,
        prefix: str | None = None,
        after: str | None = None,
        limit: int | None = None,
        min_position: int | None = None,
    ) -> KeyPage:
        """One page of key names; pass ``next`` as ``after`` to continue."""
        return self._client._call(core.kv_keys_page(prefix, after, limit, min_position))

    def keys(
        self,
        *,
        prefix: str | None = None,
        page_size: int = core.DEFAULT_PAGE_SIZE,
        min_position: int | None = None,
    ) -> Iterator[str]:
        """Every key name (starting with ``prefix``), page by page, sorted."""
        for page in self._client._pages(core.kv_keys(prefix, page_size, min_position)):
            yield from page.keys

    def get_many(self, keys: Sequence[str], *, min_position: int | None = None) -> dict[str, JSON]:
        """Several keys at once; absent keys map to ``None``."""
        return self._client._call(core.kv_get_many(keys, min_position))

    def txn(self, ops: Sequence[Mapping[str, JSON]], *, watch: Mapping[str, int | None] | None = None) -> TxnResult:
        """Applies ``ops`` (``{"op": "set", "key": ..., "value": ...}``, ...) all or nothing.
        ``watch`` maps keys to the version they must still have (``None``: must be absent);
        if one moved, :class:`WrongExpectedVersion` names it and nothing is written."""
        return self._client._call(core.kv_txn(ops, watch))


class Audit:
    """The audit view (``client.audit``): structured, chain-backed audit entries."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def append(
        self,
        *,
        level: str,
        category: str,
        event: str,
        actor: Mapping[str, JSON],
        target: Mapping[str, JSON] | None = None,
        context: Mapping[str, JSON] | None = None,
        outcome: str | None = None,
        metadata: Mapping[str, JSON] | None = None,
        id: uuid.UUID | str | None = None,
        **extra: JSON,
    ) -> AuditReceipt:
        """Writes an audit entry; answers its id, log position and chain hash. ``actor`` is
        ``{"type": "agent"|"user"|"system", "id": ...}``; ``extra`` fields (e.g. ``source``)
        are sent as given. ``id`` defaults to a fresh UUID, which makes retries idempotent."""
        entry = core.audit_entry(level, category, event, actor, target, context, outcome, metadata, extra)
        return self._client._call(core.audit_append(entry, id))

    def query_page(
        self, *, after: str | None = None, min_position: int | None = None, **filters: int | str | datetime | None
    ) -> core.AuditPage:
        """One page of matching entries; filters are the contract's query parameters (``actor``,
        ``category``, ``level``, ``target``, ``trace_id``, ``agent_id``, ``workflow_id``,
        ``task_id``, ``since``, ``until``, ``order``, ``limit``); ``limit`` is this page's size
        (at most 1000 on the server)."""
        return self._client._call(core.audit_query_page(core.audit_filters(filters, min_position), after))

    def query(
        self, *, after: str | None = None, min_position: int | None = None, **filters: int | str | datetime | None
    ) -> Iterator[AuditRecord]:
        """Every matching entry, page by page (same filters as :meth:`query_page`), or the
        first ``limit`` of them: here ``limit`` is the total, not a page size."""
        query = core.audit_filters(filters, min_position)
        total = core.audit_total(query)
        if total == 0:
            return
        count = 0
        for page in self._client._pages(core.audit_query(query, after)):
            for item in page.entries:
                yield item
                count += 1
                if total is not None and count >= total:
                    return

    def proof(self, entry_id: str) -> AuditProof:
        """The entry and whether the log confirms it (same data and chain hash)."""
        return self._client._call(core.audit_proof(entry_id))


class Meta:
    """The metadata view (``client.meta``): schema registry, service registry, configuration,
    relations."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def register_schema(self, subject: str, schema: JSON) -> int:
        """Registers a new version of ``subject``'s schema; answers its version. Raises
        :class:`Conflict` (``incompatible_schema``) if it breaks the subject's compatibility mode."""
        return self._client._call(core.schema_register(subject, schema))

    def set_compatibility(
        self, subject: str, mode: Literal["none", "backward", "forward", "full"]
    ) -> Mapping[str, JSON]:
        """Sets how new versions of ``subject`` must relate to old ones."""
        return self._client._call(core.schema_compatibility(subject, mode))

    def get_schema(
        self, subject: str, version: int | Literal["latest"] = "latest", *, min_position: int | None = None
    ) -> SchemaVersion:
        """One version (or the latest) of ``subject``'s schema."""
        return self._client._call(core.schema_get(subject, version, min_position))

    def validate(self, subject: str, payload: JSON, *, version: int | None = None) -> Validation:
        """Checks ``payload`` against ``subject``'s schema (the latest, or ``version``)."""
        return self._client._call(core.schema_validate(subject, payload, version))

    def register_instance(
        self,
        service: str,
        instance_id: str,
        *,
        endpoints: JSON = None,
        tags: Sequence[str] | None = None,
        capabilities: JSON = None,
        ttl_ms: int | None = None,
    ) -> Mapping[str, JSON]:
        """Registers (or heartbeats) an instance of ``service``; it stays healthy for ``ttl_ms``."""
        return self._client._call(core.service_register(service, instance_id, endpoints, tags, capabilities, ttl_ms))

    def deregister_instance(self, service: str, instance_id: str) -> Mapping[str, JSON]:
        """Removes an instance of ``service``."""
        return self._client._call(core.service_deregister(service, instance_id))

    def services(
        self, *, name: str | None = None, tag: str | None = None, min_position: int | None = None
    ) -> list[ServiceInstance]:
        """Healthy instances (of service ``name``, with ``tag``)."""
        return self._client._call(core.services(name, tag, min_position))

    def set_config(self, key: str, value: JSON, *, scope: str | None = None) -> int:
        """Sets a configuration value; answers its new version."""
        return self._client._call(core.config_set(key, value, scope))

    def get_config(
        self,
        key: str,
        *,
        version: int | None = None,
        as_of: int | str | datetime | None = None,
        scope: str | None = None,
        min_position: int | None = None,
    ) -> ConfigValue:
        """A configuration value (in ``scope``, default global): current, at ``version``, or as
        it was at time ``as_of`` (unix ms, RFC 3339 text, or a ``datetime``)."""
        return self._client._call(core.config_get(key, version, as_of, scope, min_position))

    def config_history(
        self, key: str, *, scope: str | None = None, min_position: int | None = None
    ) -> list[ConfigValue]:
        """Every version of a configuration value (in ``scope``, default global)."""
        return self._client._call(core.config_history(key, scope, min_position))

    def add_relation(
        self, from_: str, to: str, type: str, *, properties: Mapping[str, JSON] | None = None
    ) -> Mapping[str, JSON]:
        """Records a typed relation ``from_ → to``."""
        return self._client._call(core.relation_add(from_, to, type, properties))

    def remove_relation(self, from_: str, to: str, type: str) -> Mapping[str, JSON]:
        """Removes a relation."""
        return self._client._call(core.relation_remove(from_, to, type))

    def relations(
        self,
        entity: str,
        *,
        direction: Literal["out", "in", "both"] = "out",
        type: str | None = None,
        depth: int | None = None,
        min_position: int | None = None,
    ) -> list[Mapping[str, JSON]]:
        """Relations of ``entity`` (following up to ``depth`` hops)."""
        return self._client._call(core.relations(entity, direction, type, depth, min_position))


__all__ = ["Audit", "Client", "KeyValue", "Meta", "Subscription"]
