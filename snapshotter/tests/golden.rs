//! The golden fixture (`fixtures/golden/`): a small log (two segments of the smallest size, the
//! first sealed, the second ending in a torn batch) and a checkpoint chain (a full checkpoint and
//! an incremental on top of it), written by the code of format version 2 and committed with what
//! was true when they were written (`expected.json`). Today's code must read them and find
//! exactly that: every event with its chain hash, the head, where a reader stops and what a
//! writer's recovery cuts, every checkpoint's hashes, and the views' digests after restoring the
//! chain. A format change keeps this test passing or carries an explicit upgrade
//! (docs/format.md, "Compatibility").
//!
//! `CAIRN_GOLDEN_WRITE=1 cargo test -p snapshotter --test golden` writes the fixture afresh
//! (fixtures/golden/README.md says when that is right); without it the test only reads.

use std::fs;
use std::path::{Path, PathBuf};

use log_engine::{
    Error, Event, ExpectedVersion, Log, NewEvent, Options, Payload, Position, Recovery, Uuid, SEGMENT_SIZE_MIN,
};
use projections::{Projection, Views};
use serde_json::{json, Value};
use snapshotter::{CheckpointKind, Policy, Snapshotter};

/// Where the fixture lives in the repository.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden")
}

/// The last bytes of a segment file, where a sealed segment keeps its trailer (docs/format.md).
const TRAILER_LEN: usize = 64;
/// Where the segment header keeps the capacity, which is the file's size (docs/format.md).
const CAPACITY_AT: usize = 24;
/// Events of about this many bytes of data fill a 64 KiB segment in a few dozen appends, and stay
/// below the size from which bodies are compressed, so the records are as written.
const DATA_BYTES: usize = 3500;

/// Writes the fixture's log and checkpoints into data directory `dir` and returns what is true
/// of them; the last batch is torn afterwards (its second record zeroed, as a crash mid-write
/// leaves it).
fn generate(dir: &Path) -> Value {
    let options = Options { segment_size: SEGMENT_SIZE_MIN, ..Options::default() };
    let log = Log::open(dir, options).unwrap();
    let mut views = Views::projections();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    let mut applied = 0u64;
    let mut catch_up = |log: &Log, views: &mut Vec<Box<dyn Projection>>| {
        let head = log.head().unwrap().position;
        snapshotter::replay(log, views, Position(applied), head, &mut |_| {}).unwrap();
        applied = head.0 + 1;
        head
    };
    let mut n = 0u64;
    let round = |log: &Log, i: u64| {
        let id = |k: u64| Uuid::from_u128(u128::from(i) << 8 | u128::from(k));
        let note = "golden ".repeat(DATA_BYTES / 7);
        let kv = NewEvent::json("kv.set", &json!({"value": {"step": i, "note": note}})).with_id(id(0));
        log.append(&format!("kv:agent-{}", i % 3), ExpectedVersion::Any, vec![kv]).unwrap();
        let audit = json!({"level": "info", "category": "agent_activity", "event": format!("step {i}"),
            "actor": {"type": "agent", "id": format!("agent-{}", i % 3)}});
        let events = vec![
            NewEvent::json("audit.entry", &audit).with_id(id(1)),
            NewEvent::json("audit.entry", &audit).with_id(id(2)).with_metadata(&json!({"trace": i})),
        ];
        log.append("audit:golden", ExpectedVersion::Any, events).unwrap();
        if i.is_multiple_of(5) {
            let config = json!({"scope": "global", "key": "round", "value": i});
            log.append(
                "meta:config:global:round",
                ExpectedVersion::Any,
                vec![NewEvent::json("meta.config.set", &config)],
            )
            .unwrap();
        }
    };
    // Fill the first segment, checkpointing on the way, then start the second.
    while log.segment_files().len() < 2 {
        round(&log, n);
        n += 1;
        if n == 8 {
            let at = catch_up(&log, &mut views);
            snap.checkpoint(&log, &mut views, at, CheckpointKind::Full).unwrap();
        }
    }
    for _ in 0..1 {
        round(&log, n);
        n += 1;
    }
    let at = catch_up(&log, &mut views);
    snap.checkpoint(&log, &mut views, at, CheckpointKind::Incremental).unwrap();
    round(&log, n);
    let events = log.read_all(Position(0), usize::MAX).unwrap();
    let head = log.head().unwrap();
    let checkpoints: Vec<Value> =
        snap.list(&log, &mut |_| {}).unwrap().iter().map(|c| checkpoint_json(c.info.as_ref().unwrap())).collect();
    let at_incremental = checkpoints[1]["position"].as_u64().unwrap();

    // The torn batch: two records, of which only the first reaches the disk.
    let torn_at = log.segment_files()[1].bytes;
    let torn = vec![NewEvent::json("Torn", &json!({"half": 1})), NewEvent::json("Torn", &json!({"half": 2}))];
    log.append("torn", ExpectedVersion::Any, torn).unwrap();
    let end = log.segment_files()[1].bytes;
    let active = log.segment_files()[1].path.clone();
    log.close();
    let mut bytes = fs::read(&active).unwrap();
    let body_len = u32::from_le_bytes(bytes[torn_at as usize + 4..torn_at as usize + 8].try_into().unwrap());
    let first_len = (80 + body_len as usize).next_multiple_of(8);
    bytes[torn_at as usize + first_len..end as usize].fill(0);
    fs::write(&active, bytes).unwrap();

    // The views' state as the chain restores it: at the incremental checkpoint (nothing replayed)
    // and at the head (the tail replayed).
    let log = Log::open_read_only(dir, Options::default()).unwrap();
    let stop = log.read_stop().expect("a reader stops before the torn batch");
    let mut at_chain = Views::projections();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    snap.rebuild_at(&log, &mut at_chain, Position(at_incremental), &mut |_| {}).unwrap();
    let mut at_head = Views::projections();
    snap.restore(&log, &mut at_head, &mut |_| {}).unwrap();
    json!({
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
        "head": {"position": head.position.0, "hash": head.hash.to_string()},
        "segments": log.segment_files().iter().map(|s| json!({
            "name": s.path.file_name().unwrap().to_str().unwrap(), "capacity": s.capacity, "sealed": s.sealed,
        })).collect::<Vec<_>>(),
        "read_stop": {"offset": stop.offset, "corrupt": stop.corrupt, "detail": stop.kind.to_string()},
        "torn": {"segment": log.segment_files()[1].path.file_name().unwrap().to_str().unwrap(),
                 "offset": torn_at, "record_bytes": first_len},
        "checkpoints": checkpoints,
        "digests_at_incremental": digests_json(&at_chain),
        "digests_at_head": digests_json(&at_head),
    })
}

