//! `/v1/admin/tokens`: list, add, change and revoke bearer tokens while the server runs.
//!
//! Every change is first checked against the principals in force ([`Auth::plan`]), then
//! appended to the reserved stream [`TOKEN_STREAM`] (the token's BLAKE3 hash, never the token,
//! stamped with the admin's `$principal`), then applied: the next request sees it. Changes are
//! serialised by one lock, so the stream's order is the order they took effect. At start the
//! server replays the stream ([`replay_tokens`]), so tokens outlive restarts and their whole
//! history is in the log. A new token is made by the server and shown once, in the answer.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use log_engine::{Direction, ExpectedVersion, Log, NewEvent, StreamAppend, StreamName};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{read_body, Caller, Path};
use super::AppState;
use crate::auth::{
    new_token, token_hash_text, Auth, Permission, PrincipalInfo, Rule, TokenChangeError, TokenEvent, TOKEN_ADDED,
    TOKEN_REVOKED, TOKEN_RULES_CHANGED, TOKEN_STREAM,
};

/// Events read per page when the token stream is replayed at start.
const REPLAY_PAGE: usize = 1024;

/// `GET /v1/admin/tokens`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub principals: Vec<PrincipalInfo>,
}

/// `POST /v1/admin/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The principal's name: unique among the file's and the API's.
    pub name: String,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// The answer to `POST /v1/admin/tokens`: the only time the token is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub name: String,
    /// Send as `Authorization: Bearer <token>`. The server keeps only its hash.
    pub token: String,
    pub rules: Vec<Rule>,
    /// Where the change was appended in the token stream.
    pub position: u64,
}

/// `PUT /v1/admin/tokens/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRules {
    pub rules: Vec<Rule>,
}

/// The answer to a change or a revocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenChanged {
    pub name: String,
    pub position: u64,
}

fn auth_of<'a>(state: &'a AppState, caller: &Caller) -> ApiResult<&'a Auth> {
    caller.require(Permission::Admin, "")?;
    state.auth.as_ref().ok_or_else(|| {
        ApiError::bad_request("auth_off", "this server runs without --auth, so it has no tokens to manage")
    })
}

/// Checks, appends and applies one change; answers the position it was appended at.
async fn change(state: &AppState, caller: &Caller, auth: &Auth, event_type: &str, event: TokenEvent) -> ApiResult<u64> {
    let _serial = state.token_lock.lock().await;
    auth.plan(event_type, &event).map_err(|e| match e {
        TokenChangeError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "token_not_found", e.to_string()),
        TokenChangeError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "principal_exists", e.to_string()),
        TokenChangeError::FromFile(_) => ApiError::new(StatusCode::CONFLICT, "principal_from_file", e.to_string()),
        _ => ApiError::bad_request("invalid_input", e.to_string()),
    })?;
    let data = serde_json::to_value(&event).expect("a token event serializes");
    let stamp = json!({super::access::PRINCIPAL_KEY: caller.name()});
    let stream = StreamName::reserved(TOKEN_STREAM).expect("the token stream's name is valid");
    let appended = state
        .log
        .append_multi_async(vec![StreamAppend {
            stream,
            expected: ExpectedVersion::Any,
            events: vec![NewEvent::json(event_type, &data).with_metadata(&stamp)],
        }])
        .await?;
    auth.apply(event_type, &event).map_err(ApiError::internal)?;
    tracing::info!(admin = caller.name(), principal = %event.name, change = event_type, "tokens changed");
    Ok(appended[0].last_position.0)
}

