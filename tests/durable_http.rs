//! Durable Streams on the real binary, beside the conformance suite (.ci/durable-streams): what
//! only cairn adds to the protocol.
//! - Auth: the same bearer tokens and prefix rules as the rest of the API, applied to the cairn
//!   name `ds:PATH`; a refused request writes nothing.
//! - The messages are ordinary cairn events: the stream `ds:PATH` reads through cairn's own API
//!   (binary data as `data_b64`), `POST /v1/verify` passes.
//! - A restart keeps the content type, the closed state, `Stream-Seq` and the producers'
//!   (epoch, seq), all rebuilt from the log.

mod support;

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{json, Value};
use support::{token_hash_line, Server};

const WRITER: &str = "ds-writer-token";
const READER: &str = "ds-reader-token";

fn http() -> Client {
    Client::builder().timeout(std::time::Duration::from_secs(30)).build().unwrap()
}

fn send(rb: RequestBuilder, token: Option<&str>) -> Response {
    match token {
        Some(t) => rb.bearer_auth(t),
        None => rb,
    }
    .send()
    .unwrap()
}

#[test]
fn tokens_and_prefix_rules_apply_to_the_mapped_stream_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = format!(
        "[[principal]]\nname = \"writer\"\n{}\nrules = [{{ prefix = \"ds:team/\", allow = [\"read\", \"append\"] }}]\n\n\
         [[principal]]\nname = \"reader\"\n{}\nrules = [{{ prefix = \"ds:\", allow = [\"read\"] }}]\n",
        token_hash_line(WRITER),
        token_hash_line(READER),
    );
    let auth = dir.path().join("auth.toml");
    std::fs::write(&auth, file).unwrap();
    let server = Server::start(&dir.path().join("data"), &["--auth", auth.to_str().unwrap()]);
    let (c, url) = (http(), |p: &str| server.url(&format!("/v1/stream/{p}")));
    let put = |p: &str, token| send(c.put(url(p)).header("content-type", "text/plain").body("x"), token).status();

    assert_eq!(put("team/a", None), 401, "no token");
    assert_eq!(put("team/a", Some(READER)), 403, "read-only principal");
    assert_eq!(put("other/a", Some(WRITER)), 403, "outside the writer's prefix");
    assert_eq!(put("team/a", Some(WRITER)), 201);
    let append = send(c.post(url("team/a")).header("content-type", "text/plain").body("y"), Some(READER));
    assert_eq!(append.status(), 403);
    assert_eq!(append.headers()["x-content-type-options"], "nosniff", "errors carry the protocol's headers");
    let read = send(c.get(url("team/a")), Some(READER));
    assert_eq!(read.status(), 200);
    assert_eq!(read.text().unwrap(), "x", "the refused append wrote nothing");
    assert_eq!(send(c.delete(url("team/a")), Some(WRITER)).status(), 403, "delete needs the delete permission");
    assert_eq!(send(c.get(url("other/a")), Some(READER)).status(), 404);
}

fn read_cairn(server: &Server, stream: &str) -> Vec<Value> {
    let encoded = stream.replace(':', "%3A").replace('/', "%2F");
    let (status, page) = server.get(&format!("/v1/streams/{encoded}/events?limit=1000"));
    assert_eq!(status, 200, "{page}");
    page["events"].as_array().unwrap().clone()
}

