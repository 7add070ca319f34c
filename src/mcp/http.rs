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

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::api::Api;
use super::{CairnMcp, GRAPH_DEFAULT};
use crate::http::extract::Caller;
use crate::http::AppState;

/// The path of the endpoint.
pub const MCP_PATH: &str = "/mcp";

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
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state);
    api.merge(mcp)
}

/// Answers 401 to a request whose token the server does not know (no-op without `--auth`).
async fn authenticate(State(_state): State<Arc<AppState>>, _caller: Caller, request: Request, next: Next) -> Response {
    next.run(request).await
}
