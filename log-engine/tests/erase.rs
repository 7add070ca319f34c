//! Logical erasure through the public API (issue 16 item 5): an erased event's payload is
//! gone at once from every read (stream reads, global reads, single-event reads and
//! subscriptions) and stays gone across a reopen and in a reader's refresh; the chain still
//! verifies; a fork's shared prefix is erased for the fork and its source alike; bad requests
//! name the problem and write nothing.

mod common;

use common::*;
use log_engine::{
    DeleteMode, Direction, Error, Event, Filter, Log, Position, StartFrom, StreamVersion, EVENT_STREAM_ERASED,
    LIFECYCLE_STREAM,
};

fn v(n: u64) -> Option<StreamVersion> {
    Some(StreamVersion(n))
}

/// `(version, erased)` of every event a forward stream read returns.
fn stream_flags(log: &Log, stream: &str) -> Vec<(u64, bool)> {
    log.read_stream(stream, None, 1000, Direction::Forward).unwrap().iter().map(|e| (e.version.0, e.erased)).collect()
}

/// An erased event has its header and nothing else; a live one its whole payload.
fn assert_masked(e: &Event, erased: bool) {
    if erased {
        assert!(e.erased && e.metadata.is_empty() && e.data.as_bytes().is_empty(), "{e:?}");
    } else {
        assert!(!e.erased && e.data_json().is_some(), "{e:?}");
    }
}

fn erased_in_stream(log: &Log, stream: &str) -> Vec<u64> {
    stream_flags(log, stream).into_iter().filter(|&(_, erased)| erased).map(|(version, _)| version).collect()
}

#[tokio::test]
async fn erased_payloads_are_gone_from_every_read_at_once_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    append_n(&log, "thread-1", 5);
    append_n(&log, "other", 2);
    let head_before = log.head().unwrap();
    let erased = log.erase("thread-1", v(1), v(3), "GDPR request 7").unwrap();
    // The erasure is a chained lifecycle event saying who erased what and why.
    let record = log.read_event(erased.position).unwrap();
    assert_eq!((record.stream.as_str(), record.event_type.as_str()), (LIFECYCLE_STREAM, EVENT_STREAM_ERASED));
    assert_eq!(
        record.data_json().unwrap(),
        serde_json::json!({"stream": "thread-1", "from_version": 1, "to_version": 3, "reason": "GDPR request 7"})
    );
    for round in 0..2 {
        assert_eq!(erased_in_stream(&log, "thread-1"), vec![1, 2, 3], "round {round}");
        for e in log.read_stream("thread-1", None, 10, Direction::Backward).unwrap() {
            assert_masked(&e, (1..=3).contains(&e.version.0));
        }
        // Global reads keep every event (positions stay gapless) but serve no erased payload.
        let all = log.read_all(Position(0), 100).unwrap();
        assert_eq!(all.len(), 8);
        for e in &all[..7] {
            assert_masked(e, e.stream == "thread-1" && (1..=3).contains(&e.version.0));
        }
        assert_masked(&log.read_event(Position(2)).unwrap(), true);
        // The header survives: the chain hash is the same as before, and the chain verifies.
        assert_eq!(all[6].hash, head_before.hash);
        assert!(log.verify(None, |_| {}).unwrap().ok);
        assert_eq!(erased_in_stream(&log, "other"), Vec::<u64>::new());
        log = reopen(log, dir.path());
    }
    // Subscriptions, one-stream and global, from the start: the same masking.
    let filter = Filter { stream: Some("thread-1".into()), ..Default::default() };
    let mut sub = log.subscribe(StartFrom::Position(Position(0)), filter);
    for version in 0..5 {
        let e = sub.next().await.unwrap().unwrap();
        assert_eq!(e.version.0, version);
        assert_masked(&e, (1..=3).contains(&version));
    }
    let mut global = log.subscribe(StartFrom::Position(Position(0)), Filter::default());
    for _ in 0..7 {
        let e = global.next().await.unwrap().unwrap();
        assert_masked(&e, e.stream == "thread-1" && (1..=3).contains(&e.version.0));
    }
}

