//! Issue 14 item 10, "silently wrong answers": nothing a client sends may be dropped while the
//! answer says 200. Unknown body fields (at any depth), unknown query parameters, and bytes
//! after a MessagePack body are refused with a 400 naming them; `HEAD /v1/kv/{key}` is
//! EXISTS for every kind of value (200 or 404, never 400 for a list or a set).

mod support;

use serde_json::{json, Value};
use support::Server;

fn audit_entry() -> Value {
    json!({"level": "info", "category": "security", "event": "login",
           "actor": {"type": "user", "id": "u-1"}})
}

/// Issue 14 item 10: `POST /v1/audit` with an unknown field (`checksum`) answered 200 and
/// dropped it; so did unknown fields nested in the entry and in other bodies.
#[test]
fn unknown_body_fields_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);

    let mut entry = audit_entry();
    entry["checksum"] = json!("abc");
    let (status, body) = server.post("/v1/audit", &entry);
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("checksum"), "the message names the field: {body}");

    let mut nested = audit_entry();
    nested["actor"]["clearance"] = json!("top");
    let (status, body) = server.post("/v1/audit", &nested);
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("actor.clearance"), "{body}");

    // Nothing was written by the refused requests; the entry without them is accepted.
    let (status, body) = server.get("/v1/audit");
    assert_eq!((status, body["entries"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
    let (status, body) = server.post("/v1/audit", &audit_entry());
    assert_eq!(status, 200, "{body}");

    // The same rule for the other bodies: a service registration, a transaction's operation,
    // an optional body.
    let (status, body) = server.request(
        reqwest::Method::PUT,
        "/v1/meta/services/search/instances/i-1",
        Some(&json!({"endpoints": ["http://a"], "ttl_ms": 1000, "weight": 3})),
    );
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")), "{body}");
    let (status, body) = server.post("/v1/kv:txn", &json!({"ops": [{"op": "set", "key": "k", "value": 1, "ttl": 5}]}));
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")), "{body}");
    let (status, body) = server.post("/v1/kv/n/incr", &json!({"delta": 1, "by": 2}));
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")), "{body}");
    let (status, body) = server.get("/v1/kv/n");
    assert_eq!((status, body["error"].as_str()), (404, Some("key_not_found")), "nothing written: {body}");
}

/// Issue 14 item 10: `GET /v1/kv/{key}?version=0` ignored the parameter and answered the latest
/// value; endpoints without query parameters ignored any.
#[test]
fn unknown_query_parameters_are_refused_on_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    assert_eq!(server.request(reqwest::Method::PUT, "/v1/kv/k", Some(&json!({"value": 1}))).0, 200);

    for path in [
        "/v1/kv/k?versoin=0",
        "/v1/head?from=3",
        "/v1/streams?prefx=a",
        "/v1/events?stream=a",
        "/v1/kv/k/members?limit=3",
        "/healthz?verbose=1",
        "/v1/checkpoints?kind=full",
    ] {
        let (status, body) = server.get(path);
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_query")), "GET {path}: {body}");
        let name = path.split('?').nth(1).unwrap().split('=').next().unwrap();
        assert!(body["message"].as_str().unwrap().contains(&format!("{name:?}")), "names {name}: {body}");
    }
    let (status, body) = server.post("/v1/streams/s/events?expected_version=3", &json!({"events": [{"type": "t"}]}));
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_query")), "{body}");
    let (status, body) = server.get("/v1/streams/s/events");
    assert_eq!((status, body["error"].as_str()), (404, Some("stream_not_found")), "nothing appended: {body}");

    // Documented parameters still work.
    let (status, body) = server.get("/v1/kv/k?min_position=0");
    assert_eq!((status, &body["value"]), (200, &json!(1)), "{body}");
}

/// Issue 14 item 10: a MessagePack body followed by more bytes was read as its first value and
/// the rest silently ignored.
#[test]
fn messagepack_bodies_with_trailing_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let request = json!({"events": [{"type": "t", "data": {"n": 1}}]});
    let mut bytes = rmp_serde::to_vec_named(&request).unwrap();
    let clean = bytes.clone();
    bytes.extend_from_slice(&rmp_serde::to_vec_named(&request).unwrap());
    let (status, body) = server.post_raw("/v1/streams/s/events", "application/msgpack", bytes);
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("after its MessagePack value"), "{body}");
    let (status, _) = server.get("/v1/streams/s/events");
    assert_eq!(status, 404, "the refused body wrote nothing");

    let (status, body) = server.post_raw("/v1/streams/s/events", "application/msgpack", clean);
    assert_eq!((status, body["first_version"].as_u64()), (200, Some(0)), "{body}");
}

