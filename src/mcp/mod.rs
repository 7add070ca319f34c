//! `cairn mcp` and `/mcp`: cairn as Model Context Protocol tools and resources for agents, on
//! the official Rust SDK (`rmcp`).
//!
//! One server, [`CairnMcp`], in three places:
//! - `cairn mcp --data DIR`: MCP over stdio on a store this process opens (through
//!   [`crate::store::Store`], like every command that opens one) and owns;
//! - `cairn mcp --server URL --token T`: MCP over stdio as an HTTP client of a running
//!   `cairn serve` (`https://` with rustls; `--ca-file` for a private CA);
//! - `POST /mcp` on `cairn serve`: MCP streamable HTTP, behind the same bearer tokens (see
//!   [`http`]).
//!
//! Every tool is a call of cairn's HTTP API ([`api`]), in process or over the network, so the
//! tools validate, authorise and fail exactly as the endpoints do, with the contract's error
//! codes. The tools: the log and its views ([`log_tools`]) and the memory graph, a drop-in for
//! the reference MCP memory server whose writes are events and never lost ([`memory`]).
//! Resources: `cairn://head` and one `cairn://streams/{stream}` per stream.
//!
//! What it does not do: keep any state of its own but the memory graph's fold, which is a cache
//! of the log (dropped with the process, rebuilt from the stream).

pub mod api;
pub mod http;
pub mod log_tools;
pub mod memory;
pub mod round_trip;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ContentBlock, Extensions, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool_handler, ErrorData, RoleServer, ServerHandler, ServiceExt as _};

use self::api::{enc, Api, ToolError};
use crate::error::{CliError, CliResult, Exit};
use crate::http::AppState;
use crate::limits;
use crate::store::Store;
use crate::wire::InputError;

/// The graph the memory tools use when `--graph` is not given.
pub const GRAPH_DEFAULT: &str = "default";
/// Streams listed as resources at most (the rest are reachable with `list_streams`).
pub const RESOURCE_STREAMS_MAX: u64 = 1000;
/// Events a stream resource shows: the newest ones.
pub const RESOURCE_EVENTS_MAX: u64 = 100;

/// Arguments of `cairn mcp`.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// Use the running cairn server at this URL (`http://` or `https://`) instead of opening
    /// the data directory.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// The bearer token for --server (or the environment variable CAIRN_TOKEN).
    #[arg(long, value_name = "TOKEN", env = "CAIRN_TOKEN", hide_env_values = true, requires = "server")]
    pub token: Option<String>,

    /// A PEM file of CA certificates to trust for an https:// --server, beside the system's.
    #[arg(long, value_name = "FILE", requires = "server")]
    pub ca_file: Option<PathBuf>,

    /// The memory graph the memory tools use: events on the stream `memory:<GRAPH>`.
    #[arg(long, value_name = "GRAPH", default_value = GRAPH_DEFAULT)]
    pub graph: String,
}

/// The MCP server: the tools and resources over one [`Api`].
#[derive(Debug, Clone)]
pub struct CairnMcp {
    api: Api,
    /// The `Authorization` header to send when the MCP request itself carries none (the
    /// `--token` of `cairn mcp --server`).
    authorization: Option<String>,
    /// `memory:<graph>`.
    graph_stream: String,
    graphs: Arc<tokio::sync::Mutex<memory::GraphCache>>,
    /// One past the newest log position a write of this server was appended at (0: none yet).
    /// Its view reads pass that position as `min_position`, so an agent always reads its own
    /// writes: the views apply the log a moment after the append is acknowledged.
    written: Arc<AtomicU64>,
    tool_router: ToolRouter<CairnMcp>,
}

impl CairnMcp {
    /// A server over `api`; `token` is sent with every request that brings no token of its
    /// own; the memory tools use the graph `graph`.
    pub fn new(api: Api, token: Option<&str>, graph: &str) -> CairnMcp {
        CairnMcp {
            api,
            authorization: token.map(|t| format!("Bearer {t}")),
            graph_stream: format!("{}{graph}", projections::memory::MEMORY_STREAM_PREFIX),
            graphs: Arc::default(),
            written: Arc::default(),
            tool_router: CairnMcp::log_router() + CairnMcp::memory_router(),
        }
    }

    /// Notes that a write of this server's was appended at `position`.
    fn wrote(&self, position: u64) {
        self.written.fetch_max(position + 1, Ordering::Relaxed);
    }

