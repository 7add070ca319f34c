//! The log endpoints: appends (one stream, or several atomically), stream and global reads, one
//! event by position, stream listing, head and verify.
//!
//! Invariants:
//! - An append answers only after the log has made it durable (the log's default
//!   `Durability::Sync`); concurrent requests share group commits because every handler
//!   submits through `append_multi_async` and awaits without blocking a runtime thread.
//! - Checks run in this order: authentication, authorisation, body size, parsing, limits and
//!   names; only then is anything submitted. A rejected request writes nothing, except that an
//!   NDJSON append ([`ndjson`]) that fails partway keeps the batches before the failing one,
//!   and says so.
//! - A request body is parsed once, into types that borrow from it; payloads reach the log as
//!   the client's JSON text, checked and compacted in one pass (`wire::stored_json`).
//! - Reads that touch segment bytes run on the blocking pool, never on a runtime thread, and
//!   every page is bounded by [`limits::READ_LIMIT_MAX`] events and [`READ_BYTES_MAX`] bytes.

mod ndjson;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use log_engine::{Direction, NewEvent, Position, StreamAppend, StreamName, StreamVersion};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::durable;
use super::error::{ApiError, ApiResult, ConflictBody, ErrorBody};
use super::extract::{parse_json, Caller, Path, Query, RequestBody};
use super::AppState;
use crate::auth::Permission;
use crate::limits::{self, EVENTS_PER_REQUEST_MAX, READ_BYTES_MAX, SCAN_EVENTS_MAX};
use crate::wire::{
    AppendAnswer, AppendRequest, AppendResponse, EventJson, HeadJson, MultiAppendRequest, MultiAppendResponse,
    NewEventJson, Place, ReadResponse, StreamInfoJson, VerifyJson,
};

fn stream_name(name: &str) -> ApiResult<StreamName> {
    StreamName::new(name).map_err(ApiError::from)
}

/// The log's events of a request, each stamped with the caller's `$principal`.
fn convert_events(caller: &Caller, stream: &str, events: Vec<NewEventJson<'_>>) -> ApiResult<Vec<NewEvent>> {
    if events.is_empty() {
        return Err(ApiError::bad_request("invalid_input", format!("the append to stream {stream} has no events")));
    }
    events.into_iter().enumerate().map(|(i, e)| convert_event(caller, stream, e, Place::Event(i))).collect()
}

/// One event of a request as the log's type, stamped with the caller's `$principal`.
fn convert_event(caller: &Caller, stream: &str, event: NewEventJson<'_>, place: Place) -> ApiResult<NewEvent> {
    let mut event = event
        .into_new_event(place)
        .map_err(|e| ApiError::bad_request("invalid_input", format!("{} (stream {stream})", e.0)))?;
    event.metadata = super::access::stamp_principal(caller, event.metadata, &format!("{place} (stream {stream})"))?;
    Ok(event)
}

/// `?allow_reserved=true` on an append: see [`check_view_stream`].
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AppendQuery {
    /// Admin only, for repair work: append raw events to a stream a view owns (`kv:`, `audit:`,
    /// `meta:`). The view skips what it cannot apply; the key-value view's versions still follow
    /// their streams.
    #[serde(default)]
    allow_reserved: bool,
}

/// Refuses a raw append to a stream a view owns (`kv:`, `audit:`, `meta:`), whoever asks: a raw
/// event there is one the view cannot trust. An admin may pass `allow_reserved=true`.
fn check_view_stream(caller: &Caller, stream: &str, query: &AppendQuery) -> ApiResult<()> {
    let Some((prefix, view)) = projections::view_stream_owner(stream) else { return Ok(()) };
    if query.allow_reserved {
        return caller.require(Permission::Admin, stream);
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "reserved_stream",
        format!(
            "stream {stream} belongs to the {view} view (streams starting with {prefix:?} are written only through              its endpoints); an admin may pass allow_reserved=true for repair work"
        ),
    ))
}

