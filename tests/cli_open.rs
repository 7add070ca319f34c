//! How CLI commands open the data directory.
//!
//! Issue 23 item 3: a mistyped `--data` created a store (any command made the directory, its
//! parents and a segment; `cairn --data ./cairn-dta verify` said ok). Only commands that write
//! create one; every other command on a missing or non-cairn directory exits 5 naming the path
//! and creates nothing.
//!
//! Issue 23 item 2: every command took the directory's exclusive lock, reads included. Reads now
//! open read-only without it: `tail` follows a directory another process appends to, reads and
//! `verify` run beside `cairn serve`, `cairn read-all | cairn append` works on one directory,
//! and a read-only copy reads and verifies without a byte or timestamp changing.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use support::{cairn, Server, BIN};

/// Commands that only read, each of which must refuse a directory that is not a store.
const READS: &[&[&str]] = &[
    &["read", "agent-1"],
    &["read-all"],
    &["export", "--all"],
    &["tail", "--from", "0"],
    &["streams"],
    &["head"],
    &["verify"],
    &["stats"],
    &["checkpoints"],
    &["kv", "get", "k"],
    &["kv", "list"],
    &["audit", "query"],
    &["meta", "config", "get", "model"],
];

/// Every path under `dir` with its bytes (empty for a directory) and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            let bytes = if meta.is_dir() {
                stack.push(path.clone());
                Vec::new()
            } else {
                std::fs::read(&path).unwrap()
            };
            out.insert(path, (bytes, meta.modified().unwrap()));
        }
    }
    out
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn reads_of_a_missing_or_foreign_directory_are_not_found_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("cairn-dta");
    let foreign = dir.path().join("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("cat.jpg"), b"not a segment").unwrap();
    for data in [&missing, &foreign] {
        for args in READS {
            let (code, out, err) = cairn(data, args);
            assert_eq!(code, 5, "{args:?} on {}: {out}{err}", data.display());
            assert!(err.contains(data.to_str().unwrap()), "the message names the path: {err}");
            assert!(err.contains("not a cairn data directory"), "{err}");
        }
    }
    assert!(!missing.exists(), "a read must not create the directory");
    let left: Vec<_> = std::fs::read_dir(&foreign).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("cat.jpg")]);
}

#[test]
fn commands_that_write_create_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a/b/data");
    assert_eq!(cairn(&data, &["append", "agent-1", "--type", "Started"]).0, 0);
    assert!(data.join("log").is_dir());
    let views = dir.path().join("views");
    assert_eq!(cairn(&views, &["kv", "set", "k", "1"]).0, 0);
    let (code, out, _) = cairn(&views, &["kv", "get", "k", "-o", "json"]);
    assert_eq!((code, serde_json::from_str::<Value>(&out).unwrap()["value"].clone()), (0, json!(1)));
}

