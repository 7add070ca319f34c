//! `POST /mcp` on `cairn serve`: the MCP tools over streamable HTTP.
//!
//! Invariants:
//! - Authentication first: with `--auth`, a request to `/mcp` without a known bearer token is
//!   answered 401 `unauthorized` before any MCP message is read.
//! - Authorisation per tool call: each call is made to the API router in this process with the
//!   `/mcp` request's own `Authorization` header, so a token may do through MCP exactly what it
//!   may do through the endpoints, prefix rule by prefix rule.
//! - Stateless: every POST is answered on its own (JSON, or an SSE stream when a tool sends
//!   progress first); the server keeps no MCP session.
//! - Without `--auth` the `Host` header must be a loopback name (the SDK's check against DNS
//!   rebinding: such a server trusts whoever reaches it); with `--auth` the token decides.
//! - Every refusal carries the contract's error body (`{"error", "message"}`), the SDK's own
//!   included ([`coded_errors`]); a failed tool call is an MCP tool result, not an HTTP error.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::api::Api;
use super::{CairnMcp, GRAPH_DEFAULT};
use crate::http::error::ApiError;
use crate::http::extract::Caller;
use crate::http::AppState;

/// The path of the endpoint.
pub const MCP_PATH: &str = "/mcp";

/// The most of a refusal's plain-text sentence that is kept for its error body.
const REFUSAL_TEXT_MAX: usize = 4096;

/// `api` (the router of every other endpoint) with `/mcp` added, whose tools call `api`.
pub fn mount(api: Router, state: Arc<AppState>) -> Router {
    let mut config = StreamableHttpServerConfig::default().with_legacy_session_mode(false).with_json_response(true);
    if state.auth.is_some() {
        config = config.disable_allowed_hosts();
    }
    // One server for every request, so the memory graph's fold is kept between them.
    let server = CairnMcp::new(Api::Router(api.clone()), None, GRAPH_DEFAULT);
    let service =
        StreamableHttpService::new(move || Ok(server.clone()), Arc::new(NeverSessionManager::default()), config);
    let mcp = Router::new()
        .route_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn(coded_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state);
    api.merge(mcp)
}

/// Answers 401 to a request whose token the server does not know (no-op without `--auth`).
async fn authenticate(State(_state): State<Arc<AppState>>, _caller: Caller, request: Request, next: Next) -> Response {
    next.run(request).await
}

/// The SDK refuses a request it cannot take (a media type, an `Accept` without both JSON and
/// SSE, a body that is not a JSON-RPC message, a foreign `Host`, a method other than POST) with
/// a plain-text sentence: give it the contract's error body, keeping the status and the
/// sentence. JSON answers (JSON-RPC errors included) pass as they are.
async fn coded_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "invalid_body",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ if status.is_server_error() => "internal",
        _ => "invalid_input",
    };
    let text = axum::body::to_bytes(response.into_body(), REFUSAL_TEXT_MAX).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => format!("the MCP endpoint refused the request ({status})"),
        sentence => format!("the MCP endpoint refused the request: {sentence}"),
    };
    ApiError::new(status, code, message).into_response()
}
