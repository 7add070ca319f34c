//! The views over HTTP against the real binary: the key-value view (Redis semantics, types,
//! compare-and-set, transactions, history), the audit view (append, query, proof), the metadata
//! view (schemas with compatibility, services, configuration history, relations), read-your-
//! writes with `?min_position=`, checkpoints, and views surviving a restart through a checkpoint.

mod support;

use serde_json::{json, Value};
use support::Server;

fn pos(body: &Value) -> u64 {
    body["position"].as_u64().unwrap_or_else(|| panic!("no position in {body}"))
}

#[test]
fn key_value_reads_see_writes_with_min_position() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, put) =
        server.request(reqwest::Method::PUT, "/v1/kv/session%2F42", Some(&json!({"value": {"step": 1}})));
    assert_eq!(status, 200, "{put}");
    assert_eq!((put["key"].as_str(), put["version"].as_u64()), (Some("session/42"), Some(0)));
    let (status, got) = server.get(&format!("/v1/kv/session%2F42?min_position={}", pos(&put)));
    assert_eq!(status, 200);
    assert_eq!(got, json!({"key": "session/42", "value": {"step": 1}, "version": 0, "expires_at": null}));

    // Compare-and-set on the version.
    let (status, body) = server.request(
        reqwest::Method::PUT,
        "/v1/kv/session%2F42",
        Some(&json!({"value": {"step": 9}, "expected_version": 7})),
    );
    assert_eq!(
        (status, body["error"].as_str(), body["key"].as_str()),
        (409, Some("wrong_expected_version"), Some("session/42"))
    );
    let (status, put) = server.request(
        reqwest::Method::PUT,
        "/v1/kv/session%2F42",
        Some(&json!({"value": {"step": 2}, "expected_version": 0})),
    );
    assert_eq!((status, put["version"].as_u64()), (200, Some(1)));

    let (status, body) = server.get("/v1/kv/missing");
    assert_eq!((status, body["error"].as_str()), (404, Some("key_not_found")));
    let (status, body) = server.get("/v1/kv/x?min_position=999999");
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_query")), "{body}");

    let (status, del) = server.request(reqwest::Method::DELETE, "/v1/kv/session%2F42", None);
    assert_eq!((status, del["deleted"].as_bool()), (200, Some(true)));
    let (_, again) = server.request(reqwest::Method::DELETE, "/v1/kv/session%2F42", None);
    assert_eq!(again, json!({"deleted": false, "position": null}), "deleting an absent key writes nothing");
    let (status, _) = server.get(&format!("/v1/kv/session%2F42?min_position={}", pos(&del)));
    assert_eq!(status, 404);
    let (_, history) = server.get("/v1/kv/session%2F42/history");
    let ops: Vec<&str> = history["versions"].as_array().unwrap().iter().map(|v| v["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["delete", "set", "set"], "newest first");
}

#[test]
fn key_value_types_counters_lists_sets_and_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    assert_eq!(server.post("/v1/kv/visits/incr", &json!({"delta": 5})).1["value"], 5);
    assert_eq!(server.post("/v1/kv/visits/incr", &json!({})).1["value"], 6);
    assert_eq!(server.post("/v1/kv/log/append", &json!({"value": "ab"})).1["length"], 2);
    let (status, body) = server.post("/v1/kv/log/incr", &json!({}));
    assert_eq!((status, body["error"].as_str()), (400, Some("not_an_integer")), "{body}");

    assert_eq!(server.post("/v1/kv/queue/push", &json!({"values": [1, 2, 3]})).1["length"], 3);
    assert_eq!(server.post("/v1/kv/queue/push", &json!({"values": [0], "end": "left"})).1["length"], 4);
    let (_, popped) = server.post("/v1/kv/queue/pop", &json!({"end": "right", "count": 2}));
    assert_eq!(popped["values"], json!([3, 2]));
    let (_, range) = server.get(&format!("/v1/kv/queue/range?start=0&stop=-1&min_position={}", pos(&popped)));
    assert_eq!(range["values"], json!([0, 1]));
    let (status, body) = server.get("/v1/kv/queue?min_position=0");
    assert_eq!((status, body["error"].as_str()), (400, Some("wrong_type")), "a list is not read with GET: {body}");

    assert_eq!(server.post("/v1/kv/tags/sadd", &json!({"members": ["b", "a", "b"]})).1["added"], 2);
    let (_, removed) = server.post("/v1/kv/tags/srem", &json!({"members": ["b", "z"]}));
    assert_eq!(removed["removed"], 1);
    let (_, members) = server.get(&format!("/v1/kv/tags/members?min_position={}", pos(&removed)));
    assert_eq!(members["members"], json!(["a"]));

    let (status, txn) = server.post(
        "/v1/kv:txn",
        &json!({"watch": {"visits": 1}, "ops": [
            {"op": "incr", "key": "visits", "delta": 10},
            {"op": "set", "key": "flag", "value": true}
        ]}),
    );
    assert_eq!(status, 200, "{txn}");
    assert_eq!(txn["outputs"][0], json!({"value": 16}));
    // The same watch is stale now: nothing of the transaction is written.
    let (status, body) = server
        .post("/v1/kv:txn", &json!({"watch": {"visits": 1}, "ops": [{"op": "set", "key": "flag", "value": false}]}));
    assert_eq!(
        (status, body["error"].as_str(), body["key"].as_str()),
        (409, Some("wrong_expected_version"), Some("visits"))
    );
    let (_, many) =
        server.post(&format!("/v1/kv:get?min_position={}", pos(&txn)), &json!({"keys": ["visits", "flag", "nope"]}));
    assert_eq!(many["values"], json!({"visits": 16, "flag": true, "nope": null}));
    let (_, listed) = server.get("/v1/kv?prefix=&limit=2");
    assert_eq!(listed["keys"], json!(["flag", "log"]));
    assert_eq!(listed["next"], "log");
}

