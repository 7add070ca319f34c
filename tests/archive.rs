//! `cairn serve --archive file:///DIR` (the same code as `s3://`, which `tests/s3.rs` runs
//! against a real S3 server): under load, the server killed with SIGKILL, the archive holds
//! exactly the sealed segments, byte for byte, each under its digest, and its newest manifest
//! ends at the last event of the last archived segment with the log's own chain hash there;
//! the active segment is never in it. `/healthz` and `/metrics` report the archive's lag.
//! A segment a scavenge rewrote after it was archived (an erased stream's payloads turned into
//! husks) is shipped again and the superseded object deleted: the erased payload leaves the
//! bucket, and a restore from the archive gives the scavenged log. So is a rewrite that kept
//! the archived size, made while no archiver ran, once the next archiver starts.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{cairn, Server};

/// A failure guard for the archiver's rounds (not a measurement).
const ARCHIVE_GUARD: Duration = Duration::from_secs(120);

fn load(server: &Server, batches: usize) {
    let filler = "x".repeat(1000);
    for b in 0..batches {
        let events: Vec<(&str, Value)> = (0..32).map(|i| ("Tick", json!({"b": b, "i": i, "pad": filler}))).collect();
        server.append(&format!("agent-{}", b % 4), &events);
    }
}

fn newest_manifest(archive: &Path) -> Value {
    let mut names: Vec<_> = std::fs::read_dir(archive.join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let newest = names.last().expect("a manifest was written");
    serde_json::from_slice(&std::fs::read(archive.join("manifests").join(newest)).unwrap()).unwrap()
}

#[test]
fn the_archive_holds_every_sealed_segment_and_nothing_unsealed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let archive = dir.path().join("archive");
    let url = format!("file://{}", archive.display());
    let server = Server::start(&data, &["--archive", &url]);
    // 3 MiB and more: the young log's 1 MiB and 2 MiB segments seal.
    load(&server, 120);
    let started = Instant::now();
    let health = loop {
        let (status, health) = server.get("/healthz");
        assert_eq!(status, 200, "{health}");
        if health["archive"]["segments_archived"].as_u64() >= Some(2) {
            break health;
        }
        assert!(started.elapsed() < ARCHIVE_GUARD, "two sealed segments never archived: {health}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["archive"]["url"], url.as_str());
    assert!(health["archive"]["lag_events"].as_u64() > Some(0), "the active segment is lag: {health}");
    let (_, metrics) = server.get_text("/metrics");
    assert!(metrics.contains("cairn_archive_lag_events"), "{metrics}");
    server.stop_with("KILL");

    let manifest = newest_manifest(&archive);
    let segments = manifest["segments"].as_array().unwrap();
    assert!(segments.len() >= 2, "{manifest}");
    let log_dir = data.join("log");
    for s in segments {
        assert_eq!(s["sealed"], true, "only sealed segments are archived: {s}");
        let local = std::fs::read(log_dir.join(s["name"].as_str().unwrap())).unwrap();
        let object = std::fs::read(archive.join(s["key"].as_str().unwrap())).unwrap();
        assert!(object == local, "{} differs from its archived object", s["name"]);
        assert_eq!(s["blake3"].as_str().unwrap(), blake3::hash(&local).to_hex().as_str());
        assert!(s["key"].as_str().unwrap().ends_with(s["blake3"].as_str().unwrap()), "{s}");
    }
    // The manifest ends where the next (newer) segment starts, with the log's chain hash there.
    let head = manifest["head"]["position"].as_u64().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    files.sort();
    let next = &files[segments.len()];
    assert_eq!(head + 1, next.trim_end_matches(".seg").parse::<u64>().unwrap(), "{manifest}");
    let (code, out, err) = cairn(&data, &["read-all", "--from", &head.to_string(), "--limit", "1", "-o", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    let event: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(event["hash"], manifest["head"]["hash"], "the manifest's head is the log's chain hash there");
}

#[test]
fn an_archive_of_another_log_is_refused_not_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let url = format!("file://{}", archive.display());
    let first = Server::start(&dir.path().join("first"), &["--archive", &url]);
    load(&first, 120);
    let started = Instant::now();
    while first.get("/healthz").1["archive"]["archived_position"].is_null() {
        assert!(started.elapsed() < ARCHIVE_GUARD, "nothing archived");
        std::thread::sleep(Duration::from_millis(50));
    }
    first.stop();
    let manifests_before = std::fs::read_dir(archive.join("manifests")).unwrap().count();

    // Another log, archived to the same place: archiving stops and says why.
    let other = Server::start(&dir.path().join("other"), &["--archive", &url]);
    load(&other, 120);
    let started = Instant::now();
    let health = loop {
        let health = other.get("/healthz").1;
        if health["archive"]["stopped"] == true {
            break health;
        }
        assert!(started.elapsed() < ARCHIVE_GUARD, "archiving another log never stopped: {health}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["archive"]["last_error"].as_str().unwrap().contains("another log"), "{health}");
    other.stop();
    assert_eq!(std::fs::read_dir(archive.join("manifests")).unwrap().count(), manifests_before, "nothing was added");
}

/// Whether any object under the archive's `segments/` holds `needle`.
fn archive_holds(archive: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(archive.join("segments"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

/// Polls `done` (a condition, not a duration, is waited for) until it holds, bounded by
/// [`ARCHIVE_GUARD`], a failure guard.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < ARCHIVE_GUARD, "the archiver never got there: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_segment_a_scavenge_rewrote_is_shipped_again_and_the_erased_payload_leaves_the_bucket() {
    use log_engine::{ExpectedVersion, Log, NewEvent, Options, ScavengeOptions};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let archive = dir.path().join("archive");
    let log = Log::open(&data, Options { segment_size: 64 * 1024, ..Options::default() }).unwrap();
    let secret = "the-secret-payload-0123456789";
    for n in 0..300u64 {
        let pad = "z".repeat(600);
        log.append("keep", ExpectedVersion::Any, vec![NewEvent::json("Step", &json!({"n": n, "pad": pad}))]).unwrap();
        let event = NewEvent::json("Said", &json!({"n": n, "text": secret}));
        log.append("private", ExpectedVersion::Any, vec![event]).unwrap();
    }
    let sealed = log.segment_files().iter().filter(|f| f.sealed).count() as u64;
    assert!(sealed >= 2, "the test needs sealed segments");
    let archiver = start_archiver(&log, &data, &archive);
    until("every sealed segment archived", || archiver.status_of(&log).segments_archived == sealed);
    assert!(archive_holds(&archive, secret.as_bytes()), "the archived segments hold the payload before the erasure");

    log.erase("private", None, None, "the user asked").unwrap();
    let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert!(report.segments_rewritten >= 2, "{report:?}");
    let rewritten = report.segments_rewritten;
    until("the rewritten segments shipped again", || archiver.status_of(&log).segments_reshipped >= rewritten);
    archiver.stop();
    assert!(archiver.status_of(&log).last_error.is_none(), "{:?}", archiver.status_of(&log).last_error);

    assert!(!archive_holds(&archive, secret.as_bytes()), "an erased payload is still in the archive");
    let manifest = newest_manifest(&archive);
    for s in manifest["segments"].as_array().unwrap() {
        let local = std::fs::read(data.join("log").join(s["name"].as_str().unwrap())).unwrap();
        assert_eq!(s["blake3"].as_str().unwrap(), blake3::hash(&local).to_hex().as_str(), "{s}");
        assert!(archive.join(s["key"].as_str().unwrap()).exists(), "{s}");
    }
    let head = manifest["head"]["position"].as_u64().unwrap();
    drop(log);

    let restored = dir.path().join("restored");
    let url = format!("file://{}", archive.display());
    let (code, _, err) =
        cairn(&dir.path().join("unused"), &["restore", "--from", &url, "--to", restored.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cairn(&restored, &["read", "private", "-o", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(secret), "{out}");
    let (code, out, err) = cairn(&restored, &["read-all", "--from", &head.to_string(), "--limit", "1", "-o", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(out.lines().next().unwrap()).unwrap()["position"], head);
}

/// After a restart the archiver cannot tell a rewrite by its size: a scavenge's rewrite is
/// rounded up to whole pages, so husking a few hundred bytes in a segment whose records end in
/// its last page keeps the file's size. A segment rewritten while no archiver ran (erase and
/// scavenge on a stopped server) is shipped again by the next archiver's first round all the
/// same. Before ef5a0ff, a segment of the archived size was taken as archived, and the erased
/// payload stayed in the bucket for good.
#[test]
fn a_rewrite_of_the_same_size_made_while_no_archiver_ran_is_shipped_again_after_a_restart() {
    use log_engine::{ExpectedVersion, Log, NewEvent, Options, ScavengeOptions};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let archive = dir.path().join("archive");
    let log = Log::open(&data, Options { segment_size: 64 * 1024, ..Options::default() }).unwrap();
    let secret = "the-secret-payload-".repeat(20);
    for n in 0..400u64 {
        let pad = "k".repeat(300);
        log.append("keep", ExpectedVersion::Any, vec![NewEvent::json("Step", &json!({"n": n, "pad": pad}))]).unwrap();
        if n == 10 {
            let said = NewEvent::json("Said", &json!({"text": secret}));
            log.append("private", ExpectedVersion::Any, vec![said]).unwrap();
        }
    }
    let sealed = log.segment_files().iter().filter(|f| f.sealed).count() as u64;
    let archiver = start_archiver(&log, &data, &archive);
    until("every sealed segment archived", || archiver.status_of(&log).segments_archived == sealed);
    archiver.stop();
    assert!(archive_holds(&archive, secret.as_bytes()), "the archive holds the payload before the erasure");

    // The server is down: the erasure and the scavenge happen with no archiver watching.
    log.erase("private", None, None, "the user asked").unwrap();
    let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert!(report.segments_rewritten >= 1, "{report:?}");
    let manifest = newest_manifest(&archive);
    let first = &manifest["segments"][0];
    let rewritten = std::fs::metadata(data.join("log").join(first["name"].as_str().unwrap())).unwrap().len();
    assert_eq!(rewritten, first["bytes"].as_u64().unwrap(), "the case under test: the rewrite kept the archived size");

    // The restart: a new archiver's first round.
    let archiver = start_archiver(&log, &data, &archive);
    until("a first round done", || archiver.status_of(&log).last_success_ms.is_some());
    archiver.stop();
    let status = archiver.status_of(&log);
    assert!(status.segments_reshipped >= 1, "the same-size rewrite was not shipped again: {status:?}");
    assert!(!archive_holds(&archive, secret.as_bytes()), "the erased payload is still in the archive");
    let manifest = newest_manifest(&archive);
    for s in manifest["segments"].as_array().unwrap() {
        let local = std::fs::read(data.join("log").join(s["name"].as_str().unwrap())).unwrap();
        assert_eq!(s["blake3"].as_str().unwrap(), blake3::hash(&local).to_hex().as_str(), "{s}");
    }
    log.close();
}

/// An archiver of `log` (in `data`) to the local directory `archive`, evicting nothing.
fn start_archiver(
    log: &log_engine::Log,
    data: &std::path::Path,
    archive: &std::path::Path,
) -> cairn::archive::Archiver {
    let location = bucket::Location::local(archive);
    cairn::archive::Archiver::start(log.clone(), data, location, cairn::tier::TierPolicy::default()).unwrap()
}