#[test]
fn messages_are_cairn_events_and_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let c = http();
    let server = Server::start(&data, &[]);
    let url = server.url("/v1/stream/agents/run-1");
    let bin = server.url("/v1/stream/bin");
    assert_eq!(c.put(&url).header("content-type", "application/json").send().unwrap().status(), 201);
    let producer = |rb: RequestBuilder, epoch: u64, seq: u64| {
        rb.header("content-type", "application/json")
            .header("producer-id", "p")
            .header("producer-epoch", epoch.to_string())
            .header("producer-seq", seq.to_string())
    };
    let first = producer(c.post(&url), 0, 0).header("stream-seq", "0001").body(r#"[{"t":"a"},{"t":"b"}]"#);
    assert_eq!(first.send().unwrap().status(), 200);
    assert_eq!(
        c.put(&bin).header("content-type", "application/octet-stream").body(vec![0u8, 255, 7]).send().unwrap().status(),
        201
    );

    // The messages are events of the stream `ds:agents/run-1`, readable through cairn's own API.
    let events = read_cairn(&server, "ds:agents/run-1");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ds.created", "ds.data", "ds.data"]);
    assert_eq!(events[0]["data"]["content_type"], "application/json");
    assert_eq!((events[1]["data"].clone(), events[2]["data"].clone()), (json!({"t": "a"}), json!({"t": "b"})));
    assert_eq!(events[2]["metadata"]["ds"], json!({"producer": ["p", 0, 0], "stream_seq": "0001"}));
    let bytes = read_cairn(&server, "ds:bin");
    assert_eq!(bytes[1]["data_b64"], "AP8H", "raw bytes are stored as binary data");
    let (status, verify) = server.post("/v1/verify", &json!({}));
    assert_eq!((status, verify["ok"].as_bool()), (200, Some(true)), "{verify}");

    let closed = producer(c.post(&url), 0, 1).header("stream-closed", "true").body(r#"{"t":"c"}"#);
    assert_eq!(closed.send().unwrap().status(), 200);
    assert!(server.stop().success());

    // After a restart everything is read back from the log.
    let server = Server::start(&data, &[]);
    let url = server.url("/v1/stream/agents/run-1");
    let head = c.head(&url).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "application/json");
    assert_eq!(head.headers()["stream-closed"], "true");
    let retry = producer(c.post(&url), 0, 1).header("stream-closed", "true").body(r#"{"t":"c"}"#).send().unwrap();
    assert_eq!(retry.status(), 204, "the retry of the committed close is a duplicate");
    assert_eq!(retry.headers()["producer-seq"], "1");
    let stale = producer(c.post(&url), 0, 0).body(r#"{"t":"x"}"#).send().unwrap();
    assert_eq!(stale.status(), 204, "an older seq of the same epoch is a duplicate");
    let body: Value = c.get(&url).send().unwrap().json().unwrap();
    assert_eq!(body, json!([{"t": "a"}, {"t": "b"}, {"t": "c"}]));
    let fresh = c.put(server.url("/v1/stream/seq")).header("content-type", "text/plain").send().unwrap();
    assert_eq!(fresh.status(), 201);
    let seq = |s: &str| {
        c.post(server.url("/v1/stream/seq"))
            .header("content-type", "text/plain")
            .header("stream-seq", s)
            .body("m")
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(seq("b"), 204);
    assert!(server.stop().success());
    let server = Server::start(&data, &[]);
    let again = c
        .post(server.url("/v1/stream/seq"))
        .header("content-type", "text/plain")
        .header("stream-seq", "a")
        .body("m")
        .send()
        .unwrap();
    assert_eq!(again.status(), 409, "Stream-Seq regressions are refused after a restart too");
    assert!(server.stop().success());
}

/// A producer's append the log refuses moves no producer state: the same producer's next seq,
/// sent while the refused one is being handled, is a sequence gap (409), and the corrected retry
/// of the refused seq is new data (200), never a "duplicate" (204) of something never written.
/// Before the fix the refused append's state moved on before its commit was awaited, so the
/// pipelined seq 1 was accepted and the corrected seq 0 answered 204 and was dropped.
#[test]
fn a_refused_producer_append_moves_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let c = http();
    // Large enough that building its events keeps the slot locked for a while, so the second
    // request usually queues behind it: the case the fix is about (the answers asserted below
    // are the same whichever request goes first).
    let message = format!("\"{}\"", "m".repeat(512));
    let too_many = format!("[{}]", vec![message.as_str(); log_engine::BATCH_EVENTS_MAX + 1].join(","));
    for round in 0..20 {
        let url = server.url(&format!("/v1/stream/refused/{round}"));
        assert_eq!(c.put(&url).header("content-type", "application/json").send().unwrap().status(), 201);
        let post = |seq: u64, body: String| {
            c.post(&url)
                .header("content-type", "application/json")
                .header("producer-id", "p")
                .header("producer-epoch", "0")
                .header("producer-seq", seq.to_string())
                .body(body)
                .send()
                .unwrap()
                .status()
        };
        let (refused, next) = std::thread::scope(|s| {
            let first = s.spawn(|| post(0, too_many.clone()));
            // Not synchronisation: only makes it likely that seq 0 holds the slot first.
            std::thread::sleep(std::time::Duration::from_millis(3));
            let second = s.spawn(|| post(1, "[2]".to_string()));
            (first.join().unwrap(), second.join().unwrap())
        });
        assert!(refused.is_client_error(), "round {round}: {refused}");
        assert_eq!(next, 409, "round {round}: seq 1 follows a seq 0 that was never written");
        assert_eq!(post(0, "[1]".to_string()), 200, "round {round}: the corrected seq 0 is new data");
        let body: Value = c.get(&url).send().unwrap().json().unwrap();
        assert_eq!(body, json!([1]), "round {round}");
    }
}

/// An ETag names the content of the page it was sent with: once a message in it is erased, a
/// read with the old ETag in `If-None-Match` is answered 200 with what remains, never 304 (the
/// ETag was the incarnation and the offset range alone, so the erased message's page stayed
/// "not modified" in every cache that held it).
#[test]
fn an_erased_message_changes_the_etag_of_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let c = http();
    let url = server.url("/v1/stream/secrets");
    assert_eq!(c.put(&url).header("content-type", "text/plain").body("a").send().unwrap().status(), 201);
    assert_eq!(c.post(&url).header("content-type", "text/plain").body("b").send().unwrap().status(), 204);
    let read = |etag: Option<&str>| {
        let rb = c.get(format!("{url}?offset=-1"));
        let r = match etag {
            Some(e) => rb.header("if-none-match", e),
            None => rb,
        }
        .send()
        .unwrap();
        let etag = r.headers().get("etag").map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), etag, r.text().unwrap())
    };
    let (status, etag, body) = read(None);
    assert_eq!((status, body.as_str()), (200, "ab"));
    let etag = etag.expect("a catch-up read has an ETag");
    assert_eq!(read(Some(&etag)).0, 304, "unchanged: not modified");

    let (status, erased) = server
        .post("/v1/erase", &json!({"stream": "ds:secrets", "from_version": 1, "to_version": 1, "reason": "test"}));
    assert_eq!(status, 200, "{erased}");
    let (status, new_etag, body) = read(Some(&etag));
    assert_eq!((status, body.as_str()), (200, "b"), "the erased message's page is modified");
    assert_ne!(new_etag.as_deref(), Some(etag.as_str()));
}

