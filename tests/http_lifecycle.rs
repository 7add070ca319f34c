//! The stream lifecycle over HTTP against the real binary (issue 16 items 1-4 and 7): soft
//! delete and tombstone, close, retention metadata, fork, one stream's state and the listing;
//! every refusal with its code, writing nothing; who may change a stream; a subscription of a
//! closed stream ending with its `end` marker after its last event; a key-value key absent once
//! its stream is deleted or truncated, through a checkpoint, a restart and a point-in-time
//! restore.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::{cairn, Server};

fn pos(v: &Value) -> u64 {
    v["position"].as_u64().unwrap_or_else(|| panic!("no position in {v}"))
}

fn head(server: &Server) -> Value {
    server.get("/v1/head").1["position"].clone()
}

fn delete(server: &Server, path: &str) -> (u16, Value) {
    server.request(Method::DELETE, path, None)
}

fn put(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    server.request(Method::PUT, path, Some(body))
}

#[test]
fn soft_delete_then_write_again_and_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    server.append("run-1", &[("A", json!({})), ("B", json!({}))]);

    let (status, deleted) = delete(&server, "/v1/streams/run-1");
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["stream"], "run-1");
    assert_eq!(deleted["hash"].as_str().unwrap().len(), 64);
    let (_, event) = server.get(&format!("/v1/events/{}", pos(&deleted)));
    assert_eq!((event["stream"].as_str(), event["type"].as_str()), (Some("$lifecycle"), Some("stream-deleted")));
    assert_eq!(event["data"], json!({"stream": "run-1", "before_version": 2}));

    let (status, body) = server.get("/v1/streams/run-1/events");
    assert_eq!((status, body["error"].as_str()), (404, Some("stream_deleted")), "{body}");
    let (status, info) = server.get("/v1/streams/run-1");
    assert_eq!(status, 200, "{info}");
    assert_eq!(info, json!({"stream": "run-1", "last_version": 1, "events": 0, "deleted": true, "tombstoned": false}));
    let (_, listing) = server.get("/v1/streams?prefix=run-");
    assert_eq!(listing["streams"], json!([]), "the listing leaves deleted streams out: {listing}");

    // Written again: versions continue, and reads show only what came after the delete.
    let again = server.append("run-1", &[("C", json!({}))]);
    assert_eq!(again["first_version"], 2);
    let (_, read) = server.get("/v1/streams/run-1/events");
    let types: Vec<&str> = read["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["C"]);
    let (_, state) = server.get("/v1/streams/run-1/metadata");
    assert_eq!((state["deleted"].as_bool(), state["deleted_before"].as_u64()), (Some(false), Some(2)), "{state}");

    let (status, _) = delete(&server, "/v1/streams/run-1?mode=tombstone");
    assert_eq!(status, 200);
    let before = head(&server);
    let (status, body) = server.post("/v1/streams/run-1/events", &json!({"events": [{"type": "Late"}]}));
    assert_eq!((status, body["error"].as_str()), (410, Some("stream_tombstoned")), "{body}");
    for (method, path) in [
        (Method::DELETE, "/v1/streams/run-1"),
        (Method::POST, "/v1/streams/run-1/close"),
        (Method::PUT, "/v1/streams/run-1/metadata"),
    ] {
        let (status, body) = server.request(method, path, Some(&json!({})));
        assert_eq!((status, body["error"].as_str()), (410, Some("stream_tombstoned")), "{path}: {body}");
    }
    assert_eq!(head(&server), before, "refused changes write nothing");
    let (_, info) = server.get("/v1/streams/run-1");
    assert_eq!(info["tombstoned"], true);
    // The log is the history: the global log still holds every event of the stream.
    let (_, all) = server.get("/v1/events?stream_prefix=run-1");
    assert_eq!(all["events"].as_array().unwrap().len(), 3);
}

