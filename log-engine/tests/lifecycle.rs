//! Stream lifecycle through the public API, each semantic on its own, and each across a
//! reopen (the state is folded from `$lifecycle` events at open, so it must come back the
//! same): soft delete, tombstone, close, and the refusals that write nothing.

mod common;

use common::*;
use log_engine::{DeleteMode, Direction, Error, ExpectedVersion, Log, Position, StreamVersion, LIFECYCLE_STREAM};

fn versions(log: &Log, stream: &str) -> Result<Vec<u64>, Error> {
    Ok(log.read_stream(stream, None, 1000, Direction::Forward)?.iter().map(|e| e.version.0).collect())
}

fn backward(log: &Log, stream: &str) -> Result<Vec<u64>, Error> {
    Ok(log.read_stream(stream, None, 1000, Direction::Backward)?.iter().map(|e| e.version.0).collect())
}

/// Reopens the log in `dir` (small segments, so the lifecycle events of a long test are read
/// from sealed segments' footers and from the active segment's scan alike).
fn reopen(log: Log, dir: &std::path::Path) -> Log {
    drop(log);
    open_small(dir)
}

#[test]
fn a_soft_delete_hides_the_stream_until_it_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    append_n(&log, "thread-1", 3);
    append_n(&log, "other", 1);
    let deleted = log.delete_stream("thread-1", DeleteMode::Soft).unwrap();
    // The change is an ordinary, chained event on the reserved stream.
    let record = log.read_event(deleted.position).unwrap();
    assert_eq!((record.stream.as_str(), record.event_type.as_str()), (LIFECYCLE_STREAM, "stream-deleted"));
    assert_eq!(record.data_json().unwrap(), serde_json::json!({"stream": "thread-1", "before_version": 3}));
    assert_eq!(record.hash, deleted.hash);
    for round in 0..2 {
        assert!(matches!(versions(&log, "thread-1"), Err(Error::StreamDeleted { ref stream }) if stream == "thread-1"));
        assert!(matches!(backward(&log, "thread-1"), Err(Error::StreamDeleted { .. })));
        let state = log.stream_state("thread-1").unwrap();
        assert_eq!((state.last_version, state.deleted_before), (Some(StreamVersion(2)), Some(StreamVersion(3))));
        assert!(!state.tombstoned && !state.closed && state.forked_from.is_none());
        assert!(log.streams("thread").is_empty(), "round {round}");
        // The global log is the history: it still has every event.
        assert_eq!(log.read_all(Position(0), 100).unwrap().len(), 5);
        assert_eq!(versions(&log, "other").unwrap(), vec![0]);
        log = reopen(log, dir.path());
    }
    // Written again: versions continue, and reads show only what came after the delete.
    let again = log.append("thread-1", ExpectedVersion::Exact(StreamVersion(2)), vec![event("thread-1", 9)]).unwrap();
    assert_eq!(again.first_version, StreamVersion(3));
    for _ in 0..2 {
        assert_eq!(versions(&log, "thread-1").unwrap(), vec![3]);
        assert_eq!(backward(&log, "thread-1").unwrap(), vec![3]);
        assert_eq!(log.read_stream("thread-1", Some(StreamVersion(0)), 10, Direction::Forward).unwrap().len(), 1);
        assert!(log.read_stream("thread-1", Some(StreamVersion(1)), 10, Direction::Backward).unwrap().is_empty());
        assert_eq!(log.streams("thread")[0].last_version, StreamVersion(3));
        log = reopen(log, dir.path());
    }
    assert!(log.verify(None, |_| ()).unwrap().ok);
}

#[test]
fn a_tombstone_is_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    append_n(&log, "run-7", 2);
    log.delete_stream("run-7", DeleteMode::Tombstone).unwrap();
    let head = log.head();
    for _ in 0..2 {
        let tombstoned =
            |r: Result<_, Error>| matches!(r, Err(Error::StreamTombstoned { ref stream }) if stream == "run-7");
        assert!(tombstoned(log.append("run-7", ExpectedVersion::Any, vec![event("run-7", 5)]).map(|_| ())));
        assert!(tombstoned(log.close_stream("run-7").map(|_| ())));
        assert!(tombstoned(log.delete_stream("run-7", DeleteMode::Soft).map(|_| ())));
        assert!(tombstoned(log.delete_stream("run-7", DeleteMode::Tombstone).map(|_| ())));
        assert!(tombstoned(log.set_stream_metadata("run-7", Default::default()).map(|_| ())));
        assert!(tombstoned(log.fork_stream("run-7", "copy", StreamVersion(0)).map(|_| ())));
        assert!(tombstoned(versions(&log, "run-7").map(|_| ())));
        assert_eq!(log.head(), head, "a refused change writes nothing");
        let state = log.stream_state("run-7").unwrap();
        assert!(state.tombstoned);
        assert_eq!(state.deleted_before, Some(StreamVersion(2)));
        log = reopen(log, dir.path());
    }
}

#[test]
fn a_closed_stream_refuses_appends_and_stays_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    append_n(&log, "run-1", 2);
    log.close_stream("run-1").unwrap();
    // Closing is permanent: metadata saying `closed: false` does not reopen it.
    log.set_stream_metadata("run-1", Default::default()).unwrap();
    let head = log.head();
    for _ in 0..2 {
        let refused = log.append("run-1", ExpectedVersion::Any, vec![event("run-1", 3)]).unwrap_err();
        assert!(matches!(refused, Error::StreamClosed { ref stream } if stream == "run-1"), "{refused}");
        assert_eq!(log.head(), head);
        // Still readable, and its state says so.
        assert_eq!(versions(&log, "run-1").unwrap(), vec![0, 1]);
        let state = log.stream_state("run-1").unwrap();
        assert!(state.closed && state.metadata.closed);
        log = reopen(log, dir.path());
    }
    // A stream may be closed before its first event.
    log.close_stream("never-written").unwrap();
    assert!(matches!(
        log.append("never-written", ExpectedVersion::Any, vec![event("x", 0)]),
        Err(Error::StreamClosed { .. })
    ));
    assert_eq!(log.stream_state("never-written").unwrap().last_version, None);
}

#[test]
fn bad_lifecycle_requests_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "a", 2);
    let head = log.head();
    assert!(matches!(log.delete_stream("missing", DeleteMode::Soft), Err(Error::StreamNotFound { .. })));
    assert!(matches!(log.stream_state("missing"), Err(Error::StreamNotFound { .. })));
    assert!(matches!(log.delete_stream("$lifecycle", DeleteMode::Soft), Err(Error::InvalidStreamName { .. })));
    assert!(matches!(log.close_stream(""), Err(Error::InvalidStreamName { .. })));
    // Only the log writes its lifecycle stream.
    let forged = log_engine::StreamAppend {
        stream: log_engine::StreamName::reserved(LIFECYCLE_STREAM).unwrap(),
        expected: ExpectedVersion::Any,
        events: vec![event("a", 0)],
    };
    assert!(matches!(log.append_multi(vec![forged]), Err(Error::InvalidStreamName { .. })));
    assert_eq!(log.head(), head);
}