/// A JSON fork's `Stream-Fork-Sub-Offset` counts messages of the source; above
/// `FORK_SUB_OFFSET_MAX` it is refused before anything is read (u64::MAX once read the whole
/// source into memory looking for that many messages). Within the bound it still forks there.
#[test]
fn a_fork_sub_offset_past_its_bound_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let c = http();
    let src = server.url("/v1/stream/src");
    let put = c.put(&src).header("content-type", "application/json").body("[1,2,3]").send().unwrap();
    assert_eq!(put.status(), 201);
    let start = "0000000000000000_0000000000000000";
    let fork = |name: &str, sub: &str| {
        c.put(server.url(&format!("/v1/stream/{name}")))
            .header("stream-forked-from", "/v1/stream/src")
            .header("stream-fork-offset", start)
            .header("stream-fork-sub-offset", sub)
            .send()
            .unwrap()
    };
    for (name, sub) in
        [("huge", u64::MAX.to_string()), ("above", (cairn::http::durable::FORK_SUB_OFFSET_MAX + 1).to_string())]
    {
        let refused = fork(name, &sub);
        assert_eq!(refused.status(), 400, "{sub}");
        let body: Value = refused.json().unwrap();
        assert_eq!(body["error"], "invalid_fork", "{body}");
        assert!(body["message"].as_str().unwrap().contains("FORK_SUB_OFFSET_MAX"), "{body}");
    }
    assert_eq!(fork("two", "2").status(), 201);
    let body: Value = c.get(server.url("/v1/stream/two")).send().unwrap().json().unwrap();
    assert_eq!(body, json!([1, 2]), "a fork two messages in shares two");
    assert_eq!(fork("past", "4").status(), 400, "past the source's data");
}

