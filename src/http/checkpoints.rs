//! Checkpoints over HTTP: take one now (`POST /v1/checkpoints`), list them with their chain
//! status (`GET /v1/checkpoints`). Both need `admin` on the whole log.
//!
//! A checkpoint is taken on a consistent cut of the views (the runner pauses while the state is
//! captured) and is hash-chained to its parent and bound to the log's chain hash at its position;
//! the format is docs/checkpoint-format.md.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use snapshotter::CheckpointKind;
use utoipa::ToSchema;

use super::error::{ApiResult, ErrorBody};
use super::extract::Caller;
use super::log_api::blocking;
use super::views::optional_body;
use super::AppState;
use crate::auth::Permission;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRequest {
    /// `full` or `incremental`; default: what the policy asks for next (full when there is no
    /// parent to build on).
    kind: Option<KindParam>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindParam {
    Full,
    Incremental,
}

/// Take a checkpoint now.
#[utoipa::path(
    post, path = "/v1/checkpoints", tag = "checkpoints",
    request_body(content = Option<CheckpointRequest>, description = "Optional."),
    responses(
        (status = 200, description = "The checkpoint: `{\"sequence\", \"kind\", \"position\", \"log_hash\", \"parent\", \"parent_hash\", \"hash\", \"created_ms\", \"projections\": [{\"name\", \"digest\", \"upserts\", \"removals\"}], \"content_digest\", \"raw_bytes\", \"compressed_bytes\", \"file_bytes\", \"file\"}`.", body = Object),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
        (status = 409, description = "`empty_log` (nothing to checkpoint), `no_parent` (an incremental without a base).", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn take(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Admin, "")?;
    let request: CheckpointRequest = optional_body(&headers, body).await?;
    let kind = request.kind.map(|k| match k {
        KindParam::Full => CheckpointKind::Full,
        KindParam::Incremental => CheckpointKind::Incremental,
    });
    let state2 = state.clone();
    let info = blocking(move || state2.store.checkpoint(kind)).await??;
    Ok(Json(serde_json::to_value(info).expect("checkpoint info serializes")))
}

/// List checkpoints with their verification status.
#[utoipa::path(
    get, path = "/v1/checkpoints", tag = "checkpoints",
    responses(
        (status = 200, description = "`{\"checkpoints\": [{\"sequence\", \"file\", \"info\": {...}|null, \"status\": \"valid\"|\"damaged\"|\"log_mismatch\"|\"broken_chain\", \"detail\"?}]}`, oldest first.", body = Object),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Permission::Admin, "")?;
    let state2 = state.clone();
    let rows = blocking(move || state2.store.checkpoints(&mut |_| {})).await??;
    Ok(Json(json!({ "checkpoints": rows.iter().map(status_json).collect::<Vec<_>>() })))
}

/// One row: the status flattened to `"status"` (and `"detail"` when not valid).
pub fn status_json(row: &snapshotter::CheckpointStatus) -> Value {
    let mut out = json!({"sequence": row.sequence, "file": row.file, "info": row.info});
    if let Value::Object(status) = serde_json::to_value(&row.status).expect("a status serializes") {
        out.as_object_mut().expect("an object").extend(status);
    }
    out
}
