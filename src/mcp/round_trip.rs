//! A short MCP session in process, for `cairn demo`: the SDK's client and [`CairnMcp`] talk
//! over an in-memory pipe, exactly as an agent and `cairn mcp` talk over stdio (initialize,
//! `tools/list`, `tools/call`), so the demo shows the path an agent takes, not a shortcut.
//!
//! The session writes a small memory graph (entities, a relation, observations: each one
//! event on `memory:<graph>`) and reads it back with `read_graph`; the round trip holds when
//! what is read back is exactly what was written.

use std::sync::Arc;

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt as _};
use serde::Serialize;
use serde_json::{json, Value};

use super::api::Api;
use super::CairnMcp;
use crate::http::AppState;

/// Bytes the in-memory pipe buffers in each direction (a message larger than this is simply
/// passed in several writes).
const PIPE_BYTES: usize = 64 * 1024;

/// What the session did.
#[derive(Debug, Clone, Serialize)]
pub struct RoundTrip {
    /// The protocol version the client and the server agreed on.
    pub protocol_version: String,
    /// Tools `tools/list` answered.
    pub tools: usize,
    /// The stream the graph's changes were appended to.
    pub graph_stream: String,
    /// Entities, relations and observations written.
    pub entities: usize,
    pub relations: usize,
    pub observations: usize,
    /// Events of the graph's stream after the session (one per change).
    pub events: u64,
    /// `read_graph` answered exactly the graph that was written.
    pub read_back: bool,
}

/// Runs the session against `state`'s API on a runtime of its own; the graph is `graph`.
pub fn run(state: Arc<AppState>, graph: &str) -> Result<RoundTrip, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("cairn-demo-mcp")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(session(state, graph))
}

async fn session(state: Arc<AppState>, graph: &str) -> Result<RoundTrip, String> {
    let server = CairnMcp::new(Api::Router(crate::http::api_router(state)), None, graph);
    let graph_stream = server.graph_stream.clone();
    let (client_io, server_io) = tokio::io::duplex(PIPE_BYTES);
    let serving = tokio::spawn(async move {
        let running = server.serve(server_io).await.map_err(|e| format!("the MCP server did not start: {e}"))?;
        running.waiting().await.map(|_| ()).map_err(|e| format!("the MCP server failed: {e}"))
    });
    let client = ().serve(client_io).await.map_err(|e| format!("the MCP session did not start: {e}"))?;
    let result = calls(&client, graph_stream).await;
    client.cancel().await.map_err(|e| format!("the MCP session did not end: {e}"))?;
    serving.await.map_err(|e| format!("the MCP server task failed: {e}"))??;
    result
}

async fn calls(client: &RunningService<RoleClient, ()>, graph_stream: String) -> Result<RoundTrip, String> {
    let protocol_version = client.peer_info().map(|i| i.protocol_version.to_string()).unwrap_or_default();
    let tools = client.list_all_tools().await.map_err(|e| format!("tools/list failed: {e}"))?.len();
    let entities = json!([
        {"name": "planner", "entityType": "agent", "observations": ["splits the task"]},
        {"name": "coder", "entityType": "agent", "observations": []},
    ]);
    let relations = json!([{"from": "planner", "to": "coder", "relationType": "delegates_to"}]);
    let added = ["wrote the parser", "ran the tests"];
    call(client, "create_entities", json!({"entities": entities})).await?;
    call(client, "create_relations", json!({"relations": relations})).await?;
    call(client, "add_observations", json!({"observations": [{"entityName": "coder", "contents": added}]})).await?;
    let read = call(client, "read_graph", json!({})).await?;
    let expected = json!({
        "entities": [
            {"name": "planner", "entityType": "agent", "observations": ["splits the task"]},
            {"name": "coder", "entityType": "agent", "observations": added},
        ],
        "relations": relations,
    });
    let head =
        call(client, "read_stream", json!({"stream": graph_stream, "direction": "backward", "limit": 1})).await?;
    let events = head["events"][0]["version"].as_u64().map_or(0, |v| v + 1);
    Ok(RoundTrip {
        protocol_version,
        tools,
        graph_stream,
        entities: 2,
        relations: 1,
        observations: 1 + added.len(),
        events,
        read_back: read == expected,
    })
}

/// One `tools/call`: its structured answer, or what failed as a sentence.
async fn call(client: &RunningService<RoleClient, ()>, tool: &str, arguments: Value) -> Result<Value, String> {
    let Value::Object(arguments) = arguments else { return Err(format!("{tool}: arguments are not an object")) };
    let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
    let result = client.call_tool(params).await.map_err(|e| format!("{tool} failed: {e}"))?;
    if result.is_error == Some(true) {
        let text: String = result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
        return Err(format!("{tool} answered an error: {text}"));
    }
    result.structured_content.ok_or_else(|| format!("{tool} answered no structured content"))
}
