//! The stream lifecycle endpoints: delete (soft or tombstone), close, metadata (retention
//! limits), fork, erasure, and one stream's state.
//!
//! Each change is one event the log engine appends to its reserved `$lifecycle` stream, so the
//! answer carries that event's position and chain hash, and replay, checkpoints and
//! point-in-time restore reproduce it. This module only checks, converts and answers; what a
//! change means for reads is the engine's.
//!
//! Invariants:
//! - Access: a change needs `delete` on the stream it changes (`admin` implies it; `append`
//!   does not): deleting, tombstoning, closing and setting metadata all end or shorten what
//!   readers see. A fork needs `read` on its source and `delete` on the new stream. Reading the
//!   state needs `read` on the stream.
//! - Checks run before anything is written: authentication, authorisation, the stream names,
//!   the body; an engine refusal (a tombstoned stream, a fork past the end) writes nothing.
//! - Streams of the audit and metadata views cannot be changed (`403 reserved_stream`): those
//!   views do not fold the lifecycle, so their answers and the stream reads would disagree.
//!   The key-value view folds it: a deleted `kv:` stream is an absent key. No fork may land
//!   in a view's stream (its shared events keep their source's name), nor in a Durable
//!   Stream (`ds:`, forked through the protocol).
//! - Changes of a Durable Stream (`ds:`) run through `durable::outside_write`, so the
//!   protocol's state learns of them at once; an erasure of one first appends its protocol
//!   state (`ds.state`), which the erasure would otherwise take with the payloads.
//! - The changes run on the blocking pool: each waits for its lifecycle event's fdatasync.
//! - An erasure needs `erase` on the stream (`admin` implies it) and is audited twice over: its
//!   `stream-erased` event carries the caller's `$principal`, and an audit entry (who, why,
//!   which range) goes to [`ERASURE_AUDIT_STREAM`], which the audit view serves.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use log_engine::{DeleteMode, StreamChange, StreamMetadata, StreamName, StreamState, StreamVersion};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{read_body, read_body_or_empty, Caller, Path, Query};
use super::log_api::blocking;
use super::AppState;
use crate::auth::Permission;
use crate::wire::StreamInfoJson;

/// What a lifecycle change answers: the stream changed and its lifecycle event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LifecycleJson {
    /// The stream the change applies to (for a fork, the new stream).
    pub stream: String,
    /// The log position of the lifecycle event that records the change.
    pub position: u64,
    /// The chain hash at that position.
    pub hash: String,
}

impl LifecycleJson {
    pub fn of(stream: &str, result: &log_engine::LifecycleResult) -> LifecycleJson {
        LifecycleJson { stream: stream.to_string(), position: result.position.0, hash: result.hash.to_hex() }
    }
}

/// A stream's retention limits, as `PUT /v1/streams/{stream}/metadata` takes them. Every field
/// is optional; an absent limit is no limit. The whole metadata is replaced.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetadataRequest {
    /// Events older than this (by the log's clock, the newest event's timestamp) are not
    /// readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_ms: Option<u64>,
    /// Only the newest this many events are readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
    /// Versions before this one are not readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_before: Option<u64>,
    /// Sliding expiry: the stream is deleted once this long passes (by the log's clock) without
    /// an append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// `true` closes the stream (as `POST .../close`). Absent keeps the stream's current state;
    /// a closed stream cannot be reopened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<bool>,
}

impl MetadataRequest {
    /// The engine's metadata, `closed` defaulting to what the stream is now.
    pub fn into_metadata(self, closed_now: bool) -> StreamMetadata {
        StreamMetadata {
            max_age_ms: self.max_age_ms,
            max_count: self.max_count,
            truncate_before: self.truncate_before,
            ttl_ms: self.ttl_ms,
            closed: self.closed.unwrap_or(closed_now),
        }
    }
}

