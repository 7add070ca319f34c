//! `POST /mcp` on a real `cairn serve --auth`, spoken to as an MCP client over streamable HTTP
//! does (JSON-RPC messages, accepting JSON and SSE): a request without a known token is refused
//! 401 before any message is read; a token's prefix rules decide each tool call, so a tool it
//! may not use is a tool error `forbidden` while the calls its rules allow go through; the
//! transport's own refusals carry the contract's error body; and `/openapi.json` documents the
//! endpoint. (The official Python SDK drives every tool over `/mcp` in `.ci/mcp`.)

mod support;

use serde_json::{json, Value};
use support::Server;

const ADMIN: &str = "cairn_mcp_http_admin_0123456789abcdef";
const READER: &str = "cairn_mcp_http_reader_0123456789abcdef";

/// A server whose `admin` may do everything and whose `reader` may only read `agent-` streams.
fn server(dir: &std::path::Path) -> Server {
    let hash = |t: &str| blake3::hash(t.as_bytes()).to_hex();
    let auth = dir.join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[principal]]\nname = \"admin\"\ntoken_hash = \"blake3:{}\"\nrules = [ {{ prefix = \"\", allow = [\"admin\"] }} ]\n\n\
             [[principal]]\nname = \"reader\"\ntoken_hash = \"blake3:{}\"\nrules = [ {{ prefix = \"agent-\", allow = [\"read\"] }} ]\n",
            hash(ADMIN),
            hash(READER)
        ),
    )
    .unwrap();
    Server::start(&dir.join("data"), &["--auth", auth.to_str().unwrap()])
}

/// POSTs one JSON-RPC message to `/mcp` as an MCP client does; the status and the JSON body.
fn post(server: &Server, token: Option<&str>, accept: &str, message: &Value) -> (u16, Value) {
    let mut request = reqwest::blocking::Client::new()
        .post(server.url("/mcp"))
        .header("Accept", accept)
        .header("Content-Type", "application/json")
        .body(message.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("/mcp answered {status} {text:?}, not JSON: {e}")))
}

const ACCEPT: &str = "application/json, text/event-stream";

/// Calls a tool with `token`: the JSON-RPC result (`content`, `structuredContent`, `isError`).
fn call(server: &Server, token: &str, tool: &str, arguments: Value) -> Value {
    let message = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}});
    let (status, answer) = post(server, Some(token), ACCEPT, &message);
    assert_eq!(status, 200, "{tool}: {answer}");
    assert_eq!(answer["id"], 7, "{answer}");
    answer["result"].clone()
}

/// The code of a tool error: its text is the API's error body.
fn tool_error(result: &Value) -> String {
    assert_eq!(result["isError"], true, "the call should have failed: {result}");
    let body: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    body["error"].as_str().unwrap().to_string()
}

#[test]
fn a_request_without_a_known_token_is_refused_before_any_message_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}});
    for token in [None, Some("cairn_not_a_known_token")] {
        let (status, body) = post(&server, token, ACCEPT, &initialize);
        assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")), "token {token:?}: {body}");
    }
    let (status, body) = post(&server, Some(READER), ACCEPT, &initialize);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["serverInfo"]["name"], "cairn", "{body}");
}

#[test]
fn each_tool_call_is_decided_by_the_tokens_own_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let append = json!({"stream": "agent-1", "events": [{"type": "Started"}]});

    assert_eq!(tool_error(&call(&server, READER, "append_events", append.clone())), "forbidden");
    assert_eq!(tool_error(&call(&server, READER, "verify", json!({}))), "forbidden");
    assert_eq!(tool_error(&call(&server, READER, "read_stream", json!({"stream": "other"}))), "forbidden");
    assert_eq!(
        tool_error(&call(&server, READER, "create_entities", json!({"entities": []}))),
        "forbidden",
        "the memory graph's stream is outside the reader's prefix"
    );

    let appended = call(&server, ADMIN, "append_events", append);
    assert_ne!(appended["isError"], true, "{appended}");
    assert_eq!(appended["structuredContent"]["last_version"], 0, "{appended}");
    // What the reader's rule allows goes through, with the reader's token.
    let read = call(&server, READER, "read_stream", json!({"stream": "agent-1"}));
    assert_ne!(read["isError"], true, "{read}");
    assert_eq!(read["structuredContent"]["events"][0]["type"], "Started", "{read}");
}

/// The SDK refuses what it cannot take with a plain-text sentence; `/mcp` answers those with
/// the contract's error body like every other endpoint.
#[test]
fn the_transports_refusals_carry_the_contracts_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let (status, body) = post(&server, Some(ADMIN), "application/json", &ping);
    assert_eq!((status, body["error"].as_str()), (406, Some("not_acceptable")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("text/event-stream"), "{body}");

    let response = reqwest::blocking::Client::new()
        .get(server.url("/mcp"))
        .bearer_auth(ADMIN)
        .header("Accept", ACCEPT)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"], "method_not_allowed", "{body}");
}

#[test]
fn openapi_documents_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).with_token(Some(ADMIN));
    let (status, spec) = server.get("/openapi.json");
    assert_eq!(status, 200);
    let operation = &spec["paths"]["/mcp"]["post"];
    assert_eq!(operation["tags"], json!(["mcp"]), "{operation}");
    assert_eq!(
        operation["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/McpMessage"
    );
    let ok = &operation["responses"]["200"]["content"];
    assert!(ok.get("application/json").is_some() && ok.get("text/event-stream").is_some(), "{ok}");
    assert_eq!(
        operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    let message = &spec["components"]["schemas"]["McpMessage"];
    assert_eq!(message["required"], json!(["jsonrpc"]), "{message}");
}
