//! Readiness and per-route latency, against the real server:
//!
//! - `/readyz` answers 200 `ready` on a server that serves, beside `/healthz`.
//! - A read replica whose leader cannot be reached is alive (`/healthz` 200) but not ready
//!   (`/readyz` 503 `replica_catching_up`, a JSON error with a sentence); a replica of a
//!   reachable leader becomes ready.
//! - `/metrics` has a request-latency histogram per route template and method: appends to many
//!   streams are one series (the template), never a series per raw path, so its size stays
//!   bounded whatever clients send.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::Server;

/// A failure guard for conditions polled over HTTP; no assertion depends on it.
const GUARD: Duration = Duration::from_secs(60);

#[test]
fn a_serving_server_is_ready_and_a_replica_is_ready_once_it_reached_its_leader() {
    let dir = tempfile::tempdir().unwrap();
    let leader = Server::start(&dir.path().join("leader"), &[]);
    let (code, body) = leader.get("/readyz");
    assert_eq!((code, body), (200, json!({"status": "ready"})));
    assert_eq!(leader.get("/healthz").0, 200);

    // A port nothing listens on: the replica can never reach this leader.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let lost = Server::start(&dir.path().join("lost"), &["--follow", &format!("http://{gone}")]);
    let (code, body) = lost.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"], "replica_catching_up", "{body}");
    assert!(body["message"].as_str().unwrap().ends_with("(see /healthz for why)"), "{body}");
    assert_eq!(lost.get("/healthz").0, 200, "alive: restarting it would not help");

    leader.append("s", &[("T", json!({"n": 1}))]);
    let replica = Server::start(&dir.path().join("replica"), &["--follow", &leader.base]);
    let started = Instant::now();
    while replica.get("/readyz").0 != 200 {
        assert!(started.elapsed() < GUARD, "the replica never became ready: {}", replica.get("/readyz").1);
        std::thread::sleep(Duration::from_millis(20));
    }
    for server in [replica, lost, leader] {
        assert!(server.stop().success());
    }
}

#[test]
fn request_latency_is_a_histogram_per_route_template_not_per_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    for agent in ["agent-1", "agent-2", "agent-3"] {
        server.append(agent, &[("T", json!({"n": 1}))]);
    }
    assert_eq!(server.get("/v1/streams/agent-1/events").0, 200);
    let (code, text) = server.get_text("/metrics");
    assert_eq!(code, 200);
    let series = |route: &str, method: &str, suffix: &str| {
        let needle = format!("method=\"{method}\",route=\"{route}\"");
        text.lines()
            .filter(|l| l.starts_with(&format!("cairn_http_request_duration_seconds_{suffix}")) && l.contains(&needle))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(series("/v1/streams/{stream}/events", "POST", "count"), vec![3.0], "{text}");
    assert_eq!(series("/v1/streams/{stream}/events", "GET", "count"), vec![1.0], "{text}");
    let buckets = series("/v1/streams/{stream}/events", "POST", "bucket");
    assert_eq!(buckets.len(), 17, "16 bounds and +Inf: {text}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]) && buckets[16] == 3.0, "cumulative: {buckets:?}");
    assert!(!text.contains("agent-"), "no raw path is a label: {text}");
    assert!(server.stop().success());
}