/// `GET /v1/streams/{stream}`: the stream as a listing row, and whether it reads as deleted.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct StreamJson {
    #[serde(flatten)]
    pub info: StreamInfoJson,
    /// Soft-deleted (or expired) with nothing appended since: reads answer `404
    /// stream_deleted`; `events` is then 0.
    pub deleted: bool,
    /// Deleted for good (`410 stream_tombstoned`).
    pub tombstoned: bool,
}

impl ForkJson {
    pub fn of(source: &str, to: &str, at_version: u64, result: &log_engine::LifecycleResult) -> ForkJson {
        ForkJson {
            stream: to.to_string(),
            source: source.to_string(),
            at_version,
            position: result.position.0,
            hash: result.hash.to_hex(),
        }
    }
}

/// Replaces `stream`'s metadata with a request's: `closed` absent keeps the stream's state, and
/// a closed stream cannot be reopened (`InvalidStreamMetadata` naming `closed`). The CLI uses
/// it too.
pub fn set_metadata(
    log: &log_engine::Log,
    stream: &str,
    request: MetadataRequest,
) -> log_engine::Result<log_engine::LifecycleResult> {
    let closed_now = match log.stream_state(stream) {
        Ok(s) => s.closed,
        Err(log_engine::Error::StreamNotFound { .. }) => false,
        Err(e) => return Err(e),
    };
    if closed_now && request.closed == Some(false) {
        return Err(log_engine::Error::InvalidStreamMetadata {
            field: "closed",
            reason: format!("cannot become false: stream {stream} is closed, and closing is permanent"),
        });
    }
    log.set_stream_metadata(stream, request.into_metadata(closed_now))
}

/// Where a fork's shared prefix comes from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ForkedFromJson {
    pub stream: String,
    /// The fork's versions `0..=at_version` read the source's events.
    pub at_version: u64,
}

/// `GET /v1/streams/{stream}/metadata`: the stream's limits and its lifecycle state. Every field
/// is always present (`null` when unset).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct StreamStateJson {
    pub stream: String,
    pub max_age_ms: Option<u64>,
    pub max_count: Option<u64>,
    pub truncate_before: Option<u64>,
    pub ttl_ms: Option<u64>,
    /// Appends are refused (`409 stream_closed`).
    pub closed: bool,
    /// Deleted for good: appends and changes are refused (`410 stream_tombstoned`).
    pub tombstoned: bool,
    /// Soft-deleted (or expired) with nothing appended since: reads answer `404 stream_deleted`.
    pub deleted: bool,
    /// The stream's last version, `null` if it never had an event.
    pub last_version: Option<u64>,
    /// After a soft delete or an expiry: reads start at this version.
    pub deleted_before: Option<u64>,
    /// Set for a fork: the source stream and the version it was forked at.
    pub forked_from: Option<ForkedFromJson>,
}

impl From<&StreamState> for StreamStateJson {
    fn from(s: &StreamState) -> StreamStateJson {
        let m = &s.metadata;
        StreamStateJson {
            stream: s.stream.as_str().to_string(),
            max_age_ms: m.max_age_ms,
            max_count: m.max_count,
            truncate_before: m.truncate_before,
            ttl_ms: m.ttl_ms,
            closed: s.closed,
            tombstoned: s.tombstoned,
            deleted: crate::wire::is_deleted(s),
            last_version: s.last_version.map(|v| v.0),
            deleted_before: s.deleted_before.map(|v| v.0),
            forked_from: s
                .forked_from
                .as_ref()
                .map(|(stream, v)| ForkedFromJson { stream: stream.as_str().to_string(), at_version: v.0 }),
        }
    }
}

/// `?mode=` of a delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeleteModeParam {
    /// Reads answer `404 stream_deleted` until the stream is written again; versions continue.
    #[default]
    Soft,
    /// Permanent: later appends answer `410 stream_tombstoned`.
    Tombstone,
}

