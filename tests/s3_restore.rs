//! Restore and drill from object storage against a real S3-compatible server (Garage on
//! loopback, started by `.ci/s3`, which builds this target with `--features s3-tests` and
//! exports the AWS_* settings and CAIRN_S3_BUCKET; without them every test here fails, never
//! passes silently).
//!
//! Scenarios: a backup of a running server to `s3://` restored as of a position and as of a
//! time (`restore --from URL --at P | --at-time T`) holds exactly the events a replay of the
//! source up to that point gives, and verifies; `drill --from s3://…` on a continuous archive
//! restores it and drills it; a tampered object in the bucket fails the drill with nothing
//! restored; a segment object cut short or with one byte changed is refused by `restore --from`
//! with an error naming its key, and nothing is restored.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{cairn, Server};

/// A failure guard for waiting on the archiver (not a measurement).
const ARCHIVE_GUARD: Duration = Duration::from_secs(180);

/// A fresh prefix in the suite's bucket for one test.
fn bucket_url(test: &str) -> String {
    for variable in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CAIRN_S3_BUCKET"] {
        assert!(std::env::var_os(variable).is_some(), "{variable} is not set: run this suite through .ci/s3");
    }
    let bucket = std::env::var("CAIRN_S3_BUCKET").unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("s3://{bucket}/{test}-{}-{nanos}", std::process::id())
}

