//! The Durable Streams protocol (ElectricSQL's open HTTP protocol for resumable streams) under
//! `/v1/stream/{path...}`, over ordinary cairn streams.
//!
//! Mapping (documented in docs/http-api.md):
//! - The stream at `/v1/stream/P` is the cairn stream `ds:P` (`P` percent-decoded; the mapping
//!   is reversible by stripping `ds:`). Its messages are ordinary cairn events (positions,
//!   versions, chain hashes, verify, checkpoints and subscriptions all see them); what each
//!   event means is in [`state`].
//! - Offsets are stream versions, fixed-width ([`offset`]); `-1` and `now` are the sentinels.
//! - The content type is fixed at creation, in the stream's `ds.created` event, so it survives
//!   restarts and replays. Raw byte modes store the body's bytes as binary event data; JSON mode
//!   stores one event per message (a top-level array is flattened one level).
//! - Idempotent producers (`Producer-Id`/`-Epoch`/`-Seq`) and `Stream-Seq` are committed in the
//!   same atomic append as the messages they guard (reserved event metadata, see [`state`]),
//!   and rebuilt from the log after a restart. `Stream-Seq` is scoped per stream.
//! - Lifecycle: DELETE is cairn's soft delete (versions continue, so a stream re-created at the
//!   same path never reuses an offset); a fork (`Stream-Forked-From`, `Stream-Fork-Offset`) is
//!   cairn's fork, sharing the source's events up to the offset without copying them. Close is
//!   the `ds.closed` event rather than cairn's close, because the protocol closes atomically
//!   with a final append, and cairn's close is a separate lifecycle event. TTL and
//!   `Stream-Expires-At` are enforced here, not by cairn's `ttl_ms`: the protocol's TTL slides
//!   on reads as well as writes (cairn's only on appends); an expired stream is soft-deleted on
//!   its next access and answers 404. Reads are remembered across a restart to within half a
//!   TTL by access markers on a reserved stream beside it (see [`state`]).
//! - Auth: the same bearer tokens and prefix rules as the rest of the API, applied to the cairn
//!   name `ds:P`: reads need `read`, PUT and POST `append` (a fork also `read` on its source),
//!   DELETE `delete`.
//!
//! Every answer carries `X-Content-Type-Options: nosniff`, `Cross-Origin-Resource-Policy:
//! cross-origin` and permissive CORS headers (bearer tokens, not cookies, authenticate).
//! Errors keep cairn's JSON error body beside the protocol's status and headers.
//!
//! Forks at a sub-offset (`Stream-Fork-Sub-Offset`: bytes into a raw message, or JSON messages
//! past the offset, at most [`FORK_SUB_OFFSET_MAX`]) are built here; a source deleted while forks
//! still read it is retired (`ds.deleted`, 410) until its last fork is deleted.
//! Not done: the protocol's opt-in subscription extension (webhooks).

pub mod doc;
pub mod offset;
pub mod read;
pub mod state;

#[cfg(test)]
mod in_process;

use std::future::Future as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use log_engine::{DeleteMode, ExpectedVersion, NewEvent, Payload, StreamAppend, StreamName, StreamVersion};
use serde_json::value::RawValue;

use self::offset::{Offset, Start};
use self::read::Page;
use self::state::{Config, Coordination, Loaded, ProducerClaim, ProducerVerdict, Slot};
use super::error::ApiError;
use super::extract::{body_read_error, Caller, Path};
use super::AppState;
use crate::auth::Permission;

/// The route of every Durable Stream.
pub const ROUTE: &str = "/v1/stream/{*path}";
/// Largest request body of a create or an append: what fits one atomic append of the log
/// (`BATCH_BYTES_MAX`) with room for its events' names, types and metadata.
pub const BODY_MAX: usize = log_engine::BATCH_BYTES_MAX - 1024 * 1024;
pub use self::state::{PRODUCER_ID_LEN_MAX, PRODUCER_NUMBER_MAX, STREAM_SEQ_LEN_MAX};
pub use crate::limits::LONG_POLL_TIMEOUT;
/// Largest `Stream-Fork-Sub-Offset` of a JSON stream (messages past the fork offset): finding
/// the fork point reads that many messages of the source, so it is bounded. (A raw stream's
/// sub-offset is bounded by its message, at most `DATA_CHUNK_BYTES`.)
pub const FORK_SUB_OFFSET_MAX: u64 = 100_000;

const STREAM_NEXT_OFFSET: &str = "stream-next-offset";
const STREAM_UP_TO_DATE: &str = "stream-up-to-date";
const STREAM_CURSOR: &str = "stream-cursor";
const STREAM_CLOSED: &str = "stream-closed";
const STREAM_TTL: &str = "stream-ttl";
const STREAM_EXPIRES_AT: &str = "stream-expires-at";
const STREAM_SEQ: &str = "stream-seq";
const STREAM_FORKED_FROM: &str = "stream-forked-from";
const STREAM_FORK_OFFSET: &str = "stream-fork-offset";
const STREAM_FORK_SUB_OFFSET: &str = "stream-fork-sub-offset";
const PRODUCER_ID: &str = "producer-id";
const PRODUCER_EPOCH: &str = "producer-epoch";
const PRODUCER_SEQ: &str = "producer-seq";
const PRODUCER_EXPECTED_SEQ: &str = "producer-expected-seq";
const PRODUCER_RECEIVED_SEQ: &str = "producer-received-seq";
const SSE_DATA_ENCODING: &str = "stream-sse-data-encoding";

/// Cache-Control of reads of data that cannot change (a range below the tail).
const CACHE_HISTORY: &str = "private, max-age=60, stale-while-revalidate=300";
/// Cache-Control of answers about the tail (HEAD, `offset=now`, up-to-date reads).
const CACHE_NONE: &str = "no-store";

const CORS_ALLOW_HEADERS: &str = "authorization, content-type, if-none-match, stream-ttl, stream-expires-at, \
     stream-seq, stream-closed, stream-forked-from, stream-fork-offset, stream-fork-sub-offset, producer-id, \
     producer-epoch, producer-seq";
const CORS_EXPOSE_HEADERS: &str = "stream-next-offset, stream-up-to-date, stream-cursor, stream-closed, stream-ttl, \
     stream-expires-at, stream-sse-data-encoding, producer-epoch, producer-seq, producer-expected-seq, \
     producer-received-seq, etag, location";

