//! Appends over HTTP against the real binary: the contract's response shape, expected-version
//! conflicts (409 with the contract body), idempotent retries, atomic multi-stream appends, and
//! bad input (malformed, oversize, reserved names, wrong media type) rejected with nothing
//! written.

mod support;

use serde_json::{json, Value};
use support::Server;

fn head(server: &Server) -> Value {
    let (status, body) = server.get("/v1/head");
    assert_eq!(status, 200);
    body
}

#[test]
fn an_append_answers_positions_versions_and_the_chain_hash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, body) = server.post(
        "/v1/streams/agent-7/events",
        &json!({"events": [
            {"type": "ToolCalled", "data": {"tool": "search"}, "metadata": {"run_id": "r-1"}},
            {"type": "ToolReturned", "data": {"ok": true}}
        ]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stream"], "agent-7");
    assert_eq!((body["first_position"].as_u64(), body["last_position"].as_u64()), (Some(0), Some(1)));
    assert_eq!((body["first_version"].as_u64(), body["last_version"].as_u64()), (Some(0), Some(1)));
    assert_eq!(body["hash"].as_str().unwrap().len(), 64);
    assert_eq!(head(&server), json!({"position": 1, "hash": body["hash"]}));

    let (status, read) = server.get("/v1/streams/agent-7/events");
    assert_eq!(status, 200);
    let first = &read["events"][0];
    assert_eq!(first["type"], "ToolCalled");
    assert_eq!(first["data"], json!({"tool": "search"}));
    assert_eq!(first["metadata"], json!({"run_id": "r-1"}));
    assert_eq!(first["position"], 0);
    assert_eq!(first["version"], 0);
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(read["events"][1]["hash"], body["hash"]);
}

#[test]
fn a_wrong_expected_version_is_a_409_naming_expected_and_actual_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, _) =
        server.post("/v1/streams/s/events", &json!({"expected_version": "no_stream", "events": [{"type": "A"}]}));
    assert_eq!(status, 200);
    for (expected, actual) in [(json!("no_stream"), json!(0)), (json!(5), json!(0))] {
        let (status, body) =
            server.post("/v1/streams/s/events", &json!({"expected_version": expected, "events": [{"type": "B"}]}));
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"], "wrong_expected_version");
        assert_eq!(body["expected"], expected);
        assert_eq!(body["actual"], actual);
        assert_eq!(body["stream"], "s");
        assert!(body["message"].as_str().unwrap().contains("stream s"), "{body}");
    }
    let (status, body) =
        server.post("/v1/streams/fresh/events", &json!({"expected_version": "exists", "events": [{"type": "B"}]}));
    assert_eq!((status, &body["actual"]), (409, &Value::Null), "{body}");
    let (status, body) =
        server.post("/v1/streams/s/events", &json!({"expected_version": 0, "events": [{"type": "B"}]}));
    assert_eq!((status, body["last_version"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(head(&server)["position"], 1, "the refused appends wrote nothing");
}

#[test]
fn a_retry_with_the_same_ids_returns_the_original_positions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let request = json!({"events": [
        {"id": "0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c11", "type": "Paid", "data": {"amount": 5}},
        {"id": "0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c12", "type": "Shipped", "data": {}}
    ]});
    let (_, first) = server.post("/v1/streams/order-1/events", &request);
    server.append("other", &[("X", json!(1))]);
    let (status, retry) = server.post("/v1/streams/order-1/events", &request);
    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry, first, "the retry answers the original result");
    assert_eq!(head(&server)["position"], 2, "the retry wrote nothing");

    // The same id with different content is a conflict, not a retry.
    let changed =
        json!({"events": [{"id": "0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c11", "type": "Paid", "data": {"amount": 6}}]});
    let (status, body) = server.post("/v1/streams/order-1/events", &changed);
    assert_eq!((status, body["error"].as_str()), (409, Some("id_conflict")), "{body}");
    let (_, read) = server.get("/v1/streams/order-1/events");
    assert_eq!(read["events"][0]["id"], "0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c11");
    assert_eq!(read["events"].as_array().unwrap().len(), 2);
}

/// Issue 14 item 9: a batch mixing a new id with one already in the stream wrote the old one a
/// second time. It is a 409 `id_conflict` naming the written id and its position, and writes
/// nothing.
#[test]
fn a_batch_mixing_new_and_written_ids_is_a_conflict_naming_the_written_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    server.append("other", &[("X", json!(1))]);
    let a = "0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c11";
    let (status, first) =
        server.post("/v1/streams/order-1/events", &json!({"events": [{"id": a, "type": "Paid", "data": {}}]}));
    assert_eq!(status, 200, "{first}");
    let mixed = json!({"events": [
        {"id": "0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c13", "type": "Refunded", "data": {}},
        {"id": a, "type": "Paid", "data": {}}
    ]});
    let (status, body) = server.post("/v1/streams/order-1/events", &mixed);
    assert_eq!((status, body["error"].as_str()), (409, Some("id_conflict")), "{body}");
    assert_eq!((body["id"].as_str(), &body["position"], &body["stream"]), (Some(a), &json!(1), &json!("order-1")));
    assert!(body["message"].as_str().unwrap().contains(&format!("{a} already exists in stream order-1 at position 1")));
    assert_eq!(head(&server)["position"], 1, "the refused batch wrote nothing");
}

