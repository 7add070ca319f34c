"""The values the client sends and receives: frozen dataclasses with the contract's field names.

Invariants:
- Every value the server answers is decoded into one of these types by a ``from_json``
  function that checks the fields the contract names and raises :class:`ProtocolError` naming
  the field when one is missing or of the wrong kind; fields the contract leaves open are kept
  in ``raw`` so nothing the server says is lost.
- A :class:`NewEvent` gets its UUID when it is constructed, not when it is sent: sending the same
  ``NewEvent`` twice (a retry) carries the same id, which makes the append idempotent.
- Event payloads are JSON values, or ``bytes`` for binary payloads (``data_b64`` on the wire).
  JSON has no bytes type, so the two never collide.

Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar, Union

from ._errors import ProtocolError

__all__ = [
    "AppendResult",
    "AuditProof",
    "AuditReceipt",
    "AuditRecord",
    "Checkpoint",
    "ConfigValue",
    "Direction",
    "EndOfStream",
    "Event",
    "ExpectedVersion",
    "EraseResult",
    "ForkResult",
    "Head",
    "JSON",
    "KeyPage",
    "KvDeleted",
    "KvEntry",
    "KvVersion",
    "LifecycleResult",
    "NewEvent",
    "Page",
    "Payload",
    "SchemaVersion",
    "ScavengeJob",
    "ScavengeReport",
    "ServiceInstance",
    "StreamAppend",
    "StreamInfo",
    "StreamState",
    "TxnResult",
    "Validation",
    "VerifyReport",
    "Written",
]

JSON = Any
"""A decoded JSON value (``None``, ``bool``, ``int``, ``float``, ``str``, ``list``, ``dict``)."""

Payload = Any
"""An event's payload: a decoded JSON value, or ``bytes`` for a binary payload (``data_b64`` on
the wire). Typed ``Any`` so that ``event.data["tool"]`` type-checks; test ``isinstance(data,
bytes)`` (or :attr:`Event.is_binary`) where both kinds can occur."""

ExpectedVersion = Union[Literal["any", "no_stream", "exists"], int]
"""What a stream must look like for an append to go through: ``"any"`` (no check),
``"no_stream"`` (it has no events), ``"exists"`` (it has at least one), or its current last
version (an ``int``: optimistic concurrency)."""

Direction = Literal["forward", "backward"]

_T = TypeVar("_T")


# --- decoding helpers -----------------------------------------------------------------------


def _field(obj: Mapping[str, Any], name: str, kind: type[_T], what: str) -> _T:
    if name not in obj:
        raise ProtocolError(f"the server's {what} has no field {name!r}", code="bad_response")
    value = obj[name]
    # bool is an int in Python; a JSON true is never a position or a version.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(
            f"field {name!r} of the server's {what} is {type(value).__name__}, not {kind.__name__}",
            code="bad_response",
        )
    return value


def _opt(obj: Mapping[str, Any], name: str, kind: type[_T], what: str) -> _T | None:
    if obj.get(name) is None:
        return None
    return _field(obj, name, kind, what)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProtocolError(f"the server's {what} is {type(value).__name__}, not a JSON object", code="bad_response")
    return value


def _list(obj: Mapping[str, Any], name: str, what: str) -> list[Any]:
    return _field(obj, name, list, what)


def parse_timestamp(text: str) -> datetime:
    """Parses the contract's RFC 3339 UTC timestamp (``2026-11-22T16:11:51.123Z``)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)


def encode_data(data: Payload) -> dict[str, Any]:
    """The wire fields of a payload: ``{"data": value}`` or ``{"data_b64": "..."}``."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return {"data_b64": base64.b64encode(bytes(data)).decode("ascii")}
    return {"data": data}


# --- the log ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEvent:
    """An event to append.

    ``data`` is any JSON value, or ``bytes`` for a binary payload. ``id`` defaults to a fresh
    UUID made now, so a retried append of the same object is recognised by the server and
    answered with the original positions.
    """

    type: str
    data: Payload = field(default_factory=dict)
    metadata: Mapping[str, JSON] | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def to_json(self) -> dict[str, Any]:
        """The event as the append request carries it."""
        if not isinstance(self.type, str) or not self.type:
            raise ValueError("an event needs a non-empty type")
        out: dict[str, Any] = {"id": str(self.id), "type": self.type}
        out.update(encode_data(self.data))
        if self.metadata is not None:
            if not isinstance(self.metadata, Mapping):
                raise ValueError(f"the metadata of event {self.type!r} must be a mapping (a JSON object)")
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True)
class StreamAppend:
    """One stream's part of an atomic multi-stream append (:meth:`Client.append_multi`)."""

    stream: str
    events: Sequence[NewEvent]
    expected_version: ExpectedVersion = "any"