/// What the server shares between Durable Streams requests.
#[derive(Debug)]
pub struct Durable {
    pub streams: state::Registry,
    pub long_poll_timeout: Duration,
    /// The time TTLs are measured by.
    pub clock: state::Clock,
    /// The server speaks HTTPS: a `201`'s `Location` says `https://`.
    pub https: bool,
}

impl Default for Durable {
    fn default() -> Durable {
        Durable {
            streams: state::Registry::default(),
            long_poll_timeout: LONG_POLL_TIMEOUT,
            clock: state::Clock::default(),
            https: false,
        }
    }
}

/// A failed request's answer: cairn's error body with the protocol's headers.
struct Fail(Box<Response>);

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Fail {
        Fail(Box::new(e.into_response()))
    }
}

impl From<log_engine::Error> for Fail {
    fn from(e: log_engine::Error) -> Fail {
        Fail::from(ApiError::from(e))
    }
}

impl Fail {
    fn with(mut self, name: &'static str, value: impl ToString) -> Fail {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            self.0.headers_mut().insert(HeaderName::from_static(name), v);
        }
        self
    }
}

type DsResult = Result<Response, Fail>;

fn bad(code: &'static str, message: impl Into<String>) -> Fail {
    Fail::from(ApiError::bad_request(code, message))
}

fn not_found(path: &str) -> Fail {
    Fail::from(ApiError::new(
        StatusCode::NOT_FOUND,
        "stream_not_found",
        format!("there is no durable stream at {path}"),
    ))
}

fn conflict(code: &'static str, message: impl Into<String>) -> Fail {
    Fail::from(ApiError::new(StatusCode::CONFLICT, code, message))
}

/// A response under construction.
struct Answer(Response);

impl Answer {
    fn new(status: StatusCode, body: impl Into<Body>) -> Answer {
        let mut r = Response::new(body.into());
        *r.status_mut() = status;
        Answer(r)
    }

    fn header(mut self, name: &'static str, value: impl ToString) -> Answer {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            self.0.headers_mut().insert(HeaderName::from_static(name), v);
        }
        self
    }

    fn header_if(self, cond: bool, name: &'static str, value: impl ToString) -> Answer {
        if cond {
            self.header(name, value)
        } else {
            self
        }
    }
}

/// Every request under `/v1/stream/`.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    caller: Result<Caller, ApiError>,
    path: Result<Path<String>, ApiError>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        if method == Method::OPTIONS {
            return Ok(Answer::new(StatusCode::NO_CONTENT, Body::empty()).0);
        }
        let caller = caller?;
        let Path(path) = path?;
        let name = format!("{}{path}", state::STREAM_PREFIX);
        StreamName::new(name.as_str()).map_err(ApiError::from)?;
        let url_path = uri.path().to_string();
        match method {
            Method::PUT => create(&state, &caller, &name, &url_path, &headers, body).await,
            Method::POST => append(&state, &caller, &name, &url_path, &headers, body).await,
            Method::GET => get(&state, &caller, &name, &url_path, &uri, &headers).await,
            Method::HEAD => head(&state, &caller, &name, &url_path).await,
            Method::DELETE => delete(&state, &caller, &name, &url_path).await,
            other => Err(Fail::from(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{other} is not a Durable Streams operation; use PUT, POST, GET, HEAD or DELETE"),
            ))),
        }
    }
    .await;
    let mut response = match result {
        Ok(r) => r,
        Err(Fail(r)) => *r,
    };
    let h = response.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(CORS_ALLOW_HEADERS));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(CORS_EXPOSE_HEADERS));
    response
}

/// A header as text; `None` if absent; 400 if not visible ASCII.
fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Fail> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| bad("invalid_header", format!("the {name} header is not ASCII text"))),
    }
}

/// A decimal integer as the protocol writes them: digits only, no sign, no leading zero.
fn strict_integer(text: &str, max: u64) -> Option<u64> {
    let canonical =
        text == "0" || (!text.is_empty() && !text.starts_with('0') && text.bytes().all(|b| b.is_ascii_digit()));
    canonical.then(|| text.parse::<u64>().ok()).flatten().filter(|&n| n <= max)
}

fn stream_closed_header(headers: &HeaderMap) -> Result<bool, Fail> {
    Ok(header_text(headers, STREAM_CLOSED)?.is_some_and(|v| v.eq_ignore_ascii_case("true")))
}

/// The producer headers: all three or none.
fn producer_claim(headers: &HeaderMap) -> Result<Option<ProducerClaim>, Fail> {
    let id = header_text(headers, PRODUCER_ID)?;
    let epoch = header_text(headers, PRODUCER_EPOCH)?;
    let seq = header_text(headers, PRODUCER_SEQ)?;
    let (id, epoch, seq) = match (id, epoch, seq) {
        (None, None, None) => return Ok(None),
        (Some(id), Some(epoch), Some(seq)) => (id, epoch, seq),
        _ => {
            return Err(bad(
                "invalid_producer",
                "Producer-Id, Producer-Epoch and Producer-Seq must be sent together, or none of them",
            ))
        }
    };
    if id.is_empty() || id.len() > PRODUCER_ID_LEN_MAX {
        return Err(bad("invalid_producer", format!("Producer-Id must be 1 to {PRODUCER_ID_LEN_MAX} bytes")));
    }
    let number = |name: &str, text: &str| {
        strict_integer(text, PRODUCER_NUMBER_MAX).ok_or_else(|| {
            bad("invalid_producer", format!("{name} {text:?} is not a decimal integer from 0 to {PRODUCER_NUMBER_MAX}"))
        })
    };
    Ok(Some(ProducerClaim {
        id: id.to_string(),
        epoch: number("Producer-Epoch", epoch)?,
        seq: number("Producer-Seq", seq)?,
    }))
}

/// Reads a whole request body, at most [`BODY_MAX`] bytes.
async fn read_all(headers: &HeaderMap, body: Body) -> Result<Bytes, Fail> {
    let declared = header_text(headers, "content-length")?.and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        Fail::from(ApiError::too_large(
            "body_too_large",
            format!("a Durable Streams request body may be at most {BODY_MAX} bytes (BODY_MAX)"),
        ))
    };
    if declared.is_some_and(|n| n > BODY_MAX as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, BODY_MAX).await.map_err(|e| {
        let error = body_read_error(&e, &"more than");
        if error.status == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            Fail::from(error)
        }
    })
}

