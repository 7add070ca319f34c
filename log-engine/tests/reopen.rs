//! Appends across many segments, closes, reopens: every event, stream index, head and chain
//! survive, and appends continue from where they stopped.

mod common;

use common::*;
use log_engine::{Direction, ExpectedVersion, Position, StreamVersion};

#[test]
fn reopen_keeps_everything_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    for i in 0..1200u64 {
        let stream = format!("agent-{}", i % 7);
        log.append(&stream, ExpectedVersion::Any, vec![event(&stream, i)]).unwrap();
    }
    let before = log.read_all(Position(0), 10_000).unwrap();
    let head = log.head().unwrap();
    let stats = log.stats();
    assert!(stats.segments > 3, "expected several segments, got {}", stats.segments);
    drop(log);

    let log = open_small(dir.path());
    assert_eq!(log.head(), Some(head));
    assert_eq!(log.read_all(Position(0), 10_000).unwrap(), before);
    assert_eq!(log.stats().segments, stats.segments);
    let report = log.verify(None, |_| {}).unwrap();
    assert!(report.ok, "{:?}", report.detail);
    assert_eq!(report.events, 1200);

    // Stream reads, both directions, agree with a filter over the global log.
    let expected: Vec<_> = before.iter().filter(|e| e.stream == "agent-3").cloned().collect();
    assert_eq!(log.read_stream("agent-3", None, 1000, Direction::Forward).unwrap(), expected);
    let mut backward = log.read_stream("agent-3", None, 1000, Direction::Backward).unwrap();
    backward.reverse();
    assert_eq!(backward, expected);
    let middle = log.read_stream("agent-3", Some(StreamVersion(10)), 5, Direction::Forward).unwrap();
    assert_eq!(middle, expected[10..15].to_vec());

    // Appends continue the chain and the versions.
    let r = log
        .append("agent-3", ExpectedVersion::Exact(StreamVersion(expected.len() as u64 - 1)), vec![event("agent-3", 0)])
        .unwrap();
    assert_eq!(r.first_position, Position(1200));
    assert_eq!(r.first_version, StreamVersion(expected.len() as u64));
    assert!(log.verify(None, |_| {}).unwrap().ok);
}

#[test]
fn second_process_gets_a_clear_lock_error() {
    let dir = tempfile::tempdir().unwrap();
    let _log = open_small(dir.path());
    let err = log_engine::Log::open(dir.path(), small_options()).unwrap_err();
    assert!(matches!(err, log_engine::Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use by another process"), "{err}");
}

#[test]
fn a_copied_prefix_opens_as_a_log_ending_at_a_batch_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "a", 500);
    // A three-event batch at positions 500..=502.
    log.append("b", ExpectedVersion::Any, vec![event("b", 0), event("b", 1), event("b", 2)]).unwrap();
    append_n(&log, "a", 300);
    let (files, last) = log.segment_files_through(Position(501)).unwrap();
    assert_eq!(last, Position(502), "the cut must include the whole batch");
    let expected = log.read_all(Position(0), 503).unwrap();
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(copy.path().join("log")).unwrap();
    for f in &files {
        let mut bytes = std::fs::read(&f.path).unwrap();
        let capacity = bytes.len();
        bytes.truncate(f.bytes as usize);
        bytes.resize(capacity, 0);
        std::fs::write(copy.path().join("log").join(f.path.file_name().unwrap()), bytes).unwrap();
    }
    let restored = open_small(copy.path());
    assert_eq!(restored.head().unwrap().position, Position(502));
    assert_eq!(restored.read_all(Position(0), 10_000).unwrap(), expected);
    assert!(restored.verify(None, |_| {}).unwrap().ok);
}

#[test]
fn verify_handles_an_empty_newest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "a", 400);
    let newest = log.segment_files().last().unwrap().clone();
    drop(log);
    // Cut every record of the newest segment: it is left empty after a sealed one.
    let mut bytes = std::fs::read(&newest.path).unwrap();
    let capacity = bytes.len();
    bytes.truncate(4096);
    bytes.resize(capacity, 0);
    std::fs::write(&newest.path, bytes).unwrap();
    let log = open_small(dir.path());
    let report = log.verify(None, |_| {}).unwrap();
    assert!(report.ok, "{:?}", report.detail);
    assert_eq!(report.events, log.head().unwrap().position.0 + 1);
}
