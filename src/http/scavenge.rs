//! `POST /v1/admin/scavenge` and `GET /v1/admin/scavenge/{id}`: the scavenger (log-engine's
//! `Log::scavenge`) run on the live store as a job, and the job's state. Both need `admin` on
//! the whole log; the POST is an admin action, audited whatever its answer (see [`super::access`]).
//!
//! A POST starts a job on the blocking pool and answers `202` with the job (`Location` names
//! it); the job runs to its end whether or not anyone asks after it. With
//! `Accept: application/x-ndjson` the same POST answers as `POST /v1/admin/backup` does:
//! progress lines (at most one per [`limits::PROGRESS_EVERY`]), then the finished job, or an
//! error body if it failed. One scavenge runs at a time: a POST while one runs is
//! `409 scavenge_running`, naming it. The newest [`SCAVENGE_JOBS_KEPT`] jobs are kept in
//! memory (a restart forgets them: their effect is in the log's files, which `GET
//! /v1/admin/stats` counts).
//!
//! The scavenge keeps the payloads of what only retention hides in the views' streams
//! ([`crate::store::scavenge_options`]): the views fold those events, and a replay (a restore,
//! a drill, a replica) must meet the same bytes.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use log_engine::{ScavengeProgress, ScavengeReport};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Caller, Path, Query, NDJSON};
use super::online::line;
use super::views::optional_body;
use super::AppState;
use crate::auth::Permission;
use crate::codes;
use crate::limits;

/// How many scavenge jobs (running or finished) the server remembers for `GET`; the oldest
/// finished one is forgotten first.
pub const SCAVENGE_JOBS_KEPT: usize = 16;

/// `POST /v1/admin/scavenge`: no options yet (an empty body or `{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScavengeRequest {}

/// Where a scavenge is, after each sealed segment.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct ScavengeProgressJson {
    pub segments_done: u64,
    pub segments_total: u64,
    /// Events of the segments done so far.
    pub events_scanned: u64,
    /// Events turned into husks so far (payload gone, header and digests kept).
    pub events_husked: u64,
    /// Bytes of segment files given back so far.
    pub bytes_reclaimed: u64,
}

impl From<&ScavengeProgress> for ScavengeProgressJson {
    fn from(p: &ScavengeProgress) -> Self {
        ScavengeProgressJson {
            segments_done: p.segments_done,
            segments_total: p.segments_total,
            events_scanned: p.events_scanned,
            events_husked: p.events_husked,
            bytes_reclaimed: p.bytes_reclaimed,
        }
    }
}

/// What a finished scavenge did (`cairn scavenge -o json` prints the same).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct ScavengeReportJson {
    /// Sealed segments rewritten with husks.
    pub segments_rewritten: u64,
    /// Whole segments removed (always 0: the scavenger rewrites, it does not remove).
    pub segments_removed: u64,
    pub events_husked: u64,
    /// Bytes of the sealed segment files before and after (the active segment not counted).
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub bytes_reclaimed: u64,
}

impl From<&ScavengeReport> for ScavengeReportJson {
    fn from(r: &ScavengeReport) -> Self {
        ScavengeReportJson {
            segments_rewritten: r.segments_rewritten,
            segments_removed: r.segments_removed,
            events_husked: r.events_husked,
            bytes_before: r.bytes_before,
            bytes_after: r.bytes_after,
            bytes_reclaimed: r.bytes_before.saturating_sub(r.bytes_after),
        }
    }
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Failed,
}

/// Why a job failed: the error it ended with.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobFailure {
    pub error: String,
    pub message: String,
}

/// A scavenge job, as `GET /v1/admin/scavenge/{id}` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScavengeJob {
    pub id: u64,
    pub state: JobState,
    /// When it started and ended, in Unix milliseconds.
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub progress: ScavengeProgressJson,
    /// Set once `state` is `done`.
    pub report: Option<ScavengeReportJson>,
    /// Set once `state` is `failed`.
    pub failure: Option<JobFailure>,
}

/// The jobs the server remembers, newest last.
#[derive(Debug, Default)]
pub struct ScavengeJobs {
    jobs: Mutex<VecDeque<ScavengeJob>>,
    next_id: Mutex<u64>,
    /// Woken when a job ends, for the `GET`s waiting on it.
    ended: tokio::sync::Notify,
}

