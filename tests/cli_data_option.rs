//! Issue 23 item 4: `--data` names the data directory before or after any command.
//!
//! `cairn serve --data X` used to fail with a generic error because `--data` was accepted only
//! before the command (after `append` it was the event's payload). Now it is a global option;
//! append's payload is `--payload`, and `append ... --data JSON` still works for a release
//! with a deprecation warning. `--data-dir` names the directory anywhere, `append` included.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).env_remove("CAIRN_DATA").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Issue 23 item 4: `cairn serve --data X` failed; the server now starts on X.
#[test]
fn serve_takes_the_data_directory_after_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("served");
    let mut child = Command::new(BIN)
        .args(["serve", "--data", text(&data), "--listen", "127.0.0.1:0"])
        .env_remove("CAIRN_DATA")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.starts_with("listening on "), "serve printed {line:?}");
    assert!(data.join("log").is_dir(), "the server used the directory given after `serve`");
}

/// Issue 23 item 4: every position names the same directory; `--payload` is the payload.
#[test]
fn the_data_directory_is_accepted_in_any_position() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (code, _, err) = run(&["append", "s", "--type", "T", "--payload", r#"{"n":1}"#, "--data-dir", text(&data)]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["--data", text(&data), "append", "s", "--type", "T", "--payload", r#"{"n":2}"#]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "no warning for the new spelling: {err}");
    for args in [
        vec!["read", "s", "--data", text(&data), "-o", "ndjson"],
        vec!["--data", text(&data), "read", "s", "-o", "ndjson"],
        vec!["read", "--data-dir", text(&data), "s", "-o", "ndjson"],
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let data: Vec<String> =
            out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["data"].to_string()).collect();
        assert_eq!(data, [r#"{"n":1}"#, r#"{"n":2}"#], "{args:?}");
    }
    let (code, out, err) = run(&["verify", "--data", text(&data)]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Issue 23 item 4: the old payload spelling keeps working for one release, with a warning,
/// and a directory given there by mistake gets a message saying how to write it.
#[test]
fn append_data_still_means_the_payload_with_a_deprecation_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (code, _, err) = run(&["--data", text(&data), "append", "s", "--type", "T", "--data", r#"{"old":true}"#]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("--payload") && err.contains("warning"), "{err}");
    let (code, out, err) = run(&["--data", text(&data), "read", "s", "-o", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#""data":{"old":true}"#), "{out}");

    let (code, _, err) = run(&["append", "s", "--type", "T", "--data", text(&data)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("--data-dir {}", data.display())), "{err}");
}
