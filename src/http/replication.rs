//! Read replicas, both sides of the wire.
//!
//! The leader's side: two admin endpoints that ship the log's segment files as they are on
//! disk, never beyond what is durable and published (sealed segments whole, the active one up
//! to its published offset, which only grows and below which nothing is written again):
//!
//! - `GET /v1/admin/replication/segments[?after=P&wait_ms=N]` lists the segments with their
//!   shippable extents; with `after`, the answer waits (at most [`REPLICATION_WAIT_MAX`]) until
//!   the log holds position `after`, so a caught-up replica long-polls instead of spinning.
//! - `GET /v1/admin/replication/segments/{id}?from=O&max=N` answers a segment's raw bytes from
//!   offset `O`, at most [`REPLICATION_CHUNK_MAX`] of them, never past the shippable extent.
//!
//! The replica's side (`cairn serve --follow URL`, see [`crate::replica`]): every request that
//! would write is refused before it reaches a handler, with 421 `read_only_replica` naming the
//! leader ([`refuse_writes`]). Reads, subscriptions and the views are served from the mirrored
//! log.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use log_engine::{Filter, Position, SegmentId, StartFrom};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Caller, Path, Query};
use super::log_api::blocking;
use super::AppState;
use crate::auth::Permission;
use crate::codes;
use crate::limits::{REPLICATION_CHUNK_MAX, REPLICATION_WAIT_MAX};
use crate::wire::{HeadJson, SegmentJson, SegmentsJson};

/// The routes a replica serves although they are not `GET`: they only read.
const READ_ONLY_POSTS: [&str; 4] = ["/v1/verify", "/v1/kv:get", "/v1/meta/schemas/{subject}/validate", "/mcp"];

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SegmentsQuery {
    /// Wait until the log holds this position (a replica passes the first position it lacks).
    after: Option<u64>,
    /// How long to wait for `after`, in milliseconds (at most 10,000; default 0).
    wait_ms: Option<u64>,
}

/// List the log's segment files for a replica.
#[utoipa::path(
    get, path = "/v1/admin/replication/segments", tag = "replication",
    params(SegmentsQuery),
    responses(
        (status = 200, description = "Every segment with its shippable extent, and the head.", body = SegmentsJson),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn segments(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<SegmentsQuery>,
) -> ApiResult<Json<SegmentsJson>> {
    caller.require(Permission::Admin, "")?;
    if let Some(after) = query.after {
        let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(REPLICATION_WAIT_MAX);
        let next = state.log.head().map_or(0, |h| h.position.0 + 1);
        if after >= next && !wait.is_zero() {
            let mut subscription = state.log.subscribe(StartFrom::Position(Position(after)), Filter::default());
            let mut stop = state.shutdown.clone();
            tokio::select! {
                _ = tokio::time::timeout(wait, subscription.next()) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
    }
    let head = HeadJson::of(state.log.head());
    let segments = state
        .log
        .segment_files()
        .into_iter()
        .filter_map(|f| {
            let id = segment_id(&f.path)?;
            Some(SegmentJson { id, sealed: f.sealed, bytes: f.bytes, capacity: f.capacity })
        })
        .collect();
    Ok(Json(SegmentsJson { segments, head }))
}

/// A segment file's id, from its name.
fn segment_id(path: &std::path::Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_suffix(".seg")?.parse().ok()
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FetchQuery {
    /// First byte offset (default 0).
    from: Option<u64>,
    /// Most bytes to answer (default and bound: 16 MiB).
    max: Option<u64>,
}

/// Fetch a byte range of a segment file, never past its shippable extent.
#[utoipa::path(
    get, path = "/v1/admin/replication/segments/{id}", tag = "replication",
    params(("id" = u64, Path, description = "The segment's id (its first position)."), FetchQuery),
    responses(
        (status = 200, description = "The segment's bytes from `from`: `min(max, bytes - from)` of them.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "`invalid_input`: `from` is past the shippable extent.", body = ErrorBody),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
        (status = 404, description = "`segment_not_found`: no segment starts at `id`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn fetch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<u64>,
    Query(query): Query<FetchQuery>,
) -> ApiResult<Response> {
    caller.require(Permission::Admin, "")?;
    // One snapshot for the extent and the bytes: a scavenge renaming a smaller rewrite over a
    // sealed segment meanwhile must not cut the answer short or stitch it from two files.
    let snapshot = state.log.segment_snapshot(SegmentId(id)).ok_or_else(|| {
        ApiError::not_found(codes::SEGMENT_NOT_FOUND.code, format!("the log has no segment starting at position {id}"))
    })?;
    let shippable = snapshot.file().bytes;
    let from = query.from.unwrap_or(0);
    if from > shippable {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("offset {from} is past the {shippable} shippable bytes of segment {id}"),
        ));
    }
    let len = (shippable - from).min(query.max.unwrap_or(REPLICATION_CHUNK_MAX).min(REPLICATION_CHUNK_MAX));
    let bytes = blocking(move || {
        let (from, len) = (usize::try_from(from), usize::try_from(len));
        let (from, len) = (from.expect("an offset below a mapped length"), len.expect("a chunk fits in memory"));
        snapshot.bytes().map(|b| b[from..from + len].to_vec())
    })
    .await??;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], Body::from(bytes)).into_response())
}

/// On a replica: answers every request that would write with 421 `read_only_replica`, naming
/// the leader, before it reaches a handler. Reads (`GET`, `HEAD` and the POSTs that only read)
/// pass.
pub async fn refuse_writes(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(replica) = &state.replica else { return next.run(request).await };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || request.extensions().get::<MatchedPath>().is_some_and(|m| READ_ONLY_POSTS.contains(&m.as_str()));
    if reads {
        return next.run(request).await;
    }
    let leader = replica.leader();
    let code = codes::READ_ONLY_REPLICA;
    ApiError::new(
        StatusCode::from_u16(code.status).expect("a valid status"),
        code.code,
        format!("this server is a read replica of {leader}: it takes no writes; send them to the leader"),
    )
    .with("leader", leader)
    .into_response()
}
