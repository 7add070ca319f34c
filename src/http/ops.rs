//! Operational endpoints: `/healthz`, `/metrics` (Prometheus text), `/openapi.json` (generated
//! from the handlers' annotations at compile time; nothing is downloaded), and the JSON
//! answers for unknown routes and methods. Also the OpenAPI document's frame ([`ApiDoc`]) and
//! what completes it once the router's declaration (`super::api`) has added the paths.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::{ApiError, ApiResult, ConflictBody, ErrorBody};
use super::extract::Caller;
use super::{log_api, AppState};
use crate::auth::Permission;
use crate::codes;
use crate::wire;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when a view has skipped events it could not apply (its answers miss
    /// what those events wrote; see `views[].last_error`).
    pub status: String,
    /// When an append is acknowledged: `sync` (after its fdatasync: it survives power loss) or
    /// `interval` (before it: a crash can lose up to `sync_interval_ms` of acknowledged events).
    pub durability: String,
    /// With `interval`: how often the log fdatasyncs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval_ms: Option<u64>,
    /// Each view's progress.
    pub views: Vec<ViewHealth>,
    /// With `serve --archive`: the archive's progress and lag (`status` is `degraded` while
    /// its latest round failed or once it stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<crate::archive::ArchiveStatus>,
    /// On a read replica (`cairn serve --follow`): its leader and how far behind it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaHealth>,
}

/// A read replica's link to its leader.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaHealth {
    /// The leader's URL; writes go there.
    pub leader: String,
    /// Events the leader had when last asked that the replica does not hold yet.
    pub lag_events: u64,
    /// Seconds since the replica last held everything its leader had (0 while caught up).
    pub lag_seconds: f64,
    /// Seconds since the leader last answered; null before the first answer.
    pub contact_age_seconds: Option<f64>,
    /// Why the last round of following failed (null when it succeeded): the replica serves
    /// what it holds and retries.
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ViewHealth {
    pub name: String,
    /// The last position the view applied (or skipped); null before the first event.
    pub applied_through: Option<u64>,
    /// Committed events not applied yet.
    pub lag: u64,
    /// Events the view skipped because it could not apply them, since the server started.
    pub errors: u64,
    /// The newest of those, if any.
    pub last_error: Option<ViewError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ViewError {
    pub position: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Why the event could not be applied. Left out when the server runs with `--auth`
    /// (`/healthz` needs no token, and the reason may name a key); it is in the server's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Liveness and readiness: 200 while the log accepts appends and the views follow it (`ok`, or
/// `degraded` when a view skipped events it could not apply: restarting would not help, or,
/// on a read replica, when its last round of following the leader failed); 503
/// `poisoned` once the log is poisoned, and 503 `views_stopped` once the views stopped following
/// the log (reads that wait for a position would time out).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses(
        (status = 200, description = "Serving: `ok`, or `degraded` (a view skipped events it could not apply).", body = Health),
        (status = 503, description = "`poisoned`: a failed write or fdatasync; restart the server to recover. `views_stopped`: the views no longer follow the log; the message says why.", body = ErrorBody),
    )
)]
pub async fn healthz(State(state): State<Arc<AppState>>) -> ApiResult<Json<Health>> {
    if let Some(cause) = state.log.poisoned() {
        return Err(ApiError::from(log_engine::Error::Poisoned { cause }));
    }
    let status = state.store.views().status();
    if let Some(reason) = &status.stopped {
        return Err(views_stopped(reason));
    }
    let views: Vec<ViewHealth> = status
        .views
        .iter()
        .map(|v| ViewHealth {
            name: v.name.to_string(),
            applied_through: v.applied_through.map(|p| p.0),
            lag: v.lag,
            errors: v.errors,
            last_error: v.last_error.as_ref().map(|e| ViewError {
                position: e.position.0,
                event_type: e.event_type.clone(),
                reason: state.auth.is_none().then(|| e.message.clone()),
            }),
        })
        .collect();
    let replica = state.replica.as_ref().map(|f| ReplicaHealth {
        leader: f.leader().to_string(),
        lag_events: f.lag_events(),
        lag_seconds: f.lag_seconds(),
        contact_age_seconds: f.contact_age(),
        last_error: f.status().last_error,
    });
    let archive = state.archiver.as_ref().map(|a| a.status_of(&state.log));
    // A replica that cannot follow its leader still serves what it holds, but it is behind; an
    // archive that fails keeps the server serving, but its recovery point falls behind.
    let degraded = views.iter().any(|v| v.errors > 0)
        || replica.as_ref().is_some_and(|r| r.last_error.is_some())
        || archive.as_ref().is_some_and(|a| a.stopped || a.consecutive_failures > 0);
    let (durability, sync_interval_ms) = match state.durability {
        log_engine::Durability::Sync => ("sync", None),
        log_engine::Durability::Interval(every) => ("interval", Some(every.as_millis() as u64)),
        log_engine::Durability::None => ("none", None),
    };
    Ok(Json(Health {
        status: if degraded { "degraded" } else { "ok" }.into(),
        durability: durability.into(),
        sync_interval_ms,
        views,
        replica,
        archive,
    }))
}