fn event_json(e: &Event) -> Value {
    let data = match &e.data {
        Payload::Json(text) => text,
        Payload::Bytes(bytes) => panic!("the fixture holds JSON data only, not {} bytes", bytes.len()),
    };
    json!({
        "position": e.position.0, "stream": e.stream, "version": e.version.0, "id": e.id.to_string(),
        "type": e.event_type, "timestamp_ms": e.timestamp_ms,
        "metadata": String::from_utf8(e.metadata.clone()).unwrap(),
        "data_blake3": blake3::hash(data).to_hex().to_string(), "hash": e.hash.to_string(),
    })
}

fn checkpoint_json(c: &snapshotter::CheckpointInfo) -> Value {
    json!({
        "sequence": c.sequence, "kind": format!("{:?}", c.kind), "position": c.position.0,
        "log_hash": c.log_hash.to_string(), "parent": c.parent, "parent_hash": c.parent_hash.to_string(),
        "hash": c.hash.to_string(), "content_digest": c.content_digest.to_string(),
    })
}

fn digests_json(views: &[Box<dyn Projection>]) -> Value {
    views
        .iter()
        .map(|v| (v.name().to_string(), Value::from(blake3::Hash::from(v.digest()).to_hex().to_string())))
        .collect()
}

/// The files in `dir`, with their names.
fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            (path, name)
        })
        .collect();
    files.sort();
    files
}

/// Stores data directory `dir` as the fixture in `to`: each segment file trimmed to what is not
/// zero (its record area up to the last non-zero byte, and its last 64 bytes in `NAME.end` when
/// they hold a trailer), the extent record and the checkpoints as they are.
fn store(dir: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to.join("log"));
    let _ = fs::remove_dir_all(to.join("checkpoints"));
    fs::create_dir_all(to.join("log")).unwrap();
    fs::create_dir_all(to.join("checkpoints")).unwrap();
    for (path, name) in files(&dir.join("log")) {
        if name.ends_with(".seg") {
            let bytes = fs::read(&path).unwrap();
            let (records, end) = bytes.split_at(bytes.len() - TRAILER_LEN);
            let used = records.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            fs::write(to.join("log").join(&name), &records[..used]).unwrap();
            if end.iter().any(|&b| b != 0) {
                fs::write(to.join("log").join(format!("{name}.end")), end).unwrap();
            }
        } else if name == "extent" {
            fs::copy(&path, to.join("log").join(name)).unwrap();
        }
    }
    for (path, name) in files(&Snapshotter::checkpoints_dir(dir)) {
        fs::copy(path, to.join("checkpoints").join(name)).unwrap();
    }
}

/// The fixture as a data directory in `dir`: each segment file zero-filled back to the capacity
/// its header states, its trailer (if any) at the end.
fn materialize(dir: &Path) {
    let from = fixture();
    fs::create_dir_all(dir.join("log")).unwrap();
    fs::create_dir_all(dir.join("checkpoints")).unwrap();
    for (path, name) in files(&from.join("log")) {
        if name.ends_with(".seg") {
            let mut bytes = fs::read(&path).unwrap();
            let capacity = u64::from_le_bytes(bytes[CAPACITY_AT..CAPACITY_AT + 8].try_into().unwrap()) as usize;
            bytes.resize(capacity - TRAILER_LEN, 0);
            match fs::read(from.join("log").join(format!("{name}.end"))) {
                Ok(end) => bytes.extend_from_slice(&end),
                Err(_) => bytes.resize(capacity, 0),
            }
            fs::write(dir.join("log").join(name), bytes).unwrap();
        } else if name == "extent" {
            fs::copy(&path, dir.join("log").join(name)).unwrap();
        }
    }
    for (path, name) in files(&from.join("checkpoints")) {
        fs::copy(path, Snapshotter::checkpoints_dir(dir).join(name)).unwrap();
    }
}