#[test]
fn the_default_range_is_the_whole_stream_and_ranges_merge() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "a", 6);
    log.erase("a", v(4), None, "tail").unwrap();
    log.erase("a", None, v(0), "head").unwrap();
    assert_eq!(erased_in_stream(&log, "a"), vec![0, 4, 5]);
    log.erase("a", v(1), v(3), "middle").unwrap();
    log.erase("a", v(2), v(2), "again: changes nothing").unwrap();
    assert_eq!(erased_in_stream(&log, "a"), vec![0, 1, 2, 3, 4, 5]);
    // Later appends are not erased.
    append_n(&log, "a", 1);
    assert_eq!(stream_flags(&log, "a").last(), Some(&(6, false)));
    let log = reopen(log, dir.path());
    assert_eq!(erased_in_stream(&log, "a"), vec![0, 1, 2, 3, 4, 5]);
}

/// Issue 16 item 5: a fork whose prefix covers an erased range shows it erased too, and an
/// erasure through a fork's shared prefix reaches the source, which owns those records.
#[test]
fn a_forks_shared_prefix_is_erased_for_fork_and_source_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    append_n(&log, "source", 4);
    log.fork_stream("source", "fork", StreamVersion(2)).unwrap();
    append_n(&log, "fork", 2);
    log.erase("source", v(1), v(1), "through the source").unwrap();
    log.erase("fork", v(2), v(3), "through the fork").unwrap();
    for _ in 0..2 {
        assert_eq!(erased_in_stream(&log, "source"), vec![1, 2]);
        assert_eq!(erased_in_stream(&log, "fork"), vec![1, 2, 3]);
        log = reopen(log, dir.path());
    }
    // The fork's second fork reads the same prefix, erased.
    log.fork_stream("fork", "grandchild", StreamVersion(4)).unwrap();
    assert_eq!(erased_in_stream(&log, "grandchild"), vec![1, 2, 3]);
}

/// A soft-deleted stream's events are still in the global log: erasing them is how they go.
#[test]
fn a_deleted_streams_events_can_be_erased() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "gone", 2);
    log.delete_stream("gone", DeleteMode::Soft).unwrap();
    log.erase("gone", None, None, "delete and erase").unwrap();
    let all = log.read_all(Position(0), 10).unwrap();
    assert!(all[..2].iter().all(|e| e.erased), "{all:?}");
}

#[test]
fn bad_erasures_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "a", 3);
    append_n(&log, "t", 1);
    log.delete_stream("t", DeleteMode::Tombstone).unwrap();
    log.fork_stream("a", "fork", StreamVersion(1)).unwrap();
    let head = log.head().unwrap();
    let refusals: Vec<(Error, &str)> = vec![
        (
            log.erase("a", v(2), v(3), "r").unwrap_err(),
            "cannot erase versions 2 to 3 of stream a: its last version is 2",
        ),
        (log.erase("a", v(5), None, "r").unwrap_err(), "cannot erase versions 5 to 2 of stream a"),
        (log.erase("fork", v(0), v(2), "r").unwrap_err(), "its last version is 1"),
        (log.erase("a", v(2), v(1), "r").unwrap_err(), "from_version is after to_version"),
        (log.erase("a", None, None, "  ").unwrap_err(), "needs a reason"),
        (log.erase("a", None, None, &"x".repeat(2000)).unwrap_err(), "at most 1024 bytes"),
        (log.erase("t", None, None, "r").unwrap_err(), "stream t is tombstoned"),
        (log.erase("never", None, None, "r").unwrap_err(), "stream never not found"),
        (log.erase("$lifecycle", None, None, "r").unwrap_err(), "reserved"),
    ];
    for (error, says) in refusals {
        assert!(error.to_string().contains(says), "{error} does not say {says:?}");
    }
    assert_eq!(log.head().unwrap(), head, "nothing was written");
    assert!(erased_in_stream(&log, "a").is_empty());
}

#[test]
fn a_reader_sees_an_erasure_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open_small(dir.path());
    append_n(&writer, "a", 3);
    let reader = Log::open_read_only(dir.path(), small_options()).unwrap();
    writer.erase("a", v(0), v(0), "r").unwrap();
    assert!(erased_in_stream(&reader, "a").is_empty());
    assert!(reader.refresh().unwrap());
    assert_eq!(erased_in_stream(&reader, "a"), vec![0]);
    assert!(reader.read_all(Position(0), 1).unwrap()[0].erased);
}

fn reopen(log: Log, dir: &std::path::Path) -> Log {
    drop(log);
    open_small(dir)
}
