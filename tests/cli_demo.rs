//! `cairn demo`: runs the multi-agent workload on a fresh directory and reports it; a directory
//! that already holds data is left alone and the demo runs in a fresh sibling instead. The
//! resulting log verifies with `cairn verify`.

mod support;

use serde_json::Value;
use support::cairn;

#[test]
fn the_demo_runs_reports_and_leaves_a_verifiable_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, out, err) = cairn(&data, &["demo", "--agents", "4", "--steps", "30", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["verify_ok"], true);
    assert_eq!(summary["idempotent_retry_ok"], true);
    assert_eq!(summary["stale_write_refused"], true);
    assert_eq!(summary["appends"], 4 * 30);
    let events = summary["events"].as_u64().unwrap();
    assert!(events >= 4 * 30 * 2, "each step appends at least two events: {summary}");
    assert_eq!(summary["verified_events"], events);

    let (_, head, _) = cairn(&data, &["head", "-o", "json"]);
    let head: Value = serde_json::from_str(&head).unwrap();
    assert_eq!(head["position"], events - 1);
    assert_eq!(head["hash"], summary["head_hash"]);
    let (_, streams, _) = cairn(&data, &["streams", "--prefix", "agent-", "-o", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&streams).unwrap().as_array().unwrap().len(), 4);
    assert_eq!(cairn(&data, &["verify"]).0, 0);

    // A second run leaves the first one's data alone.
    let (code, out, err) = cairn(&data, &["demo", "--agents", "2", "--steps", "5"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already holds data"), "{err}");
    let sibling = dir.path().join("data-demo-1");
    assert!(out.contains(&sibling.display().to_string()), "{out}");
    assert!(out.contains("verify      ok"), "{out}");
    let (_, again, _) = cairn(&data, &["head", "-o", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), head);
}
