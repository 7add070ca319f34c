//! The named bounds of cairn's public surface, and the checks that apply them to requests.
//!
//! Invariant: every request is checked against these bounds *before* any work is done for it —
//! before its body is read past [`REQUEST_BODY_MAX`], before anything is appended — so a
//! rejected request writes nothing. The log engine re-checks the per-event and per-batch bounds
//! on its side; the constants here are the same numbers, re-exported, so the two cannot drift.
//!
//! This module does not parse requests (see [`crate::wire`]) and does not decide permissions
//! (see [`crate::auth`]).

use std::time::Duration;

pub use log_engine::{BATCH_BYTES_MAX, BATCH_STREAMS_MAX, EVENT_SIZE_MAX, EVENT_TYPE_LEN_MAX, STREAM_NAME_LEN_MAX};

/// Most events in one append request (one stream or several): the log's batch bound.
pub const EVENTS_PER_REQUEST_MAX: usize = log_engine::BATCH_EVENTS_MAX;

/// Largest request body in bytes. The log accepts at most [`BATCH_BYTES_MAX`] bytes of events
/// per append; JSON framing and base64 (4/3 of the binary size) need room on top of that.
pub const REQUEST_BODY_MAX: usize = BATCH_BYTES_MAX + BATCH_BYTES_MAX / 2;

/// Events returned by one read when the request names no `limit`.
pub const READ_LIMIT_DEFAULT: usize = 100;

/// Most events one read returns; a larger `limit` is clamped and the response's `next` says
/// where to continue.
pub const READ_LIMIT_MAX: usize = 10_000;

/// Payload bytes (metadata + data) of one read page, counted while the page is decoded: the
/// page stops before the event that would cross it, and answers with a `next` cursor at that
/// event, so a page of large events stays bounded in memory. An event alone above it is
/// returned alone.
pub const READ_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Most log positions one filtered global read (`GET /v1/events?stream_prefix=...`) scans
/// before it answers; a sparse filter gets an empty page with a `next` cursor, never a
/// request that scans the whole log.
pub const SCAN_EVENTS_MAX: u64 = 100_000;

/// Most concurrent Server-Sent-Event subscribers; one more gets 503 `too_many_subscribers`.
pub const SUBSCRIBERS_MAX: usize = 1024;

/// How often an idle subscription sends an SSE comment, so that proxies keep it open and a
/// vanished client is noticed. `cairn serve --sse-keep-alive`.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The text of that comment: the stream carries the line `: keep-alive`.
pub const SSE_KEEP_ALIVE_COMMENT: &str = "keep-alive";

