//! `cairn tail`: prints the log from a position and keeps following it until Ctrl-C (SIGINT),
//! which ends it with exit 0.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{cairn, BIN};

#[test]
fn tail_prints_matching_events_and_ends_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (stream, t) in [("agent-1", "ToolCalled"), ("agent-2", "ToolCalled"), ("agent-1", "MessageSent")] {
        assert_eq!(cairn(&data, &["append", stream, "--type", t]).0, 0);
    }
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["tail", "agent-1", "--from", "0", "-o", "ndjson"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!((first["position"].as_u64(), second["position"].as_u64()), (Some(0), Some(2)));
    assert_eq!(second["type"], "MessageSent");
    // tail reads without the writer's lock: other commands use the directory meanwhile.
    let (code, out, err) = cairn(&data, &["head"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("position 2"), "{out}");
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "Ctrl-C ends tail with exit 0: {status}");
    assert!(lines.next().is_none());
}

#[test]
fn tail_refuses_a_bad_start() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = cairn(&dir.path().join("data"), &["tail", "--from", "yesterday"]);
    assert_eq!(code, 2);
    assert!(err.contains("--from \"yesterday\""), "{err}");
}