/// List every principal (the file's and the API's) with its rules; never tokens or hashes.
#[utoipa::path(
    get, path = "/v1/admin/tokens", tag = "admin",
    responses(
        (status = 200, description = "Every principal in force, the file's first.", body = TokenList),
        (status = 400, description = "`auth_off`: the server runs without --auth.", body = ErrorBody),
        (status = 403, description = "The token lacks `admin` on `\"\"`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<TokenList>> {
    let auth = auth_of(&state, &caller)?;
    Ok(Json(TokenList { principals: auth.list() }))
}

/// Add a principal with a new token made by the server (shown only in this answer).
#[utoipa::path(
    post, path = "/v1/admin/tokens", tag = "admin",
    request_body = NewToken,
    responses(
        (status = 200, description = "The new token: keep it, it is not shown again.", body = CreatedToken),
        (status = 400, description = "`invalid_body`, `invalid_input` (a bad name or too many rules), `auth_off`.", body = ErrorBody),
        (status = 403, description = "The token lacks `admin` on `\"\"`.", body = ErrorBody),
        (status = 409, description = "`principal_exists`: the name is taken (in the file or the API).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn add(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<CreatedToken>> {
    let auth = auth_of(&state, &caller)?;
    let request: NewToken = read_body(&headers, body).await?;
    let token = new_token();
    let event = TokenEvent {
        name: request.name.clone(),
        token_hash: Some(token_hash_text(&token)),
        rules: Some(request.rules.clone()),
    };
    let position = change(&state, &caller, auth, TOKEN_ADDED, event).await?;
    Ok(Json(CreatedToken { name: request.name, token, rules: request.rules, position }))
}

/// Replace an API principal's rules; its token stays.
#[utoipa::path(
    put, path = "/v1/admin/tokens/{name}", tag = "admin",
    params(("name" = String, Path, description = "The principal's name, percent-encoded.")),
    request_body = ChangeRules,
    responses(
        (status = 200, description = "Changed: the next request of this principal is decided by the new rules.", body = TokenChanged),
        (status = 400, description = "`invalid_body`, `invalid_input`, `auth_off`.", body = ErrorBody),
        (status = 403, description = "The token lacks `admin` on `\"\"`.", body = ErrorBody),
        (status = 404, description = "`token_not_found`: no API principal has this name.", body = ErrorBody),
        (status = 409, description = "`principal_from_file`: change it in the auth file and send SIGHUP.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn change_rules(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<TokenChanged>> {
    let auth = auth_of(&state, &caller)?;
    let request: ChangeRules = read_body(&headers, body).await?;
    let event = TokenEvent { name: name.clone(), token_hash: None, rules: Some(request.rules) };
    let position = change(&state, &caller, auth, TOKEN_RULES_CHANGED, event).await?;
    Ok(Json(TokenChanged { name, position }))
}

/// Revoke an API principal's token: its next request gets 401.
#[utoipa::path(
    delete, path = "/v1/admin/tokens/{name}", tag = "admin",
    params(("name" = String, Path, description = "The principal's name, percent-encoded.")),
    responses(
        (status = 200, description = "Revoked.", body = TokenChanged),
        (status = 400, description = "`auth_off`.", body = ErrorBody),
        (status = 403, description = "The token lacks `admin` on `\"\"`.", body = ErrorBody),
        (status = 404, description = "`token_not_found`.", body = ErrorBody),
        (status = 409, description = "`principal_from_file`: remove it from the auth file and send SIGHUP.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<TokenChanged>> {
    let auth = auth_of(&state, &caller)?;
    let event = TokenEvent { name: name.clone(), token_hash: None, rules: None };
    let position = change(&state, &caller, auth, TOKEN_REVOKED, event).await?;
    Ok(Json(TokenChanged { name, position }))
}

/// Replays the token stream into `auth` (at start). An event that no longer fits, such as an
/// API principal whose name the file now uses, is skipped and logged; the rest still apply.
pub fn replay_tokens(log: &Log, auth: &Auth) -> Result<usize, log_engine::Error> {
    let mut from = None;
    let mut applied = 0;
    loop {
        let page = match log.read_stream(TOKEN_STREAM, from, REPLAY_PAGE, Direction::Forward) {
            Ok(page) => page,
            Err(log_engine::Error::StreamNotFound { .. }) => break,
            Err(e) => return Err(e),
        };
        let Some(last) = page.last() else { break };
        from = Some(log_engine::StreamVersion(last.version.0 + 1));
        for event in &page {
            let parsed = event
                .data_json()
                .ok_or_else(|| "its data is not JSON".to_string())
                .and_then(|d| serde_json::from_value::<TokenEvent>(d).map_err(|e| e.to_string()));
            match parsed.and_then(|t| auth.apply(&event.event_type, &t)) {
                Ok(()) => applied += 1,
                Err(reason) => tracing::warn!(position = event.position.0, %reason, "token stream: event skipped"),
            }
        }
        if page.len() < REPLAY_PAGE {
            break;
        }
    }
    Ok(applied)
}