@dataclass(frozen=True)
class Event:
    """A committed event.

    ``data`` is the decoded JSON payload, or ``bytes`` when the event's payload is binary
    (``data_b64`` on the wire). ``hash`` is the log's chain hash at ``position`` (64 hex digits).
    ``erased`` is True when the event's payload was erased: only its header remains, ``data`` is
    ``None`` and ``metadata`` is empty.
    """

    position: int
    stream: str
    version: int
    id: uuid.UUID
    type: str
    timestamp: datetime
    metadata: Mapping[str, JSON]
    data: Payload
    hash: str
    erased: bool = False

    @property
    def is_binary(self) -> bool:
        """True if the payload is bytes rather than JSON."""
        return isinstance(self.data, bytes)

    @staticmethod
    def from_json(value: Any) -> Event:
        obj = _mapping(value, "event")
        what = "event"
        if "data_b64" in obj and obj["data_b64"] is not None:
            text = _field(obj, "data_b64", str, what)
            try:
                data: Payload = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError) as e:
                raise ProtocolError(f"the event's data_b64 is not valid base64: {e}", code="bad_response") from e
        else:
            data = obj.get("data")
        raw_id = _field(obj, "id", str, what)
        raw_ts = _field(obj, "timestamp", str, what)
        try:
            event_id = uuid.UUID(raw_id)
            timestamp = parse_timestamp(raw_ts)
        except ValueError as e:
            raise ProtocolError(f"the event's id or timestamp is malformed: {e}", code="bad_response") from e
        metadata = obj.get("metadata")
        return Event(
            position=_field(obj, "position", int, what),
            stream=_field(obj, "stream", str, what),
            version=_field(obj, "version", int, what),
            id=event_id,
            type=_field(obj, "type", str, what),
            timestamp=timestamp,
            metadata=metadata if isinstance(metadata, Mapping) else {},
            data=data,
            hash=_field(obj, "hash", str, what),
            erased=obj.get("erased") is True,
        )


@dataclass(frozen=True)
class AppendResult:
    """Where an append landed (or, for an idempotent retry, had landed)."""

    stream: str
    first_position: int
    last_position: int
    first_version: int
    last_version: int
    hash: str

    @staticmethod
    def from_json(value: Any) -> AppendResult:
        obj = _mapping(value, "append result")
        what = "append result"
        return AppendResult(
            stream=_field(obj, "stream", str, what),
            first_position=_field(obj, "first_position", int, what),
            last_position=_field(obj, "last_position", int, what),
            first_version=_field(obj, "first_version", int, what),
            last_version=_field(obj, "last_version", int, what),
            hash=_field(obj, "hash", str, what),
        )


@dataclass(frozen=True)
class StreamedAppend:
    """What an NDJSON append (``append_ndjson``) wrote: all its events, over the batches the
    server committed them in (each batch atomic and durable before the next)."""

    stream: str
    count: int
    batches: int
    first_position: int
    last_position: int
    first_version: int
    last_version: int
    hash: str

    @staticmethod
    def from_json(value: Any) -> StreamedAppend:
        # The fields of an append's result, plus how many events and batches.
        written = AppendResult.from_json(value)
        obj = _mapping(value, "NDJSON append result")
        what = "NDJSON append result"
        return StreamedAppend(
            count=_field(obj, "count", int, what),
            batches=_field(obj, "batches", int, what),
            **dataclasses.asdict(written),
        )


@dataclass(frozen=True)
class Page:
    """One page of a read: ``next`` is where to continue (a stream version for stream reads, a
    log position for global reads), ``None`` when there is nothing more now."""

    events: tuple[Event, ...]
    next: int | None

    @staticmethod
    def from_json(value: Any) -> Page:
        obj = _mapping(value, "page of events")
        events = tuple(Event.from_json(e) for e in _list(obj, "events", "page of events"))
        return Page(events=events, next=_opt(obj, "next", int, "page of events"))