/// Events appended to a `ds:` stream through cairn's own API cannot give a Durable Stream a
/// state this server could not have written: a `ds.created` beyond the bounds (a TTL whose
/// milliseconds overflow, a content type no header carries) opens no stream, and coordination
/// metadata beyond the producer bounds moves no producer; nothing answers 5xx.
#[test]
fn ds_events_written_through_cairns_api_are_validated_when_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let c = http();
    let hostile = [
        json!({"content_type": "text/plain", "ttl_seconds": u64::MAX}),
        json!({"content_type": "text/plain\nx-evil: 1"}),
        json!({"content_type": "x".repeat(10_000)}),
        json!({"content_type": ""}),
        json!({"content_type": "text/plain", "ttl_seconds": 5, "expires_at_ms": 1}),
        json!({"content_type": "text/plain", "expires_at": "tomorrow", "expires_at_ms": 1}),
        json!({"content_type": "text/plain", "forked_from": "elsewhere", "fork_offset": "x"}),
    ];
    for (i, created) in hostile.iter().enumerate() {
        server.append(&format!("ds%3Ahostile{i}"), &[("ds.created", created.clone()), ("ds.data", json!(1))]);
        let url = server.url(&format!("/v1/stream/hostile{i}"));
        for method in [reqwest::Method::GET, reqwest::Method::HEAD, reqwest::Method::DELETE] {
            let status = c.request(method.clone(), &url).send().unwrap().status();
            assert_eq!(status, 404, "{created} {method}: an invalid ds.created opens no stream");
        }
        let post = c.post(&url).header("content-type", "text/plain").body("x").send().unwrap().status();
        assert_eq!(post, 404, "{created}");
    }

    // Producer state beyond the bounds in an event's metadata is not a producer's state.
    let url = server.url("/v1/stream/meta");
    assert_eq!(c.put(&url).header("content-type", "text/plain").send().unwrap().status(), 201);
    let (status, body) = server.post(
        "/v1/streams/ds%3Ameta/events",
        &json!({"events": [{"type": "ds.data", "data": 1, "metadata": {"ds": {"producer": ["p", 0, u64::MAX], "stream_seq": ""}}}]}),
    );
    assert_eq!(status, 200, "{body}");
    // The server folds the stream afresh from the log after a restart.
    assert!(server.stop().success());
    let server = Server::start(&dir.path().join("data"), &[]);
    let url = server.url("/v1/stream/meta");
    let post = c
        .post(&url)
        .header("content-type", "text/plain")
        .header("producer-id", "p")
        .header("producer-epoch", "0")
        .header("producer-seq", "0")
        .header("stream-seq", "a")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(post.status(), 200, "seq 0 of producer p is new data");
}

