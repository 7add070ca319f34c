//! The Durable Streams routes as `/openapi.json` describes them.
//!
//! Documentation only: the protocol is served by one handler for every method ([`super::handle`],
//! routed beside the declared API because its path is a wildcard, `/v1/stream/{*path}`), so
//! these functions are never called; each annotation lists what its method answers. The
//! document spells the wildcard `{path}`: a client percent-encodes the `/` of a nested path
//! (`runs%2F42`), which the server reads as `runs/42`, the same stream as the unencoded URL.
//! What the headers mean is the protocol's (docs/http-api.md, "Durable Streams").

use crate::http::error::ErrorBody;

/// The tag of every Durable Streams operation: [`crate::http::ops`] leaves their error answers
/// as listed here (they do not take JSON or MessagePack bodies like the rest of the API).
pub const TAG: &str = "durable";

const PATH_DOC: &str = "The stream's path: the cairn stream `ds:PATH`.";

/// Create a stream, fork one, or confirm one that exists with the same configuration.
#[utoipa::path(
    put,
    path = "/v1/stream/{path}",
    tag = "durable",
    params(
        ("path" = String, Path, description = PATH_DOC),
        ("Stream-TTL" = Option<String>, Header, description = "Seconds of inactivity (writes and reads) after which the stream expires; not with Stream-Expires-At."),
        ("Stream-Expires-At" = Option<String>, Header, description = "An RFC 3339 time at which the stream expires."),
        ("Stream-Closed" = Option<String>, Header, description = "`true`: create it closed (after the body's messages)."),
        ("Stream-Forked-From" = Option<String>, Header, description = "Fork this stream (`/v1/stream/SRC`) instead of creating an empty one."),
        ("Stream-Fork-Offset" = Option<String>, Header, description = "Where the fork leaves its source (default: its tail)."),
        ("Stream-Fork-Sub-Offset" = Option<String>, Header, description = "Bytes into the message at the fork offset (raw modes), or JSON messages past it (at most FORK_SUB_OFFSET_MAX)."),
    ),
    request_body(description = "The stream's first messages (optional). Its Content-Type is the stream's for life (default application/octet-stream); JSON mode flattens one level of a top-level array.", content(
        (String = "text/plain"), (Vec<u8> = "application/octet-stream"), (serde_json::Value = "application/json"),
    )),
    responses(
        (status = 201, description = "Created. Headers: Location, Stream-Next-Offset, Content-Type, Stream-TTL/Stream-Expires-At, Stream-Closed."),
        (status = 200, description = "It existed with the same configuration; nothing changed."),
        (status = 400, description = "`invalid_header`, `invalid_expiry`, `invalid_fork`, `invalid_offset`, `fork_past_end`, `invalid_json` (JSON mode), `invalid_stream_name` or `invalid_path`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the server runs with `--auth` and the request has no known bearer token.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the token's rules do not grant `append` on `ds:PATH` (and, for a fork, `read` on its source).", body = ErrorBody),
        (status = 404, description = "`stream_not_found`: a fork's source does not exist.", body = ErrorBody),
        (status = 409, description = "`stream_exists` (another configuration), `content_type_mismatch` (a fork of another content type) or `stream_gone` (a retired path or source).", body = ErrorBody),
        (status = 413, description = "`body_too_large`: the body is above `BODY_MAX`, or more messages than one atomic append holds.", body = ErrorBody),
        (status = 500, description = "`corruption` or `internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable` (shutting down) or `poisoned`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub fn create() {}

/// Append messages and/or close the stream.
#[utoipa::path(
    post,
    path = "/v1/stream/{path}",
    tag = "durable",
    params(
        ("path" = String, Path, description = PATH_DOC),
        ("Stream-Closed" = Option<String>, Header, description = "`true`: close the stream, atomically with the body's messages if any."),
        ("Stream-Seq" = Option<String>, Header, description = "Must be byte-wise greater than the stream's last one (409 `stream_seq_regression`)."),
        ("Producer-Id" = Option<String>, Header, description = "An idempotent producer (with Producer-Epoch and Producer-Seq, all three or none)."),
        ("Producer-Epoch" = Option<String>, Header, description = "The producer's epoch (decimal, at most 2^53-1); an older one is fenced off (403)."),
        ("Producer-Seq" = Option<String>, Header, description = "The producer's sequence number within the epoch (decimal, at most 2^53-1)."),
    ),
    request_body(description = "The messages, of the stream's content type. Empty only with Stream-Closed: true.", content(
        (String = "text/plain"), (Vec<u8> = "application/octet-stream"), (serde_json::Value = "application/json"),
    )),
    responses(
        (status = 204, description = "Appended (or closed), or a producer's duplicate. Headers: Stream-Next-Offset, Stream-Closed, Producer-Epoch, Producer-Seq."),
        (status = 200, description = "A producer's new data was appended."),
        (status = 400, description = "`empty_append`, `missing_content_type`, `invalid_producer`, `invalid_stream_seq`, `invalid_header`, `invalid_json` (JSON mode), `invalid_stream_name` or `invalid_path`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the server runs with `--auth` and the request has no known bearer token.", body = ErrorBody),
        (status = 403, description = "`forbidden` (the token's rules do not grant `append` on `ds:PATH`) or `stale_producer_epoch` (header Producer-Epoch: the current one).", body = ErrorBody),
        (status = 404, description = "`stream_not_found`.", body = ErrorBody),
        (status = 409, description = "`stream_closed`, `content_type_mismatch`, `producer_sequence_gap` (headers Producer-Expected-Seq, Producer-Received-Seq) or `stream_seq_regression`.", body = ErrorBody),
        (status = 410, description = "`stream_gone`: deleted while forks still read it.", body = ErrorBody),
        (status = 413, description = "`body_too_large`: the body is above `BODY_MAX`, or more messages than one atomic append holds.", body = ErrorBody),
        (status = 500, description = "`corruption` or `internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable` (shutting down) or `poisoned`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub fn append() {}

/// Read from an offset: catch-up, long-poll or Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v1/stream/{path}",
    tag = "durable",
    params(
        ("path" = String, Path, description = PATH_DOC),
        ("offset" = Option<String>, Query, description = "`-1` (the start, the default), `now` (the tail) or a Stream-Next-Offset this server gave."),
        ("live" = Option<String>, Query, description = "`long-poll` (wait up to `--ds-long-poll-timeout` for data) or `sse` (Server-Sent Events); both need `offset`."),
        ("cursor" = Option<String>, Query, description = "The Stream-Cursor of the previous live answer."),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of an earlier catch-up read of the same range (304 if unchanged)."),
    ),
    responses(
        (status = 200, description = "Messages: the stream's bytes in its content type (JSON mode: a JSON array), or for `live=sse` `text/event-stream`. Headers: Stream-Next-Offset, Stream-Up-To-Date, Stream-Closed, Stream-Cursor (live), ETag (catch-up), Cache-Control.", content(
            (serde_json::Value = "*/*"), (String = "text/event-stream"),
        )),
        (status = 204, description = "A long-poll found no data before its timeout, or the end of a closed stream. Headers: Stream-Next-Offset, Stream-Up-To-Date, Stream-Cursor."),
        (status = 304, description = "Not modified (If-None-Match)."),
        (status = 400, description = "`invalid_offset`, `invalid_query`, `invalid_header`, `invalid_stream_name` or `invalid_path`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the server runs with `--auth` and the request has no known bearer token.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the token's rules do not grant `read` on `ds:PATH`.", body = ErrorBody),
        (status = 404, description = "`stream_not_found`.", body = ErrorBody),
        (status = 410, description = "`stream_gone`: deleted while forks still read it.", body = ErrorBody),
        (status = 500, description = "`corruption` or `internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable` (shutting down) or `poisoned`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub fn read() {}

/// The stream's metadata (does not slide its TTL).
#[utoipa::path(
    head,
    path = "/v1/stream/{path}",
    tag = "durable",
    params(("path" = String, Path, description = PATH_DOC)),
    responses(
        (status = 200, description = "Headers: Content-Type, Stream-Next-Offset (the tail), Stream-TTL, Stream-Expires-At, Stream-Closed; no body."),
        (status = 400, description = "`invalid_stream_name` or `invalid_path` (no body: a HEAD answer)."),
        (status = 401, description = "`unauthorized` (no body: a HEAD answer)."),
        (status = 403, description = "`forbidden` (no body: a HEAD answer)."),
        (status = 404, description = "`stream_not_found` (no body: a HEAD answer)."),
        (status = 410, description = "`stream_gone` (no body: a HEAD answer)."),
        (status = 500, description = "`corruption` or `internal` (no body: a HEAD answer)."),
        (status = 503, description = "`unavailable` or `poisoned` (no body: a HEAD answer)."),
    ),
    security(("bearer" = []), ())
)]
pub fn head() {}

/// Delete the stream (cairn's soft delete; a source forks still read is retired instead).
#[utoipa::path(
    delete,
    path = "/v1/stream/{path}",
    tag = "durable",
    params(("path" = String, Path, description = PATH_DOC)),
    responses(
        (status = 204, description = "Deleted (or retired: 410 to everything until its last fork is deleted)."),
        (status = 400, description = "`invalid_stream_name` or `invalid_path`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the server runs with `--auth` and the request has no known bearer token.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the token's rules do not grant `delete` on `ds:PATH`.", body = ErrorBody),
        (status = 404, description = "`stream_not_found`.", body = ErrorBody),
        (status = 410, description = "`stream_gone`: already retired.", body = ErrorBody),
        (status = 500, description = "`corruption` or `internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable` (shutting down) or `poisoned`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub fn delete() {}

/// CORS preflight.
#[utoipa::path(
    options,
    path = "/v1/stream/{path}",
    tag = "durable",
    params(("path" = String, Path, description = PATH_DOC)),
    responses((status = 204, description = "The CORS headers: any origin, the protocol's methods and headers.")),
    security(())
)]
pub fn preflight() {}
