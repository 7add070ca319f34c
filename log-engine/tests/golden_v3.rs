//! The format version 3 golden fixture (`fixtures/golden-v3/`): a small log written by the code
//! of format version 3 and scavenged, so its sealed segments hold husks (of a soft-deleted
//! stream, of versions below a `truncate_before`, of a binary event and of a compressed one),
//! committed with what was true of it when it was written (`expected.json`). Today's code must
//! open it, with a writer and with a reader, and find exactly that: every event with its chain
//! hash and, for a husk, `erased` with no payload; `verify` passes through the husks; the
//! scavenged segments are version 3 and smaller than the writer makes segments.
//!
//! `CAIRN_GOLDEN_WRITE=1 cargo test -p log-engine --test golden_v3` writes the fixture afresh
//! (only when the format version changes: fixtures/golden/README.md); without it the test only
//! reads.

use std::fs;
use std::path::{Path, PathBuf};

use log_engine::{
    DeleteMode, Event, ExpectedVersion, Log, NewEvent, Options, Position, ScavengeOptions, StreamMetadata, Uuid,
    SEGMENT_SIZE_MIN,
};
use serde_json::{json, Value};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden-v3")
}

fn options() -> Options {
    Options { segment_size: SEGMENT_SIZE_MIN, ..Options::default() }
}

/// Where the segment header keeps the format version (docs/format.md, "### Header").
const VERSION_AT: usize = 8;

/// Writes the fixture's log into `dir`, scavenges it, writes a little more, and returns what
/// is true of it.
fn generate(dir: &Path) -> Value {
    let log = Log::open(dir, options()).unwrap();
    let id = |i: u64| Uuid::from_u128(0x901d_0000 + u128::from(i));
    let mut i = 0;
    let mut next = |event: NewEvent| {
        i += 1;
        event.with_id(id(i))
    };
    for n in 0..40u64 {
        let note = "husk ".repeat(300);
        log.append("agent-1", ExpectedVersion::Any, vec![next(NewEvent::json("step", &json!({"n": n, "note": note})))])
            .unwrap();
        let run = NewEvent::json("run", &json!({"n": n, "note": note})).with_metadata(&json!({"trace": n}));
        log.append("run-3", ExpectedVersion::Any, vec![next(run)]).unwrap();
        let thread = if n % 2 == 0 {
            NewEvent::bytes("blob", vec![u8::try_from(n).unwrap(); 700])
        } else {
            // Compressed on disk: its husk must hash the uncompressed payload's digests.
            NewEvent::json("big", &json!({"n": n, "text": "a".repeat(6000)}))
        };
        log.append("thread-9", ExpectedVersion::Any, vec![next(thread)]).unwrap();
    }
    log.delete_stream("thread-9", DeleteMode::Soft).unwrap();
    log.set_stream_metadata("run-3", StreamMetadata { truncate_before: Some(25), ..StreamMetadata::default() })
        .unwrap();
    let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert!(report.events_husked > 20 && report.bytes_after < report.bytes_before, "{report:?}");
    log.append("agent-1", ExpectedVersion::Any, vec![next(NewEvent::json("after", &json!({"n": 40})))]).unwrap();
    let events = events_json(&log);
    let head = log.head().unwrap();
    drop(log);
    json!({"events": events, "head": {"position": head.position.0, "hash": head.hash.to_hex()}})
}

fn event_json(e: &Event) -> Value {
    json!({
        "position": e.position.0, "stream": e.stream, "version": e.version.0, "id": e.id.to_string(),
        "type": e.event_type, "timestamp_ms": e.timestamp_ms, "erased": e.erased,
        "metadata": String::from_utf8_lossy(&e.metadata), "data_blake3": blake3::hash(e.data.as_bytes()).to_hex().to_string(),
        "data_len": e.data.as_bytes().len(), "hash": e.hash.to_hex(),
    })
}

fn events_json(log: &Log) -> Value {
    Value::from(log.read_all(Position(0), usize::MAX).unwrap().iter().map(event_json).collect::<Vec<_>>())
}

fn segments(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg") || p.file_name().is_some_and(|n| n == "extent"))
        .map(|p| (p.file_name().unwrap().to_str().unwrap().to_string(), fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

/// The fixture's log, copied into a fresh data directory.
fn copy_fixture(dir: &Path) {
    fs::create_dir_all(dir.join("log")).unwrap();
    for (name, bytes) in segments(&fixture().join("log")) {
        fs::write(dir.join("log").join(name), bytes).unwrap();
    }
}

#[test]
fn todays_code_reads_the_version_3_fixture() {
    if std::env::var_os("CAIRN_GOLDEN_WRITE").is_some() {
        let scratch = tempfile::tempdir().unwrap();
        let expected = generate(scratch.path());
        let _ = fs::remove_dir_all(fixture());
        fs::create_dir_all(fixture().join("log")).unwrap();
        for (name, bytes) in segments(&scratch.path().join("log")) {
            fs::write(fixture().join("log").join(name), bytes).unwrap();
        }
        let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
        fs::write(fixture().join("expected.json"), text).unwrap();
    }
    let expected: Value = serde_json::from_str(&fs::read_to_string(fixture().join("expected.json")).unwrap()).unwrap();
    let husks = expected["events"].as_array().unwrap().iter().filter(|e| e["erased"] == true).count();
    assert!(husks > 20, "the fixture holds husks");
    // Every sealed segment was rewritten: version 3, and smaller than a segment is written.
    let files = segments(&fixture().join("log"));
    let sealed: Vec<&(String, Vec<u8>)> = files.iter().filter(|(n, _)| n.ends_with(".seg")).rev().skip(1).collect();
    assert!(!sealed.is_empty());
    for (name, bytes) in sealed {
        assert_eq!(bytes[VERSION_AT..VERSION_AT + 4], 3u32.to_le_bytes(), "{name}");
        assert!((bytes.len() as u64) < SEGMENT_SIZE_MIN, "{name} has {} bytes", bytes.len());
    }
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let reader = Log::open_read_only(dir.path(), options()).unwrap();
    assert_eq!(events_json(&reader), expected["events"]);
    drop(reader);
    for _ in 0..2 {
        let log = Log::open(dir.path(), options()).unwrap();
        assert_eq!(events_json(&log), expected["events"]);
        let head = log.head().unwrap();
        assert_eq!(json!({"position": head.position.0, "hash": head.hash.to_hex()}), expected["head"]);
        let report = log.verify(None, |_| {}).unwrap();
        assert!(report.ok, "{:?}", report.detail);
        assert_eq!(report.events, head.position.0 + 1);
        // Scavenging it again finds every dead event a husk already.
        let again = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(again.events_husked, 0);
    }
}