fn events(data: &Path) -> Vec<Value> {
    let (code, out, err) = cairn(data, &["read-all", "-o", "ndjson", "--limit", "1000000"]);
    assert_eq!(code, 0, "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A server with `n` single-event batches on three streams, each event with its index.
fn server_with_events(data: &Path, n: usize, extra: &[&str]) -> Server {
    let server = Server::start(data, extra);
    for i in 0..n {
        server.append(&format!("agent-{}", i % 3), &[("Step", json!({"i": i}))]);
    }
    server
}

#[test]
fn point_in_time_restores_from_the_bucket_equal_a_replay_to_that_point() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = bucket_url("pitr");
    let server = server_with_events(&data, 60, &[]);
    // The directory is the server's: the backup goes through it, into the bucket.
    let (code, out, err) = cairn(&data, &["backup", "--to", &url, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["head_position"], 59, "{out}");
    let source = events(&data);
    assert_eq!(source.len(), 60);

    // By position: every event up to and including it (each batch holds one event), no other.
    for at in [0usize, 17, 59] {
        let to = dir.path().join(format!("at-{at}"));
        let (code, out, err) = cairn(
            &data,
            &["restore", "--from", &url, "--to", to.to_str().unwrap(), "--at", &at.to_string(), "-o", "json"],
        );
        assert_eq!(code, 0, "--at {at}: {err}");
        let report = json_of(&out);
        assert_eq!((report["head_position"].as_u64(), report["verified"].as_bool()), (Some(at as u64), Some(true)));
        assert_eq!(events(&to), source[..=at], "--at {at}");
    }

    // By time: the copy ends with the last event stamped at or before it.
    let stamp = source[41]["timestamp"].as_str().unwrap().to_string();
    let expected: Vec<Value> =
        source.iter().take_while(|e| e["timestamp"].as_str().unwrap() <= stamp.as_str()).cloned().collect();
    assert!(expected.len() >= 42 && expected.len() < 60, "timestamps never decrease: {}", expected.len());
    let to = dir.path().join("at-time");
    let (code, _, err) = cairn(&data, &["restore", "--from", &url, "--to", to.to_str().unwrap(), "--at-time", &stamp]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(events(&to), expected);
    let (code, _, err) = cairn(&to, &["verify"]);
    assert_eq!(code, 0, "{err}");

    // Beyond the backup's head: refused, nothing made, and no whole copy left beside it.
    let beyond = dir.path().join("beyond");
    let (code, _, err) = cairn(&data, &["restore", "--from", &url, "--to", beyond.to_str().unwrap(), "--at", "60"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("beyond the head of the backup at s3://"), "{err}");
    assert!(!beyond.exists());
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    server.stop();
}

/// Polls `/healthz` until the archive holds position `at`.
fn wait_archived(server: &Server, at: u64) {
    wait_health(server, &format!("the archive never reached {at}"), |archive| {
        archive["archived_position"].as_u64() >= Some(at)
    });
}

/// Polls `/healthz` until the archive's manifest names a checkpoint.
fn wait_checkpoint_archived(server: &Server) {
    wait_health(server, "no checkpoint was archived", |archive| archive["checkpoints_archived"].as_u64() >= Some(1));
}

/// Polls `/healthz` until `done` holds of its `archive` object (a condition is waited for, not
/// a duration), bounded by [`ARCHIVE_GUARD`], a failure guard.
fn wait_health(server: &Server, what: &str, done: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    loop {
        let (_, health) = server.get("/healthz");
        if done(&health["archive"]) {
            return;
        }
        assert!(started.elapsed() < ARCHIVE_GUARD, "{what}: {health}\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_drill_runs_from_the_bucket_and_refuses_a_tampered_archive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = bucket_url("drill");
    let server = Server::start(&data, &["--archive", &url]);
    let filler = "x".repeat(1000);
    for b in 0..40 {
        let events: Vec<(&str, Value)> = (0..32).map(|i| ("Tick", json!({"b": b, "i": i, "pad": filler}))).collect();
        server.append(&format!("agent-{}", b % 4), &events);
    }
    let (status, checkpoint) = server.post("/v1/checkpoints", &json!({}));
    assert_eq!(status, 200, "{checkpoint}");
    // Roll another segment so the checkpoint lies inside the archived, sealed log.
    for b in 40..120 {
        let events: Vec<(&str, Value)> = (0..32).map(|i| ("Tick", json!({"b": b, "i": i, "pad": filler}))).collect();
        server.append(&format!("agent-{}", b % 4), &events);
    }
    wait_archived(&server, checkpoint["position"].as_u64().unwrap());
    wait_checkpoint_archived(&server);
    server.stop();

    let elsewhere = dir.path().join("no-store-here");
    let (code, out, err) = cairn(&elsewhere, &["drill", "--from", &url, "-o", "json"]);
    assert_eq!(code, 0, "{err}\n{out}");
    let report = json_of(&out);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events_lost"], 0, "{report}");
    assert!(report["events_verified"].as_u64().unwrap() >= 32 * 40, "{report}");
    assert!(report["checkpoints_verified"].as_u64().unwrap() >= 1, "{report}");
    assert!(!elsewhere.exists(), "a drill from the bucket needs no data directory");

    // One byte of an archived segment changed in the bucket: the drill restores nothing.
    let bucket = bucket::Location::parse(&url).unwrap().open_blocking().unwrap();
    let newest = bucket.list("manifests").unwrap().into_iter().map(|o| o.name).max().unwrap();
    let manifest: Value = serde_json::from_slice(&bucket.get(&newest, 1 << 20).unwrap()).unwrap();
    let key = manifest["segments"][0]["key"].as_str().unwrap();
    let mut bytes = bucket.get(key, u64::MAX).unwrap().to_vec();
    bytes[100] ^= 1;
    bucket.put(key, bytes.into()).unwrap();
    let (code, _, err) = cairn(&elsewhere, &["drill", "--from", &url]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot be trusted") && err.contains("BLAKE3"), "{err}");
}

#[test]
fn a_cut_or_altered_segment_object_is_refused_by_restore_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = bucket_url("refused");
    let server = server_with_events(&data, 30, &[]);
    let (code, _, err) = cairn(&data, &["backup", "--to", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(server.stop().success());

    let bucket = bucket::Location::parse(&url).unwrap().open_blocking().unwrap();
    let newest = bucket.list("manifests").unwrap().into_iter().map(|o| o.name).max().unwrap();
    let manifest: Value = serde_json::from_slice(&bucket.get(&newest, 1 << 20).unwrap()).unwrap();
    let key = manifest["segments"][0]["key"].as_str().unwrap().to_string();
    let original = bucket.get(&key, u64::MAX).unwrap();
    let mut altered = original.to_vec();
    altered[200] ^= 1;
    let cut = original.slice(..original.len() / 2);
    for (what, bytes) in [("cut short", cut), ("altered", altered.into())] {
        bucket.put(&key, bytes).unwrap();
        let target = dir.path().join("restored");
        let (code, _, err) =
            cairn(&dir.path().join("unused"), &["restore", "--from", &url, "--to", target.to_str().unwrap()]);
        assert_eq!(code, 3, "{what}: {err}");
        assert!(err.contains(&key) && err.contains("cannot be trusted"), "{what}: the error names the object: {err}");
        assert!(!target.exists(), "{what}: nothing was restored");
    }
    bucket.put(&key, original).unwrap();
    let target = dir.path().join("restored");
    let (code, _, err) =
        cairn(&dir.path().join("unused"), &["restore", "--from", &url, "--to", target.to_str().unwrap()]);
    assert_eq!(code, 0, "the object put back restores: {err}");
    assert_eq!(events(&target), events(&data));
}