impl ScavengeJobs {
    /// A new running job, unless one runs already (then that one, as the error).
    fn start(&self) -> Result<ScavengeJob, u64> {
        let mut jobs = self.jobs.lock();
        if let Some(running) = jobs.iter().find(|j| j.state == JobState::Running) {
            return Err(running.id);
        }
        let mut next_id = self.next_id.lock();
        *next_id += 1;
        let job = ScavengeJob {
            id: *next_id,
            state: JobState::Running,
            started_ms: projections::now_ms(),
            finished_ms: None,
            progress: ScavengeProgressJson::default(),
            report: None,
            failure: None,
        };
        jobs.push_back(job.clone());
        while jobs.len() > SCAVENGE_JOBS_KEPT {
            // Only the running job can be unfinished, and it is the newest.
            jobs.pop_front();
        }
        Ok(job)
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut ScavengeJob)) -> Option<ScavengeJob> {
        let mut jobs = self.jobs.lock();
        let job = jobs.iter_mut().find(|j| j.id == id)?;
        change(job);
        Some(job.clone())
    }

    /// As [`ScavengeJobs::update`] for the change that ends the job; wakes its waiters.
    fn finish(&self, id: u64, change: impl FnOnce(&mut ScavengeJob)) -> Option<ScavengeJob> {
        let job = self.update(id, change);
        self.ended.notify_waiters();
        job
    }

    fn get(&self, id: u64) -> Option<ScavengeJob> {
        self.jobs.lock().iter().find(|j| j.id == id).cloned()
    }
}

/// Start a scavenge: give back the space of dead events' payloads.
///
/// Rewrites every sealed segment holding dead events (deleted, tombstoned, expired, truncated or
/// erased, and no fork's readable prefix) with those events as husks (header and payload digests
/// kept, so positions stay gapless and the chain verifies), swapping each in crash-safely while
/// appends go on. In the views' streams (`kv:`, `audit:`, `$audit:`, `meta:`) what only
/// retention hides keeps its payload (the views fold it). Answers `202` with the job; with
/// `Accept: application/x-ndjson`, progress lines and then the finished job (or an `ErrorBody`).
#[utoipa::path(
    post, path = "/v1/admin/scavenge", tag = "ops",
    request_body(content = ScavengeRequest, content_type = "application/json", description = "Optional: no body, or `{}`."),
    responses(
        (status = 202, description = "Started; the job (`Location`: `/v1/admin/scavenge/{id}`).", body = ScavengeJob),
        (status = 200, description = "With `Accept: application/x-ndjson`: progress lines (`ScavengeProgressJson`) while it runs, then the finished job (or an `ErrorBody`), one JSON object per line.", content((ScavengeProgressJson = "application/x-ndjson"))),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
        (status = 409, description = "`scavenge_running`: a scavenge runs already (`id` names it).", body = ErrorBody),
        (status = 421, description = "`read_only_replica`: a replica scavenges nothing (its leader does, and the replica copies the result).", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn start(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    caller.require(Permission::Admin, "")?;
    let ScavengeRequest {} = optional_body(&headers, body).await?;
    let job = state.scavenges.start().map_err(|running| {
        let code = codes::SCAVENGE_RUNNING;
        ApiError::new(
            StatusCode::from_u16(code.status).expect("a valid status"),
            code.code,
            format!("scavenge {running} is running; one runs at a time (follow it at /v1/admin/scavenge/{running})"),
        )
        .with("id", running)
    })?;
    let id = job.id;
    let streamed = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains(NDJSON));
    let (lines, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    let job_state = state.clone();
    // Not awaited: the job runs to its end even if the client goes away.
    tokio::task::spawn_blocking(move || {
        let jobs = &job_state.scavenges;
        let mut sent: Option<std::time::Instant> = None;
        let options = crate::store::scavenge_options();
        let result = job_state.log.scavenge(&options, &mut |p| {
            jobs.update(id, |job| job.progress = p.into());
            if streamed && sent.is_none_or(|t| t.elapsed() >= limits::PROGRESS_EVERY) {
                sent = Some(std::time::Instant::now());
                let _ = lines.send(line(&ScavengeProgressJson::from(p)));
            }
        });
        let result = result.map_err(ApiError::from);
        let finished = jobs.finish(id, |job| {
            job.finished_ms = Some(projections::now_ms());
            match &result {
                Ok(report) => {
                    job.state = JobState::Done;
                    job.report = Some(report.into());
                }
                Err(e) => {
                    job.state = JobState::Failed;
                    job.failure = Some(JobFailure { error: e.code.to_string(), message: e.message.clone() });
                }
            }
        });
        let last = match (&result, finished) {
            (Ok(r), Some(job)) => {
                tracing::info!(
                    job = id,
                    husked = r.events_husked,
                    bytes_before = r.bytes_before,
                    bytes_after = r.bytes_after,
                    "scavenge done"
                );
                line(&job)
            }
            (Err(e), _) => {
                tracing::error!(job = id, error = %e.message, "scavenge failed");
                line(&e.body())
            }
            (Ok(_), None) => line(&ApiError::internal(format!("scavenge job {id} was forgotten")).body()),
        };
        let _ = lines.send(last);
    });
    if !streamed {
        let location = format!("/v1/admin/scavenge/{id}");
        return Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(job)).into_response());
    }
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (Ok::<_, std::convert::Infallible>(line), receiver))
    });
    Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response())
}