impl From<DeleteModeParam> for DeleteMode {
    fn from(m: DeleteModeParam) -> DeleteMode {
        match m {
            DeleteModeParam::Soft => DeleteMode::Soft,
            DeleteModeParam::Tombstone => DeleteMode::Tombstone,
        }
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// `soft` (default) or `tombstone`.
    mode: Option<DeleteModeParam>,
}

/// `POST /v1/streams/{stream}/fork`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForkRequest {
    /// The new stream: it must have no events.
    pub to: String,
    /// The source's last version the fork shares; the fork's own appends continue after it.
    pub at_version: u64,
}

/// What a fork answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ForkJson {
    /// The new stream.
    pub stream: String,
    pub source: String,
    pub at_version: u64,
    /// The log position of the `stream-forked` event.
    pub position: u64,
    pub hash: String,
}

/// The reserved stream every erasure's audit entry goes to; the audit view indexes it with the
/// other `$audit:` streams (`GET /v1/audit?category=data_access`).
pub const ERASURE_AUDIT_STREAM: &str = "$audit:erasure";

/// `POST /v1/erase`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    pub stream: String,
    /// The first version erased; default: the stream's first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<u64>,
    /// The last version erased; default: the stream's last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<u64>,
    /// Why (kept in the log for good, and in the audit entry): 1 to `ERASE_REASON_LEN_MAX`
    /// (1024) bytes.
    pub reason: String,
}

/// What an erasure answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EraseJson {
    pub stream: String,
    pub from_version: u64,
    pub to_version: u64,
    /// The log position of the `stream-erased` event.
    pub position: u64,
    pub hash: String,
    /// The log position of the erasure's audit entry on `$audit:erasure`.
    pub audit_position: u64,
    /// Checkpoints taken before the erasure: their view state (a key-value value, say) may
    /// still hold the erased payloads until they are superseded and removed.
    pub checkpoints_before: u64,
    /// `true` when the log is encrypted and the erasure covered every version of the stream:
    /// its key was destroyed (crypto-shredding), so the payloads are unreadable in every copy
    /// of the log, backups and archives included, read with this key store. A later append to
    /// the stream gets a new key.
    pub key_destroyed: bool,
}

/// Erases a range of `stream` for `principal` (`None`: a server without `--auth`, or the command
/// line) and appends its audit entry; `checkpoints_before` is left 0 for the caller to fill.
/// The command line uses it too.
pub fn erase(log: &log_engine::Log, request: EraseRequest, principal: Option<&str>) -> log_engine::Result<EraseJson> {
    let stamp = principal.map(|p| serde_json::json!({ super::access::PRINCIPAL_KEY: p }));
    let mut to_version = request.to_version;
    if request.stream.starts_with(super::durable::state::STREAM_PREFIX) {
        to_version = keep_durable_state(log, &request, stamp.as_ref())?;
    }
    let change = StreamChange::Erase {
        stream: request.stream.clone(),
        from_version: request.from_version.map(StreamVersion),
        to_version: to_version.map(StreamVersion),
        reason: request.reason.clone(),
    };
    let written = log.change_stream(change, stamp.as_ref())?;
    let key_destroyed = log.keys().is_some_and(|keys| keys.stream_shredded(&request.stream));
    // The engine resolved the defaults: its event says which range it erased.
    let data = log.read_event(written.position)?.data_json().unwrap_or_default();
    let version = |field: &str| data.get(field).and_then(serde_json::Value::as_u64).unwrap_or_default();
    let (from_version, to_version) = (version("from_version"), version("to_version"));
    let who = principal.unwrap_or("anonymous");
    let entry = serde_json::json!({
        "level": "info",
        "category": "data_access",
        "event": "data.erased",
        "actor": {"type": "user", "id": who},
        "target": {"type": "stream", "id": request.stream},
        "outcome": "success",
        "metadata": {
            "from_version": from_version,
            "to_version": to_version,
            "reason": request.reason,
            "position": written.position.0,
            "key_destroyed": key_destroyed,
        },
        "source": {"component": "cairn"},
    });
    let stream = StreamName::reserved(ERASURE_AUDIT_STREAM).expect("the erasure audit stream's name is valid");
    let event = log_engine::NewEvent::json(projections::AUDIT_EVENT_TYPE, &entry)
        .with_metadata(&serde_json::json!({ super::access::PRINCIPAL_KEY: who }));
    let audit = log.append_multi(vec![log_engine::StreamAppend {
        stream,
        expected: log_engine::ExpectedVersion::Any,
        events: vec![event],
    }])?;
    Ok(EraseJson {
        stream: request.stream,
        from_version,
        to_version,
        position: written.position.0,
        hash: written.hash.to_hex(),
        audit_position: audit[0].last_position.0,
        checkpoints_before: 0,
        key_destroyed,
    })
}

