"""Recomputes an event's chain hash on the client, so bytes are checked before anything decodes
them.

The log chains every event to the one before it (docs/format.md, "Chain hash")::

    h(p) = BLAKE3( h(p-1) || position u64 || stream version u64 || timestamp_ms u64
                   || event id (16 bytes) || len(stream) u32 || stream || len(type) u32 || type
                   || data kind u8 (0 JSON, 1 binary) || BLAKE3(metadata) || BLAKE3(data) )

integers little-endian, ``h(-1)`` the genesis hash. Everything but ``h(p-1)`` is in the event as
the HTTP API returns it, and ``h(p-1)`` is the ``hash`` of the event at position ``p - 1`` in the
global log. A payload is reproducible byte for byte only when it is binary (``data_b64``); the
server keeps metadata as the compact JSON text the client wrote, or empty for none.

What a match proves: the payload the caller is about to decode is the payload the log hashed
into its chain at that position, given the hash before it. A byte changed in the stored record
(even with its CRC fixed) fails the match. A tamperer who also rewrites the stored hash breaks
the link to the next record instead, which ``POST /v1/verify`` (``cairn verify``) finds.

This module does no I/O: the caller fetches ``h(p-1)``.
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from blake3 import blake3

from ._errors import CairnError
from ._types import JSON, Event

GENESIS = blake3(b"cairn/log/genesis/v1").digest()
"""``h(-1)``: the hash before the first event of every log."""

VERIFIED_CACHE_MAX = 100_000
"""Events whose check a :class:`ChainChecker` remembers (position, hash and payload digest), so an
event read again costs one BLAKE3 of its payload instead of a round trip for ``h(p-1)``."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class IntegrityError(CairnError):
    """An event's payload does not match the chain hash the log holds for it: the stored bytes
    were changed after they were appended. Nothing of the payload was decoded."""

    def __init__(self, message: str, *, stream: str, position: int) -> None:
        super().__init__(message, code="integrity_failure")
        self.stream = stream
        self.position = position


def _metadata_candidates(metadata: Mapping[str, JSON]) -> list[bytes]:
    """The byte strings the server may hold for ``metadata``: empty for none (it answers ``{}``),
    otherwise the compact JSON text, with non-ASCII characters as written or escaped (the server
    keeps what the writer sent; serde and Python's json differ only in that)."""
    if not metadata:
        return [b"", b"{}"]
    compact = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode()
    escaped = json.dumps(metadata, separators=(",", ":")).encode()
    return [compact] if compact == escaped else [compact, escaped]


def link(
    previous: bytes,
    *,
    position: int,
    version: int,
    timestamp_ms: int,
    event_id: bytes,
    stream: str,
    event_type: str,
    binary: bool,
    metadata_digest: bytes,
    data_digest: bytes,
) -> bytes:
    """``h(p)`` from ``h(p-1)`` and the record's fields, the payloads by their BLAKE3 digests."""
    name, kind = stream.encode(), event_type.encode()
    h = blake3(previous)
    h.update(struct.pack("<QQQ", position, version, timestamp_ms))
    h.update(event_id)
    h.update(struct.pack("<I", len(name)) + name)
    h.update(struct.pack("<I", len(kind)) + kind)
    h.update(b"\x01" if binary else b"\x00")
    h.update(metadata_digest)
    h.update(data_digest)
    return h.digest()


def chain_hash(previous: bytes, event: Event, metadata: bytes) -> bytes:
    """``h(p)`` of a binary-payload event from ``h(p-1)`` and the stored metadata bytes."""
    if not isinstance(event.data, bytes):
        raise TypeError("only a binary payload is reproducible byte for byte")
    return link(
        previous,
        position=event.position,
        version=event.version,
        timestamp_ms=(event.timestamp - _EPOCH) // timedelta(milliseconds=1),
        event_id=event.id.bytes,
        stream=event.stream,
        event_type=event.type,
        binary=True,
        metadata_digest=blake3(metadata).digest(),
        data_digest=blake3(event.data).digest(),
    )


class ChainChecker:
    """Checks events against their chain hashes and remembers the ones that passed.

    :meth:`pending` says which events still need ``h(p-1)``; :meth:`check` takes those hashes
    (hex, by position ``p - 1``) and raises :class:`IntegrityError` on the first mismatch.
    """

    def __init__(self) -> None:
        # position -> (hash hex, BLAKE3 of the payload) of an event that passed.
        self._passed: OrderedDict[int, tuple[str, bytes]] = OrderedDict()

    def _known(self, event: Event) -> bool:
        seen = self._passed.get(event.position)
        if seen is None or not isinstance(event.data, bytes):
            return False
        return seen == (event.hash, blake3(event.data).digest())

    def pending(self, events: list[Event]) -> list[int]:
        """Positions ``p - 1`` whose hash is needed to check ``events`` (those not checked
        before, whose predecessor is not itself among ``events``)."""
        have = {e.position for e in events}
        return sorted(
            {e.position - 1 for e in events if e.position > 0 and not self._known(e) and e.position - 1 not in have}
        )

    def check(self, events: list[Event], previous: Mapping[int, str]) -> None:
        """Checks every event of ``events``; ``previous`` maps position to hash (hex) for the
        positions :meth:`pending` named."""
        hashes = dict(previous)
        hashes.update({e.position: e.hash for e in events})
        for event in events:
            if self._known(event):
                continue
            where = f"the event at position {event.position} (stream {event.stream!r}, version {event.version})"
            if not isinstance(event.data, bytes):
                raise IntegrityError(
                    f"{where} has a JSON payload; a checkpoint is written as bytes, so this event was "
                    "not written by the saver and is not decoded.",
                    stream=event.stream,
                    position=event.position,
                )
            before = GENESIS if event.position == 0 else bytes.fromhex(hashes[event.position - 1])
            if not any(
                chain_hash(before, event, m).hex() == event.hash for m in _metadata_candidates(event.metadata)
            ):
                raise IntegrityError(
                    f"{where} does not match its chain hash {event.hash}: its stored bytes were "
                    "changed after it was appended, so it is not decoded.",
                    stream=event.stream,
                    position=event.position,
                )
            self._passed[event.position] = (event.hash, blake3(event.data).digest())
            self._passed.move_to_end(event.position)
            while len(self._passed) > VERIFIED_CACHE_MAX:
                self._passed.popitem(last=False)
