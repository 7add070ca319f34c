//! `cairn mcp --data DIR` driven over stdio by the MCP SDK's own client: the tools are listed
//! with input and output schemas, log and key-value tools round-trip, errors carry the
//! contract's codes (unknown stream, wrong expected version, bad arguments), `wait_for_events`
//! returns an event appended while it waits, and the memory graph tools follow the reference
//! memory server's rules with every change stored as an event on `memory:default`.
//!
//! The Python SDK, streamable HTTP, auth and the comparison with the reference server are in
//! `.ci/mcp`.

mod support;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

type Client = RunningService<RoleClient, ()>;

async fn start(dir: &std::path::Path) -> Client {
    start_with(&["mcp", "--data", dir.to_str().unwrap()]).await
}

async fn start_with(args: &[&str]) -> Client {
    let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn")).configure(|c| {
        c.args(args);
    });
    let transport = TokioChildProcess::new(command).expect("cairn mcp starts");
    ().serve(transport).await.expect("the MCP session starts")
}

async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else { panic!("arguments are an object") };
    let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
    client.call_tool(params).await.unwrap_or_else(|e| panic!("{tool} answers: {e}"))
}

/// The structured answer of a call that must succeed.
async fn ok(client: &Client, tool: &str, args: Value) -> Value {
    let result = call(client, tool, args).await;
    assert_ne!(result.is_error, Some(true), "{tool} failed: {:?}", result.content);
    result.structured_content.unwrap_or_else(|| panic!("{tool} gives structured content"))
}