@dataclass(frozen=True)
class StreamInfo:
    """A row of the stream listing, with the stream's lifecycle state (``False`` from a server
    that does not report it)."""

    stream: str
    last_version: int
    events: int
    closed: bool = False
    """The stream takes no more appends."""
    deleted: bool = False
    """Soft-deleted (or expired) with nothing written since: reads raise :class:`StreamDeleted`."""
    tombstoned: bool = False
    """Deleted for good."""

    @staticmethod
    def from_json(value: Any) -> StreamInfo:
        obj = _mapping(value, "stream listing row")
        what = "stream listing row"
        return StreamInfo(
            stream=_field(obj, "stream", str, what),
            last_version=_field(obj, "last_version", int, what),
            events=_field(obj, "events", int, what),
            closed=_opt(obj, "closed", bool, what) or False,
            deleted=_opt(obj, "deleted", bool, what) or False,
            tombstoned=_opt(obj, "tombstoned", bool, what) or False,
        )


@dataclass(frozen=True)
class LifecycleResult:
    """What a lifecycle change (delete, close, metadata) answers: the stream and the position
    and chain hash of the event on ``$lifecycle`` that records the change."""

    stream: str
    position: int
    hash: str

    @staticmethod
    def from_json(value: Any) -> LifecycleResult:
        what = "lifecycle result"
        obj = _mapping(value, what)
        return LifecycleResult(
            stream=_field(obj, "stream", str, what),
            position=_field(obj, "position", int, what),
            hash=_field(obj, "hash", str, what),
        )


@dataclass(frozen=True)
class EraseResult:
    """What an erasure answers: the ``stream`` and the versions erased, the position and chain
    hash of the ``stream-erased`` event, the position of its audit entry, how many
    checkpoints taken before it may still hold the payloads in their view state, and whether
    the stream's key was destroyed (an encrypted log, every version erased: the payloads are
    unreadable in every copy, backups included)."""

    stream: str
    from_version: int
    to_version: int
    position: int
    hash: str
    audit_position: int
    checkpoints_before: int
    key_destroyed: bool = False

    @staticmethod
    def from_json(value: Any) -> EraseResult:
        what = "erase result"
        obj = _mapping(value, what)
        return EraseResult(
            stream=_field(obj, "stream", str, what),
            from_version=_field(obj, "from_version", int, what),
            to_version=_field(obj, "to_version", int, what),
            position=_field(obj, "position", int, what),
            hash=_field(obj, "hash", str, what),
            audit_position=_field(obj, "audit_position", int, what),
            checkpoints_before=_field(obj, "checkpoints_before", int, what),
            key_destroyed=_field(obj, "key_destroyed", bool, what) if "key_destroyed" in obj else False,
        )


@dataclass(frozen=True)
class ScavengeReport:
    """What a finished scavenge did: sealed segments rewritten, events turned into husks, and
    the sealed segment files' bytes before and after."""

    segments_rewritten: int
    segments_removed: int
    events_husked: int
    bytes_before: int
    bytes_after: int
    bytes_reclaimed: int

    @staticmethod
    def from_json(value: Any) -> ScavengeReport:
        what = "scavenge report"
        obj = _mapping(value, what)
        return ScavengeReport(
            segments_rewritten=_field(obj, "segments_rewritten", int, what),
            segments_removed=_field(obj, "segments_removed", int, what),
            events_husked=_field(obj, "events_husked", int, what),
            bytes_before=_field(obj, "bytes_before", int, what),
            bytes_after=_field(obj, "bytes_after", int, what),
            bytes_reclaimed=_field(obj, "bytes_reclaimed", int, what),
        )


@dataclass(frozen=True)
class ScavengeJob:
    """A scavenge job on the server: ``state`` is ``"running"``, ``"done"`` (with ``report``) or
    ``"failed"`` (with ``failure``: ``{"error", "message"}``); ``progress`` counts
    ``segments_done``/``segments_total``, ``events_scanned``, ``events_husked`` and
    ``bytes_reclaimed`` so far."""

    id: int
    state: str
    started_ms: int
    finished_ms: int | None
    progress: Mapping[str, int]
    report: ScavengeReport | None
    failure: Mapping[str, str] | None

    @staticmethod
    def from_json(value: Any) -> ScavengeJob:
        what = "scavenge job"
        obj = _mapping(value, what)
        report = obj.get("report")
        failure = obj.get("failure")
        return ScavengeJob(
            id=_field(obj, "id", int, what),
            state=_field(obj, "state", str, what),
            started_ms=_field(obj, "started_ms", int, what),
            finished_ms=_opt(obj, "finished_ms", int, what),
            progress=dict(_mapping(_field(obj, "progress", dict, what), what)),
            report=None if report is None else ScavengeReport.from_json(report),
            failure=None if failure is None else dict(_mapping(failure, what)),
        )