/// The answer of `/healthz` and `/readyz` once the views stopped following the log.
fn views_stopped(reason: &str) -> ApiError {
    ApiError::unavailable("views_stopped", format!("the views stopped following the log: {reason}"))
}

/// Most events a view may lag behind the log for `/readyz` to answer ready: beyond it, reads
/// that wait for a position (`min_position`) would wait long.
pub const READY_VIEW_LAG_MAX: u64 = 10_000;
/// Most events a read replica may lag behind its leader for `/readyz` to answer ready.
pub const READY_REPLICA_LAG_MAX: u64 = 10_000;

/// The answer of a ready server.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
}

/// What readiness is decided from, read once per request.
#[derive(Debug, Default)]
pub struct ReadyInputs {
    pub poisoned: Option<String>,
    pub shutting_down: bool,
    pub views_stopped: Option<String>,
    /// Each view's name and lag in events.
    pub views: Vec<(String, u64)>,
    /// On a read replica: whether its leader ever answered, and its lag in events.
    pub replica: Option<(bool, u64)>,
}

/// Ready, or the first reason not to send this server traffic.
pub fn readiness(inputs: &ReadyInputs) -> Result<(), ApiError> {
    if let Some(cause) = &inputs.poisoned {
        return Err(ApiError::from(log_engine::Error::Poisoned { cause: cause.clone() }));
    }
    if inputs.shutting_down {
        return Err(ApiError::unavailable("unavailable", "the server is shutting down"));
    }
    if let Some(reason) = &inputs.views_stopped {
        return Err(views_stopped(reason));
    }
    if let Some((name, lag)) = inputs.views.iter().find(|(_, lag)| *lag > READY_VIEW_LAG_MAX) {
        return Err(ApiError::unavailable(
            codes::VIEWS_CATCHING_UP.code,
            format!("the {name} view is {lag} events behind the log (ready at {READY_VIEW_LAG_MAX} or fewer)"),
        ));
    }
    match inputs.replica {
        Some((false, _)) => Err(ApiError::unavailable(
            codes::REPLICA_CATCHING_UP.code,
            "this read replica has not reached its leader yet (see /healthz for why)",
        )),
        Some((true, lag)) if lag > READY_REPLICA_LAG_MAX => Err(ApiError::unavailable(
            codes::REPLICA_CATCHING_UP.code,
            format!("this read replica is {lag} events behind its leader (ready at {READY_REPLICA_LAG_MAX} or fewer)"),
        )),
        _ => Ok(()),
    }
}

