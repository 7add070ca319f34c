//! Operations on the live store, for operators and for the command line run beside a server:
//! `POST /v1/admin/backup`, `POST /v1/admin/drill`, `GET /v1/admin/stats`. All need `admin` on
//! the whole log.
//!
//! A backup and a drill run on the blocking pool while appends go on. Progress, as for
//! `POST /v1/verify`: with `Accept: application/x-ndjson` the answer is a stream of progress
//! lines (at most one per [`limits::PROGRESS_EVERY`]) and then the report, or an error body if
//! the operation failed; otherwise one JSON report. One backup and one drill run at a time (a
//! second waits): each reads the whole log, and two would only compete for the disk.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Caller, NDJSON};
use super::log_api::blocking;
use super::views::optional_body;
use super::AppState;
use crate::auth::Permission;
use crate::backup::{self, BackupOptions, BackupProgress, BackupReport, Location};
use crate::limits;

/// `POST /v1/admin/backup`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Where to: `s3://BUCKET/PREFIX`, `file:///DIR` or an absolute path on the server's
    /// machine (a relative path is refused: it would resolve against the server's working
    /// directory).
    pub to: String,
    /// Copy only what the destination lacks (default false: copy everything).
    #[serde(default)]
    pub incremental: bool,
}

/// Back up the live store while appends go on.
///
/// The copy is cut at the head when the backup starts (a batch boundary): sealed segments, the
/// active segment's durable prefix and the checkpoints, each checked by its BLAKE3 digest, then
/// a manifest naming them and the position and chain hash the copy ends at (docs/operations.md).
#[utoipa::path(
    post, path = "/v1/admin/backup", tag = "ops",
    request_body(content = BackupRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The backup's report. With `Accept: application/x-ndjson`: progress lines (`BackupProgress`) while it runs, then the report (or an `ErrorBody`), one JSON object per line.", content((BackupReport = "application/json"), (BackupProgress = "application/x-ndjson"))),
        (status = 400, description = "`invalid_input`: `to` is not a location this server can write.", body = ErrorBody),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
        (status = 503, description = "`backup_unreachable`: the destination refused a write.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn backup(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    caller.require(Permission::Admin, "")?;
    let request: BackupRequest = optional_body(&headers, body).await?;
    let location = Location::parse_absolute(&request.to).map_err(backup::BackupError::from)?;
    let options = BackupOptions { incremental: request.incremental };
    let rt = tokio::runtime::Handle::current();
    let job_state = state.clone();
    run(&headers, move |progress: &mut dyn FnMut(&BackupProgress)| {
        let _running = job_state.backup_lock.blocking_lock();
        let result = backup::take(&job_state.log, &location, options, &rt, progress);
        job_state.metrics.record_backup(result.is_ok());
        match &result {
            Ok(r) => tracing::info!(url = %r.url, manifest = %r.manifest, head = ?r.head_position, "backup written"),
            Err(e) => tracing::error!(error = %e, "backup failed"),
        }
        Ok(result?)
    })
    .await
}

/// Where a drill is.
#[derive(Debug, Serialize, ToSchema)]
pub struct DrillProgress {
    /// What the drill does now, e.g. `copying segments`.
    pub stage: String,
    pub done: u64,
    pub total: u64,
}

/// A drill's report (`cairn drill -o json`), as `POST /v1/admin/drill` answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DrillReportJson {
    /// True when nothing was damaged, lost or different.
    pub ok: bool,
    pub events_lost: u64,
    pub restore_ms: u64,
    pub rebuild_from_checkpoint_ms: u64,
    pub rebuild_from_zero_ms: u64,
    /// Checkpoint files in the copy whose status is valid.
    pub checkpoints_verified: u64,
    /// Each problem found: `kind` and, where they apply, `projection`, `sequence`, `position`,
    /// `detail`.
    #[schema(value_type = Vec<Object>)]
    pub mismatches: Vec<serde_json::Value>,
    pub events_replayed_from_checkpoint: u64,
    pub events_replayed_from_zero: u64,
    pub events_verified: u64,
    /// The position the views were compared at.
    pub position: Option<u64>,
    /// The checkpoint the rebuild started from (null: none was usable).
    pub checkpoint_used: Option<u64>,
    pub checkpoints_copied: u64,
    /// The scratch directory on the server (removed when the drill ends).
    pub scratch: String,
}

