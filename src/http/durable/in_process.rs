//! The protocol served in process, over a log that is closed and reopened to restart it, and a
//! clock the test moves ahead (`state::Clock::advance`): what depends on time passing or on a
//! restart, without waiting for either.
//!
//! - TTL across a restart: a stream nobody used for longer than its TTL stays expired after a
//!   restart (404), and one that reads alone kept alive is not expired early by one; the reads
//!   leave access markers on the stream's access stream, never an offset of its own.
//! - Erasure through cairn's API keeps the protocol's state (before and after a restart), and
//!   a fork through cairn's API cannot land in a Durable Stream.
//! - An NDJSON body to a Durable Stream holds its slot per batch, not for the whole body.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use tower::ServiceExt as _;

use super::state;
use crate::http::AppState;

/// A TTL long enough that the real time a test takes is nothing beside it.
const TTL_S: u64 = 100;
const TTL_MS: u64 = TTL_S * 1000;

/// A server on `dir`'s log, its clock `ahead_ms` ahead of the system's.
struct Server {
    state: Arc<AppState>,
    router: axum::Router,
}

impl Server {
    fn start(dir: &Path, ahead_ms: u64) -> Server {
        let log = crate::store::open_writer(dir).unwrap();
        let (store, _) = crate::store::Store::open(log, snapshotter::Policy::default(), &mut |_| {}).unwrap();
        let state = Arc::new(crate::mcp::embedded(store, dir));
        state.durable.clock.advance(ahead_ms);
        let router = crate::http::api_router(state.clone());
        Server { state, router }
    }