    /// The `min_position` a view read passes: the newest position this server wrote, if any.
    fn read_your_writes(&self) -> Option<String> {
        self.written.load(Ordering::Relaxed).checked_sub(1).map(|p| p.to_string())
    }

    /// The `Authorization` header for the API: the one of the HTTP request that carried this
    /// MCP request (`/mcp`), else this server's own token.
    fn auth(&self, ctx: &RequestContext<RoleServer>) -> Option<String> {
        self.auth_of(&ctx.extensions)
    }

    fn auth_of(&self, extensions: &Extensions) -> Option<String> {
        match extensions.get::<axum::http::request::Parts>() {
            Some(parts) => {
                parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string)
            }
            None => self.authorization.clone(),
        }
    }

    async fn resource_text(&self, uri: &str, auth: Option<&str>) -> Result<String, ToolError> {
        let value = if uri == "cairn://head" {
            self.api.call(Method::GET, "/v1/head", None, auth).await?
        } else if let Some(stream) = uri.strip_prefix("cairn://streams/") {
            let stream = percent_encoding::percent_decode_str(stream).decode_utf8_lossy();
            let path = format!("/v1/streams/{}/events?direction=backward&limit={RESOURCE_EVENTS_MAX}", enc(&stream));
            self.api.call(Method::GET, &path, None, auth).await?
        } else {
            return Err(ToolError::new(
                "resource_not_found",
                format!("no resource {uri}: cairn serves cairn://head and cairn://streams/{{stream}}"),
            ));
        };
        Ok(serde_json::to_string_pretty(&value).unwrap_or_default())
    }
}

fn protocol_error(e: ToolError) -> ErrorData {
    let data = Some(e.body());
    match e.code.as_str() {
        "stream_not_found" | "resource_not_found" => ErrorData::resource_not_found(e.message, data),
        "invalid_input" | "invalid_stream_name" => ErrorData::invalid_params(e.message, data),
        _ => ErrorData::internal_error(e.message, data),
    }
}

/// Arguments that do not fit a tool's input schema are refused by the SDK with a tool error
/// whose text is its own sentence: give it the shape of every other tool error, with the code
/// `invalid_input`.
fn coded_tool_error(response: CallToolResponse) -> CallToolResponse {
    let CallToolResponse::Complete(mut result) = response else { return response };
    if result.is_error != Some(true) {
        return CallToolResponse::Complete(result);
    }
    let text: String = result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
    let coded =
        serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.get("error").is_some_and(|e| e.is_string()));
    if !coded {
        let body = ToolError::new("invalid_input", text).body();
        result.content = vec![ContentBlock::text(body.to_string())];
    }
    CallToolResponse::Complete(result)
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CairnMcp {
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let call = ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await.map(coded_tool_error)
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build())
            .with_server_info(Implementation::new("cairn", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "cairn is an append-only, event-sourced log store. Append events to streams and read them back \
                 (append_events, read_stream, read_all, wait_for_events), keep shared state in the key-value store \
                 (kv_*), check integrity (head, verify), query the audit log. The memory graph tools \
                 (create_entities, add_observations, read_graph, ...) keep a knowledge graph as events on the stream \
                 {}: concurrent writers never lose a change. Errors carry a code such as stream_not_found or \
                 wrong_expected_version.",
                self.graph_stream
            ))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let auth = self.auth(&context);
        let path = format!("/v1/streams?limit={RESOURCE_STREAMS_MAX}");
        let page: log_tools::Streams =
            self.api.call_as(Method::GET, &path, None, auth.as_deref()).await.map_err(protocol_error)?;
        let mut resources = vec![Resource::new("cairn://head", "head")
            .with_title("Head of the log")
            .with_description("The last position and its chain hash.")
            .with_mime_type("application/json")];
        for s in &page.streams {
            resources.push(
                Resource::new(format!("cairn://streams/{}", enc(&s.stream)), s.stream.clone())
                    .with_description(format!(
                        "Stream {}: {} events, last version {}; reads the newest {RESOURCE_EVENTS_MAX}.",
                        s.stream, s.events, s.last_version
                    ))
                    .with_mime_type("application/json"),
            );
        }
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template = ResourceTemplate::new("cairn://streams/{stream}", "stream")
            .with_description(format!("The newest {RESOURCE_EVENTS_MAX} events of a stream (name percent-encoded)."))
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let auth = self.auth(&context);
        let text = self.resource_text(&request.uri, auth.as_deref()).await.map_err(protocol_error)?;
        let contents = ResourceContents::text(text, request.uri).with_mime_type("application/json");
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