#[test]
fn tail_follows_appends_made_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert_eq!(cairn(&data, &["append", "agent-1", "--type", "Started"]).0, 0);
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["tail", "--from", "0", "-o", "ndjson"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // A safety net so that a tail that never prints fails the test instead of hanging it.
    let next = || -> Value { serde_json::from_str(&rx.recv_timeout(Duration::from_secs(120)).unwrap()).unwrap() };
    assert_eq!(next()["position"], 0);
    // The tail is running: each append is another process that takes the writer's lock.
    for n in 1..=3 {
        let (code, _, err) =
            cairn(&data, &["append", "agent-2", "--type", "Step", "--data", &format!("{{\"n\":{n}}}")]);
        assert_eq!(code, 0, "append beside tail: {err}");
        let event = next();
        assert_eq!((event["position"].as_u64(), event["data"]["n"].as_u64()), (Some(n), Some(n)));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn reads_and_verify_run_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    server.append("agent-1", &[("Started", json!({"n": 1})), ("Step", json!({"n": 2}))]);
    server.append("agent-1", &[("Step", json!({"n": 3}))]);
    let (code, out, err) = cairn(&data, &["read", "agent-1", "-o", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    let events = ndjson(&out);
    assert_eq!(events.len(), 3, "the server's last append is durable, so a reader shows it");
    assert_eq!(events[2]["data"]["n"], 3);
    let (code, out, err) = cairn(&data, &["verify", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["events"], 3);
    for args in [&["head"][..], &["streams"], &["stats"], &["kv", "list"]] {
        let (code, _, err) = cairn(&data, args);
        assert_eq!(code, 0, "{args:?} beside serve: {err}");
    }
    // Writes still need the writer's lock, and say who holds it.
    let (code, _, err) = cairn(&data, &["append", "agent-1", "--type", "Step"]);
    assert_eq!(code, 1);
    assert!(err.contains("in use by another process"), "{err}");
    server.append("agent-1", &[("Step", json!({"n": 4}))]);
    let (_, out, _) = cairn(&data, &["read", "agent-1", "--backward", "--limit", "1", "-o", "ndjson"]);
    assert_eq!(ndjson(&out)[0]["data"]["n"], 4);
}

/// The pipe runs both commands at once: the reader must not keep the writer out. (The filter
/// between them keeps each event's type and data; `append --ndjson` takes no positions.)
#[test]
fn read_piped_into_append_on_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lines: String = (0..2000).map(|n| format!("{{\"type\":\"Step\",\"data\":{{\"n\":{n}}}}}\n")).collect();
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["append", "agent-1", "--ndjson"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), lines.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let script = format!(
        "'{bin}' --data '{d}' read agent-1 -o ndjson \
         | python3 -c 'import sys, json; [print(json.dumps({{\"type\": e[\"type\"], \"data\": e[\"data\"]}})) for e in map(json.loads, sys.stdin)]' \
         | '{bin}' --data '{d}' append copy --ndjson",
        bin = BIN,
        d = data.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, out, _) = cairn(&data, &["read", "copy", "-o", "ndjson"]);
    let copied = ndjson(&out);
    assert_eq!(copied.len(), 2000);
    assert_eq!(copied[1999]["data"]["n"], 1999);
}

/// Unmounts a bind mount when dropped, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A read-only bind mount of `source` at `target`, where the system allows one (root).
fn read_only_mount(source: &Path, target: &Path) -> Option<Mount> {
    let run =
        |args: &[&str]| Command::new("mount").args(args).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    std::fs::create_dir_all(target).unwrap();
    if !run(&["--bind", source.to_str()?, target.to_str()?]) {
        return None;
    }
    let mount = Mount(target.to_path_buf());
    run(&["-o", "remount,bind,ro", target.to_str()?]).then_some(mount)
}

/// A backup on read-only media: `chmod -R a-w`, and where the system allows it (root ignores
/// mode bits) a read-only bind mount, where any attempt to open a file for writing fails.
#[test]
fn a_read_only_copy_reads_and_verifies_and_is_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for n in 0..5 {
        assert_eq!(cairn(&data, &["append", "agent-1", "--type", "Step", "--data", &format!("{{\"n\":{n}}}")]).0, 0);
    }
    assert_eq!(cairn(&data, &["kv", "set", "k", "\"v\""]).0, 0);
    let status = Command::new("chmod").args(["-R", "a-w"]).arg(&data).status().unwrap();
    assert!(status.success());
    let before = snapshot(&data);
    let mount = read_only_mount(&data, &dir.path().join("media"));
    let mut copies = vec![data.clone()];
    copies.extend(mount.as_ref().map(|m| m.0.clone()));
    for copy in &copies {
        for args in READS.iter().filter(|a| a[0] != "tail") {
            let (code, out, err) = cairn(copy, args);
            // Absent streams and keys are not found (5); nothing else may fail.
            assert!(
                code == 0 || code == 5 && !err.contains("not a cairn data directory"),
                "{args:?}: {code} {out}{err}"
            );
        }
        let (code, out, err) = cairn(copy, &["verify", "-o", "json"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["events"].as_u64(), Some(6));
        let (code, out, _) = cairn(copy, &["kv", "get", "k", "-o", "json"]);
        assert_eq!((code, serde_json::from_str::<Value>(&out).unwrap()["value"].clone()), (0, json!("v")));
    }
    drop(mount);
    assert_eq!(snapshot(&data), before, "a read must not create, change or remove anything");
    let _ = Command::new("chmod").args(["-R", "u+w"]).arg(&data).status();
}
