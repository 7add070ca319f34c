//! `cairn demo`: runs the multi-agent workload on a fresh directory and reports it (views, an
//! MCP round trip, checkpoint, verification, drill); a directory that already holds data is left alone and the
//! demo runs in a fresh sibling instead. What it leaves behind is a working store: the log
//! verifies, the views answer, the checkpoint is valid.

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
    // The MCP round trip: the SDK's client against cairn's MCP server, in process.
    let mcp = &summary["mcp"];
    assert_eq!(mcp["read_back"], true, "{mcp}");
    assert_eq!((mcp["graph_stream"].as_str(), mcp["events"].as_u64()), (Some("memory:demo"), Some(3)), "{mcp}");
    assert!(mcp["tools"].as_u64().unwrap() >= 24, "{mcp}");
    assert_eq!(summary["drill"]["ok"], true, "{summary}");
    assert_eq!(summary["drill"]["events_lost"], 0);
    assert_eq!(summary["audit_entries"], 4 * 30, "one audit entry per step");
    assert_eq!(summary["services_registered"], 4);
    assert_eq!(summary["kv_keys"], 4 * 2, "a counter and a state per agent");
    let events = summary["events"].as_u64().unwrap();
    assert!(summary["workload_events"].as_u64().unwrap() >= 4 * 30 * 4, "each step appends at least four events");
    assert_eq!(summary["verified_events"], events);
    assert_eq!(summary["checkpoint"]["position"], events - 1, "the checkpoint covers the whole run");

    let (_, head, _) = cairn(&data, &["head", "-o", "json"]);
    let head: Value = serde_json::from_str(&head).unwrap();
    assert_eq!(head["position"], events - 1);
    assert_eq!(head["hash"], summary["head_hash"]);
    let (_, streams, _) = cairn(&data, &["streams", "--prefix", "agent-", "-o", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&streams).unwrap().as_array().unwrap().len(), 4);
    assert_eq!(cairn(&data, &["verify"]).0, 0);
    let (code, calls, err) = cairn(&data, &["kv", "get", "agent/3/tool_calls"]);
    assert_eq!((code, calls.trim()), (0, "30"), "{err}");
    let (code, _, err) = cairn(&data, &["checkpoints"]);
    assert_eq!(code, 0, "the demo's checkpoint is valid: {err}");

    // A second run leaves the first one's data alone.
    let (code, out, err) = cairn(&data, &["demo", "--agents", "2", "--steps", "5"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already holds data"), "{err}");
    let sibling = dir.path().join("data-demo-1");
    assert!(out.contains(&sibling.display().to_string()), "{out}");
    assert!(out.contains("verify      ok"), "{out}");
    assert!(out.contains("mcp         ok: initialize"), "{out}");
    let (_, again, _) = cairn(&data, &["head", "-o", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), head);
}

/// Issue 23 item 5: the demo filled ./cairn-data, so the README's next steps met its 11.7k
/// events; without --data it now runs in ./cairn-demo and leaves ./cairn-data alone.
#[test]
fn without_data_the_demo_uses_its_own_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["demo", "--agents", "1", "--steps", "2"])
        .env_remove("CAIRN_DATA")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("cairn-demo").join("log").is_dir());
    assert!(!dir.path().join("cairn-data").exists(), "./cairn-data stays empty for the user's own events");
    assert!(String::from_utf8_lossy(&out.stdout).contains("--data ./cairn-demo read agent-0"));
}

/// Issue 23 item 9: Ctrl-C during the demo's own recovery drill left its scratch directory in the
/// system temporary directory. The signal is sent as soon as that directory appears, whatever the
/// drill is doing then; the demo must exit 130 and leave the temporary directory empty.
#[test]
fn an_interrupted_demo_drill_leaves_no_scratch_directory() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    for attempt in 0..20 {
        let data = dir.path().join(format!("data-{attempt}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .env("TMPDIR", &tmp)
            .arg("--data")
            .arg(&data)
            .args(["demo", "--agents", "2", "--steps", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let status = loop {
            if child.try_wait().unwrap().is_some() {
                break None;
            }
            if std::fs::read_dir(&tmp).unwrap().next().is_some() {
                let sent = Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap();
                assert!(sent.success());
                break Some(child.wait().unwrap());
            }
            std::thread::yield_now();
        };
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "the demo left {left:?} in the temporary directory");
        if let Some(status) = status {
            assert_eq!(status.code(), Some(130), "an interrupted demo exits 130");
            return;
        }
    }
    panic!("the demo's drill directory never appeared while the demo ran, in 20 attempts");
}