@dataclass(frozen=True)
class ForkResult:
    """What a fork answers: the new ``stream``, its ``source`` and ``at_version``, and the
    position and chain hash of the ``stream-forked`` event."""

    stream: str
    source: str
    at_version: int
    position: int
    hash: str

    @staticmethod
    def from_json(value: Any) -> ForkResult:
        what = "fork result"
        obj = _mapping(value, what)
        return ForkResult(
            stream=_field(obj, "stream", str, what),
            source=_field(obj, "source", str, what),
            at_version=_field(obj, "at_version", int, what),
            position=_field(obj, "position", int, what),
            hash=_field(obj, "hash", str, what),
        )


@dataclass(frozen=True)
class StreamState:
    """A stream's retention metadata (``None``: no limit) and lifecycle state
    (``GET /v1/streams/{stream}/metadata``)."""

    stream: str
    max_age_ms: int | None
    max_count: int | None
    truncate_before: int | None
    ttl_ms: int | None
    closed: bool
    tombstoned: bool
    deleted: bool
    last_version: int | None
    deleted_before: int | None
    """After a soft delete or an expiry: reads start at this version."""
    forked_from: tuple[str, int] | None
    """For a fork: the source stream and the version it was forked at."""

    @staticmethod
    def from_json(value: Any) -> StreamState:
        what = "stream metadata"
        obj = _mapping(value, what)
        forked = obj.get("forked_from")
        forked_from = None
        if forked is not None:
            f = _mapping(forked, "stream metadata's forked_from")
            forked_from = (_field(f, "stream", str, what), _field(f, "at_version", int, what))
        return StreamState(
            stream=_field(obj, "stream", str, what),
            max_age_ms=_opt(obj, "max_age_ms", int, what),
            max_count=_opt(obj, "max_count", int, what),
            truncate_before=_opt(obj, "truncate_before", int, what),
            ttl_ms=_opt(obj, "ttl_ms", int, what),
            closed=_field(obj, "closed", bool, what),
            tombstoned=_field(obj, "tombstoned", bool, what),
            deleted=_field(obj, "deleted", bool, what),
            last_version=_opt(obj, "last_version", int, what),
            deleted_before=_opt(obj, "deleted_before", int, what),
            forked_from=forked_from,
        )


@dataclass(frozen=True)
class EndOfStream:
    """The end-of-stream marker of a one-stream subscription: the stream was closed (or
    tombstoned, ``reason``) and every event of it was delivered."""

    stream: str
    reason: str
    last_version: int | None

    @staticmethod
    def from_json(value: Any) -> EndOfStream:
        what = "end-of-stream marker"
        obj = _mapping(value, what)
        return EndOfStream(
            stream=_field(obj, "stream", str, what),
            reason=_field(obj, "reason", str, what),
            last_version=_opt(obj, "last_version", int, what),
        )


@dataclass(frozen=True)
class Head:
    """The log's last position (``None`` when empty) and the chain hash there."""

    position: int | None
    hash: str

    @staticmethod
    def from_json(value: Any) -> Head:
        obj = _mapping(value, "head")
        return Head(position=_opt(obj, "position", int, "head"), hash=_field(obj, "hash", str, "head"))


