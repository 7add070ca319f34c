//! Reading from the command line: `read` (forward, backward, from, limit), `read-all`,
//! `streams`, `head` and `stats`, in the text, json and ndjson formats, and exit 5 for a stream
//! that does not exist.

mod support;

use serde_json::{json, Value};
use support::cairn;

fn seeded() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lines: String = (0..5).map(|i| format!("{{\"type\":\"Step{i}\",\"data\":{{\"i\":{i}}}}}\n")).collect();
    let out = assert_cmd::Command::new(support::BIN)
        .arg("--data")
        .arg(&data)
        .args(["append", "agent-1", "--ndjson"])
        .write_stdin(lines)
        .assert()
        .success();
    drop(out);
    let (code, _, err) = cairn(&data, &["append", "agent-2", "--type", "Other"]);
    assert_eq!(code, 0, "{err}");
    (dir, data)
}

fn ndjson(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn read_pages_a_stream_in_each_direction_and_format() {
    let (_dir, data) = seeded();
    let (code, out, _) = cairn(&data, &["read", "agent-1", "-o", "ndjson"]);
    assert_eq!(code, 0);
    let versions: Vec<u64> = ndjson(&out).iter().map(|e| e["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [0, 1, 2, 3, 4]);
    let (_, out, _) = cairn(&data, &["read", "agent-1", "--from", "1", "--limit", "2", "-o", "json"]);
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["events"][0]["type"], "Step1");
    assert_eq!(page["next"], 3);
    let (_, out, _) = cairn(&data, &["read", "agent-1", "--backward", "--limit", "2", "-o", "ndjson"]);
    let types: Vec<String> = ndjson(&out).iter().map(|e| e["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(types, ["Step4", "Step3"]);
    let (_, out, _) = cairn(&data, &["read", "agent-1"]);
    assert_eq!(out.lines().count(), 5);
    assert!(out.lines().next().unwrap().contains("agent-1@0  Step0"), "{out}");
    assert!(out.contains("{\"i\":0}"), "{out}");

    let (code, _, err) = cairn(&data, &["read", "agent-9"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("stream agent-9 not found"), "{err}");
}

#[test]
fn read_all_walks_the_global_log() {
    let (_dir, data) = seeded();
    let (_, out, _) = cairn(&data, &["read-all", "--from", "4", "-o", "ndjson"]);
    let events = ndjson(&out);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["stream"], "agent-2");
    assert_eq!(events[1]["position"], 5);
    let (_, out, _) = cairn(&data, &["read-all", "--limit", "2", "-o", "json"]);
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], 2);
    let (_, out, _) = cairn(&data, &["read-all", "-o", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["next"], Value::Null);
}

#[test]
fn streams_head_and_stats_describe_the_log() {
    let (_dir, data) = seeded();
    let (_, out, _) = cairn(&data, &["streams", "-o", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!([
            {"stream": "agent-1", "last_version": 4, "events": 5},
            {"stream": "agent-2", "last_version": 0, "events": 1}
        ])
    );
    let (_, out, _) = cairn(&data, &["streams", "--prefix", "agent-2"]);
    assert_eq!(out.lines().count(), 2, "a header and one row: {out}");
    let (_, out, _) = cairn(&data, &["head", "-o", "json"]);
    let head: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(head["position"], 5);
    let (_, last, _) = cairn(&data, &["read-all", "--from", "5", "-o", "ndjson"]);
    assert_eq!(head["hash"], ndjson(&last)[0]["hash"]);
    let (_, out, _) = cairn(&data, &["head"]);
    assert!(out.contains("position 5"), "{out}");
    let (_, out, _) = cairn(&data, &["stats", "-o", "json"]);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (stats["events"].as_u64(), stats["streams"].as_u64(), stats["segments"].as_u64()),
        (Some(6), Some(2), Some(1))
    );
    assert!(stats["record_bytes"].as_u64().unwrap() > 0);
}

/// A data directory a writer created but never appended to reads as empty (a missing one is
/// not found: see cli_open.rs).
#[test]
fn an_empty_data_directory_reads_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new");
    assert_eq!(cairn(&data, &["checkpoint"]).0, 1, "nothing to checkpoint, but the store exists now");
    let (code, out, _) = cairn(&data, &["head"]);
    assert_eq!(code, 0);
    assert!(out.contains("the log is empty"), "{out}");
    assert!(data.join("log").is_dir());
    let (code, out, _) = cairn(&data, &["read-all", "-o", "json"]);
    assert_eq!((code, serde_json::from_str::<Value>(&out).unwrap()), (0, json!({"events": [], "next": null})));
}

/// Issue 14 item 11 (the CLI's share): `cairn read` pages a stream by bytes as well as events,
/// so a page of large events is bounded; a page cut short by bytes is not taken for the end of
/// the stream, and every event comes out once, in order, both ways.
#[test]
fn read_pages_large_events_by_bytes_and_returns_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pad = "x".repeat(1_000_000);
    let lines: String =
        (0..20).map(|i| format!("{{\"type\":\"Blob\",\"data\":{{\"i\":{i},\"pad\":\"{pad}\"}}}}\n")).collect();
    assert_cmd::Command::new(support::BIN)
        .arg("--data")
        .arg(&data)
        .args(["append", "big", "--ndjson"])
        .write_stdin(lines)
        .assert()
        .success();
    for (args, expected) in [
        (&["read", "big", "-o", "ndjson"][..], (0..20).collect::<Vec<u64>>()),
        (&["read", "big", "-o", "ndjson", "--backward"][..], (0..20).rev().collect()),
    ] {
        let (code, out, err) = cairn(&data, args);
        assert_eq!(code, 0, "{err}");
        let got: Vec<u64> = ndjson(&out).iter().map(|e| e["data"]["i"].as_u64().unwrap()).collect();
        assert_eq!(got, expected, "{args:?}");
    }
}
