//! Issue 23's low items a new user trips over on the command line: `read-all | head` ends
//! quietly with exit 0; `verify --from` beyond the head names the position asked for; `stats`
//! counts every file on disk (the spare segment and checkpoints too); the CLI's names for the
//! global log and for following it have the HTTP API's names as aliases (`events`, `subscribe`).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use support::cairn;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

fn seeded(events: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["append", "notes", "--ndjson"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for n in 0..events {
        writeln!(stdin, r#"{{"type":"Note","data":{{"n":{n},"text":"a line long enough to fill pipes quickly"}}}}"#)
            .unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    (dir, data)
}

/// Issue 23 (low): `cairn read-all | head` printed "Broken pipe" and exited 1.
#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    let (_dir, data) = seeded(5_000);
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .arg("read-all")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    // The reader is gone (as `head` is after its lines): the next writes meet a closed pipe.
    let out = child.wait_with_output().unwrap();
    assert!(first.contains("notes@0"), "{first}");
    assert_eq!(out.status.code(), Some(0), "exit 0 when the reader stops early");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "and no message");
}

/// Issue 23 (low): `verify --from 5000` on a log whose head is 4 said "position 4999 is beyond
/// the head", one off from what was asked.
#[test]
fn verify_from_beyond_the_head_names_the_position_asked_for() {
    let (_dir, data) = seeded(5);
    let (code, _, err) = cairn(&data, &["verify", "--from", "5000"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("--from 5000 is beyond the head") && err.contains("its head is position 4"), "{err}");
    let (code, out, err) = cairn(&data, &["verify", "--from", "4"]);
    assert_eq!(code, 0, "the head itself can be verified alone: {err}");
    assert!(out.contains("ok: 1 events verified"), "{out}");
}

fn file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| if e.file_type().unwrap().is_dir() { file_bytes(&e.path()) } else { e.metadata().unwrap().len() })
        .sum()
}

/// Issue 23 (low): `stats` left out the spare segment (and checkpoints): its disk bytes are
/// every file of the data directory.
#[test]
fn stats_counts_every_file_on_disk() {
    let (_dir, data) = seeded(5);
    assert_eq!(cairn(&data, &["checkpoint"]).0, 0);
    // The spare segment the writer prepares ahead of the next roll, as it is named on disk.
    std::fs::write(data.join("log").join("spare.tmp"), vec![0u8; 4096]).unwrap();
    let (code, out, err) = cairn(&data, &["stats", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["disk_bytes"].as_u64(), Some(file_bytes(&data)), "{stats}");
}

/// Issue 23 (low): one vocabulary with aliases: `events` is `read-all` (GET /v1/events) and
/// `subscribe` is `tail` (GET /v1/subscribe).
#[test]
fn the_http_names_are_aliases_of_the_cli_commands() {
    let (_dir, data) = seeded(3);
    let (code, all, _) = cairn(&data, &["read-all", "-o", "ndjson"]);
    assert_eq!(code, 0);
    let (code, events, err) = cairn(&data, &["events", "-o", "ndjson"]);
    assert_eq!((code, events), (0, all), "{err}");
    let (code, help, _) = cairn(&data, &["subscribe", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("like tail -f"), "{help}");
    let (_, help, _) = cairn(&data, &["--help"]);
    assert!(help.contains("[alias: events]") && help.contains("[alias: subscribe]"), "{help}");
}