/// `GET /v1/admin/scavenge/{id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// Wait until the job has ended (done or failed), for at most this many milliseconds
    /// (bound: 30,000; default 0: answer at once).
    wait_ms: Option<u64>,
}

/// A scavenge job: running (with its progress), done (with its report) or failed.
#[utoipa::path(
    get, path = "/v1/admin/scavenge/{id}", tag = "ops",
    params(("id" = u64, Path, description = "The job's id, from `POST /v1/admin/scavenge`."), JobQuery),
    responses(
        (status = 200, description = "The job (still `running` if `wait_ms` passed first).", body = ScavengeJob),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
        (status = 404, description = "`scavenge_not_found`: no such job (the server keeps the newest 16, and none across a restart).", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn job(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<u64>,
    Query(query): Query<JobQuery>,
) -> ApiResult<Json<ScavengeJob>> {
    caller.require(Permission::Admin, "")?;
    let wait = std::time::Duration::from_millis(query.wait_ms.unwrap_or(0)).min(limits::SCAVENGE_WAIT_MAX);
    let deadline = tokio::time::Instant::now() + wait;
    let mut stop = state.shutdown.clone();
    loop {
        // Registered before the look, so an end between the two is not missed.
        let ended = state.scavenges.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        let job = state.scavenges.get(id).ok_or_else(|| {
            ApiError::not_found(
                codes::SCAVENGE_NOT_FOUND.code,
                format!(
                    "this server has no scavenge job {id} (it keeps the newest {SCAVENGE_JOBS_KEPT}, and none across a restart)"
                ),
            )
        })?;
        if job.state != JobState::Running || tokio::time::Instant::now() >= deadline {
            return Ok(Json(job));
        }
        tokio::select! {
            () = ended => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = stop.wait_for(|s| *s) => return Ok(Json(job)),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    async fn post_scavenge(router: &axum::Router) -> (StatusCode, serde_json::Value) {
        let request = Request::post("/v1/admin/scavenge").body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap_or_else(|never| match never {});
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// One scavenge at a time: a POST while a job runs is refused with the running job's id, and
    /// once that job has ended the next POST starts one. The running job is registered directly
    /// (as the handler does before its scavenge starts), so nothing here depends on how long a
    /// real scavenge takes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_scavenge_while_one_runs_is_409_naming_the_running_job() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::store::open_writer(dir.path()).unwrap();
        let (store, _) = crate::store::Store::open(log.clone(), snapshotter::Policy::default(), &mut |_| {}).unwrap();
        let state = Arc::new(crate::mcp::embedded(store, dir.path()));
        let router = crate::http::api_router(state.clone());

        let running = state.scavenges.start().expect("no job runs yet");
        let (status, body) = post_scavenge(&router).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], "scavenge_running", "{body}");
        assert_eq!(body["id"], running.id, "the refusal names the running job: {body}");

        state.scavenges.finish(running.id, |job| job.state = JobState::Done);
        let (status, body) = post_scavenge(&router).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["id"], running.id + 1, "{body}");
        log.close();
    }
}