/// The streams whose records an erasure of `stream`'s versions `from..=to` masks: the stream,
/// and for a fork whose shared versions the range reaches, its source (and so on up), each
/// with the last version erased there.
pub fn erased_streams(log: &log_engine::Log, stream: &str, from: u64, to: u64) -> Vec<(String, u64)> {
    let mut out = vec![(stream.to_string(), to)];
    let mut to = to;
    while let Some(Ok(state)) = out.last().map(|(s, _)| log.stream_state(s)) {
        match state.forked_from {
            Some((source, at)) if from <= at.0 => {
                to = to.min(at.0);
                out.push((source.as_str().to_string(), to));
            }
            _ => break,
        }
    }
    out
}

/// Before an erasure of a Durable Stream (`ds:P`, or a fork whose shared versions reach a
/// Durable Stream): appends each such stream's protocol state as a `ds.state` event at its
/// tail, past the range (durable/state.rs), so that what the erasure removes (the
/// configuration in `ds.created`, producer state in messages' metadata) is still folded after
/// it. Answers the range's last version, resolved before those appends (a default range stops
/// where the stream did). An erasure the engine will refuse (a range past the stream's end, or
/// backwards) writes nothing here either.
fn keep_durable_state(
    log: &log_engine::Log,
    request: &EraseRequest,
    stamp: Option<&serde_json::Value>,
) -> log_engine::Result<Option<u64>> {
    let Some(last) = log.stream_version(&request.stream).map(|v| v.0) else { return Ok(request.to_version) };
    let to = request.to_version.unwrap_or(last);
    let from = request.from_version.unwrap_or(0);
    if to > last || from > to {
        return Ok(request.to_version);
    }
    for (name, _) in erased_streams(log, &request.stream, from, to) {
        if !name.starts_with(super::durable::state::STREAM_PREFIX) {
            continue;
        }
        let Some(mut event) = super::durable::state::snapshot_event(log, &name)? else { continue };
        let Some(tail) = log.stream_version(&name) else { continue };
        if let Some(stamp) = stamp {
            event = event.with_metadata(stamp);
        }
        log.append_multi(vec![log_engine::StreamAppend {
            stream: StreamName::new(name.as_str())?,
            expected: log_engine::ExpectedVersion::Exact(tail),
            events: vec![event],
        }])?;
    }
    Ok(Some(to))
}

/// Checkpoints listed in `rows` taken before log position `position`.
pub fn checkpoints_before(rows: &[snapshotter::CheckpointStatus], position: u64) -> u64 {
    rows.iter().filter(|r| r.info.as_ref().is_some_and(|i| i.position.0 < position)).count() as u64
}