/// The Durable Streams layer keeps each stream's state (closed, producers, `Stream-Seq`) in
/// memory; a write to a `ds:` stream through cairn's own endpoints must reach that state at
/// once. It did only after a restart: a `ds.closed` appended through `/v1/streams/...` left the
/// stream open to protocol appends, and a producer's seq committed that way was accepted again
/// (written twice).
#[test]
fn writes_through_cairns_own_endpoints_reach_a_durable_streams_state_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let c = http();
    let post = |path: &str, producer: Option<u64>| {
        let mut rb = c.post(server.url(path)).header("content-type", "text/plain").body("x");
        if let Some(seq) = producer {
            rb = rb.header("producer-id", "p").header("producer-epoch", "0").header("producer-seq", seq.to_string());
        }
        rb.send().unwrap()
    };
    for name in ["closed", "multi", "ndjson", "cairnclosed", "metaclosed", "producer", "deleted"] {
        let url = server.url(&format!("/v1/stream/{name}"));
        assert_eq!(c.put(&url).header("content-type", "text/plain").send().unwrap().status(), 201);
        // The slot is loaded and live before the outside write.
        assert_eq!(post(&format!("/v1/stream/{name}"), None).status(), 204, "{name}");
    }

    // ds.closed through the one-stream append (JSON), the atomic append and NDJSON.
    server.append("ds%3Aclosed", &[("ds.closed", json!({}))]);
    let (status, body) = server.post(
        "/v1/append",
        &json!({"appends": [{"stream": "ds:multi", "events": [{"type": "ds.closed", "data": {}}]}]}),
    );
    assert_eq!(status, 200, "{body}");
    let ndjson = b"{\"type\":\"ds.closed\",\"data\":{}}\n".to_vec();
    let (status, body) = server.post_raw("/v1/streams/ds%3Andjson/events", "application/x-ndjson", ndjson);
    assert_eq!(status, 200, "{body}");
    // cairn's own close, through its endpoint and through the stream's metadata.
    let (status, body) = server.post("/v1/streams/ds%3Acairnclosed/close", &json!({}));
    assert_eq!(status, 200, "{body}");
    let closed = json!({"closed": true});
    let (status, body) = server.request(reqwest::Method::PUT, "/v1/streams/ds%3Ametaclosed/metadata", Some(&closed));
    assert_eq!(status, 200, "{body}");
    for name in ["closed", "multi", "ndjson", "cairnclosed", "metaclosed"] {
        let read = c.get(server.url(&format!("/v1/stream/{name}?offset=-1"))).send().unwrap();
        assert_eq!(read.status(), 200, "{name}");
        assert_eq!(read.headers().get("stream-closed").map(|v| v.to_str().unwrap()), Some("true"), "{name}: read");
        let r = post(&format!("/v1/stream/{name}"), None);
        assert_eq!(r.status(), 409, "{name}: closed through cairn's API");
        assert_eq!(r.headers()["stream-closed"], "true", "{name}");
        let head = c.head(server.url(&format!("/v1/stream/{name}"))).send().unwrap();
        assert_eq!(head.headers().get("stream-closed").map(|v| v.to_str().unwrap()), Some("true"), "{name}");
    }

    // A producer's seq committed through cairn's API: the protocol's retry of it is a duplicate.
    assert_eq!(post("/v1/stream/producer", Some(0)).status(), 200);
    let (status, body) = server.post(
        "/v1/streams/ds%3Aproducer/events",
        &json!({"events": [{"type": "ds.data", "data": "y", "metadata": {"ds": {"producer": ["p", 0, 1]}}}]}),
    );
    assert_eq!(status, 200, "{body}");
    let retry = post("/v1/stream/producer", Some(1));
    assert_eq!(retry.status(), 204, "seq 1 is committed: a duplicate, not new data");
    assert_eq!(retry.headers()["producer-seq"], "1");
    assert_eq!(read_cairn(&server, "ds:producer").iter().filter(|e| e["type"] == "ds.data").count(), 3);

    // A delete through cairn's lifecycle endpoint: the protocol sees no stream.
    let (status, body) = server.request(reqwest::Method::DELETE, "/v1/streams/ds%3Adeleted", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(c.head(server.url("/v1/stream/deleted")).send().unwrap().status(), 404);
    assert_eq!(post("/v1/stream/deleted", None).status(), 404);
}