/// The messages of a body, as the stream's mode stores them: JSON mode one event per message
/// (one level of a top-level array flattened), other modes the bytes in chunks of at most
/// [`state::DATA_CHUNK_BYTES`].
fn messages(config: &Config, body: &[u8], creating: bool) -> Result<Vec<Payload>, Fail> {
    if !config.is_json() {
        return Ok(body.chunks(state::DATA_CHUNK_BYTES).map(|c| Payload::Bytes(c.to_vec())).collect());
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let invalid = |e: serde_json::Error| bad("invalid_json", format!("the body is not valid JSON: {e}"));
    let value: &RawValue = serde_json::from_slice(body).map_err(invalid)?;
    let text = value.get();
    if !text.starts_with('[') {
        return Ok(vec![Payload::Json(text.as_bytes().to_vec())]);
    }
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(invalid)?;
    if items.is_empty() && !creating {
        return Err(bad("empty_append", "an append of an empty JSON array appends nothing; send at least one message"));
    }
    Ok(items.into_iter().map(|m| Payload::Json(m.get().as_bytes().to_vec())).collect())
}

/// The events of an append: the messages, then `ds.closed` if closing; the last carries the
/// coordination state, every one the caller's `$principal`.
fn events(
    caller: &Caller,
    name: &str,
    head: Option<NewEvent>,
    messages: Vec<Payload>,
    close: bool,
    coordination: &Coordination,
) -> Result<Vec<NewEvent>, Fail> {
    let mut out: Vec<NewEvent> = head.into_iter().collect();
    for data in messages {
        out.push(NewEvent { id: None, event_type: state::EVENT_DATA.to_string(), metadata: Vec::new(), data });
    }
    if close {
        out.push(NewEvent::json(state::EVENT_CLOSED, &serde_json::json!({})));
    }
    if coordination.producer.is_some() || coordination.stream_seq.is_some() {
        let last = out.last_mut().expect("an append has an event");
        *last = std::mem::replace(last, NewEvent::bytes("-", Vec::new()))
            .with_metadata(&serde_json::json!({ state::META_KEY: coordination }));
    }
    for event in &mut out {
        let metadata = std::mem::take(&mut event.metadata);
        event.metadata =
            super::access::stamp_principal(caller, metadata, &format!("a durable stream append (stream {name})"))?;
    }
    Ok(out)
}

/// Locks stream `name`'s slot and makes sure it is loaded; an expired stream is soft-deleted
/// first and reads as absent (on a read replica, whose log takes no writes, it only reads as
/// absent: the leader deletes it when it is next used there).
async fn locked(state: &Arc<AppState>, name: &str) -> Result<tokio::sync::OwnedMutexGuard<Slot>, Fail> {
    let slot = state.durable.streams.slot(name);
    let mut guard = slot.lock_owned().await;
    let known_access = match &*guard {
        Slot::Live(_) => None,
        Slot::Stale { last_access_ms } => Some(Some(*last_access_ms)),
        Slot::Unloaded => Some(None),
    };
    if let Some(known_access) = known_access {
        let log = state.log.clone();
        let n = name.to_string();
        *guard = match super::log_api::blocking(move || state::load(&log, &n)).await?? {
            Some(mut loaded) => {
                // This server saw the last access: no need to bound it from the log.
                if let Some(at) = known_access {
                    loaded.last_access_ms = at.max(loaded.persisted_ms);
                }
                Slot::Live(Box::new(loaded))
            }
            None => Slot::Unloaded,
        };
    }
    let now = state.durable.clock.now_ms();
    if let Slot::Live(loaded) = &*guard {
        if loaded.expired(now) && state.log.is_read_only() {
            *guard = Slot::Unloaded;
        } else if loaded.expired(now) {
            let log = state.log.clone();
            let n = name.to_string();
            match super::log_api::blocking(move || log.delete_stream(&n, DeleteMode::Soft)).await? {
                Ok(_) | Err(log_engine::Error::StreamNotFound { .. } | log_engine::Error::StreamDeleted { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            *guard = Slot::Unloaded;
        }
    }
    Ok(guard)
}

fn live(guard: &mut Slot) -> Option<&mut Loaded> {
    match guard {
        Slot::Live(l) => Some(l),
        Slot::Unloaded | Slot::Stale { .. } => None,
    }
}

/// Submits an append while the slot is locked (so appends to one stream keep their order and
/// their validation), and returns the future of its commit, to await after unlocking: the
/// writer's queue is FIFO, so concurrent appends to one stream still share group commits.
async fn submit(
    state: &AppState,
    name: &str,
    events: Vec<NewEvent>,
) -> Result<impl std::future::Future<Output = log_engine::Result<Vec<log_engine::AppendResult>>>, Fail> {
    let stream = StreamName::new(name).map_err(ApiError::from)?;
    let log = state.log.clone();
    let mut commit = Box::pin(async move {
        log.append_multi_async(vec![StreamAppend { stream, expected: ExpectedVersion::Any, events }]).await
    });
    // One poll hands the append to the writer (append_multi_async submits before its first
    // await); if it already finished (an early refusal), keep its answer.
    let early = futures_util::poll!(commit.as_mut());
    // A refusal known at once is answered while the caller still holds the slot, before any
    // state moves on: a pipelined request of the same producer must not be checked against
    // state this append never committed.
    if let std::task::Poll::Ready(Err(e)) = early {
        return Err(e.into());
    }
    Ok(async move {
        match early {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => commit.await,
        }
    })
}

/// The slots of the Durable Streams among some streams, locked for a write that reaches them
/// from outside this protocol (cairn's own append and lifecycle endpoints), as a protocol
/// write would lock them. Dropping it forgets their state (keeping their last access): the
/// next request folds them again from the log, the write included. So a message, `ds.closed`
/// or producer metadata appended through `/v1/streams/...` counts at once, not only after a
/// restart. Drop it only once the write has committed or failed.
#[derive(Debug)]
pub struct OutsideLock(Vec<tokio::sync::OwnedMutexGuard<Slot>>);

impl Drop for OutsideLock {
    fn drop(&mut self) {
        for guard in &mut self.0 {
            guard.forget();
        }
    }
}

impl OutsideLock {
    /// Whether it holds no slot (the write touches no Durable Stream).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Locks the slots of the Durable Streams among `streams` (none: at no cost).
pub async fn lock_outside(state: &AppState, streams: &[&str]) -> OutsideLock {
    let mut names: Vec<&str> = streams.iter().copied().filter(|s| s.starts_with(state::STREAM_PREFIX)).collect();
    // One lock order (by name) for every multi-stream write; the protocol holds one slot at a
    // time, so no two writers can wait on each other.
    names.sort_unstable();
    names.dedup();
    let mut guards = Vec::with_capacity(names.len());
    for name in names {
        guards.push(state.durable.streams.slot(name).lock_owned().await);
    }
    OutsideLock(guards)
}

/// Runs `write`, a write that reaches `streams` from outside this protocol, holding an
/// [`OutsideLock`] for its duration. The write runs in a task of its own, so a client that goes
/// away mid-write cannot leave a slot holding state from before a write that still commits.
/// A write that touches no `ds:` stream runs as it is, at no cost.
pub async fn outside_write<T, W>(state: &Arc<AppState>, streams: &[&str], write: W) -> Result<T, ApiError>
where
    T: Send + 'static,
    W: std::future::Future<Output = T> + Send + 'static,
{
    if !streams.iter().any(|s| s.starts_with(state::STREAM_PREFIX)) {
        return Ok(write.await);
    }
    let names: Vec<String> = streams.iter().map(|s| s.to_string()).collect();
    let state = state.clone();
    let task = tokio::spawn(async move {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let _lock = lock_outside(&state, &names).await;
        write.await
    });
    task.await.map_err(|e| ApiError::internal(format!("a write to a durable stream failed: {e}")))
}

/// After a failed write: forget the slot's state, so the next request reads it from the log.
async fn forget(state: &AppState, name: &str) {
    state.durable.streams.slot(name).lock().await.forget();
}

/// Hands an access marker (see [`state::AccessMarker`]) to the log without waiting for it to
/// be durable; `false` if the log refused it at once. A marker the log fails later leaves the
/// slot to be read again from the log, which then bounds the last access by what it holds. A
/// read replica writes none (it deletes nothing either).
fn mark_access(state: &Arc<AppState>, marker: state::AccessMarker) -> bool {
    if state.log.is_read_only() {
        return true;
    }
    let access = state::access_stream(&marker.stream);
    let name = marker.stream.clone();
    let event = NewEvent::json(state::EVENT_ACCESSED, &serde_json::to_value(&marker).expect("a marker serializes"));
    let refused = match StreamName::reserved(access) {
        Ok(stream) => {
            let log = state.log.clone();
            let mut commit = Box::pin(async move {
                log.append_multi_async(vec![StreamAppend {
                    stream,
                    expected: ExpectedVersion::Any,
                    events: vec![event],
                }])
                .await
            });
            // The first poll hands the marker to the writer; its commit is awaited elsewhere.
            let waker = futures_util::task::noop_waker();
            match commit.as_mut().poll(&mut std::task::Context::from_waker(&waker)) {
                std::task::Poll::Ready(result) => result.err(),
                std::task::Poll::Pending => {
                    let (state, name) = (state.clone(), name.clone());
                    tokio::spawn(async move {
                        if let Err(e) = commit.await {
                            tracing::warn!(stream = %name, error = %e, "a durable stream's access marker was not written");
                            state.durable.streams.slot(&name).lock().await.forget();
                        }
                    });
                    None
                }
            }
        }
        Err(e) => Some(e),
    };
    match refused {
        None => true,
        Some(e) => {
            tracing::warn!(stream = %name, error = %e, "a durable stream's access marker was not written");
            false
        }
    }
}

fn parse_config(headers: &HeaderMap) -> Result<Config, Fail> {
    let content_type =
        header_text(headers, "content-type")?.filter(|c| !c.is_empty()).unwrap_or("application/octet-stream");
    if content_type.len() > state::CONTENT_TYPE_LEN_MAX {
        return Err(bad(
            "invalid_header",
            format!("a stream's Content-Type may be at most {} bytes", state::CONTENT_TYPE_LEN_MAX),
        ));
    }
    let ttl = header_text(headers, STREAM_TTL)?;
    let expires = header_text(headers, STREAM_EXPIRES_AT)?;
    if ttl.is_some() && expires.is_some() {
        return Err(bad("invalid_expiry", "send Stream-TTL or Stream-Expires-At, not both"));
    }
    let ttl_seconds = match ttl {
        None => None,
        Some(t) => Some(strict_integer(t, state::TTL_SECONDS_MAX).ok_or_else(|| {
            bad(
                "invalid_expiry",
                format!(
                    "Stream-TTL {t:?} is not a whole number of seconds from 0 to {} (digits, no sign, no leading zero)",
                    state::TTL_SECONDS_MAX
                ),
            )
        })?),
    };
    let expires_at_ms =
        match expires {
            None => None,
            Some(t) => Some(state::parse_rfc3339(t).ok_or_else(|| {
                bad("invalid_expiry", format!("Stream-Expires-At {t:?} is not an RFC 3339 timestamp"))
            })?),
        };
    Ok(Config { ttl_seconds, expires_at_ms, expires_at: expires.map(str::to_string), ..Config::of(content_type) })
}

/// `PUT`: create a stream (or a fork), or confirm one that exists with the same configuration.
async fn create(
    state: &Arc<AppState>,
    caller: &Caller,
    name: &str,
    url_path: &str,
    headers: &HeaderMap,
    body: Body,
) -> DsResult {
    caller.require(Permission::Append, name)?;
    let mut config = parse_config(headers)?;
    let close = stream_closed_header(headers)?;
    let fork = match header_text(headers, STREAM_FORKED_FROM)? {
        Some(source) => Some(fork_source(state, caller, source, headers).await?),
        None => {
            if header_text(headers, STREAM_FORK_OFFSET)?.is_some() {
                return Err(bad("invalid_fork", "Stream-Fork-Offset needs Stream-Forked-From"));
            }
            None
        }
    };
    if let Some(fork) = &fork {
        if header_text(headers, "content-type")?.is_none() {
            config.content_type.clone_from(&fork.config.content_type);
        } else if state::essence(&config.content_type) != fork.config.essence() {
            return Err(conflict(
                "content_type_mismatch",
                format!(
                    "a fork keeps its source's content type {}, not {}",
                    fork.config.content_type, config.content_type
                ),
            ));
        }
        if config.ttl_seconds.is_none() && config.expires_at_ms.is_none() {
            config.ttl_seconds = fork.config.ttl_seconds;
            config.expires_at_ms = fork.config.expires_at_ms;
            config.expires_at.clone_from(&fork.config.expires_at);
        }
        config.forked_from = Some(fork.source_path.clone());
        config.fork_offset.clone_from(&fork.offset);
        config.fork_sub_offset = fork.sub_offset.filter(|&n| n > 0);
    }
    if fork.is_none() && header_text(headers, STREAM_FORK_SUB_OFFSET)?.is_some() {
        return Err(bad("invalid_fork", "Stream-Fork-Sub-Offset needs Stream-Forked-From"));
    }
    let body = read_all(headers, body).await?;
    let messages = messages(&config, &body, true)?;
    let mut guard = locked(state, name).await?;
    if let Some(existing) = live(&mut guard) {
        if existing.gone {
            return Err(conflict(
                "stream_gone",
                format!(
                    "the durable stream at {url_path} is deleted but still has forks; its path cannot be reused yet"
                ),
            ));
        }
        let same = existing.config.essence() == config.essence()
            && existing.config.ttl_seconds == config.ttl_seconds
            && existing.config.expires_at_ms == config.expires_at_ms
            && (fork.is_none()
                || (existing.config.forked_from == config.forked_from
                    && existing.config.fork_sub_offset == config.fork_sub_offset
                    && (config.fork_offset.is_none() || existing.config.fork_offset == config.fork_offset)))
            && existing.closed == close;
        if !same {
            return Err(conflict(
                "stream_exists",
                format!("a durable stream exists at {url_path} with another configuration (content type, TTL, expiry, fork or closed state)"),
            ));
        }
        let answer = stream_headers(Answer::new(StatusCode::OK, Body::empty()), existing)
            .header(STREAM_NEXT_OFFSET, Offset(read::tail(&state.log, name)));
        return Ok(answer.0);
    }
    if let Some(fork) = &fork {
        let log = state.log.clone();
        let (source, to, at_version) = (fork.source_name.clone(), name.to_string(), fork.at_version);
        super::log_api::blocking(move || log.fork_stream(&source, &to, StreamVersion(at_version))).await??;
    }
    let created = NewEvent::json(state::EVENT_CREATED, &serde_json::to_value(&config).expect("a config serializes"));
    let cut = fork.and_then(|f| f.cut);
    let messages = cut.into_iter().chain(messages).collect();
    let events = events(caller, name, Some(created), messages, close, &Coordination::default())?;
    let commit = submit(state, name, events).await?;
    // The slot stays locked until the stream exists: a request that loaded it from the log
    // meanwhile would otherwise be overwritten by the fresh state below.
    let result = match commit.await {
        Ok(mut r) => r.pop().expect("one result per stream"),
        Err(e) => {
            *guard = Slot::Unloaded;
            return Err(e.into());
        }
    };
    let mut loaded = Loaded::new(config, result.first_position.0, state.durable.clock.now_ms());
    loaded.closed = close;
    let location = match header_text(headers, "host")? {
        Some(host) => format!("{}://{host}{url_path}", if state.durable.https { "https" } else { "http" }),
        None => url_path.to_string(),
    };
    let answer = stream_headers(Answer::new(StatusCode::CREATED, Body::empty()), &loaded)
        .header(STREAM_NEXT_OFFSET, Offset(result.last_version.0 + 1))
        .header("location", location);
    *guard = Slot::Live(Box::new(loaded));
    Ok(answer.0)
}

/// The headers that describe a stream: content type, expiry, closed.
fn stream_headers(answer: Answer, loaded: &Loaded) -> Answer {
    answer
        .header("content-type", &loaded.config.content_type)
        .header_if(loaded.config.ttl_seconds.is_some(), STREAM_TTL, loaded.config.ttl_seconds.unwrap_or(0))
        .header_if(
            loaded.config.expires_at.is_some(),
            STREAM_EXPIRES_AT,
            loaded.config.expires_at.clone().unwrap_or_default(),
        )
        .header_if(loaded.closed, STREAM_CLOSED, "true")
}

/// A fork's source, checked, and where the fork leaves it.
struct ForkSource {
    source_path: String,
    source_name: String,
    config: Config,
    /// The source's versions up to this one are shared (never before its `ds.created` event:
    /// a fork at the start shares just that one, and no message).
    at_version: u64,
    /// The offset the fork was asked at, as sent (`None`: the source's tail).
    offset: Option<String>,
    sub_offset: Option<u64>,
    /// A byte-mode sub-offset's part of the message it cuts: the fork's first message.
    cut: Option<Payload>,
}

async fn fork_source(
    state: &Arc<AppState>,
    caller: &Caller,
    source: &str,
    headers: &HeaderMap,
) -> Result<ForkSource, Fail> {
    let sub_offset = match header_text(headers, STREAM_FORK_SUB_OFFSET)? {
        None => None,
        Some(text) => Some(strict_integer(text, u64::MAX).ok_or_else(|| {
            bad(
                "invalid_fork",
                format!("Stream-Fork-Sub-Offset {text:?} is not a decimal integer (no sign, no leading zero)"),
            )
        })?),
    };
    let decoded = percent_encoding::percent_decode_str(source).decode_utf8_lossy().to_string();
    let path = decoded.strip_prefix("/v1/stream/").or_else(|| {
        // A full URL: keep its path.
        decoded
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .and_then(|(_, p)| p.strip_prefix("v1/stream/"))
    });
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Err(bad(
            "invalid_fork",
            format!("Stream-Forked-From {source:?} is not a stream path under /v1/stream/"),
        ));
    };
    let source_name = format!("{}{path}", state::STREAM_PREFIX);
    caller.require(Permission::Read, &source_name)?;
    let offset = header_text(headers, STREAM_FORK_OFFSET)?.map(str::to_string);
    if sub_offset.is_some_and(|n| n > 0) && offset.is_none() {
        return Err(bad("invalid_fork", "Stream-Fork-Sub-Offset above 0 needs Stream-Fork-Offset"));
    }
    let start = match &offset {
        None => None,
        Some(text) => Some(offset::parse(text).map_err(|m| bad("invalid_offset", m))?),
    };
    let mut guard = locked(state, &source_name).await?;
    let Some(loaded) = live(&mut guard) else { return Err(not_found(&decoded)) };
    if loaded.gone {
        return Err(conflict(
            "stream_gone",
            format!("the durable stream at {decoded} is deleted; it cannot be forked"),
        ));
    }
    let config = loaded.config.clone();
    drop(guard);
    let log = state.log.clone();
    let n = source_name.clone();
    let json = config.is_json();
    if let Some(units) = sub_offset.filter(|&n| json && n > FORK_SUB_OFFSET_MAX) {
        return Err(bad(
            "invalid_fork",
            format!(
                "Stream-Fork-Sub-Offset {units} is more messages than a fork may skip into its source \
                 (FORK_SUB_OFFSET_MAX, {FORK_SUB_OFFSET_MAX})"
            ),
        ));
    }
    let (at_version, cut) = super::log_api::blocking(move || -> Result<(u64, Option<Payload>), Fail> {
        let first = log.read_stream_bounded(&n, None, 1, 0, log_engine::Direction::Forward)?;
        let created = first.first().map_or(0, |e| e.version.0);
        let tail = read::tail(&log, &n);
        let at = match start {
            None | Some(Start::Now) => tail,
            Some(Start::Beginning) => created + 1,
            Some(Start::At(Offset(v))) => v.max(created + 1),
        };
        if at > tail {
            return Err(bad("fork_past_end", "Stream-Fork-Offset is past the end of the source"));
        }
        let Some(units) = sub_offset.filter(|&n| n > 0) else { return Ok((at - 1, None)) };
        let overshoot =
            || bad("invalid_fork", format!("Stream-Fork-Sub-Offset {units} is past the source's data at that offset"));
        // The messages from the offset on, counted page by page and not kept: a JSON sub-offset
        // shares that many of them, a byte one cuts the first message there.
        let wanted = if json { units } else { 1 };
        let mut counted = 0u64;
        let mut from = at;
        let found = 'pages: loop {
            let page = log.read_stream_bounded(
                &n,
                Some(StreamVersion(from)),
                read::READ_PAGE_EVENTS,
                read::READ_PAGE_BYTES,
                log_engine::Direction::Forward,
            )?;
            let Some(last) = page.last() else { return Err(overshoot()) };
            from = last.version.0 + 1;
            for event in page.into_iter().filter(|e| read::is_message(&e.event_type)) {
                counted += 1;
                if counted == wanted {
                    break 'pages event;
                }
            }
        };
        if json {
            Ok((found.version.0, None))
        } else {
            let bytes = found.data.as_bytes();
            let keep = usize::try_from(units).ok().filter(|&k| k <= bytes.len()).ok_or_else(overshoot)?;
            Ok((found.version.0 - 1, Some(Payload::Bytes(bytes[..keep].to_vec()))))
        }
    })
    .await??;
    Ok(ForkSource { source_path: decoded, source_name, config, at_version, offset, sub_offset, cut })
}

/// Live forks of stream `source` (deleted forks are not; retired ones still are): a scan of the
/// Durable Streams, run only by a delete.
fn fork_count(log: &log_engine::Log, source: &str) -> usize {
    log.streams(state::STREAM_PREFIX)
        .iter()
        .filter(|info| info.stream != source)
        .filter(|info| {
            log.stream_state(&info.stream).is_ok_and(|s| {
                !s.tombstoned
                    && !crate::wire::is_deleted(&s)
                    && s.forked_from.as_ref().is_some_and(|(from, _)| from.as_str() == source)
            })
        })
        .count()
}

/// `POST`: append (and/or close).
async fn append(
    state: &Arc<AppState>,
    caller: &Caller,
    name: &str,
    url_path: &str,
    headers: &HeaderMap,
    body: Body,
) -> DsResult {
    caller.require(Permission::Append, name)?;
    let claim = producer_claim(headers)?;
    let close = stream_closed_header(headers)?;
    let stream_seq = match header_text(headers, STREAM_SEQ)? {
        Some(s) if s.is_empty() || s.len() > STREAM_SEQ_LEN_MAX => {
            return Err(bad("invalid_stream_seq", format!("Stream-Seq must be 1 to {STREAM_SEQ_LEN_MAX} bytes")))
        }
        s => s.map(str::to_string),
    };
    let content_type = header_text(headers, "content-type")?.filter(|c| !c.is_empty()).map(str::to_string);
    let body = read_all(headers, body).await?;
    if body.is_empty() && !close {
        return Err(bad(
            "empty_append",
            "an append needs a body; an empty POST appends nothing (send Stream-Closed: true to close)",
        ));
    }
    if !body.is_empty() && content_type.is_none() {
        return Err(bad("missing_content_type", "an append needs a Content-Type (the stream's)"));
    }
    let mut guard = locked(state, name).await?;
    let Some(loaded) = live(&mut guard) else { return Err(not_found(url_path)) };
    if loaded.gone {
        return Err(gone(url_path));
    }
    let tail_offset = || Offset(read::tail(&state.log, name));
    if let Some(ct) = &content_type {
        if !body.is_empty() && !loaded.config.same_essence(ct) {
            return Err(conflict(
                "content_type_mismatch",
                format!("the stream's content type is {}, not {ct}", loaded.config.content_type),
            ));
        }
    }
    if let Some(claim) = &claim {
        match loaded.check_producer(claim) {
            ProducerVerdict::Accept => {}
            ProducerVerdict::Duplicate { seq } => {
                return Ok(Answer::new(StatusCode::NO_CONTENT, Body::empty())
                    .header(STREAM_NEXT_OFFSET, tail_offset())
                    .header(PRODUCER_EPOCH, claim.epoch)
                    .header(PRODUCER_SEQ, seq)
                    .header_if(loaded.closed, STREAM_CLOSED, "true")
                    .0)
            }
            ProducerVerdict::StaleEpoch { epoch } => {
                return Err(Fail::from(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "stale_producer_epoch",
                    format!("producer {} is at epoch {epoch}; epoch {} is fenced off", claim.id, claim.epoch),
                ))
                .with(PRODUCER_EPOCH, epoch))
            }
            ProducerVerdict::Gap { expected } => {
                return Err(conflict(
                    "producer_sequence_gap",
                    format!("producer {} expected seq {expected}, not {}", claim.id, claim.seq),
                )
                .with(PRODUCER_EXPECTED_SEQ, expected)
                .with(PRODUCER_RECEIVED_SEQ, claim.seq))
            }
            ProducerVerdict::EpochNeedsSeqZero => {
                return Err(bad(
                    "invalid_producer",
                    format!(
                        "producer {} starts epoch {} at seq {}; a new epoch starts at seq 0",
                        claim.id, claim.epoch, claim.seq
                    ),
                ))
            }
        }
    }
    if loaded.closed {
        if body.is_empty() && close {
            // Closing a closed stream again: done, unless another producer's request closed it.
            let other = match (&claim, &loaded.closed_by) {
                (Some(c), Some(by)) => c != by,
                _ => false,
            };
            if !other {
                return Ok(Answer::new(StatusCode::NO_CONTENT, Body::empty())
                    .header(STREAM_NEXT_OFFSET, tail_offset())
                    .header(STREAM_CLOSED, "true")
                    .0);
            }
        }
        return Err(conflict("stream_closed", format!("the durable stream at {url_path} is closed"))
            .with(STREAM_CLOSED, "true")
            .with(STREAM_NEXT_OFFSET, tail_offset()));
    }
    if let (Some(seq), Some(last)) = (&stream_seq, &loaded.stream_seq) {
        if seq <= last {
            return Err(conflict(
                "stream_seq_regression",
                format!("Stream-Seq {seq:?} is not greater than the last one, {last:?}"),
            ));
        }
    }
    let messages = messages(&loaded.config, &body, false)?;
    let coordination = Coordination {
        producer: claim.as_ref().map(|c| (c.id.clone(), c.epoch, c.seq)),
        stream_seq: stream_seq.clone(),
    };
    let events = events(caller, name, None, messages, close, &coordination)?;
    let commit = submit(state, name, events).await?;
    let result = if coordination.producer.is_some() || coordination.stream_seq.is_some() || close {
        // State that answers later requests (a producer's seq, Stream-Seq, closed) moves on only
        // once the append carrying it is durable, and the slot stays locked until then: were it
        // unlocked first, a retry could be answered "duplicate" for an append a crash then
        // loses, and a pipelined request could be accepted on the strength of one that failed.
        // Appends of such a stream take one fdatasync each; plain appends still share them.
        match commit.await {
            Ok(mut r) => {
                loaded.apply(&coordination);
                loaded.wrote(state.durable.clock.now_ms());
                if close {
                    loaded.closed = true;
                    loaded.closed_by.clone_from(&claim);
                }
                drop(guard);
                r.pop().expect("one result per stream")
            }
            Err(e) => {
                guard.forget();
                return Err(e.into());
            }
        }
    } else {
        loaded.wrote(state.durable.clock.now_ms());
        drop(guard);
        match commit.await {
            Ok(mut r) => r.pop().expect("one result per stream"),
            Err(e) => {
                forget(state, name).await;
                return Err(e.into());
            }
        }
    };
    // 200 says a producer's data was new (204 is its duplicate); a close-only request has none.
    let status = if claim.is_some() && !body.is_empty() { StatusCode::OK } else { StatusCode::NO_CONTENT };
    let mut answer = Answer::new(status, Body::empty())
        .header(STREAM_NEXT_OFFSET, Offset(result.last_version.0 + 1))
        .header_if(close, STREAM_CLOSED, "true");
    if let Some(c) = &claim {
        answer = answer.header(PRODUCER_EPOCH, c.epoch).header(PRODUCER_SEQ, c.seq);
    }
    Ok(answer.0)
}

/// The parsed query of a read.
struct ReadQuery {
    offset: Option<String>,
    live: Option<String>,
    cursor: Option<String>,
}

fn read_query(uri: &Uri) -> Result<ReadQuery, Fail> {
    let pairs: Vec<(String, String)> = axum::extract::Query::try_from_uri(uri)
        .map(|q: axum::extract::Query<Vec<(String, String)>>| q.0)
        .map_err(|e| bad("invalid_query", format!("the query string is not valid: {}", e.body_text())))?;
    let mut q = ReadQuery { offset: None, live: None, cursor: None };
    for (key, value) in pairs {
        // Unknown parameters are ignored, as the protocol's extensibility rules ask.
        let slot = match key.as_str() {
            "offset" => &mut q.offset,
            "live" => &mut q.live,
            "cursor" => &mut q.cursor,
            _ => continue,
        };
        if slot.is_some() {
            return Err(bad("invalid_query", format!("the query parameter {key} is given more than once")));
        }
        *slot = Some(value);
    }
    Ok(q)
}

/// `GET`: catch-up, long-poll or SSE.
async fn get(
    state: &Arc<AppState>,
    caller: &Caller,
    name: &str,
    url_path: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> DsResult {
    caller.require(Permission::Read, name)?;
    let q = read_query(uri)?;
    let start = match q.offset.as_deref() {
        None => None,
        Some(text) => Some(offset::parse(text).map_err(|m| bad("invalid_offset", m))?),
    };
    let mode = match q.live.as_deref() {
        None => None,
        Some(mode @ ("long-poll" | "sse")) => {
            if start.is_none() {
                return Err(bad("invalid_query", format!("live={mode} needs an offset")));
            }
            Some(mode)
        }
        Some(other) => return Err(bad("invalid_query", format!("live={other:?} is neither long-poll nor sse"))),
    };
    let mut guard = locked(state, name).await?;
    let Some(loaded) = live(&mut guard) else { return Err(not_found(url_path)) };
    if loaded.gone {
        return Err(gone(url_path));
    }
    let now_ms = state.durable.clock.now_ms();
    let persisted_ms = loaded.persisted_ms;
    let marker = loaded.slide(now_ms).then(|| state::AccessMarker {
        stream: name.to_string(),
        created_position: loaded.created_position,
        at_ms: now_ms,
    });
    let config = loaded.config.clone();
    let created_position = loaded.created_position;
    // Handed to the log while the slot is locked (so markers keep the order of the reads), but
    // the read does not wait for its fdatasync.
    if let Some(marker) = marker {
        if !mark_access(state, marker) {
            loaded.persisted_ms = persisted_ms;
        }
    }
    drop(guard);
    let tail_now = || read::tail(&state.log, name);
    let from = match start.unwrap_or(Start::Beginning) {
        Start::Beginning => None,
        Start::Now => Some(tail_now()),
        Start::At(Offset(v)) => Some(v),
    };
    let now = matches!(start, Some(Start::Now));
    match mode {
        Some("sse") => {
            let from = match from {
                Some(v) => v,
                None => first_version(state, name).await?,
            };
            let feed = read::sse(state.clone(), name.to_string(), config.clone(), from, q.cursor);
            let answer = Answer::new(StatusCode::OK, Body::from_stream(feed))
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .header_if(!config.is_text(), SSE_DATA_ENCODING, "base64");
            Ok(answer.0)
        }
        Some(_) => long_poll(state, name, &config, from, q.cursor.as_deref(), now).await,
        None => {
            let page = page(state, name, from).await?;
            // The incarnation, the range and how many messages it holds: erasure and retention
            // only ever remove messages from a range, so the count tells every version of the
            // range's content apart (an erased message must not be answered 304).
            let etag = format!(
                "\"{created_position}:{}:{}:{}{}\"",
                from.unwrap_or(0),
                page.next,
                page.messages.len(),
                if page.closed { ":c" } else { "" }
            );
            if !now && header_text(headers, "if-none-match")?.is_some_and(|m| m == etag) {
                return Ok(Answer::new(StatusCode::NOT_MODIFIED, Body::empty()).header("etag", etag).0);
            }
            let cache = if now || page.up_to_date { CACHE_NONE } else { CACHE_HISTORY };
            let answer = page_answer(&config, &page, cache).header_if(!now, "etag", etag);
            Ok(answer.0)
        }
    }
}

async fn page(state: &Arc<AppState>, name: &str, from: Option<u64>) -> Result<Page, Fail> {
    let log = state.log.clone();
    let n = name.to_string();
    Ok(super::log_api::blocking(move || read::read_page(&log, &n, from)).await??)
}

async fn first_version(state: &Arc<AppState>, name: &str) -> Result<u64, Fail> {
    let log = state.log.clone();
    let n = name.to_string();
    let first =
        super::log_api::blocking(move || log.read_stream_bounded(&n, None, 1, 0, log_engine::Direction::Forward))
            .await??;
    Ok(first.first().map_or(0, |e| e.version.0))
}

fn page_answer(config: &Config, page: &Page, cache: &'static str) -> Answer {
    Answer::new(StatusCode::OK, read::body(config, &page.messages))
        .header("content-type", &config.content_type)
        .header(STREAM_NEXT_OFFSET, Offset(page.next))
        .header("cache-control", cache)
        .header_if(page.up_to_date, STREAM_UP_TO_DATE, "true")
        .header_if(page.closed, STREAM_CLOSED, "true")
}

/// A long-poll read: data at the offset at once, else wait for it up to the timeout (204).
async fn long_poll(
    state: &Arc<AppState>,
    name: &str,
    config: &Config,
    from: Option<u64>,
    client_cursor: Option<&str>,
    now: bool,
) -> DsResult {
    let deadline = tokio::time::Instant::now() + state.durable.long_poll_timeout;
    let mut sub = None;
    let mut from = from;
    loop {
        let page = page(state, name, from).await?;
        let cursor = read::cursor(client_cursor, state::now_ms());
        if !page.messages.is_empty() {
            return Ok(page_answer(config, &page, CACHE_HISTORY).header(STREAM_CURSOR, cursor).0);
        }
        from = Some(page.next);
        let timed_out = match sub.as_mut() {
            _ if page.closed => true,
            None => {
                // Subscribe, then read again: nothing committed in between is missed.
                sub = Some(read::watch(&state.log, name));
                false
            }
            Some(sub) => !read::wait(state, sub, deadline).await,
        };
        if timed_out {
            let _ = now;
            return Ok(Answer::new(StatusCode::NO_CONTENT, Body::empty())
                .header(STREAM_NEXT_OFFSET, Offset(page.next))
                .header(STREAM_UP_TO_DATE, "true")
                .header(STREAM_CURSOR, cursor)
                .header("cache-control", CACHE_NONE)
                .header_if(page.closed, STREAM_CLOSED, "true")
                .0);
        }
    }
}

/// `HEAD`: the stream's metadata (does not slide its TTL).
async fn head(state: &Arc<AppState>, caller: &Caller, name: &str, url_path: &str) -> DsResult {
    caller.require(Permission::Read, name)?;
    let mut guard = locked(state, name).await?;
    let Some(loaded) = live(&mut guard) else { return Err(not_found(url_path)) };
    if loaded.gone {
        return Err(gone(url_path));
    }
    let answer = stream_headers(Answer::new(StatusCode::OK, Body::empty()), loaded)
        .header(STREAM_NEXT_OFFSET, Offset(read::tail(&state.log, name)))
        .header("cache-control", CACHE_NONE);
    Ok(answer.0)
}

/// `DELETE`: cairn's soft delete of the stream; a stream that forks still read from is retired
/// instead (410 to everything, its path not reusable) until its last fork is deleted.
async fn delete(state: &Arc<AppState>, caller: &Caller, name: &str, url_path: &str) -> DsResult {
    caller.require(Permission::Delete, name)?;
    let mut guard = locked(state, name).await?;
    let Some(loaded) = live(&mut guard) else { return Err(not_found(url_path)) };
    if loaded.gone {
        return Err(gone(url_path));
    }
    let source = loaded.config.forked_from.clone();
    let log = state.log.clone();
    let n = name.to_string();
    if super::log_api::blocking(move || fork_count(&log, &n)).await? > 0 {
        let retired = NewEvent::json(state::EVENT_DELETED, &serde_json::json!({}));
        let events = events(caller, name, Some(retired), Vec::new(), false, &Coordination::default())?;
        let commit = submit(state, name, events).await?;
        loaded.gone = true;
        drop(guard);
        if let Err(e) = commit.await {
            forget(state, name).await;
            return Err(e.into());
        }
        return Ok(Answer::new(StatusCode::NO_CONTENT, Body::empty()).0);
    }
    let log = state.log.clone();
    let n = name.to_string();
    super::log_api::blocking(move || log.delete_stream(&n, DeleteMode::Soft)).await??;
    *guard = Slot::Unloaded;
    drop(guard);
    collect(state, source).await?;
    Ok(Answer::new(StatusCode::NO_CONTENT, Body::empty()).0)
}

/// After a fork is deleted: its source, if retired and left with no fork, is deleted too, and
/// so on up the chain.
async fn collect(state: &Arc<AppState>, mut source: Option<String>) -> Result<(), Fail> {
    while let Some(path) = source.take() {
        let Some(name) = path.strip_prefix("/v1/stream/").map(|p| format!("{}{p}", state::STREAM_PREFIX)) else {
            break;
        };
        let mut guard = locked(state, &name).await?;
        let Some(loaded) = live(&mut guard) else { break };
        if !loaded.gone {
            break;
        }
        let next = loaded.config.forked_from.clone();
        let log = state.log.clone();
        let n = name.clone();
        let deleted = super::log_api::blocking(move || {
            if fork_count(&log, &n) > 0 {
                return Ok(false);
            }
            log.delete_stream(&n, DeleteMode::Soft).map(|_| true)
        })
        .await??;
        if !deleted {
            break;
        }
        *guard = Slot::Unloaded;
        source = next;
    }
    Ok(())
}

fn gone(path: &str) -> Fail {
    Fail::from(ApiError::new(
        StatusCode::GONE,
        "stream_gone",
        format!("the durable stream at {path} is deleted (its forks still read its messages)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_integers_are_strict() {
        assert_eq!(strict_integer("0", 10), Some(0));
        assert_eq!(strict_integer("10", 10), Some(10));
        for bad in ["", "01", "+1", "-1", "1.0", "1e3", "11", "1abc", " 1"] {
            assert_eq!(strict_integer(bad, 10), None, "{bad:?}");
        }
    }
}