/// The error body (`{"error", "message", ...}`) of a call that must fail.
async fn err(client: &Client, tool: &str, args: Value) -> Value {
    let result = call(client, tool, args).await;
    assert_eq!(result.is_error, Some(true), "{tool} should fail: {:?}", result.structured_content);
    let text = result.content[0].as_text().expect("a text error").text.clone();
    serde_json::from_str(&text).expect("the error text is the API's JSON error body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_is_listed_with_schemas_and_log_tools_round_trip_with_coded_errors() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(dir.path()).await;

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "add_observations",
            "append_events",
            "audit_query",
            "checkpoint_status",
            "create_entities",
            "create_relations",
            "delete_entities",
            "delete_observations",
            "delete_relations",
            "head",
            "kv_compare_and_set",
            "kv_delete",
            "kv_get",
            "kv_list",
            "kv_set",
            "list_streams",
            "open_nodes",
            "read_all",
            "read_graph",
            "read_graph_as_of",
            "read_stream",
            "search_nodes",
            "verify",
            "wait_for_events",
        ]
    );
    for tool in &tools {
        assert_eq!(tool.input_schema.get("type"), Some(&json!("object")), "{}", tool.name);
        let output = tool.output_schema.as_ref().unwrap_or_else(|| panic!("{} has an output schema", tool.name));
        assert_eq!(output.get("type"), Some(&json!("object")), "{}", tool.name);
        assert!(tool.description.as_ref().is_some_and(|d| d.len() > 20), "{} is described", tool.name);
    }

    let appended = ok(&client, "append_events", json!({"stream": "agent-7", "expected_version": "no_stream",
        "events": [{"type": "ToolCalled", "data": {"tool": "search"}}, {"type": "ToolReturned", "data": {"ok": true}}]})).await;
    assert_eq!((appended["first_version"].as_u64(), appended["last_version"].as_u64()), (Some(0), Some(1)));
    let read = ok(&client, "read_stream", json!({"stream": "agent-7", "direction": "backward", "limit": 1})).await;
    assert_eq!(read["events"][0]["type"], "ToolReturned");
    assert_eq!(read["events"][0]["hash"], appended["hash"]);

    let conflict = err(
        &client,
        "append_events",
        json!({"stream": "agent-7", "expected_version": 0,
        "events": [{"type": "Late"}]}),
    )
    .await;
    assert_eq!(conflict["error"], "wrong_expected_version");
    assert_eq!(conflict["actual"], 1);
    assert_eq!(err(&client, "read_stream", json!({"stream": "nobody"})).await["error"], "stream_not_found");
    assert_eq!(err(&client, "read_stream", json!({"stream": 7})).await["error"], "invalid_input");
    assert_eq!(
        err(&client, "append_events", json!({"stream": "$kv", "events": [{"type": "X"}]})).await["error"],
        "invalid_stream_name"
    );
    assert_eq!(
        err(&client, "wait_for_events", json!({"stream": "agent-7", "timeout_ms": 3_600_000})).await["error"],
        "invalid_input"
    );

    let set = ok(&client, "kv_set", json!({"key": "session/42", "value": {"step": 1}})).await;
    let got = ok(&client, "kv_get", json!({"key": "session/42"})).await;
    assert_eq!((got["value"].clone(), got["version"].clone()), (json!({"step": 1}), set["version"].clone()));
    let cas =
        ok(&client, "kv_compare_and_set", json!({"key": "session/42", "value": 2, "expected_version": set["version"]}))
            .await;
    let stale = err(
        &client,
        "kv_compare_and_set",
        json!({"key": "session/42", "value": 3, "expected_version": set["version"]}),
    )
    .await;
    assert_eq!(stale["error"], "wrong_expected_version");
    assert_eq!(ok(&client, "kv_get", json!({"key": "session/42"})).await["version"], cas["version"]);
    assert_eq!(ok(&client, "kv_list", json!({"prefix": "session/"})).await["keys"], json!(["session/42"]));
    assert_eq!(ok(&client, "kv_delete", json!({"key": "session/42"})).await["deleted"], true);
    assert_eq!(err(&client, "kv_get", json!({"key": "session/42"})).await["error"], "key_not_found");

    let head = ok(&client, "head", json!({})).await;
    let verified = ok(&client, "verify", json!({})).await;
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["head_hash"], head["hash"]);
    let streams = ok(&client, "list_streams", json!({"prefix": "agent-"})).await;
    assert_eq!(streams["streams"], json!([{"stream": "agent-7", "last_version": 1, "events": 2}]));

    // A wait that nothing ends times out; one that an append ends returns that event.
    let idle = ok(&client, "wait_for_events", json!({"stream": "agent-7", "from_version": 2, "timeout_ms": 200})).await;
    assert_eq!((idle["timed_out"].clone(), idle["events"].clone()), (json!(true), json!([])));
    let (waited, _) = tokio::join!(
        ok(&client, "wait_for_events", json!({"stream": "agent-7", "from_version": 2, "timeout_ms": 60_000})),
        ok(&client, "append_events", json!({"stream": "agent-7", "events": [{"type": "Woke"}]})),
    );
    assert_eq!(waited["timed_out"], false);
    assert_eq!(waited["events"][0]["type"], "Woke");
    assert_eq!(waited["next_version"], 3);

    let resources = client.list_all_resources().await.unwrap();
    let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    assert!(uris.contains(&"cairn://head") && uris.contains(&"cairn://streams/agent-7"), "{uris:?}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_graph_keeps_the_reference_rules_and_every_change_is_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let client = start(dir.path()).await;
    let alice = json!({"name": "Alice", "entityType": "person", "observations": ["likes tea"]});
    let created = ok(&client, "create_entities", json!({"entities": [alice]})).await;
    assert_eq!(created, json!({"entities": [alice]}));
    let again = call(&client, "create_entities", json!({"entities": [alice]})).await;
    assert_eq!(again.structured_content, Some(json!({"entities": []})));
    assert_eq!(again.content[0].as_text().unwrap().text, "[]", "the text is the reference's pretty JSON");

    ok(&client, "create_entities", json!({"entities": [{"name": "Bob", "entityType": "person", "observations": []}]}))
        .await;
    ok(&client, "create_relations", json!({"relations": [{"from": "Alice", "to": "Bob", "relationType": "knows"}]}))
        .await;
    let added = ok(
        &client,
        "add_observations",
        json!({"observations": [{"entityName": "Alice", "contents": ["likes tea", "plays go"]}]}),
    )
    .await;
    assert_eq!(added, json!({"results": [{"entityName": "Alice", "addedObservations": ["plays go"]}]}));
    let missing = err(
        &client,
        "add_observations",
        json!({"observations": [{"entityName": "Alice", "contents": ["x"]},
        {"entityName": "Carol", "contents": ["y"]}]}),
    )
    .await;
    assert_eq!(missing, json!({"error": "entity_not_found", "message": "Entity with name Carol not found"}));

    let found = ok(&client, "search_nodes", json!({"query": "GO"})).await;
    assert_eq!(found["entities"][0]["name"], "Alice");
    assert_eq!(found["relations"].as_array().unwrap().len(), 1);
    let deleted = ok(&client, "delete_entities", json!({"entityNames": ["Bob"]})).await;
    assert_eq!(deleted, json!({"success": true, "message": "Entities deleted successfully"}));
    let graph = ok(&client, "read_graph", json!({})).await;
    assert_eq!(
        graph,
        json!({"entities": [{"name": "Alice", "entityType": "person", "observations": ["likes tea", "plays go"]}], "relations": []})
    );

    // Every change is an event of the graph's stream; the graph before the deletion is still there.
    let events = ok(&client, "read_stream", json!({"stream": "memory:default"})).await;
    let types: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "memory.entities_created",
            "memory.entities_created",
            "memory.entities_created",
            "memory.relations_created",
            "memory.observations_added",
            "memory.entities_deleted"
        ]
    );
    let before = ok(&client, "read_graph_as_of", json!({"version": 4})).await;
    assert_eq!(before["entities"].as_array().unwrap().len(), 2);
    assert_eq!(before["relations"].as_array().unwrap().len(), 1);
    assert_eq!(err(&client, "read_graph_as_of", json!({"version": 99})).await["error"], "version_not_found");
    client.cancel().await.unwrap();
}

/// `cairn mcp --server URL --token T`: the token reaches the server (it was once sent as
/// `Bearer Bearer T` and refused as unknown), and the token's prefix rules decide each call.
#[test]
fn a_server_client_sends_its_token_and_the_prefix_rules_apply() {
    let dir = tempfile::tempdir().unwrap();
    let token = "cairn_mcp_test_token_0123456789abcdef";
    let hash = blake3::hash(token.as_bytes()).to_hex();
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!("[[principal]]\nname = \"reader\"\ntoken_hash = \"blake3:{hash}\"\nrules = [ {{ prefix = \"agent-\", allow = [\"read\"] }} ]\n"),
    )
    .unwrap();
    // The helper's blocking HTTP client lives outside the async runtime.
    let server = support::Server::start(&dir.path().join("data"), &["--auth", auth.to_str().unwrap()]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = start_with(&["mcp", "--server", &server.base, "--token", token]).await;
        assert_eq!(err(&client, "read_stream", json!({"stream": "agent-1"})).await["error"], "stream_not_found");
        let denied = err(&client, "append_events", json!({"stream": "agent-1", "events": [{"type": "X"}]})).await;
        assert_eq!(denied["error"], "forbidden");
        client.cancel().await.unwrap();
        let anonymous = start_with(&["mcp", "--server", &server.base]).await;
        assert_eq!(err(&anonymous, "head", json!({})).await["error"], "unauthorized");
        anonymous.cancel().await.unwrap();
    });
    drop(server);
}
