"""cairn-client: the Python client of cairn's HTTP API (``cairn serve``).

cairn is an append-only, event-sourced log store for AI-agent platforms. This package speaks
its HTTP contract: append events (with optimistic concurrency and idempotent retries), read
streams and the global log page by page, follow the log live over Server-Sent Events with
automatic resume, inspect and verify the hash chain, take checkpoints, and use the key-value,
audit and metadata views.

:class:`Client` blocks; :class:`AsyncClient` has the same methods, awaited. Errors are
:class:`CairnError` subclasses carrying the server's error ``code`` and ``message``.

Layout: ``_core`` builds every request and reads every answer (no I/O), ``_sync`` and
``_async`` send them, ``_types`` holds the frozen dataclasses, ``_errors`` the exceptions,
``_sse`` the event-stream decoder.
"""

from ._async import AsyncAudit, AsyncClient, AsyncKeyValue, AsyncMeta, AsyncSubscription
from ._core import AuditPage, RetryPolicy, StreamsPage
from ._errors import (
    CairnError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ProtocolError,
    ServerError,
    Timeout,
    TooLarge,
    TransportError,
    Unauthorized,
    Unavailable,
    WrongExpectedVersion,
)
from ._sync import Audit, Client, KeyValue, Meta, Subscription
from ._types import (
    JSON,
    AppendResult,
    AuditProof,
    AuditReceipt,
    AuditRecord,
    Checkpoint,
    ConfigValue,
    Direction,
    Event,
    ExpectedVersion,
    Head,
    KeyPage,
    KvDeleted,
    KvEntry,
    KvVersion,
    NewEvent,
    Page,
    Payload,
    SchemaVersion,
    ServiceInstance,
    StreamAppend,
    StreamInfo,
    TxnResult,
    Validation,
    VerifyReport,
    Written,
)

__version__ = "0.1.0"

__all__ = [
    "JSON",
    "AppendResult",
    "AsyncAudit",
    "AsyncClient",
    "AsyncKeyValue",
    "AsyncMeta",
    "AsyncSubscription",
    "Audit",
    "AuditPage",
    "StreamsPage",
    "AuditProof",
    "AuditReceipt",
    "AuditRecord",
    "CairnError",
    "Checkpoint",
    "Client",
    "ConfigValue",
    "Conflict",
    "Direction",
    "Event",
    "ExpectedVersion",
    "Forbidden",
    "Head",
    "Invalid",
    "KeyPage",
    "KeyValue",
    "KvDeleted",
    "KvEntry",
    "KvVersion",
    "Meta",
    "NewEvent",
    "NotFound",
    "Page",
    "Payload",
    "ProtocolError",
    "RetryPolicy",
    "SchemaVersion",
    "ServerError",
    "ServiceInstance",
    "StreamAppend",
    "StreamInfo",
    "Subscription",
    "Timeout",
    "TooLarge",
    "TransportError",
    "TxnResult",
    "Unauthorized",
    "Unavailable",
    "Validation",
    "VerifyReport",
    "Written",
    "WrongExpectedVersion",
    "__version__",
]