/// The sizes of the files in a data directory's torn/.
fn torn_files(dir: &Path) -> Vec<u64> {
    fs::read_dir(dir.join("torn")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).collect()
}

fn expected() -> Value {
    let text = fs::read_to_string(fixture().join("expected.json")).expect("fixtures/golden/expected.json");
    serde_json::from_str(&text).unwrap()
}

fn events_json(log: &Log) -> Value {
    Value::from(log.read_all(Position(0), usize::MAX).unwrap().iter().map(event_json).collect::<Vec<_>>())
}

#[test]
fn todays_code_reads_the_golden_fixture() {
    if std::env::var_os("CAIRN_GOLDEN_WRITE").is_some() {
        let scratch = tempfile::tempdir().unwrap();
        let expected = generate(scratch.path());
        store(scratch.path(), &fixture());
        // What a writer's recovery keeps of the torn batch in torn/ (its bytes up to the last
        // non-zero one).
        let copy = tempfile::tempdir().unwrap();
        materialize(copy.path());
        drop(Log::open(copy.path(), Options::default()).unwrap());
        let kept = torn_files(copy.path());
        let mut expected = expected;
        expected["torn"]["kept_bytes"] = Value::from(kept);
        let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
        fs::write(fixture().join("expected.json"), text).unwrap();
    }
    let expected = expected();
    assert!(expected["events"].as_array().unwrap().len() > 20, "the fixture holds its events");

    // A reader: every recorded event, and a stop before the torn batch, which it does not cut.
    let dir = tempfile::tempdir().unwrap();
    materialize(dir.path());
    let reader = Log::open_read_only(dir.path(), Options::default()).unwrap();
    assert_eq!(events_json(&reader), expected["events"], "the events and their chain hashes");
    let head = reader.head().unwrap();
    assert_eq!(json!({"position": head.position.0, "hash": head.hash.to_string()}), expected["head"]);
    let stop = reader.read_stop().expect("the reader stops before the torn batch");
    assert!(!stop.corrupt, "a torn tail, not corruption: {}", stop.kind);
    let stop = json!({"offset": stop.offset, "corrupt": stop.corrupt, "detail": stop.kind.to_string()});
    assert_eq!(stop, expected["read_stop"], "where a reader stops, and why");
    let segments: Vec<Value> = reader
        .segment_files()
        .iter()
        .map(|s| json!({"name": s.path.file_name().unwrap().to_str().unwrap(), "capacity": s.capacity, "sealed": s.sealed}))
        .collect();
    assert_eq!(Value::from(segments), expected["segments"]);
    let report = reader.verify(None, |_| {}).unwrap();
    assert!(report.ok, "verify re-hashes every record: {report:?}");

    // The checkpoint chain: the same files, hashes and bindings to the log, and it restores the
    // recorded view state at the incremental checkpoint and (with the tail replayed) at the head.
    let mut snap = Snapshotter::open(&reader, Policy::default()).unwrap();
    let listed: Vec<Value> =
        snap.list(&reader, &mut |_| {}).unwrap().iter().map(|c| checkpoint_json(c.info.as_ref().unwrap())).collect();
    assert_eq!(Value::from(listed), expected["checkpoints"]);
    let at = Position(expected["checkpoints"][1]["position"].as_u64().unwrap());
    let mut views = Views::projections();
    let restored = snap.rebuild_at(&reader, &mut views, at, &mut |_| {}).unwrap();
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_eq!((restored.checkpoints_loaded, restored.replayed.events), (2, 0), "full + incremental, nothing replayed");
    assert_eq!(digests_json(&views), expected["digests_at_incremental"]);
    let mut views = Views::projections();
    let restored = snap.restore(&reader, &mut views, &mut |_| {}).unwrap();
    assert_eq!(restored.checkpoints_loaded, 2);
    assert_eq!(digests_json(&views), expected["digests_at_head"]);
    drop(reader);

    // Strict recovery refuses the torn tail where the reader stopped.
    let strict = Log::open(dir.path(), Options { recovery: Recovery::Strict, ..Options::default() });
    match strict {
        Err(Error::TornTail { offset, .. }) => assert_eq!(offset, expected["torn"]["offset"].as_u64().unwrap()),
        other => panic!("expected a torn tail, got {other:?}"),
    }
    // A writer's recovery cuts it, keeps the cut bytes in torn/, and shows the same events.
    let writer = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(events_json(&writer), expected["events"]);
    assert_eq!(Value::from(torn_files(dir.path())), expected["torn"]["kept_bytes"], "the torn batch's bytes, kept");
}