#[test]
fn a_multi_stream_append_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    server.append("inbox-2", &[("Hello", json!({}))]);
    let (status, body) = server.post(
        "/v1/append",
        &json!({"appends": [
            {"stream": "agent-1", "expected_version": "no_stream", "events": [{"type": "MessageSent", "data": {"to": 2}}]},
            {"stream": "inbox-2", "expected_version": 0, "events": [{"type": "MessageReceived", "data": {"from": 1}}]}
        ]}),
    );
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["stream"], "agent-1");
    assert_eq!(results[0]["first_position"], 1);
    assert_eq!(results[1]["stream"], "inbox-2");
    assert_eq!(results[1]["last_version"], 1);

    // One stale stream refuses the whole request: neither stream changes.
    let (status, body) = server.post(
        "/v1/append",
        &json!({"appends": [
            {"stream": "agent-1", "events": [{"type": "MessageSent"}]},
            {"stream": "inbox-2", "expected_version": 0, "events": [{"type": "MessageReceived"}]}
        ]}),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "wrong_expected_version");
    assert_eq!(body["stream"], "inbox-2");
    assert_eq!(body["actual"], 1);
    let (_, streams) = server.get("/v1/streams");
    assert_eq!(
        streams["streams"],
        json!([
            {"stream": "agent-1", "last_version": 0, "events": 1},
            {"stream": "inbox-2", "last_version": 1, "events": 2}
        ])
    );

    let (status, body) = server.post(
        "/v1/append",
        &json!({"appends": [{"stream": "a", "events": [{"type": "X"}]}, {"stream": "a", "events": [{"type": "Y"}]}]}),
    );
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_input")), "{body}");
    let (status, _) = server.post("/v1/append", &json!({"appends": []}));
    assert_eq!(status, 400);
}

#[test]
fn bad_requests_get_4xx_json_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    server.append("s", &[("Seed", json!({}))]);
    let event_max = 1024 * 1024;
    let big = "x".repeat(event_max);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("/v1/streams/s/events", json!({"events": []}), 400, "invalid_input"),
        ("/v1/streams/s/events", json!({"events": [{"data": {}}]}), 400, "invalid_body"),
        ("/v1/streams/s/events", json!({"events": [{"type": "T", "bogus": 1}]}), 400, "invalid_body"),
        ("/v1/streams/s/events", json!({"expected_version": "latest", "events": [{"type": "T"}]}), 400, "invalid_body"),
        (
            "/v1/streams/s/events",
            json!({"events": [{"type": "T", "data": 1, "data_b64": "AA=="}]}),
            400,
            "invalid_input",
        ),
        ("/v1/streams/s/events", json!({"events": [{"type": "T", "metadata": [1]}]}), 400, "invalid_input"),
        ("/v1/streams/s/events", json!({"events": [{"type": "T", "data_b64": "***"}]}), 400, "invalid_input"),
        ("/v1/streams/s/events", json!({"events": [{"type": ""}]}), 400, "invalid_input"),
        ("/v1/streams/%24system/events", json!({"events": [{"type": "T"}]}), 400, "invalid_stream_name"),
        ("/v1/streams/a%01b/events", json!({"events": [{"type": "T"}]}), 400, "invalid_stream_name"),
        ("/v1/streams/s/events", json!({"events": [{"type": "T", "data": big}]}), 413, "event_too_large"),
        (
            "/v1/streams/s/events",
            json!({"events": (0..10_001).map(|_| json!({"type": "T"})).collect::<Vec<_>>()}),
            413,
            "too_many_events",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = server.post(path, &body);
        assert_eq!((got, answer["error"].as_str()), (status, Some(code)), "{path}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    }
    let long_name = "n".repeat(257);
    let (status, body) = server.post(&format!("/v1/streams/{long_name}/events"), &json!({"events": [{"type": "T"}]}));
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_stream_name")));

    let (status, body) = server.post_raw("/v1/streams/s/events", "application/json", b"{\"events\": [".to_vec());
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")), "{body}");
    let (status, body) = server.post_raw("/v1/streams/s/events", "text/plain", b"hello".to_vec());
    assert_eq!((status, body["error"].as_str()), (415, Some("unsupported_media_type")), "{body}");
    // A body announced above the bound is refused before a byte of it is read.
    let (status, body) = server.raw(
        "POST /v1/streams/s/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 26214400\r\n\r\n",
    );
    assert_eq!((status, body["error"].as_str()), (413, Some("body_too_large")), "{body}");

    assert_eq!(head(&server)["position"], 0, "only the seed event was written");
    let (_, streams) = server.get("/v1/streams");
    assert_eq!(streams["streams"].as_array().unwrap().len(), 1);
}

#[test]
fn binary_payloads_and_msgpack_bodies_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, _) =
        server.post("/v1/streams/blobs/events", &json!({"events": [{"type": "Blob", "data_b64": "AAEC/w=="}]}));
    assert_eq!(status, 200);
    let body = rmp_serde::to_vec_named(&json!({"events": [{"type": "Packed", "data": {"n": 7, "s": "ü"}}]})).unwrap();
    let (status, answer) = server.post_raw("/v1/streams/blobs/events", "application/msgpack", body);
    assert_eq!(status, 200, "{answer}");
    let (_, read) = server.get("/v1/streams/blobs/events");
    assert_eq!(read["events"][0]["data_b64"], "AAEC/w==");
    assert!(read["events"][0].get("data").is_none());
    assert_eq!(read["events"][1]["data"], json!({"n": 7, "s": "ü"}));
    let (status, body) = server.post_raw("/v1/streams/blobs/events", "application/msgpack", vec![0xc1]);
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")), "{body}");
}

