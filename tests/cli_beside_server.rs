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
