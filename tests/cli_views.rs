//! The view commands from the command line: `kv` (get, set with compare-and-set, del, incr,
//! list, history), `audit` (append, query, proof) and `meta` (schemas, services, configuration,
//! relations), with their exit codes: 5 not found, 4 a lost compare-and-set, 3 an invalid
//! payload, 2 bad input. Each command restores the views from the log (and checkpoints) anew.

mod support;

use serde_json::{json, Value};
use support::cairn;

fn ok(data: &std::path::Path, args: &[&str]) -> String {
    let (code, out, err) = cairn(data, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

fn json_of(data: &std::path::Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(data, args)).unwrap()
}

#[test]
fn key_value_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(ok(&data, &["kv", "set", "session/42", "{\"step\":1}"]).starts_with("set session/42: version 0"));
    assert_eq!(ok(&data, &["kv", "get", "session/42"]).trim(), "{\"step\":1}");
    assert_eq!(
        json_of(&data, &["kv", "get", "session/42", "-o", "json"]),
        json!({"key": "session/42", "value": {"step": 1}, "version": 0, "expires_at": null})
    );
    ok(&data, &["kv", "set", "greeting", "hello"]);
    assert_eq!(ok(&data, &["kv", "get", "greeting"]).trim(), "\"hello\"", "text that is not JSON is a string");

    let (code, _, err) = cairn(&data, &["kv", "set", "session/42", "2", "--expected-version", "5"]);
    assert_eq!(code, 4, "{err}");
    ok(&data, &["kv", "set", "session/42", "2", "--expected-version", "0"]);
    let (code, _, err) = cairn(&data, &["kv", "get", "nothing"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("key \"nothing\" not found"), "{err}");

    assert_eq!(ok(&data, &["kv", "incr", "visits", "--by", "5"]).trim(), "5");
    assert_eq!(ok(&data, &["kv", "incr", "visits", "--by", "-2"]).trim(), "3");
    let (code, _, err) = cairn(&data, &["kv", "incr", "greeting"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not an integer"), "{err}");

    assert_eq!(ok(&data, &["kv", "list"]).lines().collect::<Vec<_>>(), ["greeting", "session/42", "visits"]);
    assert_eq!(
        json_of(&data, &["kv", "list", "--prefix", "s", "-o", "json"]),
        json!({"keys": ["session/42"], "next": null})
    );
    let history = json_of(&data, &["kv", "history", "session/42", "-o", "json"]);
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);
    assert_eq!(history["versions"][0]["value"], 2, "newest first");
    let deleted = json_of(&data, &["kv", "del", "greeting", "-o", "json"]);
    assert_eq!(deleted["deleted"], true);
    assert_eq!(cairn(&data, &["kv", "get", "greeting"]).0, 5);
}

#[test]
fn audit_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let appended = json_of(
        &data,
        &[
            "audit",
            "append",
            "--level",
            "info",
            "--category",
            "agent_activity",
            "--event",
            "tool.called",
            "--actor",
            "agent-7",
            "--target-type",
            "tool",
            "--target",
            "shell",
            "--outcome",
            "success",
            "--trace-id",
            "t-1",
            "-o",
            "json",
        ],
    );
    let entry =
        r#"{"level":"warn","category":"security","event":"tool.denied","actor":{"type":"agent","id":"agent-8"}}"#;
    ok(&data, &["audit", "append", "--entry", entry]);
    let page = json_of(&data, &["audit", "query", "--actor", "agent-7", "-o", "json"]);
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["entries"][0]["context"]["trace_id"], "t-1");
    assert_eq!(page["entries"][0]["id"], appended["id"]);
    let lines = ok(&data, &["audit", "query", "--category", "security", "-o", "ndjson"]);
    assert_eq!(lines.lines().count(), 1);
    let text = ok(&data, &["audit", "query"]);
    assert!(text.lines().next().unwrap().contains("tool.denied"), "newest first: {text}");
    let proof = ok(&data, &["audit", "proof", appended["id"].as_str().unwrap()]);
    assert!(proof.starts_with("verified"), "{proof}");
    let (code, _, err) =
        cairn(&data, &["audit", "append", "--level", "loud", "--category", "security", "--event", "e", "--actor", "a"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = cairn(&data, &["audit", "proof", "0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c11"]);
    assert_eq!(code, 5);
}

#[test]
fn metadata_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let schema = r#"{"type":"object","properties":{"tool":{"type":"string"}},"required":["tool"]}"#;
    assert!(ok(&data, &["meta", "schema", "register", "tool-call", schema]).contains("version 1"));
    assert!(ok(&data, &["meta", "schema", "register", "tool-call", schema]).contains("nothing was written"));
    assert_eq!(cairn(&data, &["meta", "schema", "validate", "tool-call", r#"{"tool":"x"}"#]).0, 0);
    let (code, out, _) = cairn(&data, &["meta", "schema", "validate", "tool-call", "{}"]);
    // Issue 23 (low): 3 means integrity failure; an invalid payload is an ordinary error.
    assert_eq!(code, 1, "an invalid payload exits 1: {out}");
    assert_eq!(json_of(&data, &["meta", "schema", "get", "tool-call", "1", "-o", "json"])["version"], 1);
    assert_eq!(ok(&data, &["meta", "schema", "list"]).trim(), "tool-call");

    ok(&data, &["meta", "service", "register", "search", "i-1", "--endpoint", "http://x", "--tag", "gpu"]);
    let found = json_of(&data, &["meta", "service", "list", "--tag", "gpu", "-o", "json"]);
    assert_eq!(found["instances"][0]["instance"], "i-1");
    ok(&data, &["meta", "service", "deregister", "search", "i-1"]);
    assert_eq!(json_of(&data, &["meta", "service", "list", "-o", "json"])["instances"], json!([]));

    ok(&data, &["meta", "config", "set", "model", "small", "--scope", "planner"]);
    ok(&data, &["meta", "config", "set", "model", "large", "--scope", "planner"]);
    assert_eq!(ok(&data, &["meta", "config", "get", "model", "--scope", "planner"]).trim(), "\"large\"");
    assert_eq!(
        ok(&data, &["meta", "config", "get", "model", "--scope", "planner", "--version", "1"]).trim(),
        "\"small\""
    );
    assert_eq!(cairn(&data, &["meta", "config", "get", "model"]).0, 5, "another scope has no such key");
    let history = json_of(&data, &["meta", "config", "history", "model", "--scope", "planner", "-o", "json"]);
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);

    ok(&data, &["meta", "relate", "agent-7", "tool:shell", "uses"]);
    ok(&data, &["meta", "relate", "tool:shell", "host:1", "runs_on"]);
    let edges = json_of(&data, &["meta", "relations", "agent-7", "--depth", "2", "-o", "json"]);
    assert_eq!(edges["edges"].as_array().unwrap().len(), 2);
    ok(&data, &["meta", "unrelate", "agent-7", "tool:shell", "uses"]);
    assert_eq!(cairn(&data, &["meta", "unrelate", "agent-7", "tool:shell", "uses"]).0, 5);
}
