//! Server lifecycle against the real binary: a graceful stop (SIGTERM or SIGINT) exits 0 and a
//! restarted server serves everything that was acknowledged, with the same chain; a second
//! server on the same data directory is refused by the lock.

mod support;

use serde_json::json;
use support::{cairn, Server};

#[test]
fn a_restarted_server_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        acknowledged.push(server.append(&format!("agent-{}", i % 3), &[("Step", json!({"i": i}))]));
    }
    let (_, head_before) = server.get("/v1/head");
    let (_, all_before) = server.get("/v1/events?limit=1000");
    assert!(server.stop().success());

    let server = Server::start(&data, &[]);
    let (_, head_after) = server.get("/v1/head");
    assert_eq!(head_after, head_before);
    let (_, all_after) = server.get("/v1/events?limit=1000");
    assert_eq!(all_after, all_before, "every event, id, timestamp and hash is unchanged");
    for ack in &acknowledged {
        let (_, event) = server.get(&format!("/v1/events/{}", ack["last_position"]));
        assert_eq!(event["hash"], ack["hash"]);
    }
    let (_, report) = server.post("/v1/verify", &json!({}));
    assert_eq!(report["ok"], true);
    // Appends continue the chain after the restart.
    let next = server.append("agent-0", &[("AfterRestart", json!({}))]);
    assert_eq!(next["first_position"], 20);
    assert!(server.stop_with("INT").success(), "SIGINT is a graceful stop too");
}

#[test]
fn a_second_server_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let (code, _, err) = cairn(&data, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("in use by another process"), "{err}");
    // A CLI write needs the writer's lock too (reads take none: see cli_open.rs).
    let (code, _, err) = cairn(&data, &["append", "agent-1", "--type", "Started"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("HTTP API"), "the CLI says what to do instead: {err}");
    assert_eq!(server.get("/healthz").0, 200, "the first server is unaffected");
    assert!(server.stderr().contains("cairn serving with auth OFF"), "auth off is said at start: {}", server.stderr());
}