/// Readiness, for a load balancer or an orchestrator: 200 `ready` when this server should take
/// traffic. The views are restored and the log replayed before the server listens, so a server
/// that answers is past its restore; it is not ready while it shuts down, once its log is
/// poisoned or its views stopped, while a view lags the log by more than
/// `READY_VIEW_LAG_MAX` events, or, on a read replica, before it reached its leader or while it
/// lags by more than `READY_REPLICA_LAG_MAX`. `/healthz` is liveness: whether to restart it.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready for traffic.", body = Ready),
        (status = 503, description = "Not ready: `poisoned`, `unavailable` (shutting down), `views_stopped`, `views_catching_up`, `replica_catching_up`; the message says why.", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> ApiResult<Json<Ready>> {
    let status = state.store.views().status();
    let inputs = ReadyInputs {
        poisoned: state.log.poisoned(),
        shutting_down: *state.shutdown.borrow(),
        views_stopped: status.stopped.clone(),
        views: status.views.iter().map(|v| (v.name.to_string(), v.lag)).collect(),
        replica: state.replica.as_ref().map(|f| (f.contact_age().is_some(), f.lag_events())),
    };
    readiness(&inputs)?;
    Ok(Json(Ready { status: "ready".into() }))
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses(
        (status = 200, description = "OpenMetrics text format 1.0.0 (Prometheus scrapes it).", content_type = "application/openmetrics-text", body = String),
        (status = 403, description = "With `--auth`: the token lacks `admin`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn metrics(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<impl IntoResponse> {
    caller.require_any(Permission::Admin)?;
    let text = state.metrics.render(&state.log, &state.views_report());
    Ok(([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text))
}

/// This API's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object))
)]
pub async fn openapi() -> impl IntoResponse {
    Json(super::openapi())
}

/// One JSON-RPC 2.0 message of the Model Context Protocol: a request (`id`, `method`,
/// `params`), a notification (`method`, `params`, no `id`) or an answer (`id` with `result` or
/// `error`). The methods (`initialize`, `tools/list`, `tools/call`, `resources/read`, ...) and
/// their parameters and results are MCP's; the tools are listed in docs/mcp.md.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpMessage {
    /// Always `2.0`.
    pub jsonrpc: String,
    /// A request's id (string or integer), echoed by its answer; a notification has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub id: Option<serde_json::Value>,
    /// A request's or notification's method, e.g. `tools/call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Its parameters, e.g. `{"name": "read_stream", "arguments": {"stream": "agent-7"}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
    /// A successful answer's result (a tool's result carries `isError`: a failed tool call is a
    /// result whose text is the API's error body).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// A failed answer's JSON-RPC error: `code`, `message`, `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
}

/// The Model Context Protocol over streamable HTTP (mounted by `cairn serve`, see docs/mcp.md).
///
/// Documentation only: `cairn serve` mounts the endpoint (the MCP server lives beside this
/// module, not under it), so this function is never called.
#[utoipa::path(
    post,
    path = "/mcp",
    tag = "mcp",
    request_body(content = McpMessage, description = "One JSON-RPC message. The request must accept both `application/json` and `text/event-stream`.", content_type = "application/json"),
    responses(
        (status = 200, description = "The answer: JSON, or a stream of Server-Sent Events (progress notifications, then the answer) when a tool sends progress first.", content((McpMessage = "application/json"), (String = "text/event-stream"))),
        (status = 202, description = "A notification or an answer from the client was accepted; nothing to return."),
        (status = 400, description = "A JSON-RPC error answer: the message's parameters or headers are malformed.", body = McpMessage),
        (status = 404, description = "A JSON-RPC error answer: no such MCP method.", body = McpMessage),
        (status = 401, description = "`unauthorized`: the server runs with `--auth` and the request has no known bearer token.", body = ErrorBody),
        (status = 403, description = "`forbidden`: without `--auth`, a `Host` that is not a loopback name.", body = ErrorBody),
        (status = 406, description = "`not_acceptable`: the request does not accept both `application/json` and `text/event-stream`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`, or not a JSON-RPC message.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub fn mcp() {}

pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint; the API is described at /openapi.json")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /openapi.json",
    )
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Required when the server runs with --auth (see docs/http-api.md)."))
                    .build(),
            ),
        );
    }
}

