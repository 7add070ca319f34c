//! The commands that open a data directory themselves, on a directory whose older segments
//! tiering evicted to the archive (a `file://` archive here; tests/s3.rs does the same against a
//! real S3 server). Without the archive, a read that reaches an evicted segment fails naming the
//! segment's stub and how to read it; with `--archive URL` (or `CAIRN_ARCHIVE`) `read-all`,
//! `read`, `export`, `verify` and `kv get` read across tiers, the data directory gains no file
//! from a reader, and a backup holds the evicted segments (its restore reads every event).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log_engine::{ExpectedVersion, Log, NewEvent, Options, IDEMPOTENCY_WINDOW};
use support::{cairn, dir_names};

/// A failure guard for the archiver's rounds (not a measurement).
const ARCHIVE_GUARD: Duration = Duration::from_secs(120);

/// Events written past the idempotency window, so that the older segments may be evicted.
const EVENTS: u64 = IDEMPOTENCY_WINDOW as u64 + 30_000;

struct Tiered {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    url: String,
    /// Events in the log (its head + 1).
    events: u64,
}

/// A log of [`EVENTS`] events `{"n": i}` on four streams (and a key-value entry, written first),
/// in 1 MiB segments, archived to a local directory with a budget of 0 bytes: every segment
/// outside the idempotency window is evicted, segment 0 first.
fn tiered() -> Tiered {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let archive = tmp.path().join("archive");
    let options = || Options { segment_size: 1 << 20, ..Options::default() };
    drop(Log::open(&data, options()).unwrap());
    let (code, _, err) = cairn(&data, &["kv", "set", "session/1", "\"cold\""]);
    assert_eq!(code, 0, "{err}");
    let log = Log::open(&data, options()).unwrap();
    let mut n = 0;
    while n < EVENTS {
        let batch: Vec<NewEvent> =
            (n..n + 5_000).map(|i| NewEvent::json("Tick", &serde_json::json!({ "n": i }))).collect();
        log.append(&format!("tier-{}", n / 5_000 % 4), ExpectedVersion::Any, batch).unwrap();
        n += 5_000;
    }
    let policy = cairn::tier::TierPolicy { evict_after: None, local_budget: Some(0) };
    let archiver =
        cairn::archive::Archiver::start(log.clone(), &data, bucket::Location::local(&archive), policy).unwrap();
    let started = Instant::now();
    while archiver.status_of(&log).tiering.segments_evicted < 2 {
        assert!(started.elapsed() < ARCHIVE_GUARD, "nothing evicted: {:?}", archiver.status_of(&log));
        std::thread::sleep(Duration::from_millis(50));
    }
    archiver.stop();
    let events = log.head().unwrap().position.0 + 1;
    log.close();
    assert!(data.join("log").join(format!("{:020}.stub", 0)).exists(), "segment 0 is evicted");
    Tiered { _tmp: tmp, url: format!("file://{}", archive.display()), data, events }
}

/// `cairn --data DIR ARGS` with `CAIRN_ARCHIVE` set to `archive`.
fn cairn_archived(data: &Path, archive: &str, args: &[&str]) -> (i32, String, String) {
    support::cairn_with_env(data, &[("CAIRN_ARCHIVE", archive)], args)
}

#[test]
fn offline_commands_read_evicted_segments_through_the_archive_or_say_how() {
    let t = tiered();
    let stub = format!("log/{:020}.stub", 0);
    let limit = (t.events + 1).to_string();
    let read_all = ["read-all", "-o", "ndjson", "--limit", limit.as_str()];

    // Without the archive: each command fails naming the stub and the way to read it.
    for args in [&read_all[..], &["read", "tier-0", "-o", "ndjson"], &["verify"], &["export", "tier-0"]] {
        let (code, _, err) = cairn(&t.data, args);
        assert_ne!(code, 0, "{args:?} without the archive");
        assert!(err.contains(&stub) && err.contains("--archive URL"), "{args:?}: {err}");
    }

    // With it: every event, in order, across tiers.
    let before = dir_names(&t.data);
    let (code, out, err) = cairn(&t.data, &[&["--archive", t.url.as_str()][..], &read_all].concat());
    assert_eq!(code, 0, "{err}");
    let positions: Vec<u64> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (0..t.events).collect::<Vec<u64>>(), "every event, in order");
    assert_eq!(dir_names(&t.data), before, "a reader writes nothing in the data directory");

    // The variable instead of the flag; a stream read; an export; verify; a key-value read whose
    // replay starts in an evicted segment.
    let (code, out, err) = cairn_archived(&t.data, &t.url, &["read", "tier-0", "-o", "ndjson", "--limit", "3"]);
    assert_eq!(code, 0, "{err}");
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!((first["version"].as_u64(), first["data"]["n"].as_u64()), (Some(0), Some(0)), "{first}");
    let (code, out, err) = cairn_archived(&t.data, &t.url, &["export", "tier-0"]);
    assert_eq!(code, 0, "{err}");
    let batches = EVENTS.div_ceil(5_000);
    let tier_0 = (0..batches).filter(|b| b % 4 == 0).count() as u64 * 5_000;
    assert_eq!(out.lines().count() as u64, tier_0, "export holds every event of the stream");
    assert_eq!(dir_names(&t.data), before, "nor does export");
    let (code, out, err) = cairn_archived(&t.data, &t.url, &["verify", "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((report["ok"].as_bool(), report["events"].as_u64()), (Some(true), Some(t.events)), "{report}");
    assert_eq!(dir_names(&t.data), before, "nor does verify, a reader too");
    let (code, out, err) = cairn_archived(&t.data, &t.url, &["kv", "get", "session/1", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cold"), "{out}");

    // A backup copies the evicted segments from the archive: restored, it holds every event.
    let backup = format!("file://{}", t.data.with_file_name("backup").display());
    let (code, _, err) = cairn(&t.data, &["backup", "--to", backup.as_str()]);
    assert_ne!(code, 0, "a backup without the archive fails");
    assert!(err.contains(&stub), "{err}");
    let (code, out, err) = cairn_archived(&t.data, &t.url, &["backup", "--to", backup.as_str()]);
    assert_eq!(code, 0, "{out}{err}");
    let restored = t.data.with_file_name("restored");
    let restored_arg = restored.display().to_string();
    let (code, out, err) = cairn(&t.data, &["restore", "--from", backup.as_str(), "--to", restored_arg.as_str()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cairn(&restored, &read_all);
    assert_eq!(code, 0, "{err}");
    let positions: Vec<u64> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (0..t.events).collect::<Vec<u64>>(), "the restored copy holds every event");
}