#[test]
fn close_refuses_appends_and_metadata_limits_reads() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let events: Vec<(&str, Value)> = (0..10).map(|i| ("E", json!({"i": i}))).collect();
    server.append("chat-1", &events);

    let (status, body) = put(&server, "/v1/streams/chat-1/metadata", &json!({"max_count": 3}));
    assert_eq!(status, 200, "{body}");
    let versions = |server: &Server| -> Vec<u64> {
        let (_, read) = server.get("/v1/streams/chat-1/events");
        read["events"].as_array().unwrap().iter().map(|e| e["version"].as_u64().unwrap()).collect()
    };
    assert_eq!(versions(&server), [7, 8, 9]);
    put(&server, "/v1/streams/chat-1/metadata", &json!({"truncate_before": 8, "ttl_ms": 86_400_000}));
    assert_eq!(versions(&server), [8, 9]);
    let (status, state) = server.get("/v1/streams/chat-1/metadata");
    assert_eq!(status, 200);
    assert_eq!(
        state,
        json!({"stream": "chat-1", "max_age_ms": null, "max_count": null, "truncate_before": 8,
               "ttl_ms": 86_400_000, "closed": false, "tombstoned": false, "deleted": false,
               "last_version": 9, "deleted_before": null, "forked_from": null})
    );
    put(&server, "/v1/streams/chat-1/metadata", &json!({}));
    assert_eq!(versions(&server).len(), 10, "an empty metadata lifts every limit");

    let (status, closed) = server.post("/v1/streams/chat-1/close", &json!({}));
    assert_eq!(status, 200, "{closed}");
    let (status, body) = server.post("/v1/streams/chat-1/events", &json!({"events": [{"type": "Late"}]}));
    assert_eq!((status, body["error"].as_str()), (409, Some("stream_closed")), "{body}");
    let (_, info) = server.get("/v1/streams/chat-1");
    assert_eq!(info["closed"], true);
    let (_, listing) = server.get("/v1/streams?prefix=chat-");
    assert_eq!(listing["streams"][0]["closed"], true, "{listing}");
    // Metadata without `closed` keeps the stream closed; `closed: false` is refused.
    put(&server, "/v1/streams/chat-1/metadata", &json!({"max_count": 5}));
    assert_eq!(server.get("/v1/streams/chat-1/metadata").1["closed"], true);
    let (status, body) = put(&server, "/v1/streams/chat-1/metadata", &json!({"closed": false}));
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_stream_metadata")), "{body}");
}

#[test]
fn fork_shares_the_prefix_and_survives_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let events: Vec<(&str, Value)> = (0..5).map(|i| ("E", json!({"i": i}))).collect();
    server.append("thread-1", &events);

    let (status, fork) = server.post("/v1/streams/thread-1/fork", &json!({"to": "thread-2", "at_version": 2}));
    assert_eq!(status, 200, "{fork}");
    assert_eq!(
        (fork["stream"].as_str(), fork["source"].as_str(), fork["at_version"].as_u64()),
        (Some("thread-2"), Some("thread-1"), Some(2))
    );
    let (status, own) = server.post(
        "/v1/streams/thread-2/events",
        &json!({"expected_version": 2, "events": [{"type": "Own", "data": {"i": 99}}]}),
    );
    assert_eq!((status, own["first_version"].as_u64()), (200, Some(3)), "{own}");
    delete(&server, "/v1/streams/thread-1?mode=tombstone");
    let (_, read) = server.get("/v1/streams/thread-2/events");
    let seen: Vec<(u64, u64)> = read["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["version"].as_u64().unwrap(), e["data"]["i"].as_u64().unwrap()))
        .collect();
    assert_eq!(seen, [(0, 0), (1, 1), (2, 2), (3, 99)]);
    let (_, state) = server.get("/v1/streams/thread-2/metadata");
    assert_eq!(state["forked_from"], json!({"stream": "thread-1", "at_version": 2}));
}