#[test]
fn audit_entries_are_queried_and_proven_against_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let entry = |actor: &str, level: &str, category: &str| {
        json!({"level": level, "category": category, "event": "tool.called",
               "actor": {"type": "agent", "id": actor}, "target": {"type": "tool", "id": "shell"},
               "context": {"trace_id": "t-1", "workflow_id": "wf-9"}, "outcome": "success"})
    };
    let (status, first) = server.post("/v1/audit", &entry("agent-7", "info", "agent_activity"));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);
    server.post("/v1/audit", &entry("agent-8", "warn", "security"));
    let (_, last) = server.post("/v1/audit", &entry("agent-7", "error", "security"));

    let (status, page) = server.get(&format!("/v1/audit?actor=agent-7&min_position={}", pos(&last)));
    assert_eq!(status, 200);
    let levels: Vec<&str> = page["entries"].as_array().unwrap().iter().map(|e| e["level"].as_str().unwrap()).collect();
    assert_eq!(levels, ["error", "info"], "newest first");
    let (_, page) = server.get("/v1/audit?category=security&order=asc&limit=1");
    assert_eq!(page["entries"][0]["actor"]["id"], "agent-8");
    let next = page["next"].as_u64().expect("a second page");
    let (_, page) = server.get(&format!("/v1/audit?category=security&order=asc&after={next}"));
    assert_eq!(page["entries"][0]["actor"]["id"], "agent-7");

    let (status, proof) = server.get(&format!("/v1/audit/{}/proof", first["id"].as_str().unwrap()));
    assert_eq!(status, 200);
    assert_eq!(proof["verified"], true, "{proof}");
    assert_eq!(proof["position"], first["position"]);
    assert_eq!(proof["hash"], first["hash"]);
    let (_, event) = server.get(&format!("/v1/events/{}", first["position"]));
    assert_eq!(event["hash"], first["hash"], "the proof's hash is the log's");

    for (path, code) in [
        ("/v1/audit?level=loud", "invalid_query"),
        ("/v1/audit?since=yesterday", "invalid_query"),
        ("/v1/audit/not-a-uuid/proof", "invalid_path"),
    ] {
        let (status, body) = server.get(path);
        assert_eq!((status, body["error"].as_str()), (400, Some(code)), "{path}: {body}");
    }
    let (status, body) = server.get("/v1/audit/0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c11/proof");
    assert_eq!((status, body["error"].as_str()), (404, Some("entry_not_found")));
    let (status, body) = server.post("/v1/audit", &json!({"level": "info"}));
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")), "{body}");
}