    /// Closes the log (it syncs what was handed to it): the next `start` reads everything back.
    /// Tasks the requests left behind (an access marker's commit) hold the log, and with it the
    /// directory's lock, until they end: this waits for them to let go of the state.
    async fn stop(self) {
        self.state.store.close();
        let Server { mut state, router } = self;
        drop(router);
        loop {
            match Arc::try_unwrap(state) {
                Ok(state) => break drop(state),
                Err(shared) => {
                    state = shared;
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from(body.to_string())).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn status(&self, method: Method, path: &str) -> StatusCode {
        self.call(method, path, &[], "").await.0
    }

    async fn create_ttl_stream(&self, path: &str) {
        let ttl = TTL_S.to_string();
        let headers = [("content-type", "text/plain"), ("stream-ttl", ttl.as_str())];
        let (status, _, body) = self.call(Method::PUT, path, &headers, "m").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// The events of cairn stream `name`.
    fn events(&self, name: &str) -> Vec<log_engine::Event> {
        match self.state.log.read_stream(name, None, 100, log_engine::Direction::Forward) {
            Ok(events) => events,
            Err(log_engine::Error::StreamNotFound { .. }) => Vec::new(),
            Err(e) => panic!("reading {name}: {e}"),
        }
    }
}

/// Failed before: a restart counted every stream as accessed at the server's start, so a stream
/// that had expired (unused for longer than its TTL) answered again after it. Now its TTL runs
/// from its last persisted activity, plus half a TTL for reads that left no marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_expired_before_a_restart_stays_expired() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0);
    server.create_ttl_stream("/v1/stream/idle").await;
    server.create_ttl_stream("/v1/stream/later").await;
    server.stop().await;

    // Unused for 1.4 TTL: within the half TTL a restart may add (reads may have left no marker).
    let server = Server::start(dir.path(), TTL_MS * 14 / 10);
    assert_eq!(server.status(Method::HEAD, "/v1/stream/later").await, StatusCode::OK);
    server.stop().await;
    // Unused for 1.6 TTL: expired, whenever the server restarted.
    let server = Server::start(dir.path(), TTL_MS * 16 / 10);
    assert_eq!(server.status(Method::GET, "/v1/stream/idle").await, StatusCode::NOT_FOUND);
    assert_eq!(server.status(Method::HEAD, "/v1/stream/later").await, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// A stream that only reads kept alive is not expired early by a restart, and a read moves no
/// offset or ETag: its access marker goes to the stream's access stream. Reads without the
/// markers (or with a marker in `ds:P`) fail it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_keep_a_stream_alive_across_a_restart_without_moving_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0);
    server.create_ttl_stream("/v1/stream/read").await;
    let (_, before, _) = server.call(Method::GET, "/v1/stream/read", &[], "").await;
    server.stop().await;

    // 0.6 TTL after the create, a read: the last persisted activity is more than half a TTL
    // old, so the read leaves a marker.
    let server = Server::start(dir.path(), TTL_MS * 6 / 10);
    let (status, after, body) = server.call(Method::GET, "/v1/stream/read", &[], "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "m"));
    assert_eq!(after["stream-next-offset"], before["stream-next-offset"], "a read moves no offset");
    assert_eq!(after["etag"], before["etag"], "a read changes no ETag");
    // A second read soon after leaves none.
    assert_eq!(server.status(Method::GET, "/v1/stream/read").await, StatusCode::OK);
    server.stop().await;

    // 1.5 TTL after the create, 0.9 TTL after the read: alive, and read again (a marker).
    let server = Server::start(dir.path(), TTL_MS * 15 / 10);
    let markers = server.events(&state::access_stream("ds:read"));
    assert_eq!(markers.len(), 1, "one marker per half TTL: {markers:?}");
    assert_eq!(markers[0].event_type, state::EVENT_ACCESSED);
    assert_eq!(markers[0].data_json().unwrap()["stream"], "ds:read");
    assert_eq!(server.events("ds:read").len(), 2, "ds:read holds its created event and message only");
    assert_eq!(server.status(Method::GET, "/v1/stream/read").await, StatusCode::OK);
    server.stop().await;
    // 1.4 TTL after that read: alive (within the half TTL a restart may add), not read.
    let server = Server::start(dir.path(), TTL_MS * 29 / 10);
    assert_eq!(server.status(Method::HEAD, "/v1/stream/read").await, StatusCode::OK);
    server.stop().await;
    // 1.6 TTL after it: expired.
    let server = Server::start(dir.path(), TTL_MS * 31 / 10);
    assert_eq!(server.status(Method::HEAD, "/v1/stream/read").await, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// Without a restart the TTL is exact: the server knows its reads, and keeps knowing them
/// when a write through cairn's own API makes it fold the stream again from the log (folded
/// afresh with nothing kept, the stream would live until half a TTL past its last event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_restart_the_ttl_runs_from_the_last_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0);
    server.create_ttl_stream("/v1/stream/exact").await;
    server.state.durable.clock.advance(TTL_MS / 10);
    assert_eq!(server.status(Method::GET, "/v1/stream/exact").await, StatusCode::OK);
    // An append through cairn's API makes the server fold the stream again.
    let append = r#"{"events":[{"type":"ds.data","data":"x"}]}"#;
    let (status, _, body) = server
        .call(Method::POST, "/v1/streams/ds%3Aexact/events", &[("content-type", "application/json")], append)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.state.durable.clock.advance(TTL_MS * 11 / 10);
    assert_eq!(
        server.status(Method::HEAD, "/v1/stream/exact").await,
        StatusCode::NOT_FOUND,
        "1.1 TTL after the last read"
    );
    server.stop().await;
}

/// A producer's append to `path`: its status.
async fn produce(server: &Server, path: &str, seq: u64, body: &str, extra: &[(&str, &str)]) -> StatusCode {
    let seq = seq.to_string();
    let mut headers = vec![
        ("content-type", "application/json"),
        ("producer-id", "p"),
        ("producer-epoch", "0"),
        ("producer-seq", &seq),
    ];
    headers.extend_from_slice(extra);
    let (status, _, text) = server.call(Method::POST, path, &headers, body).await;
    assert!(status.is_success() || status.is_client_error(), "{status} {text}");
    status
}

async fn erase(server: &Server, stream: &str) {
    let body = serde_json::json!({"stream": stream, "reason": "a test"}).to_string();
    let (status, _, text) =
        server.call(Method::POST, "/v1/erase", &[("content-type", "application/json")], &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

/// Failed before: an erasure through `POST /v1/erase` took the protocol's state with the
/// payloads (the configuration in `ds.created`, the producer state in the messages' metadata),
/// so after a restart the stream answered 404 and a producer's retry could be written again.
/// Now the erasure first appends the state (`ds.state`): the erased messages are skipped, the
/// stream, its content type, closed state, producers and Stream-Seq stay, before and after a
/// restart; also for a source whose shared versions a fork's erasure reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_keeps_the_protocol_state_and_skips_the_erased_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0);
    let json = [("content-type", "application/json")];
    for path in ["/v1/stream/e", "/v1/stream/closed", "/v1/stream/src"] {
        assert_eq!(server.call(Method::PUT, path, &json, "").await.0, StatusCode::CREATED);
    }
    assert_eq!(produce(&server, "/v1/stream/e", 0, r#"[{"a":1}]"#, &[]).await, StatusCode::OK);
    assert_eq!(produce(&server, "/v1/stream/e", 1, r#"{"b":2}"#, &[("stream-seq", "s1")]).await, StatusCode::OK);
    let close = [("stream-closed", "true")];
    assert_eq!(produce(&server, "/v1/stream/closed", 0, r#"{"c":3}"#, &close).await, StatusCode::OK);
    assert_eq!(produce(&server, "/v1/stream/src", 0, r#"{"s":1}"#, &[]).await, StatusCode::OK);
    let fork = [("content-type", "application/json"), ("stream-forked-from", "/v1/stream/src")];
    assert_eq!(server.call(Method::PUT, "/v1/stream/fork", &fork, "").await.0, StatusCode::CREATED);

    erase(&server, "ds:e").await;
    erase(&server, "ds:closed").await;
    // The fork's shared versions are the source's: erasing them erases the source's.
    erase(&server, "ds:fork").await;
    check_after_erasure(&server, "before a restart").await;
    server.stop().await;
    let server = Server::start(dir.path(), 0);
    check_after_erasure(&server, "after a restart").await;
    // The state holds for what comes next too.
    assert_eq!(produce(&server, "/v1/stream/e", 2, r#"{"n":3}"#, &[]).await, StatusCode::OK);
    assert_eq!(produce(&server, "/v1/stream/e", 3, r#"{"n":4}"#, &[("stream-seq", "s1")]).await, StatusCode::CONFLICT);
    assert_eq!(server.call(Method::GET, "/v1/stream/e", &[], "").await.2, r#"[{"n":3}]"#);
    server.stop().await;
}

async fn check_after_erasure(server: &Server, when: &str) {
    let (status, headers, body) = server.call(Method::GET, "/v1/stream/e", &[], "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"), "{when}: the erased messages are skipped");
    assert_eq!(headers["content-type"], "application/json", "{when}");
    assert_eq!(produce(server, "/v1/stream/e", 1, r#"{"b":2}"#, &[]).await, StatusCode::NO_CONTENT, "{when}: a retry");
    let (status, headers, _) = server.call(Method::HEAD, "/v1/stream/closed", &[], "").await;
    assert_eq!(
        (status, headers.get("stream-closed").map(|v| v.to_str().unwrap())),
        (StatusCode::OK, Some("true")),
        "{when}"
    );
    let (_, headers, body) = server.call(Method::GET, "/v1/stream/closed", &[], "").await;
    assert_eq!((body.as_str(), headers.get("stream-closed").is_some()), ("[]", true), "{when}: closed at its end");
    let retry = produce(server, "/v1/stream/closed", 0, r#"{"c":3}"#, &[("stream-closed", "true")]).await;
    assert_eq!(retry, StatusCode::NO_CONTENT, "{when}: the closing producer's retry is a duplicate");
    assert_eq!(server.call(Method::GET, "/v1/stream/src", &[], "").await.2, "[]", "{when}: erased through the fork");
    assert_eq!(produce(server, "/v1/stream/src", 0, r#"{"s":1}"#, &[]).await, StatusCode::NO_CONTENT, "{when}");
    assert_eq!(server.status(Method::HEAD, "/v1/stream/fork").await, StatusCode::OK, "{when}");
}

/// A fork made through cairn's own API cannot land in a Durable Stream (its configuration,
/// producers and closed state would be the source's, half a protocol fork): `403
/// reserved_stream`, pointing at the protocol's fork. A fork from one into another stream is an
/// ordinary stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_through_cairns_api_into_a_durable_stream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0);
    let json = [("content-type", "application/json")];
    assert_eq!(server.call(Method::PUT, "/v1/stream/a", &json, "[1]").await.0, StatusCode::CREATED);
    for to in ["ds:b", "ds:a/b"] {
        let body = serde_json::json!({"to": to, "at_version": 1}).to_string();
        let (status, _, text) = server.call(Method::POST, "/v1/streams/ds%3Aa/fork", &json, &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        assert!(text.contains("reserved_stream") && text.contains("Stream-Forked-From"), "{text}");
    }
    let body = serde_json::json!({"to": "ds:b", "at_version": 0}).to_string();
    assert_eq!(server.call(Method::POST, "/v1/streams/plain/fork", &json, &body).await.0, StatusCode::FORBIDDEN);
    assert_eq!(server.status(Method::HEAD, "/v1/stream/b").await, StatusCode::NOT_FOUND, "nothing was written");
    let body = serde_json::json!({"to": "copy", "at_version": 1}).to_string();
    let (status, _, text) = server.call(Method::POST, "/v1/streams/ds%3Aa/fork", &json, &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    server.stop().await;
}

/// Failed before: an NDJSON append to `ds:P` held the stream's protocol slot until its whole
/// body had arrived, so one slow client blocked every protocol request to the stream. Now the
/// slot is taken per batch: with the body still open, a protocol read answers, and shows the
/// batches already durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ndjson_body_does_not_hold_a_durable_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0);
    let json = [("content-type", "application/json")];
    assert_eq!(server.call(Method::PUT, "/v1/stream/slow", &json, "").await.0, StatusCode::CREATED);

    let (tx, rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(4);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    let request = Request::post("/v1/streams/ds%3Aslow/events")
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(chunks))
        .unwrap();
    let append = tokio::spawn(server.router.clone().oneshot(request));
    // One full batch, and the start of the next; the body stays open.
    let line = |n: usize| format!("{{\"type\":\"ds.data\",\"data\":{n}}}\n");
    let batch: String = (0..crate::limits::NDJSON_BATCH_EVENTS).map(line).collect();
    tx.send(batch.into()).await.unwrap();
    tx.send(line(1_000_000).into()).await.unwrap();

    // Before, this waited for the whole body: the bound turns that hang into a failure.
    let want = crate::limits::NDJSON_BATCH_EVENTS;
    let read = async {
        loop {
            let (status, _, body) = server.call(Method::GET, "/v1/stream/slow", &[], "").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let messages: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
            if messages.len() == want {
                break;
            }
            // The first batch is handed over, not yet durable: wait for it as a reader would.
            let (status, _, _) = server.call(Method::GET, "/v1/stream/slow?offset=-1&live=long-poll", &[], "").await;
            assert!(status.is_success());
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("a protocol read waited for the NDJSON body to end");
    drop(tx);
    let response = append.await.unwrap().unwrap_or_else(|never| match never {});
    let status = response.status();
    let summary = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&summary));
    let summary: serde_json::Value = serde_json::from_slice(&summary).unwrap();
    assert_eq!((summary["count"].as_u64(), summary["batches"].as_u64()), (Some(want as u64 + 1), Some(2)));
    let (_, _, body) = server.call(Method::GET, "/v1/stream/slow", &[], "").await;
    let messages: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(messages.len(), want + 1, "the last batch counts at once");
    server.stop().await;
}
