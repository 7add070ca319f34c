//! Issue 14 item 1 and issue 23 item 7: events a view cannot digest never break the store.
//!
//! The attack: two small appends to `kv:<key>`, a `kv.set` whose value a parser skims but cannot
//! parse (nested ~200 deep, `1e999999`, a lone surrogate `"\ud800"`), then a `kv.incr`. Before
//! the fix the views stopped, and every later start of `serve`, `cairn kv` and `cairn drill`
//! panicked on the stored value.
//!
//! Two defences, each tested on its own:
//! - at the door (`cairn serve`): a raw append to a view's stream is `403 reserved_stream`, and
//!   JSON cairn could not read back is `400` naming the rule (`JSON_DEPTH_MAX`, the number
//!   range, Unicode), on every stream, as JSON or MessagePack, and through the views' own writes;
//! - in the views: the same events appended with the log engine directly (past every door) are
//!   skipped and recorded as the view's apply errors; the store restarts, `cairn kv` answers,
//!   `cairn drill` passes, `/healthz` says `degraded` with the position, and `/metrics` counts
//!   them. A key's version still follows its stream, so compare-and-set works after them.

mod support;

use log_engine::{ExpectedVersion, Log, NewEvent, Options, Payload};
use reqwest::Method;
use serde_json::{json, Value};
use support::{cairn, Server};

