//! Encryption at rest through the real binary: `cairn serve --key-file` writes nothing an
//! attacker with the disk (or a backup) can read; the CLI reads with the key and says what it
//! needs without it; `verify` needs no key.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::{cairn, Server};

const MARKER: &str = "QWZX-plaintext-marker";

fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn assert_no_marker(dir: &Path) {
    let files = files_under(dir);
    assert!(!files.is_empty(), "{} holds files", dir.display());
    for (path, bytes) in files {
        assert!(!bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()), "{} holds the marker", path.display());
    }
}

fn key_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("cairn.key");
    std::fs::write(&path, format!("{}\n", "3c".repeat(32))).unwrap();
    path
}

#[test]
fn nothing_written_through_the_api_is_readable_on_disk_or_in_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = key_file(tmp.path());
    let key_arg = key.to_str().unwrap();
    let server = Server::start(&data, &["--key-file", key_arg]);
    for n in 0..50 {
        let events = [("Said", json!({"text": format!("{MARKER} {n}")}))];
        server.append(&format!("agent-{}", n % 2), &events);
    }
    let (status, _) = server.request(
        reqwest::Method::PUT,
        "/v1/kv/session%2F1",
        Some(&json!({"value": {"note": format!("{MARKER} in a key")}})),
    );
    assert_eq!(status, 200);
    let (status, got) = server.get("/v1/streams/agent-1/events?limit=100");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["events"].as_array().unwrap().len(), 25);
    assert_eq!(got["events"][0]["data"]["text"], format!("{MARKER} 1"));
    // Checkpoints are encrypted too (version 2): the grep below covers them, here and in the
    // backup, which copies them.
    let (status, body) = server.post("/v1/checkpoints", &json!({}));
    assert_eq!(status, 200, "{body}");
    let name = std::path::PathBuf::from(body["file"].as_str().unwrap());
    let bytes = std::fs::read(data.join("checkpoints").join(name.file_name().unwrap())).unwrap();
    assert_eq!(&bytes[8..12], &2u32.to_le_bytes(), "an encrypted log's checkpoint is format version 2");
    let backup = tmp.path().join("backup");
    let (status, body) = server.post("/v1/admin/backup", &json!({"to": backup.to_str().unwrap()}));
    assert_eq!(status, 200, "{body}");
    assert!(server.stop().success());

    assert_no_marker(&data);
    assert_no_marker(&backup);

    // Without the key: verify passes; reading a payload says what it needs.
    let (code, stdout, stderr) = cairn(&data, &["verify", "-o", "json"]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let (code, _, stderr) = cairn(&data, &["read", "agent-0"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("encrypted") && stderr.contains("position 0") && stderr.contains("--key-file"), "{stderr}");
    // With it (as a flag or through the environment), the CLI reads.
    let (code, stdout, stderr) = cairn(&data, &["--key-file", key_arg, "read", "agent-0", "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("{MARKER} 0")), "{stdout}");
    let out = std::process::Command::new(support::BIN)
        .args(["--data", data.to_str().unwrap(), "kv", "get", "session/1", "-o", "json"])
        .env("CAIRN_KEY", "3c".repeat(32))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["value"]["note"], format!("{MARKER} in a key"));
    // The checkpoint verifies with the key; without it, it is listed as needing the key.
    let (code, stdout, stderr) = cairn(&data, &["--key-file", key_arg, "checkpoints", "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"valid\"") && !stdout.contains("damaged"), "{stdout}");
    let (_, stdout, stderr) = cairn(&data, &["checkpoints", "-o", "json"]);
    assert!(stdout.contains("needs the log's key"), "{stdout} {stderr}");
    // A writer without the key refuses the encrypted directory (nothing in the clear beside
    // the encrypted events); one with the key but without the log's store refuses too.
    let (code, _, stderr) =
        cairn(&data, &["append", "agent-0", "--type", "Said", "--payload", &format!("{{\"t\": \"{MARKER}\"}}")]);
    assert_ne!(code, 0);
    assert!(stderr.contains("the log is encrypted") && stderr.contains("--key-file"), "{stderr}");
    assert_no_marker(&data);
    let elsewhere = tmp.path().join("no-such-store");
    let args = ["--key-file", key_arg, "--key-store", elsewhere.to_str().unwrap(), "append", "agent-0", "--type", "T"];
    let (code, _, stderr) = cairn(&data, &args);
    assert_ne!(code, 0);
    assert!(stderr.contains("already has events") && !elsewhere.exists(), "{stderr}");
    // The drill replays the views with the key store of the live directory.
    let (code, stdout, stderr) = cairn(&data, &["--key-file", key_arg, "drill", "-o", "json"]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    // A wrong key is refused by name, before anything is read.
    let wrong = tmp.path().join("wrong.key");
    std::fs::write(&wrong, "77".repeat(32)).unwrap();
    let (code, _, stderr) = cairn(&data, &["--key-file", wrong.to_str().unwrap(), "read", "agent-0"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("another key"), "{stderr}");

    // The backup restores, verifies without the key, and reads with it.
    let restored = tmp.path().join("restored");
    let (code, _, stderr) =
        cairn(tmp.path(), &["restore", "--from", backup.to_str().unwrap(), "--to", restored.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = cairn(&restored, &["verify"]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let store = data.join("keys");
    let args = ["--key-file", key_arg, "--key-store", store.to_str().unwrap(), "read", "agent-1", "-o", "json"];
    let (code, stdout, stderr) = cairn(&restored, &args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("{MARKER} 1")), "{stdout}");
}

/// Copies of an encrypted log: a point-in-time restore from a backup needs no key (it reads
/// only timestamps), `drill --from` reads the fetched copy with the log's own store (and says
/// so when it is not given), and `restore --force` onto the encrypted directory keeps its key
/// store, the only copy of its secrets.
#[test]
fn copies_of_an_encrypted_log_restore_drill_and_replace_with_its_key_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = key_file(tmp.path());
    let key_arg = key.to_str().unwrap();
    let server = Server::start(&data, &["--key-file", key_arg]);
    for n in 0..10 {
        server.append(&format!("agent-{}", n % 2), &[("Said", json!({"text": format!("{MARKER} {n}")}))]);
    }
    let backup = tmp.path().join("backup");
    let (status, body) = server.post("/v1/admin/backup", &json!({"to": backup.to_str().unwrap()}));
    assert_eq!(status, 200, "{body}");
    assert!(server.stop().success());
    let store = data.join("keys");
    let store_bytes = std::fs::read(&store).unwrap();

    // Point in time, without the key: the search reads record headers only.
    let pitr = tmp.path().join("pitr");
    let args = ["restore", "--from", backup.to_str().unwrap(), "--to", pitr.to_str().unwrap()];
    let (code, stdout, stderr) = cairn(tmp.path(), &[&args[..], &["--at-time", "2099-01-01T00:00:00Z"]].concat());
    assert_eq!(code, 0, "{stdout} {stderr}");
    let (code, stdout, stderr) = cairn(&pitr, &["verify"]);
    assert_eq!(code, 0, "{stdout} {stderr}");

    // drill --from: the fetched copy carries no key store.
    let (code, _, stderr) = cairn(tmp.path(), &["--key-file", key_arg, "drill", "--from", backup.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--key-store"), "{stderr}");
    let args =
        ["--key-file", key_arg, "--key-store", store.to_str().unwrap(), "drill", "--from", backup.to_str().unwrap()];
    let (code, stdout, stderr) = cairn(tmp.path(), &[&args[..], &["-o", "json"]].concat());
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_eq!(std::fs::read(&store).unwrap(), store_bytes, "the drill wrote the log's key store");

    // restore --force onto the encrypted directory: its key store stays, and its events read.
    let (code, stdout, stderr) = cairn(&pitr, &["restore", "--to", data.to_str().unwrap(), "--force"]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_eq!(std::fs::read(&store).unwrap(), store_bytes, "the key store was not kept");
    let (code, stdout, stderr) = cairn(&data, &["--key-file", key_arg, "read", "agent-1", "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("{MARKER} 1")), "{stdout}");
}

/// Crypto-shredding (issue 20): erasing a whole stream of an encrypted log through
/// `POST /v1/erase` destroys its key, so its payloads are unreadable even in a backup taken
/// before the erasure and restored after it (read with the live key store); the chain verifies
/// from genesis; the stream written again gets a new key.
#[test]
fn a_shredded_stream_is_unreadable_in_a_backup_taken_before_and_restored_after() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = key_file(tmp.path());
    let key_arg = key.to_str().unwrap();
    let server = Server::start(&data, &["--key-file", key_arg]);
    for n in 0..6 {
        server.append(&format!("user-{}", n % 2), &[("Said", json!({"text": format!("{MARKER} {n}")}))]);
    }
    let backup = tmp.path().join("backup");
    let (status, body) = server.post("/v1/admin/backup", &json!({"to": backup.to_str().unwrap()}));
    assert_eq!(status, 200, "{body}");
    // Part of a stream: no key is destroyed (the rest of the stream still needs it).
    let (status, body) = server.post("/v1/erase", &json!({"stream": "user-1", "to_version": 0, "reason": "part"}));
    assert_eq!((status, body["key_destroyed"].as_bool()), (200, Some(false)), "{body}");
    let (status, body) = server.post("/v1/erase", &json!({"stream": "user-0", "reason": "the user asked (ticket 7)"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["key_destroyed"], true, "{body}");
    let (status, got) = server.get("/v1/streams/user-0/events");
    assert_eq!(status, 200, "{got}");
    let events = got["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["erased"] == true && e.get("data").is_none()), "{got}");
    // Written again: a new key, readable.
    server.append("user-0", &[("Said", json!({"text": "after"}))]);
    let (_, got) = server.get("/v1/streams/user-0/events?from=3");
    assert_eq!(got["events"][0]["data"]["text"], "after", "{got}");
    assert!(server.stop().success());

    let restored = tmp.path().join("restored");
    let (code, _, stderr) =
        cairn(tmp.path(), &["restore", "--from", backup.to_str().unwrap(), "--to", restored.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let store = data.join("keys");
    let with_key = |args: &[&str]| {
        let keyed = ["--key-file", key_arg, "--key-store", store.to_str().unwrap()];
        cairn(&restored, &[&keyed[..], args].concat())
    };
    // The backup predates the erasure, so it holds no erasure; the key is gone all the same.
    let (code, stdout, stderr) = with_key(&["read", "user-0", "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains(MARKER), "a shredded payload was read from the backup: {stdout}");
    let read: Value = serde_json::from_str(&stdout).unwrap();
    let events = read["events"].as_array().unwrap_or_else(|| read.as_array().unwrap());
    assert_eq!(events.len(), 3, "{stdout}");
    assert!(events.iter().all(|e| e["erased"] == true), "{stdout}");
    let (code, stdout, stderr) = with_key(&["read", "user-1", "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("{MARKER} 1")), "another stream still reads: {stdout}");
    let (code, stdout, stderr) = with_key(&["verify", "-o", "json"]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["ok"], true, "{stdout}");
}

/// Key rotation (issue 20): `cairn keys rotate` beside a running server (through it) while four
/// clients append: every acknowledged event reads back, before and after a restart, and the
/// key store holds every generation; a local rotation works once the server is stopped; a log
/// without a key has nothing to rotate.
#[test]
fn rotation_under_load_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = key_file(tmp.path());
    let key_arg = key.to_str().unwrap();
    let server = Server::start(&data, &["--key-file", key_arg]);
    const CLIENTS: usize = 4;
    const EACH: usize = 40;
    let rotations = std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let server = &server;
            s.spawn(move || {
                for n in 0..EACH {
                    server.append(&format!("client-{c}"), &[("Said", json!({"text": format!("{MARKER} {c}.{n}")}))]);
                }
            });
        }
        (0..2)
            .map(|_| {
                let (code, stdout, stderr) = cairn(&data, &["keys", "rotate", "-o", "json"]);
                assert_eq!(code, 0, "{stdout} {stderr}");
                serde_json::from_str::<Value>(&stdout).unwrap()
            })
            .collect::<Vec<_>>()
    });
    assert_eq!((rotations[0]["generation"].as_u64(), rotations[1]["generation"].as_u64()), (Some(2), Some(3)));
    assert_eq!(rotations[1]["generations"], json!([1, 2, 3]));
    let all_read = |read: &dyn Fn(usize) -> Value| {
        for c in 0..CLIENTS {
            let got = read(c);
            let events = got["events"].as_array().unwrap();
            assert_eq!(events.len(), EACH, "client {c}: {got}");
            for (n, event) in events.iter().enumerate() {
                assert_eq!(event["data"]["text"], format!("{MARKER} {c}.{n}"), "{event}");
            }
        }
    };
    all_read(&|c| server.get(&format!("/v1/streams/client-{c}/events?limit=1000")).1);
    assert!(server.stop().success());
    let server = Server::start(&data, &["--key-file", key_arg]);
    all_read(&|c| server.get(&format!("/v1/streams/client-{c}/events?limit=1000")).1);
    assert!(server.stop().success());
    // Locally, with the key; and a plain log has no key to rotate.
    let (code, stdout, stderr) = cairn(&data, &["--key-file", key_arg, "keys", "rotate", "-o", "json"]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["generation"], 4);
    all_read(&|c| {
        let (code, stdout, stderr) =
            cairn(&data, &["--key-file", key_arg, "read", &format!("client-{c}"), "--limit", "1000", "-o", "json"]);
        assert_eq!(code, 0, "{stderr}");
        let value: Value = serde_json::from_str(&stdout).unwrap();
        if value.is_array() {
            json!({ "events": value })
        } else {
            value
        }
    });
    assert_no_marker(&data);
    let plain = tmp.path().join("plain");
    let server = Server::start(&plain, &[]);
    let (status, body) = server.post("/v1/admin/keys/rotate", &json!({}));
    assert_eq!((status, body["error"].as_str()), (409, Some("not_encrypted")), "{body}");
    assert!(server.stop().success());
}

/// The key store outside the data directory (`--key-store`): nothing in the directory but the
/// segments says the log is encrypted, and a writer without the key refuses it all the same
/// (the segment headers say so), writing nothing. Failed before: the event was appended in the
/// clear beside the encrypted ones.
#[test]
fn a_keyless_writer_refuses_an_encrypted_log_whose_store_is_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = key_file(tmp.path());
    let store = tmp.path().join("store").join("keys");
    let keyed = ["--key-file", key.to_str().unwrap(), "--key-store", store.to_str().unwrap()];
    let payload = format!("{{\"t\": \"{MARKER} 0\"}}");
    let (code, _, stderr) =
        cairn(&data, &[&keyed[..], &["append", "agent-0", "--type", "Said", "--data", &payload]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(store.exists() && !data.join("keys").exists());
    let payload = format!("{{\"t\": \"{MARKER} 1\"}}");
    let (code, _, stderr) = cairn(&data, &["append", "agent-0", "--type", "Said", "--data", &payload]);
    assert_ne!(code, 0);
    assert!(stderr.contains("is encrypted") && stderr.contains("--key-file"), "{stderr}");
    assert_no_marker(&data);
    let (code, stdout, stderr) = cairn(&data, &[&keyed[..], &["read", "agent-0", "-o", "json"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("{MARKER} 0")) && !stdout.contains(&format!("{MARKER} 1")), "{stdout}");
}