/// Erase the payloads of a range of a stream's events: they read as their header with
/// `"erased": true` at once, everywhere; the chain still verifies.
#[utoipa::path(
    post,
    path = "/v1/erase",
    tag = "lifecycle",
    request_body(content = EraseRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Erased; the `stream-erased` event's position and hash, the range, the audit entry's position, and how many older checkpoints may still hold the payloads.", body = EraseJson),
        (status = 400, description = "`erase_out_of_range` (a version past the stream's last), `invalid_input` (`from_version` after `to_version`, an empty or overlong reason), `invalid_stream_name`, `invalid_body`.", body = ErrorBody),
        (status = 403, description = "The token lacks `erase` on this stream, or `reserved_stream`: the stream belongs to the audit or metadata view.", body = ErrorBody),
        (status = 404, description = "`stream_not_found`: the stream never had an event.", body = ErrorBody),
        (status = 409, description = "`wrong_expected_version`: an erasure of a Durable Stream (`ds:`) raced another write to it; nothing was erased.", body = ErrorBody),
        (status = 410, description = "`stream_tombstoned`.", body = ErrorBody),
        (status = 413, description = "`event_too_large`: a Durable Stream's protocol state, written before its erasure (`ds.state`), does not fit one event; nothing was erased.", body = ErrorBody),
        (status = 503, description = "The log is poisoned or shutting down.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn erase_range(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<EraseJson>> {
    // The stream is in the body; refuse a token that may erase nothing before reading it.
    caller.require_any(Permission::Erase)?;
    let request: EraseRequest = read_body(&headers, body).await?;
    caller.require(Permission::Erase, &request.stream)?;
    changeable(&request.stream)?;
    let principal = match &caller {
        Caller::Open => None,
        Caller::Principal(p) => Some(p.name.clone()),
    };
    // The Durable Streams among the streams the erasure masks: their protocol requests wait,
    // and fold them again after it.
    let (log, stream) = (state.log.clone(), request.stream.clone());
    let (from, to) = (request.from_version.unwrap_or(0), request.to_version.unwrap_or(u64::MAX));
    let names = blocking(move || Ok::<_, ApiError>(erased_streams(&log, &stream, from, to))).await??;
    let names: Vec<&str> = names.iter().map(|(name, _)| name.as_str()).collect();
    let state2 = state.clone();
    let write = blocking(move || -> ApiResult<EraseJson> {
        let mut answer = erase(&state2.log, request, principal.as_deref())?;
        let rows = state2.store.checkpoints(&mut |_| {})?;
        answer.checkpoints_before = checkpoints_before(&rows, answer.position);
        Ok(answer)
    });
    let answer = super::durable::outside_write(&state, &names, write).await???;
    Ok(Json(answer))
}

/// Why a lifecycle change of `stream` is refused, if it belongs to a view that does not follow
/// the lifecycle (the audit and metadata views; the key-value view does). The CLI applies it
/// too.
pub fn view_refuses_changes(stream: &str) -> Option<String> {
    let (prefix, view) = projections::view_stream_owner(stream)?;
    (prefix != projections::KV_STREAM_PREFIX).then(|| {
        format!(
            "stream {stream} belongs to the {view} view (streams starting with {prefix:?}), which does not follow \
             deletes, closes, retention limits or forks; only key-value streams (kv:) and streams outside the views \
             can be changed"
        )
    })
}

/// Why a fork into `to` is refused, if it is: into a view's stream (the views do not follow
/// forks: a fork's shared events keep their source's name, so the view would never see them as
/// the new key's or entry's), or into a Durable Stream (`ds:`), which is forked through the
/// protocol, as a new incarnation with its own configuration and producers. The CLI applies it
/// too.
pub fn fork_refused(to: &str) -> Option<String> {
    if let Some((prefix, view)) = projections::view_stream_owner(to) {
        return Some(format!(
            "stream {to} belongs to the {view} view (streams starting with {prefix:?}), which does not follow forks; \
             fork into a stream outside the views"
        ));
    }
    let path = to.strip_prefix(super::durable::state::STREAM_PREFIX)?;
    Some(format!(
        "stream {to} is a Durable Stream (streams starting with {:?}); fork it through the protocol: \
         PUT /v1/stream/{path} with Stream-Forked-From (a fork from one into another stream is allowed)",
        super::durable::state::STREAM_PREFIX
    ))
}

/// A stream a change names: a valid, unreserved name that no view refuses changes of.
fn changeable(stream: &str) -> ApiResult<StreamName> {
    let name = StreamName::new(stream).map_err(ApiError::from)?;
    match view_refuses_changes(stream) {
        Some(why) => Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, "reserved_stream", why)),
        None => Ok(name),
    }
}