@dataclass(frozen=True)
class VerifyReport:
    """The result of checking every record's CRC and the hash chain."""

    ok: bool
    events: int
    head_position: int | None
    head_hash: str | None
    first_bad_position: int | None = None
    detail: str | None = None

    @staticmethod
    def from_json(value: Any) -> VerifyReport:
        obj = _mapping(value, "verify report")
        what = "verify report"
        return VerifyReport(
            ok=_field(obj, "ok", bool, what),
            events=_field(obj, "events", int, what),
            head_position=_opt(obj, "head_position", int, what),
            head_hash=_opt(obj, "head_hash", str, what),
            first_bad_position=_opt(obj, "first_bad_position", int, what),
            detail=_opt(obj, "detail", str, what),
        )


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint: its ``sequence`` number, ``kind`` (``"full"`` or ``"incremental"``), the log
    ``position`` it covers and its own ``hash``. In a listing, ``status`` says whether it is
    usable (``"valid"``, ``"damaged"``, ``"log_mismatch"``, ``"broken_chain"``) and ``detail``
    why not; a damaged checkpoint may have no ``position``. The contract leaves the rest of the
    answer open: it is all in ``raw``."""

    sequence: int | None
    kind: str | None
    position: int | None
    hash: str | None
    status: str | None
    detail: str | None
    raw: Mapping[str, JSON]

    @staticmethod
    def from_json(value: Any) -> Checkpoint:
        obj = _mapping(value, "checkpoint")
        # A listing row nests the checkpoint's description under "info" (null when unreadable).
        info = obj.get("info")
        described: Mapping[str, Any] = info if isinstance(info, Mapping) else obj
        what = "checkpoint"
        sequence = _opt(obj, "sequence", int, what)
        return Checkpoint(
            sequence=sequence if sequence is not None else _opt(described, "sequence", int, what),
            kind=_opt(described, "kind", str, what),
            position=_opt(described, "position", int, what),
            hash=_opt(described, "hash", str, what),
            status=_opt(obj, "status", str, what),
            detail=_opt(obj, "detail", str, what),
            raw=dict(obj),
        )


# --- key-value view -----------------------------------------------------------------------


@dataclass(frozen=True)
class KvEntry:
    """A key's current value. ``expires_at`` is when it expires (unix ms), if it has a TTL."""

    key: str
    value: JSON
    version: int
    expires_at: int | None

    @staticmethod
    def from_json(value: Any) -> KvEntry:
        obj = _mapping(value, "key-value entry")
        what = "key-value entry"
        if "value" not in obj:
            raise ProtocolError("the server's key-value entry has no field 'value'", code="bad_response")
        return KvEntry(
            key=_field(obj, "key", str, what),
            value=obj["value"],
            version=_field(obj, "version", int, what),
            expires_at=_opt(obj, "expires_at", int, what),
        )


@dataclass(frozen=True)
class Written(Generic[_T]):
    """The answer of a view write.

    ``value`` is what the operation answers: the new version for a set, the new value for an
    incr, the new length for append/push, the popped values for pop, the count for sadd/srem.
    ``position`` is the log position the write was appended at, to pass as ``min_position`` to
    a later read (read-your-writes); ``None`` if the server did not say. ``raw`` is the whole
    answer.
    """

    value: _T
    position: int | None
    raw: Mapping[str, JSON]


@dataclass(frozen=True)
class KvDeleted:
    """The answer of a delete: whether the key existed, and where the delete was logged."""

    deleted: bool
    position: int | None

    @staticmethod
    def from_json(value: Any) -> KvDeleted:
        obj = _mapping(value, "delete result")
        return KvDeleted(
            deleted=_field(obj, "deleted", bool, "delete result"),
            position=_opt(obj, "position", int, "delete result"),
        )


@dataclass(frozen=True)
class KvVersion:
    """One entry of a key's history."""

    version: int
    op: str
    value: JSON
    timestamp: JSON
    position: int

    @staticmethod
    def from_json(value: Any) -> KvVersion:
        obj = _mapping(value, "key history entry")
        what = "key history entry"
        return KvVersion(
            version=_field(obj, "version", int, what),
            op=_field(obj, "op", str, what),
            value=obj.get("value"),
            timestamp=obj.get("timestamp"),
            position=_field(obj, "position", int, what),
        )


@dataclass(frozen=True)
class KeyPage:
    """A page of a key listing; pass ``next`` as ``after`` to continue."""

    keys: tuple[str, ...]
    next: str | None

    @staticmethod
    def from_json(value: Any) -> KeyPage:
        obj = _mapping(value, "key listing")
        keys = _list(obj, "keys", "key listing")
        if not all(isinstance(k, str) for k in keys):
            raise ProtocolError("the server's key listing holds a key that is not a string", code="bad_response")
        return KeyPage(keys=tuple(keys), next=_opt(obj, "next", str, "key listing"))


@dataclass(frozen=True)
class TxnResult:
    """The answer of an all-or-nothing key-value transaction: one output per operation (as the
    single-key call would answer it) and the log position of the transaction's append
    (``None`` if it wrote nothing)."""

    outputs: tuple[JSON, ...]
    position: int | None
    raw: Mapping[str, JSON]

    @staticmethod
    def from_json(value: Any) -> TxnResult:
        obj = _mapping(value, "transaction result")
        outputs = obj.get("outputs") or []
        if not isinstance(outputs, list):
            raise ProtocolError("the server's transaction outputs are not a list", code="bad_response")
        return TxnResult(
            outputs=tuple(outputs), position=_opt(obj, "position", int, "transaction result"), raw=dict(obj)
        )


