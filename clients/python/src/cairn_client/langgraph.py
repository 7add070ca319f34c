"""LangGraph checkpointers on cairn: :class:`AsyncCairnSaver` and :class:`CairnSaver`.

Install with ``pip install "cairn-client[langgraph]"``. Both implement LangGraph's
``BaseCheckpointSaver`` (``langgraph-checkpoint`` 4.x) against a running ``cairn serve``::

    from cairn_client.langgraph import AsyncCairnSaver
    graph = builder.compile(checkpointer=AsyncCairnSaver(url="http://127.0.0.1:7070"))

**A thread is a stream.** Thread ``T`` lives on stream ``langgraph:T`` (every checkpoint
namespace of the thread, subgraphs included). Its events, all with binary payloads:

- ``langgraph.checkpoint``: one checkpoint (its namespace, id, parent id, the checkpoint without
  its channel values, the metadata, and the values of the channels this step changed, each
  under its channel version), as MessagePack of the serializer's typed bytes.
- ``langgraph.writes``: one ``put_writes`` call (namespace, checkpoint id, task id, task path,
  and each write's index, channel and typed value).
- ``langgraph.runs-deleted``: ``delete_for_runs`` hides the checkpoints of these run ids and
  their writes from then on.
- ``langgraph.part``: a leading piece of a record too large for one event; the pieces and the
  record's own event are appended together, so they are consecutive.

A checkpoint's channel values are found under the versions it names, which earlier checkpoints
of the thread may have written (only changed channels are stored, as the Postgres saver does).
Channel versions end in a random fraction, so two branches of a thread never name the same one.

**Reading.** A saver folds a thread's events into checkpoints, values and writes, keeps the fold
of the threads it read last (:data:`THREADS_CACHED_MAX`), and next time reads only the events
appended since. It reads the whole thread again when the stream's delete or truncation point
moved (another process deleted, pruned or expired it) or the new events do not continue the
fold. ``DeltaChannel`` history (``get_delta_channel_history``) walks the fold, not the server.

**Concurrency.** ``put`` appends with the thread's version as this saver last saw it. When the
stream moved meanwhile, the saver reads what was appended: if another writer put a checkpoint
with the same parent in the same namespace (both continued the same checkpoint), ``put``
raises :class:`ThreadConflict` and nothing is written; otherwise (writes of parallel tasks,
another namespace, another branch) it appends at the new version. Time travel (continuing an
older checkpoint that already has a child) is a branch, not a conflict.

**Verified before deserialised.** Every event read is checked against the log's chain hash
(:mod:`cairn_client._chain`) before any byte of it is decoded; a changed byte raises
:class:`IntegrityError`. The check needs the hash of the event before each one in the global
log, so the token needs read access to ``GET /v1/events`` at those positions. A checkpoint
another client appended has a sound chain hash too: with ``trusted_principals`` the saver
decodes only events the server stamped with one of those principals.

**Lifecycle.** ``delete_thread`` soft-deletes the stream; ``copy_thread`` forks it (no copy of
the shared history); ``prune(strategy="keep_latest")`` appends a copy of each namespace's latest
checkpoint (with every channel value and its writes, and the ancestors a ``DeltaChannel`` still
needs) and truncates the stream before it; ``prune(strategy="delete")`` deletes the thread. The
global log keeps every event: a delete or prune hides history from thread reads, it does not
erase it.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from ._async import AsyncClient
from ._chain import ChainChecker, IntegrityError
from ._core import DEFAULT_BASE_URL
from ._errors import Conflict, NotFound, WrongExpectedVersion
from ._loops import LoopClients
from ._types import Event, NewEvent

__all__ = ["AsyncCairnSaver", "CairnSaver", "IntegrityError", "ThreadConflict", "THREAD_STREAM_PREFIX"]

THREAD_STREAM_PREFIX = "langgraph:"
"""Stream name of thread ``T``: this prefix, then ``T``."""

CHECKPOINT_EVENT = "langgraph.checkpoint"
WRITES_EVENT = "langgraph.writes"
RUNS_DELETED_EVENT = "langgraph.runs-deleted"
PART_EVENT = "langgraph.part"

RECORD_VERSION = 1
"""The envelope format of the events above; a reader refuses another."""

PRINCIPAL_KEY = "$principal"
"""The metadata key in which a server with ``--auth`` names who appended an event."""

PART_BYTES_MAX = 768 * 1024
"""Largest payload of one event the saver writes; a larger record is split into parts (the
server's event limit is 1 MiB)."""

THREAD_PAGE_SIZE = 1000
"""Events per read when loading a thread."""

PREDECESSOR_READS_AT_ONCE = 32
"""Reads of ``h(p-1)`` a saver has in flight at once when it checks events it has not seen."""

THREADS_CACHED_MAX = 128
"""Threads whose fold a saver keeps, so reading a thread again reads only what was appended
since (least recently used first out)."""

PUT_ATTEMPTS_MAX = 32
"""Appends a ``put`` tries while other writers move the thread without conflicting with it."""

Typed = tuple[str, bytes]
T = TypeVar("T")


class ThreadConflict(Conflict):
    """Another writer put a checkpoint continuing the same parent checkpoint of the same thread
    and namespace after this saver last read the thread: two runs advanced one thread at once.
    Nothing was written; read the thread again (``get_tuple``) and decide."""

    def __init__(self, message: str, *, thread_id: str, checkpoint_ns: str, parent_id: str | None) -> None:
        super().__init__(message, code="thread_conflict", status=409)
        self.thread_id = thread_id
        self.checkpoint_ns = checkpoint_ns
        self.parent_id = parent_id


# --- records: what the events carry ----------------------------------------------------------


@dataclass
class _Stored:
    """One checkpoint as the thread holds it (still serialized)."""

    ns: str
    id: str
    parent: str | None
    checkpoint: Typed
    metadata: Typed
    run_id: str | None
    version: int


@dataclass
class _Thread:
    """The fold of one thread's stream: checkpoints, channel values and pending writes."""

    thread_id: str
    checkpoints: dict[str, dict[str, _Stored]] = field(default_factory=dict)
    blobs: dict[tuple[str, str, Any], Typed] = field(default_factory=dict)
    # (ns, checkpoint id) -> (task id, idx) -> (task id, channel, value, task path)
    writes: dict[tuple[str, str], dict[tuple[str, int], tuple[str, str, Typed, str]]] = field(default_factory=dict)
    deleted_runs: set[str] = field(default_factory=set)
    last_version: int | None = None
    # Leading pieces of a record whose own event has not been folded yet.
    parts: list[bytes] = field(default_factory=list)

    def fold(self, events: list[Event]) -> None:
        """Folds checked events (in stream order) in; an event already folded is skipped, so
        folding overlapping reads is harmless."""
        for event in events:
            if self.last_version is not None and event.version <= self.last_version:
                continue
            self.last_version = event.version
            assert isinstance(event.data, bytes), "the chain check admits binary payloads only"
            if event.type == PART_EVENT:
                self.parts.append(event.data)
                continue
            payload, self.parts = b"".join(self.parts) + event.data, []
            if event.type not in (CHECKPOINT_EVENT, WRITES_EVENT, RUNS_DELETED_EVENT):
                continue
            try:
                self.apply(event.type, ormsgpack.unpackb(payload), event.version)
            except (ValueError, KeyError, TypeError, ormsgpack.MsgpackDecodeError) as e:
                raise IntegrityError(
                    f"the {event.type} event at position {event.position} (stream {event.stream!r}) is "
                    f"not a record this saver wrote: {e}",
                    stream=event.stream,
                    position=event.position,
                ) from e

    def visible(self, stored: _Stored) -> bool:
        return stored.run_id is None or stored.run_id not in self.deleted_runs

    def namespace(self, ns: str) -> dict[str, _Stored]:
        return {k: v for k, v in self.checkpoints.get(ns, {}).items() if self.visible(v)}

    def latest(self, ns: str) -> _Stored | None:
        found = self.namespace(ns)
        return found[max(found)] if found else None

    def ordered_writes(self, ns: str, checkpoint_id: str) -> list[tuple[str, str, Typed, str]]:
        stored = self.writes.get((ns, checkpoint_id), {})
        return [stored[k] for k in sorted(stored, key=lambda k: writes_sort_key(stored[k][3], *k))]

    def apply(self, kind: str, record: Mapping[str, Any], version: int) -> None:
        if record.get("v") != RECORD_VERSION:
            raise ValueError(f"record format {record.get('v')!r}, this saver reads {RECORD_VERSION}")
        if kind == CHECKPOINT_EVENT:
            ns = record["ns"]
            for channel, channel_version, typ, blob in record["blobs"]:
                self.blobs[(ns, channel, channel_version)] = (typ, blob)
            stored = _Stored(
                ns=ns,
                id=record["id"],
                parent=record["parent"],
                checkpoint=tuple(record["checkpoint"]),
                metadata=tuple(record["metadata"]),
                run_id=record.get("run_id"),
                version=version,
            )
            self.checkpoints.setdefault(ns, {})[stored.id] = stored
            for write in record.get("writes", []):
                self._write(ns, stored.id, *write)
        elif kind == WRITES_EVENT:
            for idx, channel, typ, value in record["writes"]:
                self._write(record["ns"], record["id"], record["task_id"], idx, channel, typ, value, record["path"])
        elif kind == RUNS_DELETED_EVENT:
            self.deleted_runs.update(record["run_ids"])

    def _write(self, ns: str, cid: str, task: str, idx: int, channel: str, typ: str, value: bytes, path: str) -> None:
        into = self.writes.setdefault((ns, cid), {})
        # A regular write is kept once per (task, index), so a retried put_writes changes
        # nothing; the special channels (negative indices) keep the newest, as InMemorySaver does.
        if idx >= 0 and (task, idx) in into:
            return
        into[(task, idx)] = (task, channel, (typ, value), path)


@dataclass
class _Cached:
    """A thread's fold and the stream's delete and truncation points when it was read."""

    thread: _Thread
    mark: tuple[int | None, int | None]


def _pack(record: Mapping[str, Any]) -> bytes:
    return ormsgpack.packb({"v": RECORD_VERSION, **record})


def _events_of(kind: str, payload: bytes) -> list[NewEvent]:
    """The events of one record: leading parts, then the record's own event."""
    pieces = [payload[i : i + PART_BYTES_MAX] for i in range(0, len(payload), PART_BYTES_MAX)] or [b""]
    return [NewEvent(PART_EVENT, piece) for piece in pieces[:-1]] + [NewEvent(kind, pieces[-1])]


def _thread_of(config: RunnableConfig) -> tuple[str, str]:
    configurable = config.get("configurable", {})
    return str(configurable["thread_id"]), str(configurable.get("checkpoint_ns", ""))


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


def _needed_ancestors(thread: _Thread, kept: _Stored, serde: SerializerProtocol) -> list[_Stored]:
    """``kept`` and the ancestors its delta channels still need: for each ``DeltaChannel``
    (a key of the metadata's ``counters_since_delta_snapshot``) without a value at ``kept``, the
    parent chain back to the nearest checkpoint that holds one (to the root when none does), as
    ``get_delta_channel_history`` walks it. Other channels need no ancestor."""
    versions = serde.loads_typed(kept.checkpoint)["channel_versions"]
    delta_channels = (serde.loads_typed(kept.metadata).get("counters_since_delta_snapshot") or {}).keys()
    open_channels = {
        ch
        for ch in delta_channels
        if ch in versions and thread.blobs.get((kept.ns, ch, versions[ch]), ("empty", b""))[0] == "empty"
    }
    chain = [kept]
    ns = thread.checkpoints.get(kept.ns, {})
    current = ns.get(kept.parent) if kept.parent else None
    while current is not None and open_channels:
        chain.append(current)
        seen = serde.loads_typed(current.checkpoint)["channel_versions"]
        open_channels = {
            ch
            for ch in open_channels
            if ch not in seen or thread.blobs.get((kept.ns, ch, seen[ch]), ("empty", b""))[0] == "empty"
        }
        current = ns.get(current.parent) if current.parent else None
    return chain


class _Reader:
    """What both savers compute from a folded thread (no I/O)."""

    serde: SerializerProtocol

    def get_next_version(self, current: str | None, channel: None) -> str:
        """A channel version unique to its branch: the step count, then a random fraction (as
        the Postgres and in-memory savers make them). Values are stored under their version, so
        two branches of one thread (time travel) must never name the same one."""
        if current is None:
            step = 0
        elif isinstance(current, int):
            step = current
        else:
            step = int(current.split(".")[0])
        return f"{step + 1:032}.{random.random():016}"

    def _tuple(self, thread: _Thread, stored: _Stored, config: RunnableConfig | None = None) -> CheckpointTuple:
        checkpoint: Checkpoint = self.serde.loads_typed(stored.checkpoint)
        values: dict[str, Any] = {}
        for channel, version in checkpoint["channel_versions"].items():
            blob = thread.blobs.get((stored.ns, channel, version))
            if blob is not None and blob[0] != "empty":
                values[channel] = self.serde.loads_typed(blob)
        return CheckpointTuple(
            config=config or _config(thread.thread_id, stored.ns, stored.id),
            checkpoint={**checkpoint, "channel_values": values},
            metadata=self.serde.loads_typed(stored.metadata),
            parent_config=_config(thread.thread_id, stored.ns, stored.parent) if stored.parent else None,
            pending_writes=[
                (task, channel, self.serde.loads_typed(value))
                for task, channel, value, _ in thread.ordered_writes(stored.ns, stored.id)
            ],
        )

    def _get(self, thread: _Thread, config: RunnableConfig) -> CheckpointTuple | None:
        _, ns = _thread_of(config)
        wanted = get_checkpoint_id(config)
        if wanted:
            stored = thread.namespace(ns).get(wanted)
            return self._tuple(thread, stored, config) if stored else None
        latest = thread.latest(ns)
        return self._tuple(thread, latest) if latest else None

    def _list(
        self,
        thread: _Thread,
        config: RunnableConfig | None,
        filter: Mapping[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Iterator[CheckpointTuple]:
        configurable = (config or {}).get("configurable", {})
        only_ns = configurable.get("checkpoint_ns")
        only_id = configurable.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        found = [
            stored
            for ns in thread.checkpoints
            if only_ns is None or ns == only_ns
            for stored in thread.namespace(ns).values()
            if (not only_id or stored.id == only_id) and (not before_id or stored.id < before_id)
        ]
        found.sort(key=lambda s: s.id, reverse=True)
        for stored in found:
            if limit is not None and limit <= 0:
                return
            if filter:
                metadata = self.serde.loads_typed(stored.metadata)
                if not all(metadata.get(k) == v for k, v in filter.items()):
                    continue
            if limit is not None:
                limit -= 1
            yield self._tuple(thread, stored)

    def _delta_history(
        self, thread: _Thread, config: RunnableConfig, channels: Sequence[str]
    ) -> dict[str, DeltaChannelHistory]:
        _, ns = _thread_of(config)
        checkpoints = thread.namespace(ns)
        target = checkpoints.get(get_checkpoint_id(config) or max(checkpoints, default=""))
        collected: dict[str, list[PendingWrite]] = {c: [] for c in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        current = checkpoints.get(target.parent) if target is not None and target.parent else None
        while current is not None and remaining:
            versions = self.serde.loads_typed(current.checkpoint)["channel_versions"]
            here: dict[str, Any] = {}
            for ch in remaining:
                blob = thread.blobs.get((ns, ch, versions.get(ch)))
                if ch in versions and blob is not None and blob[0] != "empty":
                    here[ch] = self.serde.loads_typed(blob)
            for task, ch, value, _ in reversed(thread.ordered_writes(ns, current.id)):
                if ch in remaining:
                    collected[ch].append((task, ch, self.serde.loads_typed(value)))
            seeds.update(here)
            remaining -= here.keys()
            current = checkpoints.get(current.parent) if current.parent else None
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            entry: DeltaChannelHistory = {"writes": list(reversed(collected[ch]))}
            if ch in seeds:
                entry["seed"] = seeds[ch]
            result[ch] = entry
        return result

    def _checkpoint_record(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[str, str, str | None, bytes]:
        thread_id, ns = _thread_of(config)
        parent = get_checkpoint_id(config)
        stored: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = stored.pop("channel_values")
        blobs = [
            [ch, version, *(self.serde.dumps_typed(values[ch]) if ch in values else ("empty", b""))]
            for ch, version in new_versions.items()
        ]
        full_metadata = get_checkpoint_metadata(config, metadata)
        run_id = full_metadata.get("run_id")
        record = {
            "ns": ns,
            "id": checkpoint["id"],
            "parent": parent,
            "checkpoint": list(self.serde.dumps_typed(stored)),
            "metadata": list(self.serde.dumps_typed(full_metadata)),
            "run_id": str(run_id) if run_id is not None else None,
            "blobs": blobs,
        }
        return thread_id, ns, parent, _pack(record)

    def _writes_record(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> bytes:
        _, ns = _thread_of(config)
        return _pack(
            {
                "ns": ns,
                "id": config["configurable"]["checkpoint_id"],
                "task_id": task_id,
                "path": task_path,
                "writes": [
                    [WRITES_IDX_MAP.get(channel, idx), channel, *self.serde.dumps_typed(value)]
                    for idx, (channel, value) in enumerate(writes)
                ],
            }
        )

    def _compacted(self, thread: _Thread) -> list[bytes]:
        """The records ``prune(keep_latest)`` re-appends: each namespace's latest checkpoint and
        the ancestors its delta channels need, oldest first, each with every channel value it
        names and its pending writes."""
        kept: list[_Stored] = []
        for ns in thread.checkpoints:
            latest = thread.latest(ns)
            if latest is not None:
                kept.extend(reversed(_needed_ancestors(thread, latest, self.serde)))
        records: list[bytes] = []
        for stored in kept:
            versions = self.serde.loads_typed(stored.checkpoint)["channel_versions"]
            records.append(
                _pack(
                    {
                        "ns": stored.ns,
                        "id": stored.id,
                        "parent": stored.parent,
                        "checkpoint": list(stored.checkpoint),
                        "metadata": list(stored.metadata),
                        "run_id": stored.run_id,
                        "blobs": [
                            [ch, v, *thread.blobs[(stored.ns, ch, v)]]
                            for ch, v in versions.items()
                            if (stored.ns, ch, v) in thread.blobs
                        ],
                        "writes": [
                            [task, idx, channel, *value, path]
                            for (task, idx), (_, channel, value, path) in thread.writes.get(
                                (stored.ns, stored.id), {}
                            ).items()
                        ],
                    }
                )
            )
        return records


def _conflict(thread: _Thread, ns: str, parent: str | None, after: int | None, own_id: str) -> ThreadConflict | None:
    for stored in thread.checkpoints.get(ns, {}).values():
        if stored.parent == parent and stored.id != own_id and (after is None or stored.version > after):
            return ThreadConflict(
                f"thread {thread.thread_id!r} (namespace {ns!r}) got checkpoint {stored.id} continuing "
                f"{parent or 'the start'} from another writer after this saver last read it; "
                "nothing was written.",
                thread_id=thread.thread_id,
                checkpoint_ns=ns,
                parent_id=parent,
            )
    return None


class AsyncCairnSaver(_Reader, BaseCheckpointSaver[str]):
    """A LangGraph checkpointer on a ``cairn serve`` (asyncio): use it with ``ainvoke``,
    ``astream`` and the other async graph methods; for sync graphs use :class:`CairnSaver`.

    ``url`` and ``token`` reach the server as :class:`cairn_client.AsyncClient` does; pass
    ``client`` instead to share one. ``serde`` is LangGraph's serializer (its default when
    omitted).

    ``trusted_principals``: on a server with ``--auth``, which stamps every event with the
    principal that appended it, the principals whose events the saver decodes; an event of
    another (a client that could append to the thread's stream but is not one of the savers)
    raises :class:`IntegrityError` before it is decoded. ``None`` (the default) decodes every
    event that passes the chain check.
    """

    def __init__(
        self,
        url: str = DEFAULT_BASE_URL,
        token: str | None = None,
        *,
        client: AsyncClient | None = None,
        serde: SerializerProtocol | None = None,
        stream_prefix: str = THREAD_STREAM_PREFIX,
        trusted_principals: Collection[str] | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self._clients = LoopClients(url, token, client)
        self.stream_prefix = stream_prefix
        self.trusted_principals = frozenset(trusted_principals) if trusted_principals is not None else None
        self._chain = ChainChecker()
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        # The thread's last version as this saver last saw it: what `put` expects.
        self._seen: dict[str, int | None] = {}

    def stream_of(self, thread_id: str) -> str:
        """The stream that holds ``thread_id``."""
        return f"{self.stream_prefix}{thread_id}"

    @property
    def client(self) -> AsyncClient:
        """The client for the running event loop (one per loop, so one saver serves several)."""
        return self._clients.get()

    async def aclose(self) -> None:
        """Closes the running event loop's connections."""
        await self._clients.aclose()

    async def __aenter__(self) -> AsyncCairnSaver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- reading -------------------------------------------------------------------------------

    async def _read(self, stream: str, from_version: int | None) -> list[Event]:
        """The stream's events from ``from_version``, each checked against the chain."""
        events = [e async for e in self.client.read_stream(stream, from_version=from_version, page_size=THREAD_PAGE_SIZE)]
        pending = self._chain.pending(events)
        pages = []
        for at in range(0, len(pending), PREDECESSOR_READS_AT_ONCE):
            batch = pending[at : at + PREDECESSOR_READS_AT_ONCE]
            pages += await asyncio.gather(*(self.client.read_all_page(from_position=p, limit=1) for p in batch))
        previous: dict[int, str] = {}
        for position, page in zip(pending, pages):
            if not page.events or page.events[0].position != position:
                raise IntegrityError(
                    f"the global log has no event at position {position}, the one before an event of "
                    f"{stream!r}, so that event's chain hash cannot be checked.",
                    stream=stream,
                    position=position + 1,
                )
            previous[position] = page.events[0].hash
        self._chain.check(events, previous)
        if self.trusted_principals is not None:
            for event in events:
                who = event.metadata.get(PRINCIPAL_KEY)
                if who not in self.trusted_principals:
                    raise IntegrityError(
                        f"the event at position {event.position} (stream {event.stream!r}, version "
                        f"{event.version}) was appended by {who!r}, not by a trusted principal "
                        f"({', '.join(sorted(self.trusted_principals))}), so it is not decoded.",
                        stream=event.stream,
                        position=event.position,
                    )
        return events

    async def _mark(self, stream: str) -> tuple[int | None, int | None]:
        """Where the stream's reads start after a delete and after a truncation: when either
        moves, a cached fold holds history the stream no longer shows."""
        try:
            state = await self.client.stream_metadata(stream)
        except NotFound:
            return (None, None)
        return (state.deleted_before, state.truncate_before)

    async def _thread(self, thread_id: str) -> _Thread:
        """The thread's fold: the cached one brought up to date with the events appended since
        (the mark is read after them, so a delete or truncation before them is seen), or, when
        there is none or the stream was deleted or truncated since, a fold of a full read (the
        mark read before it, so a change during the read shows at the next call)."""
        stream = self.stream_of(thread_id)
        cached = self._cache.get(thread_id)
        thread: _Thread | None = None
        if cached is not None and cached.thread.last_version is not None:
            start = cached.thread.last_version + 1
            try:
                events: list[Event] | None = await self._read(stream, start)
            except NotFound:
                events = None
            if events is not None and (not events or events[0].version == start) and await self._mark(stream) == cached.mark:
                cached.thread.fold(events)
                thread = cached.thread
                self._cache.move_to_end(thread_id)
        if thread is None:
            mark = await self._mark(stream)
            thread = _Thread(thread_id)
            try:
                thread.fold(await self._read(stream, None))
            except NotFound:
                pass
            self._cache[thread_id] = _Cached(thread, mark)
            while len(self._cache) > THREADS_CACHED_MAX:
                self._cache.popitem(last=False)
        self._seen[thread_id] = thread.last_version
        return thread

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, _ = _thread_of(config)
        return self._get(await self._thread(thread_id), config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        if config is not None:
            thread_ids = [_thread_of(config)[0]]
        else:
            listed = await self.client.streams(prefix=self.stream_prefix)
            thread_ids = [s.stream[len(self.stream_prefix) :] for s in listed]
        for thread_id in thread_ids:
            thread = await self._thread(thread_id)
            for item in self._list(thread, config, filter, before, limit):
                if limit is not None:
                    limit -= 1
                yield item
            if limit is not None and limit <= 0:
                return

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        if not channels:
            return {}
        thread_id, _ = _thread_of(config)
        return self._delta_history(await self._thread(thread_id), config, channels)

    # -- writing -------------------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id, ns, parent, payload = self._checkpoint_record(config, checkpoint, metadata, new_versions)
        stream = self.stream_of(thread_id)
        if thread_id not in self._seen:
            await self._thread(thread_id)
        events = _events_of(CHECKPOINT_EVENT, payload)
        expected = self._seen[thread_id]
        for _ in range(PUT_ATTEMPTS_MAX):
            try:
                result = await self.client.append(
                    stream, events, expected_version="no_stream" if expected is None else expected
                )
            except WrongExpectedVersion as e:
                thread = await self._thread(thread_id)
                found = _conflict(thread, ns, parent, expected, checkpoint["id"])
                if found is not None:
                    raise found from e
                expected = e.actual
                continue
            self._seen[thread_id] = result.last_version
            return _config(thread_id, ns, checkpoint["id"])
        raise ThreadConflict(
            f"thread {thread_id!r} kept moving: {PUT_ATTEMPTS_MAX} appends of checkpoint {checkpoint['id']} "
            "met a newer version; nothing was written.",
            thread_id=thread_id,
            checkpoint_ns=ns,
            parent_id=parent,
        )

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        # Writes never replace anything (the first per task and index wins in the fold), so
        # parallel tasks append without expecting a version.
        thread_id, _ = _thread_of(config)
        payload = self._writes_record(config, writes, task_id, task_path)
        result = await self.client.append(self.stream_of(thread_id), _events_of(WRITES_EVENT, payload))
        # When these writes follow straight on from the version this saver last saw, nobody else
        # wrote in between: the next `put` may expect the writes' last version. Otherwise every
        # `put` after a `put_writes` met WrongExpectedVersion, read the thread back and retried
        # (four extra round trips a step, measured in benches/frameworks).
        if thread_id in self._seen:
            seen = self._seen[thread_id]
            if (-1 if seen is None else seen) == result.first_version - 1:
                self._seen[thread_id] = result.last_version

    # -- lifecycle -----------------------------------------------------------------------------

    async def adelete_thread(self, thread_id: str) -> None:
        self._cache.pop(thread_id, None)
        try:
            await self.client.delete_stream(self.stream_of(thread_id))
        except NotFound:
            pass

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        wanted = set(run_ids)
        if not wanted:
            return
        for listed in await self.client.streams(prefix=self.stream_prefix):
            thread = await self._thread(listed.stream[len(self.stream_prefix) :])
            hit = sorted(
                {s.run_id for ns in thread.checkpoints.values() for s in ns.values() if s.run_id in wanted}
                - thread.deleted_runs
            )
            if hit:
                record = _pack({"run_ids": hit})
                await self.client.append(listed.stream, _events_of(RUNS_DELETED_EVENT, record))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source = self.stream_of(source_thread_id)
        thread = await self._thread(source_thread_id)
        if thread.last_version is None:
            return
        await self.client.fork_stream(source, self.stream_of(target_thread_id), thread.last_version)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"prune strategy {strategy!r} is not one of 'keep_latest', 'delete'")
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.adelete_thread(thread_id)
                continue
            await self._compact(thread_id)

    async def _compact(self, thread_id: str) -> None:
        stream = self.stream_of(thread_id)
        for _ in range(PUT_ATTEMPTS_MAX):
            thread = await self._thread(thread_id)
            if thread.last_version is None:
                return
            events = [e for record in self._compacted(thread) for e in _events_of(CHECKPOINT_EVENT, record)]
            if thread.deleted_runs:
                # The copies keep their run ids, so the runs deleted before stay hidden.
                events += _events_of(RUNS_DELETED_EVENT, _pack({"run_ids": sorted(thread.deleted_runs)}))
            try:
                result = await self.client.append(stream, events, expected_version=thread.last_version)
            except WrongExpectedVersion:
                continue
            state = await self.client.stream_metadata(stream)
            await self.client.set_stream_metadata(
                stream,
                max_age_ms=state.max_age_ms,
                max_count=state.max_count,
                truncate_before=result.first_version,
                ttl_ms=state.ttl_ms,
            )
            self._seen[thread_id] = result.last_version
            self._cache.pop(thread_id, None)
            return
        raise ThreadConflict(
            f"thread {thread_id!r} kept moving: {PUT_ATTEMPTS_MAX} attempts to prune it met a newer "
            "version; nothing was truncated.",
            thread_id=thread_id,
            checkpoint_ns="",
            parent_id=None,
        )


class CairnSaver(AsyncCairnSaver):
    """A LangGraph checkpointer on a ``cairn serve`` for sync graphs (``invoke``, ``stream``);
    its async methods work too, from any event loop. The sync methods run the async ones on a
    private event-loop thread; :meth:`close` stops it (or use it as a context manager).
    """

    def __init__(
        self,
        url: str = DEFAULT_BASE_URL,
        token: str | None = None,
        *,
        serde: SerializerProtocol | None = None,
        stream_prefix: str = THREAD_STREAM_PREFIX,
        trusted_principals: Collection[str] | None = None,
    ) -> None:
        super().__init__(url, token, serde=serde, stream_prefix=stream_prefix, trusted_principals=trusted_principals)
        self._loop = asyncio.new_event_loop()
        self._runner = threading.Thread(target=self._loop.run_forever, name="cairn-saver", daemon=True)
        self._runner.start()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Closes the private loop's connections and stops its thread."""
        if self._loop.is_closed():
            return
        self._run(self.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._runner.join()
        self._loop.close()

    def __enter__(self) -> CairnSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _collect(self, iterator: AsyncIterator[CheckpointTuple]) -> list[CheckpointTuple]:
        return [item async for item in iterator]

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._run(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._run(self._collect(self.alist(config, filter=filter, before=before, limit=limit)))

    def put(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        return self._run(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self._run(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._run(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._run(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._run(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._run(self.aprune(thread_ids, strategy=strategy))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._run(self.aget_delta_channel_history(config=config, channels=channels))
