//! Issue 23 item 10: bulk reload. `cairn export` writes NDJSON that `cairn import` reads back
//! exactly (stream, id, type, data or data_b64, metadata); importing the same file again writes
//! nothing new; and `append --ndjson` takes the lines of `read -o ndjson` as they are.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::cairn;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// Runs cairn on `data` with `stdin` as its standard input.
fn with_stdin(data: &Path, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// What must survive a round trip: everything but what the target store assigns.
fn essence(data: &Path, stream: &str) -> Vec<Value> {
    let (code, out, err) = cairn(data, &["read", stream, "-o", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| {
            let mut e: Value = serde_json::from_str(l).unwrap();
            for assigned in ["position", "timestamp", "hash"] {
                e.as_object_mut().unwrap().remove(assigned);
            }
            e
        })
        .collect()
}

fn seeded(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("source");
    // Interleaved streams, more than one import batch of one of them, metadata, a binary payload.
    let mut lines = String::new();
    for n in 0..2_500 {
        lines.push_str(&format!(
            "{{\"type\":\"Tick\",\"data\":{{\"n\":{n}}},\"metadata\":{{\"run\":\"r-{}\"}}}}\n",
            n % 7
        ));
    }
    assert_eq!(with_stdin(&data, &["append", "ticks", "--ndjson"], lines.as_bytes()).0, 0);
    let blob = dir.join("blob.bin");
    std::fs::write(&blob, [0u8, 159, 146, 150, 255]).unwrap();
    for i in 0..5 {
        let (code, _, err) =
            cairn(&data, &["append", "agent-7", "--type", "ToolCalled", "--payload", &format!("{{\"i\":{i}}}")]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) =
            cairn(&data, &["append", "blobs", "--type", "Blob", "--data-file", blob.to_str().unwrap(), "--binary"]);
        assert_eq!(code, 0, "{err}");
    }
    data
}

/// Issue 23 item 10: export -> import into a fresh directory gives identical streams, and a
/// second import of the same file writes nothing.
#[test]
fn export_then_import_round_trips_and_a_second_import_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = seeded(dir.path());
    let (code, exported, err) = cairn(&source, &["export", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(exported.lines().count(), 2_510);

    let target = dir.path().join("target");
    let (code, out, err) = with_stdin(&target, &["import", "-o", "json"], exported.as_bytes());
    assert_eq!(code, 0, "{err}");
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((summary["written"].as_u64(), summary["streams"].as_u64()), (Some(2_510), Some(3)), "{summary}");
    for stream in ["ticks", "agent-7", "blobs"] {
        assert_eq!(essence(&target, stream), essence(&source, stream), "{stream}");
    }
    assert!(essence(&target, "blobs")[0]["data_b64"].is_string(), "binary stays binary");

    let (_, head_before, _) = cairn(&target, &["head", "-o", "json"]);
    let (code, out, err) = with_stdin(&target, &["import", "-o", "json"], exported.as_bytes());
    assert_eq!(code, 0, "{err}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((again["written"].as_u64(), again["already_present"].as_u64()), (Some(0), Some(2_510)), "{again}");
    assert_eq!(cairn(&target, &["head", "-o", "json"]).1, head_before, "nothing new was written");
    assert_eq!(cairn(&target, &["verify"]).0, 0);

    // One stream at a time, from a version on.
    let (code, part, err) = cairn(&source, &["export", "agent-7", "--from", "3"]);
    assert_eq!(code, 0, "{err}");
    let versions: Vec<u64> =
        part.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [3, 4]);
}

/// Issue 23 item 10: `read -o ndjson` output fed to `append --ndjson` needed jq to strip
/// position, version, timestamp and hash; now it is taken as it is.
#[test]
fn read_output_is_append_input() {
    let dir = tempfile::tempdir().unwrap();
    let source = seeded(dir.path());
    let (code, read, err) = cairn(&source, &["read", "agent-7", "-o", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    let target = dir.path().join("target");
    let (code, _, err) = with_stdin(&target, &["append", "copy-of-agent-7", "--ndjson"], read.as_bytes());
    assert_eq!(code, 0, "{err}");
    let original = essence(&source, "agent-7");
    let copy = essence(&target, "copy-of-agent-7");
    assert_eq!(copy.len(), original.len());
    for (a, b) in original.iter().zip(&copy) {
        assert_eq!(
            (&a["id"], &a["type"], &a["data"], &a["version"]),
            (&b["id"], &b["type"], &b["data"], &b["version"])
        );
    }
    // A typo in a field name is still caught.
    let (code, _, err) = with_stdin(&target, &["append", "s", "--ndjson"], b"{\"type\":\"T\",\"dta\":{}}\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("dta"), "{err}");
}

/// Issue 23 item 10: import keeps versions, so a stream that is elsewhere in the target is
/// refused (exit 4) rather than merged out of order, and nothing of that batch is written.
#[test]
fn import_into_a_stream_at_another_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = seeded(dir.path());
    let (_, exported, _) = cairn(&source, &["export", "agent-7"]);
    let target = dir.path().join("target");
    assert_eq!(cairn(&target, &["append", "agent-7", "--type", "Other"]).0, 0);
    let (code, _, err) = with_stdin(&target, &["import"], exported.as_bytes());
    assert_eq!(code, 4, "{err}");
    assert_eq!(essence(&target, "agent-7").len(), 1, "nothing of the batch was written");
}