/// issue 23 (low): a MessagePack body whose event `data` is MessagePack binary was transcoded to
/// an array of numbers, stored as JSON and read back as numbers; it is a binary payload, stored as
/// bytes and read back as `data_b64`. Binary anywhere else is refused rather than turned into numbers.
#[test]
fn msgpack_binary_data_is_a_binary_payload() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    struct Bin(&'static [u8]);
    impl serde::Serialize for Bin {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    #[derive(serde::Serialize)]
    struct Event {
        #[serde(rename = "type")]
        event_type: &'static str,
        data: Bin,
    }
    #[derive(serde::Serialize)]
    struct Append {
        events: Vec<Event>,
    }
    let body =
        rmp_serde::to_vec_named(&Append { events: vec![Event { event_type: "Blob", data: Bin(&[0, 1, 2, 255]) }] })
            .unwrap();
    let (status, answer) = server.post_raw("/v1/streams/packed/events", "application/msgpack", body);
    assert_eq!(status, 200, "{answer}");
    let (_, read) = server.get("/v1/streams/packed/events");
    assert_eq!(read["events"][0]["data_b64"], "AAEC/w==", "{read}");
    assert!(read["events"][0].get("data").is_none(), "{read}");

    #[derive(serde::Serialize)]
    struct BadEvent {
        #[serde(rename = "type")]
        event_type: &'static str,
        metadata: Bin,
    }
    #[derive(serde::Serialize)]
    struct BadAppend {
        events: Vec<BadEvent>,
    }
    let bad =
        rmp_serde::to_vec_named(&BadAppend { events: vec![BadEvent { event_type: "Blob", metadata: Bin(&[1]) }] })
            .unwrap();
    let (status, body) = server.post_raw("/v1/streams/packed/events", "application/msgpack", bad);
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("metadata"), "{body}");
}

#[test]
fn concurrent_appends_all_land_with_gapless_positions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let threads: u64 = 8;
    let per_thread: u64 = 25;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let server = &server;
            scope.spawn(move || {
                for i in 0..per_thread {
                    server.append(&format!("agent-{t}"), &[("Step", json!({"i": i}))]);
                }
            });
        }
    });
    assert_eq!(head(&server)["position"], threads * per_thread - 1);
    let (_, page) = server.get("/v1/events?limit=10000");
    let positions: Vec<u64> =
        page["events"].as_array().unwrap().iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, (0..threads * per_thread).collect::<Vec<_>>());
    for t in 0..threads {
        let (_, read) = server.get(&format!("/v1/streams/agent-{t}/events"));
        let steps: Vec<u64> =
            read["events"].as_array().unwrap().iter().map(|e| e["data"]["i"].as_u64().unwrap()).collect();
        assert_eq!(steps, (0..per_thread).collect::<Vec<_>>(), "each agent's events are in its order");
    }
}

/// The stored bytes of a JSON payload are the client's text minus whitespace outside strings:
/// numbers keep their spelling, escapes stay escapes, keys keep their order. Pinned byte for
/// byte, so a faster request path cannot change what is written.
#[test]
fn json_payloads_are_stored_as_the_client_wrote_them_minus_whitespace() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let data = "{ \"z\" : [1.50, 123456789012345678901234567890, -0.0e-5 ],\n \"s\": \"x \\\" y\\\\ \\u00e9\\ud83d\\ude00\", \"a\": {\"t\": true, \"n\": null} }";
    let metadata = "{ \"run\" : \"r 1\", \"n\": 1E2 }";
    let body = format!("{{\"events\": [{{\"type\": \"T\", \"data\": {data}, \"metadata\": {metadata}}}]}}");
    let (status, answer) = server.post_raw("/v1/streams/golden/events", "application/json", body.into_bytes());
    assert_eq!(status, 200, "{answer}");
    let (status, text) = server.get_text("/v1/streams/golden/events");
    assert_eq!(status, 200);
    let stored_data = r#""data":{"z":[1.50,123456789012345678901234567890,-0.0e-5],"s":"x \" y\\ \u00e9\ud83d\ude00","a":{"t":true,"n":null}}"#;
    let stored_metadata = r#""metadata":{"run":"r 1","n":1E2}"#;
    assert!(text.contains(stored_data), "{text}");
    assert!(text.contains(stored_metadata), "{text}");
}
