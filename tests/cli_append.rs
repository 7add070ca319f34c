//! `cairn append` from the command line: one event (JSON, file, binary), NDJSON batches from
//! stdin, expected versions (exit 4), idempotent ids, and bad input (exit 2) that writes
//! nothing.

mod support;

use assert_cmd::Command;
use serde_json::{json, Value};
use support::{cairn, BIN};

fn cmd(data: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--data").arg(data);
    c
}

fn events(data: &std::path::Path) -> Vec<Value> {
    let (code, out, err) = cairn(data, &["read-all", "-o", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn one_event_is_appended_and_described_in_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = cmd(&data)
        .args(["append", "agent-7", "--type", "ToolCalled", "--data", "{ \"tool\": \"search\" }"])
        .args(["--metadata", "{\"run_id\":\"r-1\"}"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("appended to agent-7 at position 0 (version 0)"), "{text}");
    let out = cmd(&data).args(["append", "agent-7", "--type", "ToolReturned", "-o", "json"]).assert().success();
    let result: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(result["first_position"], 1);
    assert_eq!(result["last_version"], 1);
    assert_eq!(result["hash"].as_str().unwrap().len(), 64);
    let all = events(&data);
    assert_eq!(all[0]["data"], json!({"tool": "search"}));
    assert_eq!(all[0]["metadata"], json!({"run_id": "r-1"}));
    assert_eq!(all[1]["data"], json!({}), "no --data means {{}}");
}

#[test]
fn a_wrong_expected_version_exits_4_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    cmd(&data).args(["append", "s", "--type", "A", "--expected-version", "no_stream"]).assert().success();
    let out = cmd(&data).args(["append", "s", "--type", "B", "--expected-version", "no_stream"]).assert().code(4);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("wrong expected version for stream s"), "{err}");
    cmd(&data).args(["append", "s", "--type", "B", "--expected-version", "7"]).assert().code(4);
    cmd(&data).args(["append", "s", "--type", "B", "--expected-version", "0"]).assert().success();
    cmd(&data).args(["append", "s", "--type", "C", "--expected-version", "exists"]).assert().success();
    assert_eq!(events(&data).len(), 3);
}

#[test]
fn an_id_makes_a_retry_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let id = "0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c11";
    let first = cmd(&data).args(["append", "s", "--type", "Paid", "--id", id, "-o", "json"]).assert().success();
    let retry = cmd(&data).args(["append", "s", "--type", "Paid", "--id", id, "-o", "json"]).assert().success();
    assert_eq!(first.get_output().stdout, retry.get_output().stdout);
    assert_eq!(events(&data).len(), 1);
}

#[test]
fn bad_input_exits_2_with_a_sentence_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (args, needle) in [
        (vec!["append", "s", "--type", "T", "--data", "{not json"], "--data is not valid JSON"),
        (vec!["append", "s", "--type", "T", "--metadata", "[1]"], "--metadata must be a JSON object"),
        (vec!["append", "$system", "--type", "T"], "reserved for cairn"),
        (vec!["append", "s", "--type", "T", "--expected-version", "latest"], "expected version \"latest\""),
        (vec!["append", "s", "--type", ""], "event type"),
        (vec!["append", "s"], "--type"),
        (vec!["append", "s", "--type", "T", "--data-file", "/nonexistent/file"], "/nonexistent/file"),
    ] {
        let out = cmd(&data).args(&args).assert().failure();
        let code = out.get_output().status.code().unwrap();
        let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("Error {") && !err.contains("kind:"), "no Debug dump: {err}");
        let expected = if needle == "/nonexistent/file" { 1 } else { 2 };
        assert_eq!(code, expected, "{args:?}: {err}");
    }
    let (_, out, _) = cairn(&data, &["head", "-o", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["position"], Value::Null);
}

#[test]
fn data_files_are_json_unless_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let json_file = dir.path().join("d.json");
    std::fs::write(&json_file, "{\n  \"a\": [1, 2]\n}\n").unwrap();
    let blob = dir.path().join("blob.bin");
    std::fs::write(&blob, [0u8, 1, 2, 255]).unwrap();
    cmd(&data).args(["append", "s", "--type", "J", "--data-file"]).arg(&json_file).assert().success();
    cmd(&data).args(["append", "s", "--type", "B", "--binary", "--data-file"]).arg(&blob).assert().success();
    cmd(&data).args(["append", "s", "--type", "B", "--data-file"]).arg(&blob).assert().code(2);
    let all = events(&data);
    assert_eq!(all[0]["data"], json!({"a": [1, 2]}));
    assert_eq!(all[1]["data_b64"], "AAEC/w==");
    assert_eq!(all.len(), 2);
}

#[test]
fn ndjson_from_stdin_is_appended_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lines: String = (0..2500).map(|i| format!("{{\"type\":\"Note\",\"data\":{{\"n\":{i}}}}}\n")).collect();
    let out = cmd(&data).args(["append", "notes", "--ndjson", "-o", "json"]).write_stdin(lines).assert().success();
    let summary: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(summary["events"], 2500);
    assert_eq!(summary["batches"], 3, "batches of 1000 events");
    assert_eq!((summary["first_position"].as_u64(), summary["last_position"].as_u64()), (Some(0), Some(2499)));
    let out = cmd(&data)
        .args(["append", "notes", "--ndjson", "-o", "ndjson", "--expected-version", "2499"])
        .write_stdin("{\"type\":\"A\"}\n\n{\"type\":\"B\",\"data_b64\":\"AA==\",\"metadata\":{\"k\":1}}\n")
        .assert()
        .success();
    let batches: Vec<Value> =
        String::from_utf8_lossy(&out.get_output().stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0]["first_version"], 2500);
    let (_, out, _) = cairn(&data, &["read", "notes", "--from", "2499", "-o", "ndjson"]);
    assert_eq!(out.lines().count(), 3);
}

#[test]
fn a_bad_ndjson_line_is_named_and_the_batches_before_it_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut input: String = (0..1000).map(|i| format!("{{\"type\":\"Ok\",\"data\":{i}}}\n")).collect();
    input.push_str("{\"type\":\"Ok\"}\n{\"data\": 1}\n");
    let out = cmd(&data).args(["append", "s", "--ndjson"]).write_stdin(input).assert().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("line 1002 of standard input"), "{err}");
    assert!(err.contains("the 1000 events before it were appended"), "{err}");
    assert_eq!(events(&data).len(), 1000, "the first full batch was committed; the partial one was not");
    let out = cmd(&data)
        .args(["append", "s", "--ndjson", "--expected-version", "no_stream"])
        .write_stdin("{\"type\":\"X\"}\n")
        .assert()
        .code(4);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("wrong expected version"));
}
