//! The operational commands while `cairn serve` holds the data directory (issue 21): each one
//! works, either through the server (found through server.json, or named with --server) or by
//! reading the directory without its lock, and answers what the server itself answers.

mod support;

use serde_json::{json, Value};
use support::{cairn, Server};

fn json_of(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn served(events: usize) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    for i in 0..events {
        server.append(&format!("agent-{}", i % 2), &[("Step", json!({"i": i}))]);
    }
    (dir, server)
}

#[test]
fn a_backup_to_a_relative_path_is_refused_by_the_server_and_by_the_cli() {
    let (dir, server) = served(3);
    let (status, body) = server.post("/v1/admin/backup", &json!({"to": "backups/here"}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_input", "{body}");
    assert!(body["message"].as_str().unwrap().contains("relative path"), "{body}");

    // Beside the server (found through server.json) and with --server: refused before asking.
    let (code, _, err) = cairn(&server.data, &["backup", "--to", "backups/here"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("relative path"), "{err}");
    let (code, _, err) = cairn(&dir.path().join("none"), &["backup", "--to", "./x", "--server", &server.base]);
    assert_eq!(code, 2, "{err}");
    for cwd in [dir.path().to_path_buf(), std::env::current_dir().unwrap()] {
        assert!(!cwd.join("backups").exists() && !cwd.join("x").exists(), "nothing was written");
    }

    // An absolute path goes through.
    let to = dir.path().join("backup");
    let (code, out, err) = cairn(&server.data, &["backup", "--to", to.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["head_position"], 2);
    server.stop();
}

/// Runs `args` beside the server (its data directory, found through server.json or read without
/// the lock) and again with `--server URL` from a directory that holds no store; both succeed
/// with the same JSON.
fn both_ways(server: &Server, elsewhere: &std::path::Path, args: &[&str]) -> Value {
    let mut beside = args.to_vec();
    beside.extend(["-o", "json"]);
    let (code, out, err) = cairn(&server.data, &beside);
    assert_eq!(code, 0, "{args:?} beside the server: {err}");
    let mut remote = beside.clone();
    remote.extend(["--server", &server.base]);
    let (code, remote_out, err) = cairn(elsewhere, &remote);
    assert_eq!(code, 0, "{args:?} --server: {err}");
    assert!(!elsewhere.exists(), "{args:?} --server opened no directory");
    let (mut local, mut remote) = (json_of(&out), json_of(&remote_out));
    for answer in [&mut local, &mut remote] {
        // The shared file system's free space moves between the two runs.
        answer.as_object_mut().unwrap().remove("disk_free_bytes");
    }
    assert_eq!(local, remote, "{args:?}");
    local
}

#[test]
fn every_operational_command_works_while_a_server_runs() {
    let (dir, server) = served(10);
    let elsewhere = dir.path().join("no-store-here");
    for (key, value) in [("session/1", json!({"step": 1})), ("session/1", json!({"step": 2})), ("other", json!(7))] {
        let (status, body) = server.request(
            reqwest::Method::PUT,
            &format!("/v1/kv/{}", key.replace('/', "%2F")),
            Some(&json!({"value": value})),
        );
        assert_eq!(status, 200, "{body}");
    }
    let (status, checkpoint) = server.post("/v1/checkpoints", &json!({}));
    assert_eq!(status, 200, "{checkpoint}");

    let stats = both_ways(&server, &elsewhere, &["stats"]);
    assert_eq!((stats["events"].as_u64(), stats["checkpoints"].as_u64()), (Some(13), Some(1)), "{stats}");

    let checkpoints = both_ways(&server, &elsewhere, &["checkpoints"]);
    assert_eq!(checkpoints["checkpoints"][0]["status"], "valid", "{checkpoints}");
    assert_eq!(checkpoints["checkpoints"][0]["info"]["position"], checkpoint["position"]);

    let verified = both_ways(&server, &elsewhere, &["verify"]);
    assert_eq!((verified["ok"].as_bool(), verified["events"].as_u64()), (Some(true), Some(13)), "{verified}");
    let from = both_ways(&server, &elsewhere, &["verify", "--from", "5"]);
    assert_eq!(from["events"], 8, "{from}");

    let entry = both_ways(&server, &elsewhere, &["kv", "get", "session/1"]);
    assert_eq!((entry["value"]["step"].as_u64(), entry["version"].as_u64()), (Some(2), Some(1)), "{entry}");
    let keys = both_ways(&server, &elsewhere, &["kv", "list", "--prefix", "session/"]);
    assert_eq!(keys["keys"], json!(["session/1"]), "{keys}");
    let history = both_ways(&server, &elsewhere, &["kv", "history", "session/1"]);
    assert_eq!(history["versions"].as_array().unwrap().len(), 2, "{history}");

    // An absent key is exit 5 both ways; a kv write is not a read and takes no --server.
    assert_eq!(cairn(&server.data, &["kv", "get", "absent"]).0, 5);
    assert_eq!(cairn(&elsewhere, &["kv", "get", "absent", "--server", &server.base]).0, 5);
    assert_eq!(cairn(&elsewhere, &["kv", "set", "k", "1", "--server", &server.base]).0, 2);

    // The drill through the server, found through server.json and named with --server.
    for (data, extra) in [(&server.data, None), (&elsewhere, Some(server.base.as_str()))] {
        let mut args = vec!["drill", "-o", "json"];
        args.extend(extra.iter().flat_map(|url| ["--server", *url]));
        let (code, out, err) = cairn(data, &args);
        assert_eq!(code, 0, "{err}");
        let report = json_of(&out);
        assert_eq!((report["ok"].as_bool(), report["events_verified"].as_u64()), (Some(true), Some(13)), "{report}");
    }

    // restore --to beside the server copies what is durable, without the lock.
    let copy = dir.path().join("copy");
    let (code, out, err) = cairn(&server.data, &["restore", "--to", copy.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["head_position"], 12);
    server.stop();
}