# --- audit view ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditReceipt:
    """Where an audit entry was written."""

    id: str
    position: int
    hash: str

    @staticmethod
    def from_json(value: Any) -> AuditReceipt:
        obj = _mapping(value, "audit receipt")
        what = "audit receipt"
        return AuditReceipt(
            id=_field(obj, "id", str, what),
            position=_field(obj, "position", int, what),
            hash=_field(obj, "hash", str, what),
        )


@dataclass(frozen=True)
class AuditRecord:
    """An audit entry as the view answers it: the fields the client wrote plus what the log
    assigned (``id``, ``position``, ``hash``, ``timestamp``). Everything is also in ``raw``."""

    id: str
    position: int | None
    hash: str | None
    timestamp: JSON
    level: str | None
    category: str | None
    event: str | None
    actor: JSON
    target: JSON
    context: JSON
    outcome: str | None
    metadata: JSON
    raw: Mapping[str, JSON]

    @staticmethod
    def from_json(value: Any) -> AuditRecord:
        obj = _mapping(value, "audit entry")
        what = "audit entry"
        return AuditRecord(
            id=_field(obj, "id", str, what),
            position=_opt(obj, "position", int, what),
            hash=_opt(obj, "hash", str, what),
            timestamp=obj.get("timestamp"),
            level=_opt(obj, "level", str, what),
            category=_opt(obj, "category", str, what),
            event=_opt(obj, "event", str, what),
            actor=obj.get("actor"),
            target=obj.get("target"),
            context=obj.get("context"),
            outcome=_opt(obj, "outcome", str, what),
            metadata=obj.get("metadata"),
            raw=dict(obj),
        )


@dataclass(frozen=True)
class AuditProof:
    """An entry together with whether the log confirms it (same id, data, chain hash)."""

    entry: AuditRecord
    position: int
    hash: str
    verified: bool
    detail: str | None

    @staticmethod
    def from_json(value: Any) -> AuditProof:
        obj = _mapping(value, "audit proof")
        what = "audit proof"
        return AuditProof(
            entry=AuditRecord.from_json(obj.get("entry")),
            position=_field(obj, "position", int, what),
            hash=_field(obj, "hash", str, what),
            verified=_field(obj, "verified", bool, what),
            detail=_opt(obj, "detail", str, what),
        )


# --- metadata view ------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaVersion:
    """One registered version of a subject's schema."""

    version: int
    schema: JSON
    raw: Mapping[str, JSON]

    @staticmethod
    def from_json(value: Any) -> SchemaVersion:
        obj = _mapping(value, "schema version")
        if "schema" not in obj:
            raise ProtocolError("the server's schema version has no field 'schema'", code="bad_response")
        return SchemaVersion(version=_field(obj, "version", int, "schema version"), schema=obj["schema"], raw=dict(obj))


@dataclass(frozen=True)
class Validation:
    """Whether a payload conforms to a schema, and why not."""

    valid: bool
    errors: tuple[JSON, ...]

    @staticmethod
    def from_json(value: Any) -> Validation:
        obj = _mapping(value, "validation result")
        errors = obj.get("errors") or []
        if not isinstance(errors, list):
            raise ProtocolError("the server's validation errors are not a list", code="bad_response")
        return Validation(valid=_field(obj, "valid", bool, "validation result"), errors=tuple(errors))


@dataclass(frozen=True)
class ServiceInstance:
    """A healthy registered instance of a service (the whole answer is in ``raw``)."""

    raw: Mapping[str, JSON]

    @property
    def endpoints(self) -> JSON:
        return self.raw.get("endpoints")

    @property
    def tags(self) -> JSON:
        return self.raw.get("tags")

    @staticmethod
    def from_json(value: Any) -> ServiceInstance:
        return ServiceInstance(raw=dict(_mapping(value, "service instance")))


@dataclass(frozen=True)
class ConfigValue:
    """A configuration value at some version (the whole answer is in ``raw``)."""

    value: JSON
    version: int | None
    raw: Mapping[str, JSON]

    @staticmethod
    def from_json(value: Any) -> ConfigValue:
        obj = _mapping(value, "configuration value")
        return ConfigValue(value=obj.get("value"), version=_opt(obj, "version", int, "configuration value"), raw=dict(obj))
