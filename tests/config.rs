//! `cairn serve --config FILE`, against the real binary: a setting comes from its flag, else its
//! `CAIRN_…` variable, else the file, else the default (seen in the size of a new log's first
//! segment, which is the configured segment size when that is below 1 MiB), and a file with an
//! unknown key or a value out of bounds refuses the start before anything is opened.

mod support;

use std::path::Path;
use std::process::Command;

use support::{Server, BIN};

/// The capacity of the only segment of a new log in `data`.
fn first_segment_len(data: &Path) -> u64 {
    let mut segments: Vec<_> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort_by_key(|e| e.file_name());
    segments.first().expect("a new log has its first segment").metadata().unwrap().len()
}

/// Starts a server on a new directory with `flags` and `env`, appends one event, stops it, and
/// answers the first segment's size.
fn segment_size_with(dir: &Path, name: &str, flags: &[&str], env: &[(&str, &str)]) -> u64 {
    let data = dir.join(name);
    let server = Server::start_with_env(&data, flags, env);
    server.append("s", &[("T", serde_json::json!({"n": 1}))]);
    assert!(server.stop().success());
    first_segment_len(&data)
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, "[log]\nsegment_size = \"64KiB\"\n").unwrap();
    let config = config.to_str().unwrap();
    let env = [("CAIRN_SEGMENT_SIZE", "128KiB")];
    assert_eq!(
        segment_size_with(dir.path(), "flag", &["--config", config, "--segment-size", "256KiB"], &env),
        256 << 10
    );
    assert_eq!(segment_size_with(dir.path(), "env", &["--config", config], &env), 128 << 10);
    assert_eq!(segment_size_with(dir.path(), "file", &[], &[("CAIRN_CONFIG", config)]), 64 << 10);
    assert_eq!(
        segment_size_with(dir.path(), "default", &[], &[]),
        log_engine::SEGMENT_SIZE_START,
        "without a setting, a new log's first segment is SEGMENT_SIZE_START"
    );
}

/// Runs `cairn serve` with `config` and answers its exit code and stderr; it must not start.
fn refused_start(dir: &Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let data = dir.join("data");
    let out = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.stdout.is_empty(), "it never listened: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!data.exists(), "nothing was created before the settings were checked");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_misspelt_key_or_a_bad_value_refuses_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = refused_start(dir.path(), "[server]\nmax_connections = 10\nheader_timeot = \"5s\"\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("header_timeot") && stderr.contains("line 3"), "{stderr}");
    let (code, stderr) = refused_start(dir.path(), "[checkpoints]\nkeep_full = 0\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("checkpoints.keep_full (line 2 of ") && stderr.contains("between 1 and"), "{stderr}");
}

#[test]
fn interval_durability_is_said_at_start_and_in_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, "[log]\ndurability = \"interval\"\nsync_interval = \"5ms\"\n").unwrap();
    let server = Server::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let (code, health) = server.get("/healthz");
    assert_eq!(code, 200);
    assert_eq!(
        (&health["durability"], &health["sync_interval_ms"]),
        (&serde_json::json!("interval"), &serde_json::json!(5))
    );
    assert!(server.stderr().contains("acknowledged BEFORE their fdatasync"), "{}", server.stderr());
    assert!(server.stop().success());
    let server = Server::start(&dir.path().join("data"), &[]);
    let (_, health) = server.get("/healthz");
    assert_eq!(health["durability"], "sync");
    assert!(health.get("sync_interval_ms").is_none(), "{health}");
    assert!(!server.stderr().contains("BEFORE their fdatasync"));
    assert!(server.stop().success());
}