#[test]
fn bad_requests_are_refused_with_their_codes_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    server.append("s", &[("E", json!({}))]);
    server.append("t", &[("E", json!({}))]);
    let before = head(&server);
    let cases: Vec<(Method, &str, Option<Value>, u16, &str)> = vec![
        (Method::DELETE, "/v1/streams/s?mode=shred", None, 400, "invalid_query"),
        (Method::DELETE, "/v1/streams/s?force=1", None, 400, "invalid_query"),
        (Method::DELETE, "/v1/streams/%24lifecycle", None, 400, "invalid_stream_name"),
        (Method::DELETE, "/v1/streams/never", None, 404, "stream_not_found"),
        (Method::PUT, "/v1/streams/s/metadata", Some(json!({"max_age_ms": -5})), 400, "invalid_body"),
        (Method::PUT, "/v1/streams/s/metadata", Some(json!({"max_count": 1.5})), 400, "invalid_body"),
        (Method::PUT, "/v1/streams/s/metadata", Some(json!({"maxcount": 1})), 400, "invalid_body"),
        (Method::PUT, "/v1/streams/s/metadata", Some(json!({"max_count": 0})), 400, "invalid_stream_metadata"),
        (Method::PUT, "/v1/streams/%24x/metadata", Some(json!({})), 400, "invalid_stream_name"),
        (Method::POST, "/v1/streams/s/close", Some(json!({"now": true})), 400, "invalid_body"),
        (Method::POST, "/v1/streams/s/fork", Some(json!({"to": "f", "at_version": 1})), 400, "fork_past_end"),
        (Method::POST, "/v1/streams/s/fork", Some(json!({"to": "t", "at_version": 0})), 409, "stream_exists"),
        (Method::POST, "/v1/streams/never/fork", Some(json!({"to": "f", "at_version": 0})), 404, "stream_not_found"),
        (Method::POST, "/v1/streams/s/fork", Some(json!({"to": "f"})), 400, "invalid_body"),
        (Method::POST, "/v1/streams/s/fork", Some(json!({"to": "$f", "at_version": 0})), 400, "invalid_stream_name"),
        (Method::POST, "/v1/streams/s/fork", Some(json!({"to": "kv:f", "at_version": 0})), 403, "reserved_stream"),
        (Method::DELETE, "/v1/streams/audit:security", None, 403, "reserved_stream"),
        (Method::POST, "/v1/streams/meta:config:global:m/close", None, 403, "reserved_stream"),
        (Method::PUT, "/v1/streams/meta:schema:s/metadata", Some(json!({"max_count": 1})), 403, "reserved_stream"),
        (Method::GET, "/v1/streams/never/metadata", None, 404, "stream_not_found"),
        (Method::GET, "/v1/streams/never", None, 404, "stream_not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = server.request(method.clone(), path, body.as_ref());
        assert_eq!((got, answer["error"].as_str()), (status, Some(code)), "{method} {path}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    }
    assert_eq!(head(&server), before, "no refused request wrote anything");
}

const AGENT: &str = "agent-token";
const DELETER: &str = "deleter-token";
const OPS: &str = "ops-token";

fn hash_line(token: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = cairn(dir.path(), &["token", "--hash", token]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

#[test]
fn changes_need_the_delete_permission_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let file = format!(
        "[[principal]]\nname = \"agent\"\n{}\nrules = [{{ prefix = \"agent-\", allow = [\"read\", \"append\"] }}]\n\n\
         [[principal]]\nname = \"janitor\"\n{}\nrules = [{{ prefix = \"agent-\", allow = [\"read\", \"delete\"] }}]\n\n\
         [[principal]]\nname = \"ops\"\n{}\nrules = [{{ prefix = \"\", allow = [\"admin\"] }}]\n",
        hash_line(AGENT),
        hash_line(DELETER),
        hash_line(OPS)
    );
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, file).unwrap();
    let mut server = Server::start(&dir.path().join("data"), &["--auth", path.to_str().unwrap()]);
    server.set_token(Some(AGENT));
    server.append("agent-1", &[("E", json!({}))]);
    server.append("agent-2", &[("E", json!({}))]);
    let before = head(&server);
    let changes: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::DELETE, "/v1/streams/agent-1", None),
        (Method::DELETE, "/v1/streams/agent-1?mode=tombstone", None),
        (Method::POST, "/v1/streams/agent-1/close", None),
        (Method::PUT, "/v1/streams/agent-1/metadata", Some(json!({"max_count": 1}))),
        (Method::POST, "/v1/streams/agent-1/fork", Some(json!({"to": "agent-9", "at_version": 0}))),
    ];
    for (method, path, body) in &changes {
        let (status, answer) = server.request(method.clone(), path, body.as_ref());
        assert_eq!((status, answer["error"].as_str()), (403, Some("forbidden")), "{method} {path}: {answer}");
    }
    assert_eq!(server.get("/v1/streams/agent-1/metadata").0, 200, "read is enough to look");

    // `delete` on the prefix: changes there, nowhere else (a fork's target needs it too).
    server.set_token(Some(DELETER));
    let (status, _) = server.post("/v1/streams/agent-1/fork", &json!({"to": "other-1", "at_version": 0}));
    assert_eq!(status, 403);
    let (status, body) = server.post("/v1/streams/agent-1/fork", &json!({"to": "agent-9", "at_version": 0}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.post("/v1/streams/agent-1/close", &json!({})).0, 200);
    assert_eq!(delete(&server, "/v1/streams/agent-2").0, 200);
    assert_ne!(head(&server), before);

    // Admin implies delete; every change and refusal is in the access audit.
    server.set_token(Some(OPS));
    assert_eq!(put(&server, "/v1/streams/agent-9/metadata", &json!({"ttl_ms": 60_000})).0, 200);
    // The audit view applies entries a moment after they are written: read up to the head.
    let (_, audit) = server.get(&format!("/v1/audit?category=authorization&limit=100&min_position={}", head(&server)));
    let entries = audit["entries"].as_array().unwrap();
    let operations: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["metadata"]["operation"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    for wanted in [
        ("POST /v1/streams/{stream}/fork", "success"),
        ("POST /v1/streams/{stream}/close", "success"),
        ("DELETE /v1/streams/{stream}", "success"),
        ("PUT /v1/streams/{stream}/metadata", "success"),
        ("DELETE /v1/streams/{stream}", "denied"),
    ] {
        assert!(operations.contains(&wanted), "{wanted:?} not in {operations:?}");
    }
}

#[test]
fn a_subscription_of_a_closed_stream_ends_after_its_last_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    server.append("run-7", &[("Step", json!({"i": 0})), ("Step", json!({"i": 1}))]);
    server.append("other", &[("Noise", json!({}))]);

    // Live: the subscriber has caught up when the stream gets its last event and is closed.
    let mut live = server.subscribe("from=0&stream=run-7", None);
    assert_eq!(live.next().unwrap().json()["data"]["i"], 0);
    assert_eq!(live.next().unwrap().json()["data"]["i"], 1);
    server.append("run-7", &[("Step", json!({"i": 2}))]);
    let (status, closed) = server.post("/v1/streams/run-7/close", &json!({}));
    assert_eq!(status, 200, "{closed}");
    server.append("other", &[("Noise", json!({}))]);
    let last = live.next().unwrap();
    assert_eq!((last.id.as_deref(), last.json()["data"]["i"].as_u64()), (Some("3"), Some(2)));
    let end = live.next().unwrap();
    assert_eq!((end.event.as_deref(), end.id.as_deref()), (Some("end"), None));
    assert_eq!(end.json(), json!({"stream": "run-7", "reason": "closed", "last_version": 2}));
    assert!(live.next().is_none(), "the event stream ends after the marker");

    // Closed before the subscription: catch-up delivers everything (a type filter too), then ends.
    let mut late = server.subscribe("from=0&stream=run-7&type_prefix=Step", None);
    let ids: Vec<String> = (0..3).map(|_| late.next().unwrap().id.unwrap()).collect();
    assert_eq!(ids, ["0", "1", "3"]);
    assert_eq!(late.next().unwrap().event.as_deref(), Some("end"));
    assert!(late.next().is_none());
    let mut from_end = server.subscribe("stream=run-7", None);
    assert_eq!(from_end.next().unwrap().event.as_deref(), Some("end"), "nothing left to deliver");
    // A tombstone ends one too; a subscription of a prefix never gets a marker.
    server.append("run-8", &[("Step", json!({}))]);
    let mut tomb = server.subscribe("from=0&stream=run-8", None);
    assert!(tomb.next().unwrap().event.is_none());
    delete(&server, "/v1/streams/run-8?mode=tombstone");
    assert_eq!(tomb.next().unwrap().json()["reason"], "tombstoned");
}

#[test]
fn a_deleted_or_truncated_kv_stream_is_an_absent_key_through_checkpoints_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    for (key, value) in [("a", 1), ("b", 2), ("c", 3)] {
        assert_eq!(put(&server, &format!("/v1/kv/{key}"), &json!({"value": value})).0, 200);
    }
    let (_, full) = server.post("/v1/checkpoints", &json!({"kind": "full"}));
    let before_delete = pos(&full);

    let (status, deleted) = delete(&server, "/v1/streams/kv:a");
    assert_eq!(status, 200, "{deleted}");
    let at = pos(&deleted);
    let (status, body) = server.get(&format!("/v1/kv/a?min_position={at}"));
    assert_eq!((status, body["error"].as_str()), (404, Some("key_not_found")), "{body}");
    // Truncated past its last version: no event of kv:c is readable, so neither is the key.
    let (_, truncated) = put(&server, "/v1/streams/kv:c/metadata", &json!({"truncate_before": 1}));
    let (status, _) = server.get(&format!("/v1/kv/c?min_position={}", pos(&truncated)));
    assert_eq!(status, 404);
    let (_, keys) = server.get("/v1/kv");
    assert_eq!(keys["keys"], json!(["b"]));
    let (_, many) = server.post("/v1/kv:get", &json!({"keys": ["a", "b", "c"]}));
    assert_eq!(many["values"], json!({"a": null, "b": 2, "c": null}));

    // An incremental checkpoint holds the removal; a restart restores from it.
    let (status, inc) = server.post("/v1/checkpoints", &json!({}));
    assert_eq!((status, inc["kind"].as_str()), (200, Some("incremental")), "{inc}");
    // Written again: the key starts afresh (an increment counts from nothing, not from 1).
    let (_, incr) = server.post("/v1/kv/a/incr", &json!({"delta": 5}));
    assert_eq!(incr["value"], 5, "{incr}");
    let (_, d2) = delete(&server, "/v1/streams/kv:b");
    assert!(server.stop().success());

    let server = Server::start(&data, &[]);
    let (_, many) = server.post(&format!("/v1/kv:get?min_position={}", pos(&d2)), &json!({"keys": ["a", "b", "c"]}));
    assert_eq!(many["values"], json!({"a": 5, "b": null, "c": null}), "checkpoint + tail reproduce the deletes");
    let (_, health) = server.get("/healthz");
    assert_eq!(health["status"], "ok", "{health}");
    assert!(server.stop().success());

    // A point-in-time copy from before the delete holds the key; the drill agrees with itself.
    let copy = dir.path().join("copy");
    let (code, _, err) = cairn(&data, &["restore", "--to", copy.to_str().unwrap(), "--at", &before_delete.to_string()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cairn(&copy, &["kv", "get", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cairn(&data, &["kv", "get", "a", "-o", "json"]);
    assert_eq!((code, serde_json::from_str::<Value>(&out).unwrap()["value"].as_i64()), (0, Some(5)), "{err}");
    let (code, out, err) = cairn(&data, &["drill", "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["ok"], true);
}

/// A key whose stream's `ttl_ms` has passed by the log's clock (the newest event's timestamp,
/// moved here by appends elsewhere, never by waiting) is absent; written again, it starts
/// afresh, as the log writes the expiry as a delete before that write.
#[test]
fn a_kv_stream_expired_by_its_ttl_on_the_logs_clock_is_an_absent_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (_, set) = server.post("/v1/kv/n/incr", &json!({"delta": 41}));
    let (status, meta) = put(&server, "/v1/streams/kv:n/metadata", &json!({"ttl_ms": 1}));
    assert_eq!(status, 200, "{meta}");
    let (_, written) = server.get(&format!("/v1/events/{}", pos(&set)));
    let written_at = written["timestamp"].as_str().unwrap().to_string();
    // Move the log's clock past the ttl with appends to another stream (timestamps are
    // milliseconds; the bound turns a clock that never moves into a failure, not a hang).
    let mut last = Value::Null;
    for _ in 0..100_000 {
        last = server.append("ticks", &[("Tick", json!({}))]);
        let (_, tick) = server.get(&format!("/v1/events/{}", last["last_position"]));
        if tick["timestamp"].as_str().unwrap() > written_at.as_str() {
            break;
        }
    }
    let at = last["last_position"].as_u64().unwrap();
    let (status, body) = server.get(&format!("/v1/kv/n?min_position={at}"));
    assert_eq!((status, body["error"].as_str()), (404, Some("key_not_found")), "{body}");
    let (_, keys) = server.get(&format!("/v1/kv?min_position={at}"));
    assert_eq!(keys["keys"], json!([]));
    let (status, incr) = server.post("/v1/kv/n/incr", &json!({"delta": 1}));
    assert_eq!((status, incr["value"].as_i64()), (200, Some(1)), "the expired key counts from nothing: {incr}");
}

/// Issue 16 item 5: `POST /v1/erase` masks the range at once on every read (stream, global,
/// one position, subscriptions), keeps the chain verifiable, records the erasure as a
/// `stream-erased` event and an audit entry, and refuses bad requests writing nothing.
#[test]
fn erase_masks_payloads_everywhere_and_refuses_bad_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    server.append("chat-1", &[("Said", json!({"i": 0})), ("Said", json!({"card": "4111"})), ("Said", json!({"i": 2}))]);
    let (status, erased) = server.post(
        "/v1/erase",
        &json!({"stream": "chat-1", "from_version": 1, "to_version": 1, "reason": "GDPR request 118"}),
    );
    assert_eq!(status, 200, "{erased}");
    assert_eq!((erased["from_version"].as_u64(), erased["to_version"].as_u64()), (Some(1), Some(1)), "{erased}");
    assert_eq!(erased["checkpoints_before"], 0);
    let (_, event) = server.get(&format!("/v1/events/{}", pos(&erased)));
    assert_eq!(event["type"], "stream-erased");
    assert_eq!(
        event["data"],
        json!({"stream": "chat-1", "from_version": 1, "to_version": 1, "reason": "GDPR request 118"})
    );

    let masked = |e: &Value| {
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        e["erased"] == true && !keys.contains(&"data") && !keys.contains(&"metadata") && e["hash"].is_string()
    };
    let (_, read) = server.get("/v1/streams/chat-1/events");
    let events = read["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(masked(&events[1]) && events[1]["version"] == 1, "{read}");
    assert!(!masked(&events[0]) && events[2]["data"]["i"] == 2 && events[0].get("erased").is_none(), "{read}");
    let (_, all) = server.get("/v1/events?stream_prefix=chat-");
    assert!(masked(&all["events"][1]), "{all}");
    assert!(masked(&server.get("/v1/events/1").1));
    let mut sub = server.subscribe("from=0&stream=chat-1", None);
    let seen: Vec<bool> = (0..3).map(|_| masked(&sub.next().unwrap().json())).collect();
    assert_eq!(seen, [false, true, false]);
    let (_, verify) = server.post("/v1/verify", &json!({}));
    assert_eq!(verify["ok"], true, "the chain covers digests, not payloads: {verify}");
    // Who, why and which range, in the audit view.
    let (_, audit) = server.get(&format!("/v1/audit?category=data_access&min_position={}", erased["audit_position"]));
    let entry = &audit["entries"][0];
    assert_eq!(
        (entry["event"].as_str(), entry["target"]["id"].as_str()),
        (Some("data.erased"), Some("chat-1")),
        "{audit}"
    );
    assert_eq!(entry["metadata"]["reason"], "GDPR request 118");
    assert_eq!(
        (entry["metadata"]["from_version"].as_u64(), entry["metadata"]["to_version"].as_u64()),
        (Some(1), Some(1))
    );

    // Defaults: the whole stream.
    server.append("chat-2", &[("Said", json!({})), ("Said", json!({}))]);
    let (status, whole) = server.post("/v1/erase", &json!({"stream": "chat-2", "reason": "account closed"}));
    assert_eq!((status, whole["from_version"].as_u64(), whole["to_version"].as_u64()), (200, Some(0), Some(1)));

    server.append("gone", &[("Said", json!({}))]);
    delete(&server, "/v1/streams/gone?mode=tombstone");
    let before = head(&server);
    for (body, want_status, want) in [
        (json!({"stream": "chat-1", "from_version": 2, "to_version": 5, "reason": "r"}), 400, "erase_out_of_range"),
        (json!({"stream": "chat-1", "from_version": 2, "to_version": 1, "reason": "r"}), 400, "invalid_input"),
        (json!({"stream": "chat-1", "reason": ""}), 400, "invalid_input"),
        (json!({"stream": "chat-1"}), 400, "invalid_body"),
        (json!({"stream": "chat-1", "reason": "r", "all": true}), 400, "invalid_body"),
        (json!({"stream": "chat-1", "from_version": -1, "reason": "r"}), 400, "invalid_body"),
        (json!({"stream": "nobody", "reason": "r"}), 404, "stream_not_found"),
        (json!({"stream": "gone", "reason": "r"}), 410, "stream_tombstoned"),
        (json!({"stream": "$lifecycle", "reason": "r"}), 400, "invalid_stream_name"),
        (json!({"stream": "audit:x", "reason": "r"}), 403, "reserved_stream"),
    ] {
        let (status, answer) = server.post("/v1/erase", &body);
        assert_eq!((status, answer["error"].as_str()), (want_status, Some(want)), "{body}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    }
    assert_eq!(head(&server), before, "refused erasures write nothing");
}

const ERASER: &str = "eraser-token";

/// Erasing needs `erase` on the stream (`delete` or `append` is not enough; `admin` is); the
/// `stream-erased` event carries the caller's principal.
#[test]
fn erase_needs_the_erase_permission_and_names_the_principal() {
    let dir = tempfile::tempdir().unwrap();
    let file = format!(
        "[[principal]]\nname = \"janitor\"\n{}\nrules = [{{ prefix = \"agent-\", allow = [\"read\", \"append\", \"delete\"] }}]\n\n\
         [[principal]]\nname = \"dpo\"\n{}\nrules = [{{ prefix = \"agent-\", allow = [\"read\", \"erase\"] }}]\n",
        hash_line(DELETER),
        hash_line(ERASER),
    );
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, file).unwrap();
    let mut server = Server::start(&dir.path().join("data"), &["--auth", path.to_str().unwrap()]);
    server.set_token(Some(DELETER));
    server.append("agent-1", &[("E", json!({"secret": 1}))]);
    let (status, answer) = server.post("/v1/erase", &json!({"stream": "agent-1", "reason": "r"}));
    assert_eq!((status, answer["error"].as_str()), (403, Some("forbidden")), "{answer}");
    server.set_token(Some(ERASER));
    let (status, answer) = server.post("/v1/erase", &json!({"stream": "other", "reason": "r"}));
    assert_eq!(status, 403, "{answer}");
    let (status, erased) = server.post("/v1/erase", &json!({"stream": "agent-1", "reason": "r"}));
    assert_eq!(status, 200, "{erased}");
    assert_eq!(server.get("/v1/streams/agent-1/events").1["events"][0]["erased"], true);
    let data = dir.path().join("data");
    drop(server);
    let (code, out, err) = cairn(&data, &["read-all", "-o", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    let lifecycle: Value =
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|e| e["type"] == "stream-erased").unwrap();
    assert_eq!(lifecycle["metadata"]["$principal"], "dpo", "{lifecycle}");
}

/// `GET /v1/streams?include_deleted=true` lists the deleted and tombstoned streams too, each
/// saying which; without it they are left out, as before.
#[test]
fn the_listing_includes_deleted_streams_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    for stream in ["l-live", "l-soft", "l-tomb"] {
        server.append(stream, &[("E", json!({})), ("E", json!({}))]);
    }
    assert_eq!(delete(&server, "/v1/streams/l-soft").0, 200);
    assert_eq!(delete(&server, "/v1/streams/l-tomb?mode=tombstone").0, 200);
    let (_, plain) = server.get("/v1/streams?prefix=l-");
    assert_eq!(plain["streams"], json!([{"stream": "l-live", "last_version": 1, "events": 2}]), "{plain}");
    let (status, all) = server.get("/v1/streams?prefix=l-&include_deleted=true");
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        all["streams"],
        json!([
            {"stream": "l-live", "last_version": 1, "events": 2, "deleted": false, "tombstoned": false},
            {"stream": "l-soft", "last_version": 1, "events": 0, "deleted": true, "tombstoned": false},
            {"stream": "l-tomb", "last_version": 1, "events": 0, "deleted": true, "tombstoned": true},
        ]),
        "{all}"
    );
    let (status, bad) = server.get("/v1/streams?include_deleted=maybe");
    assert_eq!((status, bad["error"].as_str()), (400, Some("invalid_query")), "{bad}");
}
