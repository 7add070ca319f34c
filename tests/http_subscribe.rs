//! Subscriptions (Server-Sent Events) against the real binary: catch-up from a position, then
//! live events as they are appended, then a reconnect with `Last-Event-ID` that resumes right
//! after the last event seen: no gap, no duplicate. Filters by stream, prefix and type.

mod support;

use serde_json::json;
use support::Server;

#[test]
fn catch_up_then_live_then_resume_by_last_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    for i in 0..3 {
        server.append("agent-1", &[("Step", json!({"i": i}))]);
    }
    let mut sse = server.subscribe("from=0", None);
    for expected in 0..3u64 {
        let event = sse.next().unwrap();
        assert_eq!(event.id.as_deref(), Some(expected.to_string().as_str()));
        let body = event.json();
        assert_eq!(body["position"], expected);
        assert_eq!(body["data"]["i"], expected);
    }
    // Live: appended after the subscriber has caught up.
    server.append("agent-2", &[("Live", json!({"n": 1}))]);
    server.append("agent-1", &[("Live", json!({"n": 2}))]);
    let live = sse.next().unwrap();
    assert_eq!((live.id.as_deref(), live.json()["stream"].as_str()), (Some("3"), Some("agent-2")));
    let live = sse.next().unwrap();
    assert_eq!(live.id.as_deref(), Some("4"));
    drop(sse);

    server.append("agent-1", &[("WhileAway", json!({}))]);
    let mut resumed = server.subscribe("from=0", Some(3));
    let ids: Vec<String> = (0..2).map(|_| resumed.next().unwrap().id.unwrap()).collect();
    assert_eq!(ids, ["4", "5"], "Last-Event-ID wins over from= and resumes right after it");
}

#[test]
fn filters_select_streams_prefixes_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    server.append("agent-1", &[("ToolCalled", json!({})), ("MessageSent", json!({}))]);
    server.append("agent-2", &[("ToolCalled", json!({}))]);
    server.append("billing", &[("ToolCalled", json!({}))]);
    server.append("agent-1", &[("ToolReturned", json!({}))]);

    let mut by_stream = server.subscribe("from=0&stream=agent-1", None);
    let ids: Vec<String> = (0..3).map(|_| by_stream.next().unwrap().id.unwrap()).collect();
    assert_eq!(ids, ["0", "1", "4"]);

    let mut by_type = server.subscribe("from=0&stream_prefix=agent-&type_prefix=Tool", None);
    let ids: Vec<String> = (0..3).map(|_| by_type.next().unwrap().id.unwrap()).collect();
    assert_eq!(ids, ["0", "2", "4"]);

    // From the end: only what comes next.
    let mut from_end = server.subscribe("from=end&stream=billing", None);
    server.append("agent-1", &[("Noise", json!({}))]);
    server.append("billing", &[("Charged", json!({"cents": 3}))]);
    let event = from_end.next().unwrap();
    assert_eq!((event.id.as_deref(), event.json()["type"].as_str()), (Some("6"), Some("Charged")));

    let (_, metrics) = server.get_text("/metrics");
    assert!(metrics.contains("cairn_subscribers 3"), "three subscriptions are open:\n{metrics}");
}

#[test]
fn bad_subscription_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, body) = server.get("/v1/subscribe?from=yesterday");
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_query")), "{body}");
    let (status, body) = server.get("/v1/subscribe?colour=blue");
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_query")), "{body}");
}

#[test]
fn shutdown_ends_open_subscriptions_and_the_server_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    server.append("s", &[("A", json!({}))]);
    let mut sse = server.subscribe("from=0", None);
    assert_eq!(sse.next().unwrap().id.as_deref(), Some("0"));
    let status = server.stop();
    assert!(status.success(), "SIGTERM with an open subscription exits 0: {status}");
    assert!(sse.next().is_none(), "the subscription ended with the server");
}

/// Issue 23 (low): the keep-alive comment on an idle subscription is `: keep-alive`, as the
/// docs show; it was a bare `:`. (`--sse-keep-alive` shortens the interval for the test.)
#[test]
fn an_idle_subscription_carries_the_documented_keep_alive_comment() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--sse-keep-alive", "100ms"]);
    let mut tcp = std::net::TcpStream::connect(server.base.strip_prefix("http://").unwrap()).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    tcp.write_all(b"GET /v1/subscribe?from=end HTTP/1.1\r\nHost: cairn\r\n\r\n").unwrap();
    let mut reader = BufReader::new(tcp);
    let comment = loop {
        let mut line = String::new();
        assert_ne!(reader.read_line(&mut line).unwrap(), 0, "the stream ended before a keep-alive");
        if line.starts_with(':') {
            break line;
        }
    };
    assert_eq!(comment.trim_end(), ": keep-alive");
}