fn check_event_count(count: usize) -> ApiResult<()> {
    if count > EVENTS_PER_REQUEST_MAX {
        return Err(ApiError::too_large(
            "too_many_events",
            format!("the request holds {count} events, above the limit of {EVENTS_PER_REQUEST_MAX} (EVENTS_PER_REQUEST_MAX)"),
        ));
    }
    Ok(())
}

/// Append events to one stream, atomically; or, with an NDJSON body, append a stream of events
/// in batches as they arrive.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/events",
    tag = "log",
    params(("stream" = String, Path, description = "Stream name, percent-encoded (e.g. `session%2F42`). Names starting with `$` are reserved; `kv:`, `audit:` and `meta:` belong to the views."), AppendQuery),
    request_body(
        content(
            (AppendRequest = "application/json"),
            (AppendRequest = "application/msgpack"),
            (String = "application/x-ndjson", example = json!("{\"type\":\"Note\",\"data\":{\"n\":1}}\n{\"type\":\"Note\",\"data\":{\"n\":2}}\n")),
        ),
        description = "JSON (or MessagePack): one atomic append. NDJSON: one event object per line (the shape of an element of `events`), appended in batches of up to 1,000 events (NDJSON_BATCH_EVENTS) as the body arrives, with `expected_version` any; see docs/http-api.md."
    ),
    responses(
        (status = 200, description = "Durable: the events' positions, versions and the chain hash at the last one. An idempotent retry (same ids, same content) answers the original positions and writes nothing. For an NDJSON body the summary also holds `count` and `batches`.", body = AppendAnswer),
        (status = 400, description = "Invalid body, event, or stream name (`invalid_body`, `invalid_input`, `invalid_stream_name`). For NDJSON the body names the `line` that failed and what is `durable`.", body = ErrorBody),
        (status = 403, description = "The token lacks `append` on this stream, or `reserved_stream`: a view owns it.", body = ErrorBody),
        (status = 409, description = "`wrong_expected_version` (body names stream, expected, actual), `id_conflict` (body names stream, id, position), or `stream_closed` (the stream is closed; `error` and `message` only).", body = ConflictBody),
        (status = 413, description = "`body_too_large`, `event_too_large`, `too_many_events`, `request_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
        (status = 503, description = "The log is poisoned or shutting down.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn append(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(stream): Path<String>,
    Query(query): Query<AppendQuery>,
    body: RequestBody,
) -> ApiResult<Response> {
    caller.require(Permission::Append, &stream)?;
    check_view_stream(&caller, &stream, &query)?;
    let name = stream_name(&stream)?;
    if body.is_ndjson() {
        // A Durable Stream's slot is taken per batch (see ndjson.rs), not for the whole body.
        return Ok(Json(ndjson::append(&state, &caller, name, body).await?).into_response());
    }
    let bytes = body.read_json(true).await?;
    let request: AppendRequest<'_> = parse_json(&bytes)?;
    check_event_count(request.events.len())?;
    let events = convert_events(&caller, &stream, request.events)?;
    let count = events.len();
    let log = state.log.clone();
    let append = StreamAppend { stream: name, expected: request.expected_version.0, events };
    let write = async move { log.append_multi_async(vec![append]).await };
    let mut results = durable::outside_write(&state, &[&stream], write).await??;
    state.metrics.record_append(count);
    let result = results.pop().expect("one result per stream");
    Ok(Json(AppendResponse::from(&result)).into_response())
}

/// Append to several streams atomically: all become visible, or none.
#[utoipa::path(
    post,
    path = "/v1/append",
    tag = "log",
    params(AppendQuery),
    request_body(content = MultiAppendRequest, content_type = "application/json", description = "Also accepted as application/msgpack."),
    responses(
        (status = 200, description = "Durable; one result per stream, in request order.", body = MultiAppendResponse),
        (status = 400, description = "Invalid body, event, or stream name; a stream named twice.", body = ErrorBody),
        (status = 403, description = "The token lacks `append` on one of the streams, or `reserved_stream`: a view owns one.", body = ErrorBody),
        (status = 409, description = "`wrong_expected_version`, naming the stream, or `stream_closed` (`error` and `message` only); nothing was written.", body = ConflictBody),
        (status = 413, description = "Too large or too many events or streams.", body = ErrorBody),
        (status = 503, description = "The log is poisoned or shutting down.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn append_multi(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<AppendQuery>,
    body: RequestBody,
) -> ApiResult<Json<MultiAppendResponse>> {
    // The streams are in the body; refuse a token that may append nowhere before reading it.
    caller.require_any(Permission::Append)?;
    let bytes = body.read_json(false).await?;
    let request: MultiAppendRequest<'_> = parse_json(&bytes)?;
    if request.appends.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_input",
            "an atomic append needs at least one stream in \"appends\"",
        ));
    }
    if request.appends.len() > limits::BATCH_STREAMS_MAX {
        return Err(ApiError::too_large(
            "too_many_streams",
            format!(
                "the request names {} streams, above the limit of {} (BATCH_STREAMS_MAX)",
                request.appends.len(),
                limits::BATCH_STREAMS_MAX
            ),
        ));
    }
    check_event_count(request.appends.iter().map(|a| a.events.len()).sum())?;
    let mut seen = std::collections::HashSet::new();
    let mut appends = Vec::with_capacity(request.appends.len());
    let mut count = 0;
    for a in request.appends {
        caller.require(Permission::Append, &a.stream)?;
        check_view_stream(&caller, &a.stream, &query)?;
        let name = stream_name(&a.stream)?;
        if !seen.insert(a.stream.clone().into_owned()) {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!("stream {} appears twice in one atomic append; put its events in one entry", a.stream),
            ));
        }
        let events = convert_events(&caller, &a.stream, a.events)?;
        count += events.len();
        appends.push(StreamAppend { stream: name, expected: a.expected_version.0, events });
    }
    let names: Vec<String> = appends.iter().map(|a| a.stream.as_str().to_string()).collect();
    let streams: Vec<&str> = names.iter().map(String::as_str).collect();
    let log = state.log.clone();
    let write = async move { log.append_multi_async(appends).await };
    let results = durable::outside_write(&state, &streams, write).await??;
    state.metrics.record_append(count);
    Ok(Json(MultiAppendResponse { results: results.iter().map(AppendResponse::from).collect() }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadStreamQuery {
    /// First version to return (default: the first; the last when reading backward).
    from: Option<u64>,
    /// Most events to return (default 100, at most 10000; 0 is refused).
    limit: Option<usize>,
    /// `forward` (default) or `backward`.
    direction: Option<DirectionParam>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DirectionParam {
    Forward,
    Backward,
}

/// Read one stream's events.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/events",
    tag = "log",
    params(("stream" = String, Path, description = "Stream name, percent-encoded."), ReadStreamQuery),
    responses(
        (status = 200, description = "A page of events; `next` is the version to pass as `from` for the next page, `null` at the end.", body = ReadResponse),
        (status = 403, description = "The token lacks `read` on this stream.", body = ErrorBody),
        (status = 404, description = "`stream_not_found`, or `stream_deleted`: deleted (or expired) with nothing written since.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn read_stream(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(stream): Path<String>,
    Query(q): Query<ReadStreamQuery>,
) -> ApiResult<Json<ReadResponse>> {
    caller.require(Permission::Read, &stream)?;
    let direction = match q.direction {
        Some(DirectionParam::Backward) => Direction::Backward,
        _ => Direction::Forward,
    };
    let limit = limits::read_limit(q.limit).map_err(|m| ApiError::bad_request("invalid_query", m))?;
    let log = state.log.clone();
    let page = blocking(move || -> ApiResult<ReadResponse> {
        // Bounded by bytes while decoding, not after: 10,000 events of 1 MiB are never held.
        let events = log.read_stream_bounded(&stream, q.from.map(StreamVersion), limit, READ_BYTES_MAX, direction)?;
        let last_version = log.stream_version(&stream).map_or(0, |v| v.0);
        let out: Vec<EventJson> = events.iter().map(EventJson::from).collect();
        let next = out.last().and_then(|last| match direction {
            Direction::Forward => Some(last.version + 1).filter(|&v| v <= last_version),
            Direction::Backward => last.version.checked_sub(1),
        });
        Ok(ReadResponse { events: out, next })
    })
    .await??;
    Ok(Json(page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadAllQuery {
    /// First position to scan (default 0).
    from: Option<u64>,
    /// Most events to return (default 100, at most 10000; 0 is refused).
    limit: Option<usize>,
    /// Only events of streams whose names start with this.
    stream_prefix: Option<String>,
    /// Only events whose types start with this.
    type_prefix: Option<String>,
}

/// Read the global log in position order, optionally filtered.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "log",
    params(ReadAllQuery),
    responses(
        (status = 200, description = "A page of events; `next` is the position to pass as `from` to continue (a filtered read scans at most 100000 positions per request, so a page may be empty with a non-null `next`), `null` at the head.", body = ReadResponse),
        (status = 403, description = "The token lacks `read` on `stream_prefix` (or on the whole log when there is none).", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn read_all(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<ReadAllQuery>,
) -> ApiResult<Json<ReadResponse>> {
    caller.require(Permission::Read, q.stream_prefix.as_deref().unwrap_or(""))?;
    let limit = limits::read_limit(q.limit).map_err(|m| ApiError::bad_request("invalid_query", m))?;
    let from = q.from.unwrap_or(0);
    let log = state.log.clone();
    let page = blocking(move || -> ApiResult<ReadResponse> {
        let filter = log_engine::Filter { stream: None, stream_prefix: q.stream_prefix, type_prefix: q.type_prefix };
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut next = from;
        log.for_each(Position(from), SCAN_EVENTS_MAX, |event| {
            if filter.matches(&event) {
                let size = event.metadata.len() + event.data.as_bytes().len();
                if !out.is_empty() && bytes + size > READ_BYTES_MAX {
                    // `next` stays at this event: the next page starts with it.
                    return false;
                }
                bytes += size;
                out.push(EventJson::from(&event));
            }
            next = event.position.0 + 1;
            out.len() < limit
        })?;
        let head_next = log.head().map_or(0, |h| h.position.0 + 1);
        Ok(ReadResponse { events: out, next: Some(next).filter(|&n| n < head_next) })
    })
    .await??;
    Ok(Json(page))
}

/// Read one event by its log position.
///
/// Positions are global, so one principal's events sit between another's. A principal that may
/// not read the whole log gets the same 404 for "no event there" and "an event in a stream you
/// may not read": the answer names no stream and does not say whether the position exists.
#[utoipa::path(
    get,
    path = "/v1/events/{position}",
    tag = "log",
    params(("position" = u64, Path, description = "Log position.")),
    responses(
        (status = 200, description = "The event, with its chain hash.", body = EventJson),
        (status = 403, description = "The token holds no `read` permission at all.", body = ErrorBody),
        (status = 404, description = "`position_not_found`: beyond the head or, for a token that may not read the whole log, an event in a stream it may not read (the two answers are identical).", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn event_at(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(position): Path<u64>,
) -> ApiResult<Json<EventJson>> {
    caller.require_any(Permission::Read)?;
    let log = state.log.clone();
    let found = blocking(move || match log.read_event(Position(position)) {
        Ok(event) => Ok(Some(event)),
        Err(log_engine::Error::PositionNotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    })
    .await??;
    if caller.allows(Permission::Read, "") {
        // May read everything: nothing to hide, so the precise answer.
        return match found {
            Some(event) => Ok(Json(EventJson::from(&event))),
            None => Err(log_engine::Error::PositionNotFound { position: Position(position) }.into()),
        };
    }
    match found {
        Some(event) if caller.allows(Permission::Read, &event.stream) => Ok(Json(EventJson::from(&event))),
        _ => Err(ApiError::not_found(
            "position_not_found",
            format!(
                "there is no event at position {position} that principal {} may read \
                 (the position is beyond the head, or its stream is not one this token may read)",
                caller.name()
            ),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamsQuery {
    /// Only streams whose names start with this.
    prefix: Option<String>,
    /// Only streams whose names sort after this: the previous page's `next`.
    after: Option<String>,
    /// Most rows (default and maximum 10000, `STREAMS_LIST_MAX`).
    limit: Option<usize>,
    /// List deleted, expired and tombstoned streams too, each row then saying `deleted` and
    /// `tombstoned` (default false: only the streams a read finds).
    include_deleted: Option<bool>,
}

/// Most rows of one page of `GET /v1/streams`, and the page size when the request names none.
pub const STREAMS_LIST_MAX: usize = 10_000;

/// One row of `GET /v1/streams`: with `include_deleted=true` it also says whether the stream
/// reads as deleted (`events` is then 0) or is tombstoned.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamRowJson {
    #[serde(flatten)]
    pub info: StreamInfoJson,
    /// With `include_deleted=true` only: soft-deleted (or expired) with nothing appended since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    /// With `include_deleted=true` only: deleted for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tombstoned: Option<bool>,
}

/// One page of `GET /v1/streams`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamsPage {
    /// Streams sorted by name (bytewise).
    pub streams: Vec<StreamRowJson>,
    /// The last name of this page when more streams follow (pass it as `after`), `null` on the
    /// last page.
    pub next: Option<String>,
}

/// List streams: name, last version, event count, sorted by name, one page at a time.
#[utoipa::path(
    get,
    path = "/v1/streams",
    tag = "log",
    params(StreamsQuery),
    responses(
        (status = 200, description = "A page of streams sorted by name; `next` is the `after` of the next page, `null` on the last.", body = StreamsPage),
        (status = 403, description = "The token lacks `read` on `prefix`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn list_streams(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<StreamsQuery>,
) -> ApiResult<Json<StreamsPage>> {
    let prefix = q.prefix.unwrap_or_default();
    caller.require(Permission::List, &prefix)?;
    let limit = q.limit.unwrap_or(STREAMS_LIST_MAX).clamp(1, STREAMS_LIST_MAX);
    let log = state.log.clone();
    let page = blocking(move || {
        let deleted = q.include_deleted.unwrap_or(false);
        let all = if deleted { log.streams_including_deleted(&prefix) } else { log.streams(&prefix) };
        let mut rest = all.iter().filter(|s| q.after.as_deref().is_none_or(|after| s.stream.as_str() > after));
        let streams: Vec<StreamRowJson> = rest
            .by_ref()
            .take(limit)
            .map(|s| {
                let state = log.stream_state(&s.stream).ok();
                let mut info = StreamInfoJson::of(s, state.as_ref());
                if !deleted {
                    return StreamRowJson { info, deleted: None, tombstoned: None };
                }
                let gone = state.as_ref().is_some_and(crate::wire::is_deleted);
                let tombstoned = state.as_ref().is_some_and(|s| s.tombstoned);
                if gone || tombstoned {
                    info.events = 0;
                }
                StreamRowJson { info, deleted: Some(gone), tombstoned: Some(tombstoned) }
            })
            .collect();
        // A cursor only when a row follows: the last page says it is the last.
        let next = if rest.next().is_some() { streams.last().map(|s| s.info.stream.clone()) } else { None };
        StreamsPage { streams, next }
    })
    .await?;
    Ok(Json(page))
}

/// The log's last position and chain hash.
#[utoipa::path(
    get,
    path = "/v1/head",
    tag = "log",
    responses(
        (status = 200, description = "`position` is `null` for an empty log, and `hash` then the chain's genesis value.", body = HeadJson),
        (status = 403, description = "The token holds no `read` permission.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn head(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<HeadJson>> {
    caller.require_any(Permission::Read)?;
    Ok(Json(HeadJson::of(state.log.head())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    /// Check from this position on, trusting the stored chain hash just before it.
    from: Option<u64>,
}

/// The media type of NDJSON, one JSON document per line (the verification's progress answer, an
/// append's body).
pub use super::extract::NDJSON;

/// One progress line of a verification streamed as NDJSON.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyProgressJson {
    /// Events checked so far.
    pub checked: u64,
    /// Events the verification checks in all.
    pub total: u64,
}

/// Check every record's CRC and the whole hash chain.
///
/// With `Accept: application/x-ndjson` the answer is a stream of lines while it runs: progress
/// lines (`{"checked", "total"}`, at most one per [`limits::VERIFY_PROGRESS_EVERY`], the last
/// with everything checked), then the report, or an error body if the check itself failed.
#[utoipa::path(
    post,
    path = "/v1/verify",
    tag = "log",
    params(VerifyQuery),
    responses(
        (status = 200, description = "The report; `ok` is false and `first_bad_position` set when damage was found. With `Accept: application/x-ndjson`: progress lines (`VerifyProgressJson`) while it runs, then the report (or an `ErrorBody` if the check itself failed), one JSON object per line.", content((VerifyJson = "application/json"), (VerifyProgressJson = "application/x-ndjson"))),
        (status = 404, description = "`position_not_found`: `from` is beyond the head of the log.", body = ErrorBody),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn verify(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<VerifyQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    caller.require(Permission::Admin, "")?;
    // Before anything is answered, so that a `from` beyond the head is a 404 in both forms.
    let log = state.log.clone();
    let trusted = blocking(move || -> ApiResult<Option<log_engine::Head>> {
        match q.from {
            None | Some(0) => Ok(None),
            Some(p) => {
                let position = Position(p - 1);
                Ok(Some(log_engine::Head { position, hash: log.hash_at(position)? }))
            }
        }
    })
    .await??;
    let streamed =
        headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains(NDJSON));
    if !streamed {
        // One verification at a time: it reads the whole log, and a second one would only compete.
        let _running = state.verify_lock.lock().await;
        let log = state.log.clone();
        let report = blocking(move || log.verify(trusted, |_| {})).await??;
        return Ok(Json(verified(&state, &report)).into_response());
    }
    // A line per VERIFY_PROGRESS_EVERY at most, so the channel stays short.
    let (lines, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let _running = state.verify_lock.lock().await;
        let log = state.log.clone();
        let progress = lines.clone();
        let outcome = blocking(move || {
            let mut sent: Option<std::time::Instant> = None;
            log.verify(trusted, |p| {
                if sent.is_none_or(|t| t.elapsed() >= limits::VERIFY_PROGRESS_EVERY) || p.checked == p.total {
                    sent = Some(std::time::Instant::now());
                    let _ = progress.send(ndjson_line(&VerifyProgressJson { checked: p.checked, total: p.total }));
                }
            })
        })
        .await
        .and_then(|r| r.map_err(ApiError::from));
        let last = match outcome {
            Ok(report) => ndjson_line(&verified(&state, &report)),
            Err(e) => ndjson_line(&e.body()),
        };
        let _ = lines.send(last);
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (Ok::<_, std::convert::Infallible>(line), receiver))
    });
    Ok(([(axum::http::header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response())
}

/// A verification's report as answered, recorded in the metrics (and logged when it found damage).
fn verified(state: &AppState, report: &log_engine::VerifyReport) -> VerifyJson {
    state.metrics.record_verify(report.ok);
    if !report.ok {
        tracing::error!(
            first_bad_position = ?report.first_bad_position.map(|p| p.0),
            detail = report.detail.as_deref().unwrap_or(""),
            "verification found damage"
        );
    }
    VerifyJson::from(report)
}

fn ndjson_line(value: &impl Serialize) -> String {
    let mut line = serde_json::to_string(value).unwrap_or_default();
    line.push('\n');
    line
}

/// Runs `f` on the blocking pool: segment reads may fault pages in from disk, and a key-store
/// change fdatasyncs.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("a blocking task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_counts_above_the_limit_are_refused_as_too_large() {
        assert!(check_event_count(EVENTS_PER_REQUEST_MAX).is_ok());
        let e = check_event_count(EVENTS_PER_REQUEST_MAX + 1).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.code, "too_many_events");
    }

    #[test]
    fn reserved_and_empty_stream_names_are_refused() {
        assert_eq!(stream_name("$kv").unwrap_err().code, "invalid_stream_name");
        assert_eq!(stream_name("").unwrap_err().code, "invalid_stream_name");
        assert!(stream_name("agent-7").is_ok());
    }
}
