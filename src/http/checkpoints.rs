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
use serde::{Deserialize, Serialize};
use snapshotter::{ChainStatus, CheckpointInfo, CheckpointKind, CheckpointStatus, ProjectionSummary};
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

/// Whether a checkpoint holds the whole state (`full`) or the changes since its parent
/// (`incremental`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
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
        (status = 200, description = "The checkpoint taken.", body = CheckpointJson),
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
) -> ApiResult<Json<CheckpointJson>> {
    caller.require(Permission::Admin, "")?;
    let request: CheckpointRequest = optional_body(&headers, body).await?;
    let kind = request.kind.map(|k| match k {
        KindParam::Full => CheckpointKind::Full,
        KindParam::Incremental => CheckpointKind::Incremental,
    });
    let state2 = state.clone();
    let info = blocking(move || state2.store.checkpoint(kind)).await??;
    Ok(Json(CheckpointJson::from(&info)))
}

/// List checkpoints with their verification status.
#[utoipa::path(
    get, path = "/v1/checkpoints", tag = "checkpoints",
    responses(
        (status = 200, description = "Every checkpoint file, oldest first, with its verification status.", body = CheckpointsJson),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<CheckpointsJson>> {
    caller.require(Permission::Admin, "")?;
    let state2 = state.clone();
    let rows = blocking(move || state2.store.checkpoints(&mut |_| {})).await??;
    Ok(Json(CheckpointsJson { checkpoints: rows.iter().map(CheckpointRowJson::from).collect() }))
}

/// A checkpoint's manifest, as `POST /v1/checkpoints` answers it and `GET` lists it. Hashes and
/// digests are BLAKE3, 64 lower-case hex characters (docs/checkpoint-format.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointJson {
    /// The checkpoint's number, from 0, in the order they were taken.
    pub sequence: u64,
    pub kind: KindParam,
    /// The last log position the checkpoint's state includes.
    pub position: u64,
    /// The log's chain hash at `position`.
    pub log_hash: String,
    /// The parent's sequence (the checkpoint an incremental builds on); `null` for a full one.
    #[schema(required)]
    pub parent: Option<u64>,
    /// The parent's hash; all zeros for a full checkpoint.
    pub parent_hash: String,
    /// This checkpoint's hash: BLAKE3 of its manifest bytes.
    pub hash: String,
    /// When it was taken, unix ms.
    pub created_ms: u64,
    /// Each view's state in the checkpoint.
    pub projections: Vec<ProjectionJson>,
    pub content_digest: String,
    /// The state's bytes before compression.
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    /// The checkpoint file's size.
    pub file_bytes: u64,
    /// The checkpoint file's path on the server.
    pub file: String,
}

impl From<&CheckpointInfo> for CheckpointJson {
    fn from(info: &CheckpointInfo) -> CheckpointJson {
        CheckpointJson {
            sequence: info.sequence,
            kind: match info.kind {
                CheckpointKind::Full => KindParam::Full,
                CheckpointKind::Incremental => KindParam::Incremental,
            },
            position: info.position.0,
            log_hash: info.log_hash.to_hex(),
            parent: info.parent,
            parent_hash: info.parent_hash.to_hex(),
            hash: info.hash.to_hex(),
            created_ms: info.created_ms,
            projections: info.projections.iter().map(ProjectionJson::from).collect(),
            content_digest: info.content_digest.to_hex(),
            raw_bytes: info.raw_bytes,
            compressed_bytes: info.compressed_bytes,
            file_bytes: info.file_bytes,
            file: info.file.to_string_lossy().into_owned(),
        }
    }
}

/// One view's state in a checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionJson {
    /// The view: `kv`, `audit` or `meta`.
    pub name: String,
    /// The view's state digest at the checkpoint's position.
    pub digest: String,
    /// Entries stored in the checkpoint (all of them when full, the changed ones otherwise).
    pub upserts: u64,
    /// Keys removed since the parent (incremental only; 0 in a full checkpoint).
    pub removals: u64,
}

impl From<&ProjectionSummary> for ProjectionJson {
    fn from(p: &ProjectionSummary) -> ProjectionJson {
        ProjectionJson { name: p.name.clone(), digest: p.digest.to_hex(), upserts: p.upserts, removals: p.removals }
    }
}

/// A checkpoint's verification status.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusName {
    /// The file verifies, the log holds its position with its hash, and (for an incremental)
    /// every ancestor back to a full checkpoint is valid and linked by hash.
    Valid,
    /// The file fails a check of its own (header, manifest hash, content digest, sizes).
    Damaged,
    /// The log does not have the checkpoint's position, or has a different hash there.
    LogMismatch,
    /// A parent is missing, damaged, or does not have the hash its child names.
    BrokenChain,
}

/// One row of `GET /v1/checkpoints` (and of `cairn checkpoints --json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointRowJson {
    pub sequence: u64,
    /// The checkpoint file's path on the server.
    pub file: String,
    /// The manifest; `null` when the file could not be read.
    #[schema(required)]
    pub info: Option<CheckpointJson>,
    pub status: StatusName,
    /// What failed; present only when `status` is not `valid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
}

impl From<&CheckpointStatus> for CheckpointRowJson {
    fn from(row: &CheckpointStatus) -> CheckpointRowJson {
        let (status, detail) = match &row.status {
            ChainStatus::Valid => (StatusName::Valid, None),
            ChainStatus::Damaged(d) => (StatusName::Damaged, Some(d.clone())),
            ChainStatus::LogMismatch(d) => (StatusName::LogMismatch, Some(d.clone())),
            ChainStatus::BrokenChain(d) => (StatusName::BrokenChain, Some(d.clone())),
        };
        CheckpointRowJson {
            sequence: row.sequence,
            file: row.file.to_string_lossy().into_owned(),
            info: row.info.as_ref().map(CheckpointJson::from),
            status,
            detail,
        }
    }
}

/// `GET /v1/checkpoints`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointsJson {
    /// Oldest first.
    pub checkpoints: Vec<CheckpointRowJson>,
}