/// Operation ids are the handlers' names, which repeat across modules (`kv::list`,
/// `checkpoints::list`); an OpenAPI document needs them unique, so each is prefixed with its
/// operation's tag (`kv_list`, `checkpoints_list`).
struct UniqueOperationIds;

impl Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.head, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let tag = operation.tags.as_ref().and_then(|t| t.first()).cloned().unwrap_or_default();
                if let Some(id) = &mut operation.operation_id {
                    *id = format!("{tag}_{id}");
                }
            }
        }
    }
}

/// The error answers that every endpoint can give, added to each operation that does not
/// describe them itself: every request's query is checked (400), every `/v1` endpoint is behind
/// the token check when the server runs with `--auth` (401, 403), every body is bounded and
/// typed (413, 415), and any endpoint can meet a closed or poisoned log or a `min_position`
/// wait that runs out (503) or damage in the log (500). HEAD answers carry no body and
/// describe their own.
struct CommonErrors;

/// The tag of `/mcp`, whose error answers are its own.
const MCP_TAG: &str = "mcp";

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            // A tombstoned stream answers 410 to anything that names it: its own endpoints, an
            // atomic append holding it, and a key whose stream it is.
            let names_a_stream = path.contains("{stream}") || path == "/v1/append" || path.starts_with("/v1/kv");
            let reads = [&mut item.get].map(|o| (o, false));
            let writes = [&mut item.post, &mut item.put, &mut item.delete, &mut item.patch].map(|o| (o, true));
            for (operation, writes) in reads.into_iter().chain(writes).filter_map(|(o, w)| Some((o.as_mut()?, w))) {
                // MCP's endpoint answers what its protocol's transport does; it lists its own.
                // So do the Durable Streams routes: their bodies are the protocol's.
                if operation
                    .tags
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|t| t == MCP_TAG || t == super::durable::doc::TAG))
                {
                    continue;
                }
                let secured = operation.security.is_some();
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses.entry(status.to_string()).or_insert_with(|| error(description).into());
                };
                add(
                    "400",
                    "`invalid_query` (a query parameter this endpoint does not take, or a malformed one, named),                      `invalid_path`, `invalid_body` (not the request's shape; unknown fields are refused) or                      `invalid_input`, naming what is wrong.",
                );
                if secured {
                    add(
                        "401",
                        "`unauthorized`: the server runs with `--auth` and the request has no known bearer token.",
                    );
                    add("403", "`forbidden`: the token's rules do not grant this.");
                }
                if has_body {
                    add("413", "`body_too_large`: the body is above `REQUEST_BODY_MAX`.");
                    add("415", "`unsupported_media_type`: bodies are application/json or application/msgpack.");
                }
                add(
                    "500",
                    "`corruption` (damage in the log where the request read, located in the message) or `internal`.",
                );
                if names_a_stream {
                    add("410", "`stream_tombstoned`: the stream (for a key, `kv:KEY`) was deleted for good.");
                    if writes {
                        add("409", "`stream_closed`: the stream (for a key, `kv:KEY`) is closed.");
                    }
                }
                add(
                    "503",
                    "`unavailable` (shutting down), `poisoned` (a failed write; restart the server), or `timeout`                      (a `min_position` wait ran out).",
                );
            }
        }
    }
}