/// `kv.set` values that a raw-value skim accepts and a full parse refuses.
fn bad_values() -> Vec<(&'static str, String)> {
    vec![
        ("deep", format!("{}1{}", "[".repeat(200), "]".repeat(200))),
        ("huge", "1e999999".to_string()),
        ("surrogate", r#""\ud800""#.to_string()),
    ]
}

fn raw(event_type: &str, data: &str) -> NewEvent {
    NewEvent { id: None, event_type: event_type.to_string(), metadata: Vec::new(), data: Payload::Json(data.into()) }
}

/// Engine level: the events are in the log; every path that replays them survives.
#[test]
fn views_skip_undigestible_events_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = Log::open(&data, Options::default()).unwrap();
    for (name, value) in bad_values() {
        let events = vec![
            raw("kv.set", r#"{"value": 41}"#),
            raw("kv.set", &format!(r#"{{"value": {value}}}"#)),
            raw("kv.incr", r#"{"delta": 1}"#),
        ];
        log.append(&format!("kv:{name}"), ExpectedVersion::Any, events).unwrap();
    }
    // A raw event of a type the view does not know leaves the key's stream one version ahead.
    log.append("kv:huge", ExpectedVersion::Any, vec![raw("Raw", "{}")]).unwrap();
    log.close();

    // `cairn kv` replays the log from position 0 (it panicked here before the fix).
    for (name, _) in bad_values() {
        let (code, out, err) = cairn(&data, &["kv", "get", name, "-o", "json"]);
        assert_eq!(code, 0, "kv get {name}: {err}");
        let entry: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(entry["value"], 42, "{name}: the bad set is skipped, the increment counts from 41");
    }
    let (code, out, err) = cairn(&data, &["kv", "get", "huge", "-o", "json"]);
    assert_eq!((code, serde_json::from_str::<Value>(&out).unwrap()["version"].clone()), (0, json!(3)), "{err}");

    // The server starts, reports the skipped events, and serves the keys.
    let server = Server::start(&data, &[]);
    let (status, health) = server.get("/healthz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    let kv = health["views"].as_array().unwrap().iter().find(|v| v["name"] == "kv").unwrap().clone();
    assert_eq!(kv["errors"], 3, "{health}");
    assert!(kv["last_error"]["position"].is_u64(), "{health}");
    assert!(kv["last_error"]["reason"].as_str().unwrap().contains("cannot be stored"), "{health}");
    let (_, metrics) = server.get_text("/metrics");
    assert!(metrics.contains("cairn_view_apply_errors_total{view=\"kv\"} 3"), "{metrics}");

    // issue 23 item 7: GET -> PUT compare-and-set succeeds though a raw event moved the stream.
    let (status, entry) = server.get("/v1/kv/huge");
    assert_eq!((status, entry["version"].clone()), (200, json!(3)), "{entry}");
    let (status, body) =
        server.request(Method::PUT, "/v1/kv/huge", Some(&json!({"value": 43, "expected_version": entry["version"]})));
    assert_eq!(status, 200, "compare-and-set on the version GET answered: {body}");
    let (status, body) = server.post("/v1/kv/huge/incr", &json!({"delta": 1}));
    assert_eq!((status, body["value"].clone()), (200, json!(44)), "{body}");
    server.stop();

    // A checkpoint, then the restore path (checkpoint + tail) and the drill's two rebuilds.
    let (code, _, err) = cairn(&data, &["checkpoint", "--full"]);
    assert_eq!(code, 0, "checkpoint: {err}");
    let mut log = Log::open(&data, Options::default()).unwrap();
    log.append("kv:deep", ExpectedVersion::Any, vec![raw("kv.set", &format!(r#"{{"value": {}}}"#, bad_values()[0].1))])
        .unwrap();
    log.append("kv:deep", ExpectedVersion::Any, vec![raw("kv.incr", r#"{"delta": 2}"#)]).unwrap();
    log.close();
    log = Log::open(&data, Options::default()).unwrap();
    log.close();
    let (code, out, err) = cairn(&data, &["kv", "get", "deep", "-o", "json"]);
    assert_eq!(code, 0, "kv get after a checkpoint: {err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["value"], 44, "{out}");
    let scratch = dir.path().join("scratch");
    let (code, out, err) = cairn(&data, &["drill", "--scratch", scratch.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code, 0, "drill: {out} {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true, "{report}");
}

fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

/// At the door: the attack through HTTP is refused twice over, and writes nothing.
#[test]
fn http_refuses_raw_view_appends_and_unreadable_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let body = |value: &str| format!(r#"{{"events": [{{"type": "kv.set", "data": {{"value": {value}}}}}]}}"#);

    for (name, value) in bad_values() {
        // The views' streams are reserved, for everyone, whatever the payload.
        for stream in [format!("kv:{name}"), format!("audit:{name}"), format!("meta:config:global:{name}")] {
            let path = format!("/v1/streams/{}/events", stream.replace(':', "%3A"));
            let (status, err) = server.post_raw(&path, "application/json", body("1").into_bytes());
            assert_eq!((status, err["error"].as_str()), (403, Some("reserved_stream")), "{stream}: {err}");
            assert!(err["message"].as_str().unwrap().contains("allow_reserved"), "{err}");
        }
        let multi = format!(r#"{{"appends": [{{"stream": "kv:{name}", "events": [{{"type": "kv.set"}}]}}]}}"#);
        let (status, err) = server.post_raw("/v1/append", "application/json", multi.into_bytes());
        assert_eq!((status, err["error"].as_str()), (403, Some("reserved_stream")), "{err}");

        // The admin override opens the stream, and the JSON rules still hold there.
        let path = format!("/v1/streams/kv%3A{name}/events?allow_reserved=true");
        let (status, err) = server.post_raw(&path, "application/json", body(&value).into_bytes());
        assert_eq!(status, 400, "{name}: {err}");
        // And on any other stream, in data and in metadata.
        let (status, err) =
            server.post_raw("/v1/streams/agent-7/events", "application/json", body(&value).into_bytes());
        assert_eq!(status, 400, "{name}: {err}");
        let message = err["message"].as_str().unwrap().to_string();
        let expected = match name {
            "deep" => "nested deeper than 64 levels (JSON_DEPTH_MAX)",
            "huge" => "outside the 64-bit floating-point range",
            _ => "not valid Unicode",
        };
        assert!(message.contains(expected) && message.contains("data of event 0"), "{name}: {message}");
        let meta = format!(r#"{{"events": [{{"type": "T", "metadata": {{"m": {value}}}}}]}}"#);
        let (status, err) = server.post_raw("/v1/streams/agent-7/events", "application/json", meta.into_bytes());
        assert_eq!(status, 400, "{name} in metadata: {err}");
        assert!(err["message"].as_str().unwrap().contains("metadata of event 0"), "{err}");
    }
    // Depth 64 is the limit itself: accepted.
    let (status, ok) =
        server.post("/v1/streams/agent-7/events", &json!({"events": [{"type": "T", "data": nested(64)}]}));
    assert_eq!(status, 200, "{ok}");
    let (status, err) =
        server.post("/v1/streams/agent-7/events", &json!({"events": [{"type": "T", "data": nested(65)}]}));
    assert_eq!(status, 400, "{err}");

    // MessagePack can carry what JSON cannot: an infinity would have been stored as null.
    let msgpack = rmp_serde::to_vec_named(&json!({"events": [{"type": "T", "data": {"x": 1}}]})).unwrap();
    let (status, _) = server.post_raw("/v1/streams/agent-7/events", "application/msgpack", msgpack);
    assert_eq!(status, 200);
    #[derive(serde::Serialize)]
    struct Event {
        r#type: &'static str,
        data: Vec<f64>,
    }
    #[derive(serde::Serialize)]
    struct Append {
        events: Vec<Event>,
    }
    let infinite = rmp_serde::to_vec_named(&Append { events: vec![Event { r#type: "T", data: vec![f64::INFINITY] }] });
    let (status, err) = server.post_raw("/v1/streams/agent-7/events", "application/msgpack", infinite.unwrap());
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("JSON cannot carry"), "{err}");

    // The views' own writes follow the same depth rule.
    let (status, err) = server.request(Method::PUT, "/v1/kv/deep", Some(&json!({"value": nested(100)})));
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_json")), "{err}");
    assert!(err["message"].as_str().unwrap().contains("JSON_DEPTH_MAX"), "{err}");
    let (status, err) = server.post("/v1/kv/deep/push", &json!({"values": [nested(70)]}));
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_json")), "{err}");
    let (status, err) = server.request(Method::PUT, "/v1/meta/config/deep", Some(&json!({"value": {"a": nested(70)}})));
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_json")), "{err}");

    // Nothing of it was written: only the two accepted appends are in the log.
    let (_, head) = server.get("/v1/head");
    assert_eq!(head["position"], 1, "{head}");
    let (status, health) = server.get("/healthz");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")), "{health}");
    server.stop();
}

/// The command line refuses the same: a raw append to a view's stream, and unreadable JSON.
#[test]
fn cli_refuses_raw_view_appends_and_unreadable_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, _, err) = cairn(&data, &["append", "kv:k", "--type", "kv.set", "--data", r#"{"value": 1}"#]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("belongs to the key-value view") && err.contains("--allow-reserved"), "{err}");
    for (name, value) in bad_values() {
        let data_arg = format!(r#"{{"value": {value}}}"#);
        let (code, _, err) =
            cairn(&data, &["append", "kv:k", "--allow-reserved", "--type", "kv.set", "--data", &data_arg]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains("--data cannot be stored"), "{name}: {err}");
    }
    let (code, _, err) =
        cairn(&data, &["append", "kv:k", "--allow-reserved", "--type", "kv.set", "--data", r#"{"value": 1}"#]);
    assert_eq!(code, 0, "the override appends: {err}");
}