/// Run a recovery drill on the live store.
///
/// Restores a copy into a temporary directory on the server, verifies it, rebuilds the views
/// from the checkpoints and from position 0, and compares their digests with the live views'
/// (which pause for the comparison). The report is `cairn drill -o json`'s; `ok` is false on
/// any loss or mismatch.
#[utoipa::path(
    post, path = "/v1/admin/drill", tag = "ops",
    responses(
        (status = 200, description = "The drill's report (`ok`, `events_lost`, `restore_ms`, `rebuild_from_checkpoint_ms`, `rebuild_from_zero_ms`, `checkpoints_verified`, `mismatches`, ...). With `Accept: application/x-ndjson`: progress lines (`DrillProgress`), then the report (or an `ErrorBody`).", content((DrillReportJson = "application/json"), (DrillProgress = "application/x-ndjson"))),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn drill(State(state): State<Arc<AppState>>, caller: Caller, headers: HeaderMap) -> ApiResult<Response> {
    caller.require(Permission::Admin, "")?;
    let job_state = state.clone();
    run(&headers, move |progress: &mut dyn FnMut(&DrillProgress)| {
        let _running = job_state.drill_lock.blocking_lock();
        let root = crate::store::temp_scratch();
        std::fs::create_dir(&root).map_err(|e| {
            ApiError::internal(format!("cannot create the drill's scratch directory {}: {e}", root.display()))
        })?;
        let never = AtomicBool::new(false);
        let result = job_state.store.drill(&root.join("copy"), &never, &mut |p| {
            progress(&DrillProgress {
                stage: crate::store::stage_name(p.stage).to_string(),
                done: p.done,
                total: p.total,
            });
        });
        let _ = std::fs::remove_dir_all(&root);
        job_state.metrics.record_drill(result.as_ref().is_ok_and(|r| r.ok));
        let report = result?;
        tracing::info!(ok = report.ok, events_lost = report.events_lost, "drill done");
        Ok(report)
    })
    .await
}

/// The store's counts: events, streams, segments, bytes, disk free, head, checkpoints.
#[utoipa::path(
    get, path = "/v1/admin/stats", tag = "ops",
    responses(
        (status = 200, description = "What `cairn stats -o json` prints.", body = crate::store::StatsJson),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn stats(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<crate::store::StatsJson>> {
    caller.require(Permission::Admin, "")?;
    let stats = blocking(move || -> ApiResult<_> {
        let checkpoints = state.store.checkpoints(&mut |_| {})?;
        Ok(crate::store::stats(&state.log, &checkpoints))
    })
    .await??;
    Ok(Json(stats))
}

/// Runs `job` on the blocking pool and answers its report: as one JSON document, or (with
/// `Accept: application/x-ndjson`) as progress lines followed by the report or an error body.
async fn run<P, R>(
    headers: &HeaderMap,
    job: impl FnOnce(&mut dyn FnMut(&P)) -> ApiResult<R> + Send + 'static,
) -> ApiResult<Response>
where
    P: Serialize,
    R: Serialize + Send + 'static,
{
    let streamed =
        headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains(NDJSON));
    if !streamed {
        let report = blocking(move || job(&mut |_| {})).await??;
        return Ok(Json(report).into_response());
    }
    let (lines, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let progress = lines.clone();
        let outcome = blocking(move || {
            let mut sent: Option<std::time::Instant> = None;
            job(&mut |p| {
                if sent.is_none_or(|t| t.elapsed() >= limits::PROGRESS_EVERY) {
                    sent = Some(std::time::Instant::now());
                    let _ = progress.send(line(p));
                }
            })
        })
        .await
        .and_then(|r| r);
        let _ = lines.send(match outcome {
            Ok(report) => line(&report),
            Err(e) => line(&e.body()),
        });
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (Ok::<_, std::convert::Infallible>(line), receiver))
    });
    Ok(([(axum::http::header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response())
}

/// One NDJSON line of `value`.
pub(super) fn line(value: &impl Serialize) -> String {
    let mut line = serde_json::to_string(value).unwrap_or_default();
    line.push('\n');
    line
}