/// `cairn mcp`: serves MCP on stdin/stdout until the client closes stdin.
pub fn run(data: &Path, data_given: bool, args: McpArgs) -> CliResult<Exit> {
    if args.server.is_some() && data_given {
        return Err(InputError(
            "give either --data DIR (or CAIRN_DATA: open the store here) or --server URL (use a running server), not both"
                .into(),
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-mcp")
        .build()
        .map_err(|e| CliError::io("start the async runtime for", "mcp", e))?;
    match &args.server {
        Some(url) => {
            let api = remote_api(url, args.ca_file.as_deref())?;
            let server = CairnMcp::new(api, args.token.as_deref(), &args.graph);
            runtime.block_on(serve_stdio(server))
        }
        None => {
            let state = embedded_state(data)?;
            let server = CairnMcp::new(Api::Router(crate::http::api_router(state.clone())), None, &args.graph);
            let result = runtime.block_on(serve_stdio(server));
            drop(runtime);
            state.store.close();
            result
        }
    }
}

/// Opens the store in `dir` (as its one writer) with what the API router needs around it.
fn embedded_state(dir: &Path) -> CliResult<Arc<AppState>> {
    let log = crate::store::open_writer(dir)?;
    match Store::open(log.clone(), snapshotter::Policy::default(), &mut |_| {}) {
        Ok((store, _restored)) => Ok(Arc::new(embedded(store, dir))),
        Err(e) => {
            log.close();
            Err(e.into())
        }
    }
}

/// What the API router needs around a store this process opened in `dir`: no auth (the
/// process that can open the directory owns the data) and the server's default bounds.
pub fn embedded(store: Store, dir: &Path) -> AppState {
    // Never set: an embedded store stops when its owner closes it, not on a signal.
    let (stop_tx, shutdown) = tokio::sync::watch::channel(false);
    std::mem::forget(stop_tx);
    AppState {
        log: store.log().clone(),
        store,
        dir: dir.to_path_buf(),
        auth: None,
        metrics: crate::http::metrics::ServerMetrics::default(),
        shutdown,
        verify_lock: tokio::sync::Mutex::new(()),
        body_limits: crate::http::drain::BodyLimits::new(limits::BODY_BYTES_IN_FLIGHT_MAX, limits::BODY_READ_TIMEOUT),
        sse_keep_alive: limits::SSE_KEEP_ALIVE,
        access_audit: crate::http::access::AccessAudit::default(),
        token_lock: tokio::sync::Mutex::new(()),
        durable: crate::http::durable::Durable::default(),
        replica: None,
        archiver: None,
        backup_lock: tokio::sync::Mutex::new(()),
        drill_lock: tokio::sync::Mutex::new(()),
        scavenges: crate::http::scavenge::ScavengeJobs::default(),
        durability: log_engine::Durability::Sync,
    }
}

async fn serve_stdio(server: CairnMcp) -> CliResult<Exit> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| CliError::Server(format!("the MCP session on stdio did not start: {e}")))?;
    running.waiting().await.map_err(|e| CliError::Server(format!("the MCP session on stdio failed: {e}")))?;
    Ok(Exit::Ok)
}

/// The API of the server at `url`, over rustls (aws-lc-rs) with the system's roots and `ca_file`'s.
pub fn remote_api(url: &str, ca_file: Option<&Path>) -> CliResult<Api> {
    let base = url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(InputError(format!("--server {url:?} is not an http:// or https:// URL")).into());
    }
    let mut builder = reqwest::Client::builder().timeout(api::MCP_REQUEST_TIMEOUT).connect_timeout(CONNECT_TIMEOUT);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| CliError::io("read the CA file", path, e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| InputError(format!("the CA file {} is not PEM certificates: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(InputError(format!("the CA file {} holds no certificate", path.display())).into());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder.build().map_err(|e| CliError::Server(format!("cannot set up the HTTP client: {e}")))?;
    Ok(Api::Remote { client, base: base.to_string() })
}

/// How long `cairn mcp --server` waits for a connection to the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