/// Delete a stream: soft (default) or for good (`mode=tombstone`).
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}",
    tag = "lifecycle",
    params(("stream" = String, Path, description = "Stream name, percent-encoded."), DeleteQuery),
    responses(
        (status = 200, description = "Deleted; the `stream-deleted` (or `stream-tombstoned`) event's position and hash.", body = LifecycleJson),
        (status = 400, description = "`invalid_stream_name` (reserved or malformed), `invalid_query` (an unknown `mode`).", body = ErrorBody),
        (status = 403, description = "The token lacks `delete` on this stream, or `reserved_stream`: the stream belongs to the audit or metadata view.", body = ErrorBody),
        (status = 404, description = "`stream_not_found`: the stream never had an event.", body = ErrorBody),
        (status = 410, description = "`stream_tombstoned`: the stream is deleted for good already.", body = ErrorBody),
        (status = 503, description = "The log is poisoned or shutting down.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn delete_stream(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(stream): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Json<LifecycleJson>> {
    caller.require(Permission::Delete, &stream)?;
    changeable(&stream)?;
    let mode = DeleteMode::from(q.mode.unwrap_or_default());
    let (log, name) = (state.log.clone(), stream.clone());
    let write = blocking(move || log.delete_stream(&stream, mode).map(|r| LifecycleJson::of(&stream, &r)));
    let result = super::durable::outside_write(&state, &[&name], write).await???;
    Ok(Json(result))
}

/// Close a stream: later appends are refused, and subscribers of the stream get an end-of-stream
/// marker.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/close",
    tag = "lifecycle",
    params(("stream" = String, Path, description = "Stream name, percent-encoded.")),
    responses(
        (status = 200, description = "Closed; the `stream-closed` event's position and hash.", body = LifecycleJson),
        (status = 400, description = "`invalid_stream_name`.", body = ErrorBody),
        (status = 403, description = "The token lacks `delete` on this stream, or `reserved_stream`: the stream belongs to the audit or metadata view.", body = ErrorBody),
        (status = 404, description = "`stream_not_found`.", body = ErrorBody),
        (status = 410, description = "`stream_tombstoned`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn close_stream(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<LifecycleJson>> {
    caller.require(Permission::Delete, &stream)?;
    changeable(&stream)?;
    // No body is taken; one that is sent must be empty or `{}`, never silently dropped.
    if let Some(value) = read_body_or_empty(&headers, body).await? {
        if value.as_object().is_none_or(|o| !o.is_empty()) {
            return Err(ApiError::bad_request("invalid_body", "closing a stream takes no request body (or `{}`)"));
        }
    }
    let (log, name) = (state.log.clone(), stream.clone());
    let write = blocking(move || log.close_stream(&stream).map(|r| LifecycleJson::of(&stream, &r)));
    let result = super::durable::outside_write(&state, &[&name], write).await???;
    Ok(Json(result))
}

/// A stream's retention limits and lifecycle state.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/metadata",
    tag = "lifecycle",
    params(("stream" = String, Path, description = "Stream name, percent-encoded.")),
    responses(
        (status = 200, description = "The limits (`null` when unset) and the state: closed, tombstoned, deleted, last version, fork source.", body = StreamStateJson),
        (status = 403, description = "The token lacks `read` on this stream.", body = ErrorBody),
        (status = 404, description = "`stream_not_found`: nothing was ever written to or forked into the stream.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn get_metadata(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(stream): Path<String>,
) -> ApiResult<Json<StreamStateJson>> {
    caller.require(Permission::Read, &stream)?;
    let log = state.log.clone();
    let found = blocking(move || log.stream_state(&stream)).await??;
    Ok(Json(StreamStateJson::from(&found)))
}

/// Set a stream's retention limits (the whole metadata is replaced); reads honour them at once.
#[utoipa::path(
    put,
    path = "/v1/streams/{stream}/metadata",
    tag = "lifecycle",
    params(("stream" = String, Path, description = "Stream name, percent-encoded.")),
    request_body(content = MetadataRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Set; the `stream-metadata` event's position and hash.", body = LifecycleJson),
        (status = 400, description = "`invalid_body` (a negative or non-integer limit, an unknown field), `invalid_stream_metadata` (a limit the engine refuses, or `closed: false` on a closed stream), `invalid_stream_name`.", body = ErrorBody),
        (status = 403, description = "The token lacks `delete` on this stream, or `reserved_stream`: the stream belongs to the audit or metadata view.", body = ErrorBody),
        (status = 410, description = "`stream_tombstoned`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn put_metadata(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<LifecycleJson>> {
    caller.require(Permission::Delete, &stream)?;
    changeable(&stream)?;
    let request: MetadataRequest = read_body(&headers, body).await?;
    let (log, name) = (state.log.clone(), stream.clone());
    let write = blocking(move || set_metadata(&log, &stream, request).map(|r| LifecycleJson::of(&stream, &r)));
    let result = super::durable::outside_write(&state, &[&name], write).await???;
    Ok(Json(result))
}

/// Fork a stream: a new stream whose versions `0..=at_version` are the source's events (shared,
/// not copied), then its own appends.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/fork",
    tag = "lifecycle",
    params(("stream" = String, Path, description = "The source stream, percent-encoded.")),
    request_body(content = ForkRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Forked; the `stream-forked` event's position and hash.", body = ForkJson),
        (status = 400, description = "`fork_past_end` (`at_version` beyond the source's last version), `invalid_stream_name`, `invalid_body`.", body = ErrorBody),
        (status = 403, description = "The token lacks `read` on the source or `delete` on `to`, or `reserved_stream`: `to` belongs to a view (`kv:`, `audit:`, `meta:`), which does not follow forks, or is a Durable Stream (`ds:`), forked through the protocol.", body = ErrorBody),
        (status = 404, description = "`stream_not_found`: the source does not exist.", body = ErrorBody),
        (status = 409, description = "`stream_exists`: `to` has events already.", body = ErrorBody),
        (status = 410, description = "`stream_tombstoned`: `to` was deleted for good.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn fork_stream(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ForkJson>> {
    caller.require(Permission::Read, &source)?;
    // The target is in the body; refuse a token that may change no stream before reading it.
    caller.require_any(Permission::Delete)?;
    let request: ForkRequest = read_body(&headers, body).await?;
    caller.require(Permission::Delete, &request.to)?;
    StreamName::new(&source).map_err(ApiError::from)?;
    StreamName::new(&request.to).map_err(ApiError::from)?;
    if let Some(why) = fork_refused(&request.to) {
        return Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, "reserved_stream", why));
    }
    let log = state.log.clone();
    let result = blocking(move || {
        log.fork_stream(&source, &request.to, StreamVersion(request.at_version))
            .map(|r| ForkJson::of(&source, &request.to, request.at_version, &r))
    })
    .await??;
    Ok(Json(result))
}

/// One stream: as a row of `GET /v1/streams`, with its lifecycle state.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}",
    tag = "log",
    params(("stream" = String, Path, description = "Stream name, percent-encoded.")),
    responses(
        (status = 200, description = "The stream's last version, event count and state (closed, deleted, tombstoned).", body = StreamJson),
        (status = 403, description = "The token lacks `read` on this stream.", body = ErrorBody),
        (status = 404, description = "`stream_not_found`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn stream_info(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(stream): Path<String>,
) -> ApiResult<Json<StreamJson>> {
    caller.require(Permission::Read, &stream)?;
    let log = state.log.clone();
    let info = blocking(move || -> ApiResult<StreamJson> {
        let found = log.stream_state(&stream)?;
        let info = log.streams(&stream).into_iter().find(|s| s.stream == stream).unwrap_or(log_engine::StreamInfo {
            stream: stream.clone(),
            last_version: found.last_version.unwrap_or(StreamVersion(0)),
            events: 0,
        });
        Ok(StreamJson {
            info: StreamInfoJson::of(&info, Some(&found)),
            deleted: crate::wire::is_deleted(&found),
            tombstoned: found.tombstoned,
        })
    })
    .await??;
    Ok(Json(info))
}