/// How long a Durable Streams long-poll read waits for data before answering 204 (`cairn serve
/// --ds-long-poll-timeout` sets it). Here rather than in `http::durable` so that the
/// configuration (config.rs) needs nothing of the HTTP layer.
pub const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest `GET /v1/admin/scavenge/{id}?wait_ms=` waits for a running job to end (a longer
/// `wait_ms` waits this long).
pub const SCAVENGE_WAIT_MAX: Duration = Duration::from_secs(30);
/// Longest a replica's segment listing (`GET /v1/admin/replication/segments?after=&wait_ms=`)
/// waits on the leader for the position the replica asked for.
pub const REPLICATION_WAIT_MAX: Duration = Duration::from_secs(10);

/// Most bytes of a segment one replication fetch answers (`max` is clamped to it).
pub const REPLICATION_CHUNK_MAX: u64 = 16 * 1024 * 1024;

/// Longest wait a view read with `?min_position=` may ask for (read-your-writes).
pub const MIN_POSITION_WAIT_MAX: Duration = Duration::from_secs(5);

/// How often a verification streamed as NDJSON (`POST /v1/verify` with
/// `Accept: application/x-ndjson`, and so MCP's `verify`) reports its progress at most.
pub const VERIFY_PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// A streamed backup's or drill's progress lines come at most this often.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Events per append when `cairn append --ndjson` batches stdin, and when the server batches an
/// NDJSON append body.
pub const NDJSON_BATCH_EVENTS: usize = 1_000;

/// Bytes per append when `cairn append --ndjson` batches stdin or the server an NDJSON body
/// (whichever bound comes first).
pub const NDJSON_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Longest line `cairn append --ndjson` and an NDJSON append body accept: one event plus its
/// JSON framing.
pub const NDJSON_LINE_MAX: usize = EVENT_SIZE_MAX * 2;

/// Most bytes of one NDJSON append body (`POST /v1/streams/{stream}/events` with
/// `application/x-ndjson`), which is read in batches rather than whole.
pub const NDJSON_BODY_MAX: usize = 1024 * 1024 * 1024;

/// Most events (non-blank lines) of one NDJSON append body.
pub const NDJSON_EVENTS_MAX: usize = 10_000_000;

/// Memory all requests together may hold for their bodies at once (read, not yet answered),
/// each body byte charged [`BODY_MEMORY_FACTOR`] bytes. A request whose next chunk does not
/// fit gets 503 `overloaded` with `Retry-After`; the per-request [`REQUEST_BODY_MAX`] still
/// applies. `cairn serve --body-budget`.
pub const BODY_BYTES_IN_FLIGHT_MAX: usize = 256 * 1024 * 1024;

/// Bytes of memory charged to the in-flight budget per request-body byte: the raw body, and
/// the parsed request that holds a copy of every string in it (and, for MessagePack, the JSON
/// it is transcoded to). Measured: 24 concurrent 14 MiB bodies took ~3x their size at peak.
pub const BODY_MEMORY_FACTOR: usize = 3;

/// Seconds a client is told to wait (`Retry-After`) after a 503 `overloaded`.
pub const OVERLOADED_RETRY_AFTER_SECS: u16 = 1;

/// `Retry-After` (seconds) on a 503 `too_many_open_files`: descriptors are released as
/// connections close, so a prompt retry is likely to pass.
pub const RETRY_AFTER_FDS_SECS: u16 = 1;

/// Longest a request body may take to arrive, from the moment the handler starts reading it;
/// a body shorter than its `Content-Length` or a chunked body that never ends gets 408
/// `body_timeout` and the connection is closed. `cairn serve --body-timeout`.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest the server waits for a request's head (request line and headers), counted from the
/// moment it starts waiting for one: on a new connection, and after each answer on a
/// kept-alive one. So it is also the idle keep-alive timeout: a slowloris head and an idle
/// connection are both closed after it. `cairn serve --header-timeout`.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// On SIGTERM or SIGINT: how long in-flight requests may take to finish once the server has
/// stopped accepting; then the server exits regardless. `cairn serve --shutdown-grace`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Most open client connections. Further connections are accepted and closed at once (cheap,
/// and the client sees a reset rather than a hang). Lowered at start to what the process's
/// file-descriptor limit allows after [`FD_RESERVE`]. `cairn serve --max-connections`.
pub const CONNECTIONS_MAX: usize = 4096;

/// File descriptors kept out of the connection cap for the log and the views: segment files
/// (open and mapped), the data directory, the lock file, checkpoints being written and read,
/// and the runtime's own descriptors.
pub const FD_RESERVE: u64 = 256;

/// Longest bearer token accepted in an `Authorization` header.
pub const TOKEN_LEN_MAX: usize = 4096;

// One largest request must fit in the in-flight budget, or it could never be served.
const _: () = assert!(BODY_BYTES_IN_FLIGHT_MAX >= REQUEST_BODY_MAX * BODY_MEMORY_FACTOR);

// Base64 inflates binary data by 4/3: a full batch of binary events must fit in one body.
const _: () = assert!(REQUEST_BODY_MAX >= BATCH_BYTES_MAX / 3 * 4);

/// The read page size: the default when none is asked for, clamped to [`READ_LIMIT_MAX`].
/// `limit=0` is refused (it is almost always a client bug, and an empty page with a `next`
/// cursor that does not move would loop a pager for ever); the error is a sentence.
pub fn read_limit(requested: Option<usize>) -> Result<usize, String> {
    match requested {
        Some(0) => Err("limit=0 asks for no events; pass a limit of at least 1 (at most READ_LIMIT_MAX, 10000)".into()),
        Some(n) => Ok(n.min(READ_LIMIT_MAX)),
        None => Ok(READ_LIMIT_DEFAULT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 23 (low): `limit=0` returned one event; now it is refused.
    #[test]
    fn read_limit_defaults_clamps_and_refuses_zero() {
        assert_eq!(read_limit(None), Ok(READ_LIMIT_DEFAULT));
        assert!(read_limit(Some(0)).unwrap_err().contains("limit=0"));
        assert_eq!(read_limit(Some(7)), Ok(7));
        assert_eq!(read_limit(Some(usize::MAX)), Ok(READ_LIMIT_MAX));
    }
}