/// The document's frame: its title, tags and the schemas every operation shares. The paths come
/// from the router's declaration (`super::api`), and [`finish_document`] completes the whole.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cairn",
        description = "An append-only, event-sourced log store for AI-agent platforms. Errors are `{\"error\": code, \"message\": sentence}`. See docs/http-api.md."
    ),
    components(schemas(
        wire::AppendRequest,
        wire::MultiAppendRequest,
        wire::StreamAppendJson,
        wire::NewEventJson,
        wire::AppendResponse,
        wire::MultiAppendResponse,
        wire::EventJson,
        wire::ReadResponse,
        wire::StreamInfoJson,
        wire::HeadJson,
        wire::VerifyJson,
        wire::ExpectedVersionJson,
        log_api::DirectionParam,
        super::lifecycle::DeleteModeParam,
        ErrorBody,
        ConflictBody,
        Health,
    )),
    tags(
        (name = "log", description = "Append, read, subscribe, verify."),
        (name = "lifecycle", description = "Delete, tombstone, close, retention metadata and fork of streams."),
        (name = "kv", description = "The key-value view (Redis semantics where they overlap)."),
        (name = "audit", description = "The audit view: structured entries, queries, chain-backed proofs."),
        (name = "meta", description = "The metadata view: schemas, services, configuration, relations."),
        (name = "checkpoints", description = "Hash-chained checkpoints of the views."),
        (name = "admin", description = "Tokens and their rules, changed while the server runs (see docs/security.md)."),
        (name = "replication", description = "What a read replica (`cairn serve --follow`) ships from its leader: segment files up to their durable extent."),
        (name = "ops", description = "Health, metrics, this document."),
        (name = "mcp", description = "The Model Context Protocol: cairn's tools for agents (docs/mcp.md)."),
        (name = "durable", description = "The Durable Streams protocol under /v1/stream/: create, append, read (catch-up, long-poll, SSE), metadata, delete (docs/http-api.md)."),
    ),
    paths(
        mcp,
        super::durable::doc::create,
        super::durable::doc::append,
        super::durable::doc::read,
        super::durable::doc::head,
        super::durable::doc::delete,
        super::durable::doc::preflight,
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Completes the document once the router's declaration has added every path: the bearer
/// scheme, unique operation ids and the error answers every endpoint can give (each of these
/// walks the operations, so it runs after the paths are in).
pub fn finish_document(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let modifiers: [&dyn Modify; 3] = [&BearerAuth, &UniqueOperationIds, &CommonErrors];
    for modifier in modifiers {
        modifier.modify(&mut doc);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(inputs: &ReadyInputs) -> Option<String> {
        readiness(inputs).err().map(|e| e.body()["error"].as_str().unwrap().to_string())
    }

    #[test]
    fn readiness_names_the_first_reason_not_to_take_traffic() {
        let caught_up = ReadyInputs { views: vec![("kv".into(), READY_VIEW_LAG_MAX)], ..ReadyInputs::default() };
        assert_eq!(code_of(&caught_up), None, "a lag at the bound is ready");
        let behind = ReadyInputs { views: vec![("kv".into(), READY_VIEW_LAG_MAX + 1)], ..ReadyInputs::default() };
        assert_eq!(code_of(&behind).as_deref(), Some("views_catching_up"));
        let stopped = ReadyInputs { views_stopped: Some("apply failed".into()), ..ReadyInputs::default() };
        assert_eq!(code_of(&stopped).as_deref(), Some("views_stopped"));
        let closing = ReadyInputs { shutting_down: true, views_stopped: Some("x".into()), ..ReadyInputs::default() };
        assert_eq!(code_of(&closing).as_deref(), Some("unavailable"));
        let poisoned =
            ReadyInputs { poisoned: Some("fdatasync failed".into()), shutting_down: true, ..ReadyInputs::default() };
        assert_eq!(code_of(&poisoned).as_deref(), Some("poisoned"));
        let never = ReadyInputs { replica: Some((false, 0)), ..ReadyInputs::default() };
        assert_eq!(code_of(&never).as_deref(), Some("replica_catching_up"));
        let far = ReadyInputs { replica: Some((true, READY_REPLICA_LAG_MAX + 1)), ..ReadyInputs::default() };
        assert_eq!(code_of(&far).as_deref(), Some("replica_catching_up"));
        let near = ReadyInputs { replica: Some((true, READY_REPLICA_LAG_MAX)), ..ReadyInputs::default() };
        assert_eq!(code_of(&near), None);
    }
}