/// Issue 14 item 10: `HEAD /v1/kv/{key}` answered 400 `wrong_type` for lists and sets (it ran
/// GET); it is EXISTS: 200 for a key of any kind, 404 for an absent one.
#[test]
fn head_of_a_key_is_exists_for_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    assert_eq!(server.request(reqwest::Method::PUT, "/v1/kv/plain", Some(&json!({"value": "v"}))).0, 200);
    assert_eq!(server.post("/v1/kv/counter/incr", &json!({"delta": 2})).0, 200);
    assert_eq!(server.post("/v1/kv/queue/push", &json!({"values": [1, 2]})).0, 200);
    let (status, added) = server.post("/v1/kv/tags/sadd", &json!({"members": ["a"]}));
    assert_eq!(status, 200);
    let last = added["position"].as_u64().unwrap();

    let client = reqwest::blocking::Client::new();
    let head = |key: &str| {
        let r = client.head(server.url(&format!("/v1/kv/{key}?min_position={last}"))).send().unwrap();
        r.status().as_u16()
    };
    for key in ["plain", "counter", "queue", "tags"] {
        assert_eq!(head(key), 200, "HEAD /v1/kv/{key}");
    }
    assert_eq!(head("absent"), 404);
    let (status, _) = server.post("/v1/kv/queue/pop", &json!({"count": 2}));
    assert_eq!(status, 200);
    assert_eq!(server.request(reqwest::Method::DELETE, "/v1/kv/plain", None).0, 200);
    let (_, head_now) = server.get("/v1/head");
    let last = head_now["position"].as_u64().unwrap();
    let gone = client.head(server.url(&format!("/v1/kv/plain?min_position={last}"))).send().unwrap();
    assert_eq!(gone.status().as_u16(), 404, "a deleted key does not exist");
}

/// Issue 14 item 10: `GET /v1/kv/{key}?version=V` answered the latest value; it reads the key
/// as it stood at that version (folded from the key's history), or says why it cannot.
#[test]
fn a_key_reads_at_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let put = |body: Value| server.request(reqwest::Method::PUT, "/v1/kv/cfg", Some(&body));
    assert_eq!(put(json!({"value": {"mode": "a"}})).0, 200); // version 0
    assert_eq!(put(json!({"value": {"mode": "b"}})).0, 200); // version 1
    assert_eq!(server.request(reqwest::Method::DELETE, "/v1/kv/cfg", None).0, 200); // version 2
    let (status, latest) = put(json!({"value": 7}));
    assert_eq!((status, latest["version"].as_u64()), (200, Some(3)));
    assert_eq!(server.post("/v1/kv/cfg/incr", &json!({"delta": 2})).0, 200); // version 4: 9

    let at = |v: u64| server.get(&format!("/v1/kv/cfg?version={v}"));
    assert_eq!(at(0), (200, json!({"key": "cfg", "value": {"mode": "a"}, "version": 0, "expires_at": null})));
    assert_eq!(at(1).1["value"], json!({"mode": "b"}));
    let (status, body) = at(2);
    assert_eq!((status, body["error"].as_str()), (404, Some("key_not_found")), "deleted at 2: {body}");
    assert_eq!(at(3).1["value"], json!(7));
    assert_eq!(at(4).1["value"], json!(9));
    let (status, body) = at(5);
    assert_eq!((status, body["error"].as_str()), (404, Some("version_not_found")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("newest is 4"), "{body}");
    let (status, body) = server.get("/v1/kv/never?version=0");
    assert_eq!((status, body["error"].as_str()), (404, Some("version_not_found")), "{body}");

    assert_eq!(server.post("/v1/kv/q/push", &json!({"values": [1]})).0, 200);
    let (status, body) = server.get("/v1/kv/q?version=0");
    assert_eq!((status, body["error"].as_str()), (400, Some("wrong_type")), "{body}");
    let (status, body) = server.get("/v1/kv/cfg?version=-1");
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_query")), "{body}");
}