#[test]
fn metadata_schemas_services_config_and_relations() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let v1 = json!({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]});
    let (status, reg) = server.post("/v1/meta/schemas/order/versions", &json!({"schema": v1}));
    assert_eq!((status, reg["version"].as_u64()), (200, Some(1)), "{reg}");
    // Backward compatibility (the default): a new required field breaks old data.
    let v2 = json!({"type": "object", "properties": {"id": {"type": "integer"}, "sku": {"type": "string"}}, "required": ["id", "sku"]});
    let (status, body) = server.post("/v1/meta/schemas/order/versions", &json!({"schema": v2}));
    assert_eq!((status, body["error"].as_str()), (409, Some("incompatible_schema")), "{body}");
    let (status, set) =
        server.request(reqwest::Method::PUT, "/v1/meta/schemas/order/compatibility", Some(&json!({"mode": "none"})));
    assert_eq!(status, 200, "{set}");
    let (status, reg2) = server.post("/v1/meta/schemas/order/versions", &json!({"schema": v2}));
    assert_eq!((status, reg2["version"].as_u64()), (200, Some(2)), "{reg2}");
    let (_, latest) = server.get(&format!("/v1/meta/schemas/order/versions/latest?min_position={}", pos(&reg2)));
    assert_eq!((latest["version"].as_u64(), &latest["schema"]), (Some(2), &v2));
    let (_, first) = server.get("/v1/meta/schemas/order/versions/1");
    assert_eq!(first["schema"], v1);
    let (_, check) = server.post("/v1/meta/schemas/order/validate", &json!({"payload": {"id": "x"}}));
    assert_eq!(check["valid"], false);
    assert!(!check["errors"].as_array().unwrap().is_empty());
    let (status, body) = server.get("/v1/meta/schemas/nothing/versions/latest");
    assert_eq!((status, body["error"].as_str()), (404, Some("subject_not_found")));

    let (status, svc) = server.request(
        reqwest::Method::PUT,
        "/v1/meta/services/search/instances/i-1",
        Some(&json!({"endpoints": ["http://10.0.0.5:80"], "tags": ["gpu"], "capabilities": ["web"], "ttl_ms": 60000})),
    );
    assert_eq!(status, 200, "{svc}");
    let (_, found) = server.get(&format!("/v1/meta/services?name=search&tag=gpu&min_position={}", pos(&svc)));
    assert_eq!(found["instances"][0]["instance"], "i-1");
    let (_, gone) = server.request(reqwest::Method::DELETE, "/v1/meta/services/search/instances/i-1", None);
    let (_, found) = server.get(&format!("/v1/meta/services?name=search&min_position={}", pos(&gone)));
    assert_eq!(found["instances"], json!([]));
    let (status, body) = server.request(reqwest::Method::DELETE, "/v1/meta/services/search/instances/i-1", None);
    assert_eq!((status, body["error"].as_str()), (404, Some("instance_not_found")));

    let (_, c1) = server.request(reqwest::Method::PUT, "/v1/meta/config/model", Some(&json!({"value": "small"})));
    let (_, c2) = server.request(reqwest::Method::PUT, "/v1/meta/config/model", Some(&json!({"value": "large"})));
    assert_eq!((c1["version"].as_u64(), c2["version"].as_u64()), (Some(1), Some(2)));
    let (_, now) = server.get(&format!("/v1/meta/config/model?min_position={}", pos(&c2)));
    assert_eq!(now["value"], "large");
    let (_, old) = server.get("/v1/meta/config/model?version=1");
    assert_eq!(old["value"], "small");
    let (_, history) = server.get("/v1/meta/config/model/history");
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);
    assert!(history["versions"][0]["timestamp"].is_u64());

    server.post("/v1/meta/relations", &json!({"from": "agent-7", "to": "tool:shell", "type": "uses"}));
    let (_, rel) = server.post("/v1/meta/relations", &json!({"from": "tool:shell", "to": "host:1", "type": "runs_on"}));
    let (_, edges) = server.get(&format!("/v1/meta/relations/agent-7?depth=2&min_position={}", pos(&rel)));
    let hops: Vec<(String, u64)> = edges["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["to"].as_str().unwrap().to_string(), e["depth"].as_u64().unwrap()))
        .collect();
    assert_eq!(hops, [("tool:shell".to_string(), 1), ("host:1".to_string(), 2)]);
    let (status, _) = server.request(
        reqwest::Method::DELETE,
        "/v1/meta/relations",
        Some(&json!({"from": "agent-7", "to": "tool:shell", "type": "uses"})),
    );
    assert_eq!(status, 200);
}

#[test]
fn checkpoints_are_listed_valid_and_views_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let (status, body) = server.post("/v1/checkpoints", &json!({}));
    assert_eq!((status, body["error"].as_str()), (409, Some("empty_log")), "{body}");
    server.request(reqwest::Method::PUT, "/v1/kv/a", Some(&json!({"value": 1})));
    let (status, full) = server.post("/v1/checkpoints", &json!({"kind": "full"}));
    assert_eq!((status, full["kind"].as_str(), full["sequence"].as_u64()), (200, Some("full"), Some(0)), "{full}");
    let (_, b) = server.request(reqwest::Method::PUT, "/v1/kv/b", Some(&json!({"value": 2})));
    let (status, inc) = server.post_raw("/v1/checkpoints", "application/json", Vec::new());
    assert_eq!((status, inc["kind"].as_str()), (200, Some("incremental")), "{inc}");
    assert_eq!(inc["position"], b["position"]);
    assert_eq!(inc["parent"], 0);
    let (_, list) = server.get("/v1/checkpoints");
    let statuses: Vec<&str> =
        list["checkpoints"].as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["valid", "valid"]);
    let (_, c) = server.request(reqwest::Method::PUT, "/v1/kv/c", Some(&json!({"value": 3})));
    assert!(server.stop().success());

    // The restarted server restores from the checkpoints and replays the event after them.
    let server = Server::start(&data, &[]);
    let (_, many) = server.post(&format!("/v1/kv:get?min_position={}", pos(&c)), &json!({"keys": ["a", "b", "c"]}));
    assert_eq!(many["values"], json!({"a": 1, "b": 2, "c": 3}));
    assert!(server.stderr().contains("views restored"), "{}", server.stderr());
    let (_, metrics) = server.get_text("/metrics");
    assert!(metrics.contains("cairn_view_lag_events{view=\"kv\"} 0"), "{metrics}");
    let newest = format!("cairn_checkpoint_position {}", pos(&b));
    assert!(metrics.contains(&newest), "the newest checkpoint is the incremental one at b: {metrics}");
}
