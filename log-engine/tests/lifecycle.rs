//! Stream lifecycle through the public API, each semantic on its own, and each across a
//! reopen (the state is folded from `$lifecycle` events at open, so it must come back the
//! same): soft delete, tombstone, close, metadata (truncate, count, age, ttl on the log's
//! clock), fork, and the refusals that write nothing.

mod common;

use common::*;
use log_engine::{
    DeleteMode, Direction, Error, ExpectedVersion, Log, Position, StreamMetadata, StreamVersion, LIFECYCLE_STREAM,
};

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

/// The log's clock: the newest event's timestamp.
fn clock(log: &Log) -> u64 {
    log.read_event(log.head().unwrap().position).unwrap().timestamp_ms
}

/// Appends to another stream until the log's clock has passed `until`. The clock is the log's
/// own (event timestamps), so this waits on a condition of the log, not on a duration.
fn advance_clock_past(log: &Log, until: u64) {
    let mut n = 0;
    while clock(log) <= until {
        log.append("ticks", ExpectedVersion::Any, vec![event("ticks", n)]).unwrap();
        n += 1;
    }
}

fn timestamps(log: &Log, stream: &str) -> Vec<(u64, u64)> {
    let all = log.read_all(Position(0), 100_000).unwrap();
    all.iter().filter(|e| e.stream == stream).map(|e| (e.version.0, e.timestamp_ms)).collect()
}

#[test]
fn truncate_before_and_max_count_apply_to_reads_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    append_n(&log, "s", 5);
    let set = |log: &Log, truncate_before, max_count| {
        let metadata = StreamMetadata { truncate_before, max_count, ..Default::default() };
        log.set_stream_metadata("s", metadata.clone()).unwrap();
        assert_eq!(log.stream_state("s").unwrap().metadata, metadata);
    };
    set(&log, Some(2), None);
    for _ in 0..2 {
        assert_eq!(versions(&log, "s").unwrap(), vec![2, 3, 4]);
        assert_eq!(backward(&log, "s").unwrap(), vec![4, 3, 2]);
        assert_eq!(log.read_stream("s", Some(StreamVersion(0)), 2, Direction::Forward).unwrap().len(), 2);
        assert!(log.read_stream("s", Some(StreamVersion(1)), 2, Direction::Backward).unwrap().is_empty());
        log = reopen(log, dir.path());
    }
    set(&log, Some(1), Some(2));
    assert_eq!(versions(&log, "s").unwrap(), vec![3, 4]);
    // Beyond the end is allowed and hides everything; the stream is still there.
    set(&log, Some(10), None);
    assert!(versions(&log, "s").unwrap().is_empty());
    log = reopen(log, dir.path());
    assert!(versions(&log, "s").unwrap().is_empty());
    assert_eq!(log.stream_state("s").unwrap().last_version, Some(StreamVersion(4)));
    // Newer events show again; the global log never hid anything.
    append_n(&log, "s", 7);
    assert_eq!(versions(&log, "s").unwrap(), (10..12).collect::<Vec<_>>());
    assert_eq!(timestamps(&log, "s").len(), 12);
    set(&log, None, None);
    assert_eq!(versions(&log, "s").unwrap().len(), 12);
}

#[test]
fn max_age_is_measured_on_the_logs_clock() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    append_n(&log, "s", 3);
    let age = 10;
    log.set_stream_metadata("s", StreamMetadata { max_age_ms: Some(age), ..Default::default() }).unwrap();
    let old = timestamps(&log, "s")[2].1;
    advance_clock_past(&log, old + age);
    append_n(&log, "s", 2);
    for _ in 0..2 {
        let now = clock(&log);
        let young: Vec<u64> =
            timestamps(&log, "s").into_iter().filter(|&(_, at)| now - at <= age).map(|(v, _)| v).collect();
        assert_eq!(versions(&log, "s").unwrap(), young);
        assert!(young.contains(&4) && !young.contains(&2), "{young:?}");
        // However long the reader waits, nothing changes until the log's clock moves.
        log = reopen(log, dir.path());
    }
}

#[test]
fn a_ttl_deletes_the_stream_after_that_long_without_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    append_n(&log, "session", 2);
    // Long enough that the metadata change, one durable commit after the last append, never
    // lands past it on a loaded machine (a 10 ms TTL did: fdatasync alone took up to ~10 ms).
    let ttl = 1_000;
    log.set_stream_metadata("session", StreamMetadata { ttl_ms: Some(ttl), ..Default::default() }).unwrap();
    assert_eq!(versions(&log, "session").unwrap(), vec![0, 1]);
    let last = timestamps(&log, "session")[1].1;
    advance_clock_past(&log, last + ttl);
    for _ in 0..2 {
        assert!(matches!(versions(&log, "session"), Err(Error::StreamDeleted { .. })));
        assert_eq!(log.stream_state("session").unwrap().deleted_before, Some(StreamVersion(2)));
        assert!(log.streams("session").is_empty());
        log = reopen(log, dir.path());
    }
    // Written again: like any deleted stream, it shows only what came after, and the log
    // records the expiry as a delete, so a replay shows the same.
    let again = log.append("session", ExpectedVersion::Any, vec![event("session", 2)]).unwrap();
    assert_eq!(again.first_version, StreamVersion(2));
    for _ in 0..2 {
        assert_eq!(versions(&log, "session").unwrap(), vec![2]);
        let lifecycle = log.read_stream(LIFECYCLE_STREAM, None, 100, Direction::Forward).unwrap();
        let expiry = lifecycle.last().unwrap();
        assert_eq!(expiry.event_type, "stream-deleted");
        assert_eq!(expiry.position.0 + 1, again.first_position.0);
        log = reopen(log, dir.path());
    }
}

#[test]
fn bad_metadata_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "s", 1);
    let head = log.head();
    for (metadata, field) in [
        (StreamMetadata { max_count: Some(0), ..Default::default() }, "max_count"),
        (StreamMetadata { max_age_ms: Some(0), ..Default::default() }, "max_age_ms"),
        (StreamMetadata { ttl_ms: Some(0), ..Default::default() }, "ttl_ms"),
    ] {
        match log.set_stream_metadata("s", metadata).unwrap_err() {
            Error::InvalidStreamMetadata { field: named, reason } => {
                assert_eq!(named, field);
                assert!(!reason.is_empty());
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(log.head(), head);
}

#[test]
fn a_fork_reads_its_sources_prefix_then_its_own_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    append_n(&log, "thread", 1000);
    let bytes = log.stats().record_bytes;
    log.fork_stream("thread", "branch", StreamVersion(599)).unwrap();
    // O(1): the fork is one small event, not a copy of 600.
    assert!(log.stats().record_bytes - bytes < 512, "a fork wrote {} bytes", log.stats().record_bytes - bytes);
    let state = log.stream_state("branch").unwrap();
    assert_eq!(state.forked_from.map(|(s, v)| (s.to_string(), v.0)), Some(("thread".to_string(), 599)));
    assert_eq!(state.last_version, Some(StreamVersion(599)));
    assert!(matches!(
        log.append("branch", ExpectedVersion::NoStream, vec![event("branch", 0)]),
        Err(Error::WrongExpectedVersion { .. })
    ));
    let own = log.append("branch", ExpectedVersion::Exact(StreamVersion(599)), vec![event("branch", 600)]).unwrap();
    assert_eq!(own.first_version, StreamVersion(600));
    // A fork of the fork, across both.
    log.fork_stream("branch", "twig", StreamVersion(600)).unwrap();
    append_n(&log, "twig", 1);
    // Deleting and tombstoning the source breaks neither.
    log.delete_stream("thread", DeleteMode::Soft).unwrap();
    log.delete_stream("thread", DeleteMode::Tombstone).unwrap();
    for _ in 0..2 {
        let read = log.read_stream("branch", None, 10_000, Direction::Forward).unwrap();
        assert_eq!(read.iter().map(|e| e.version.0).collect::<Vec<_>>(), (0..=600).collect::<Vec<_>>());
        // The shared prefix is the source's records, as stored (their hash covers the name).
        assert!(read[..600].iter().all(|e| e.stream == "thread"));
        assert_eq!(read[600].stream, "branch");
        assert_eq!(backward(&log, "branch").unwrap()[..3], [600, 599, 598]);
        let page = log.read_stream("branch", Some(StreamVersion(598)), 3, Direction::Forward).unwrap();
        assert_eq!(
            page.iter().map(|e| (e.stream.as_str(), e.version.0)).collect::<Vec<_>>(),
            [("thread", 598), ("thread", 599), ("branch", 600)]
        );
        let twig = log.read_stream("twig", Some(StreamVersion(599)), 10, Direction::Forward).unwrap();
        assert_eq!(
            twig.iter().map(|e| (e.stream.as_str(), e.version.0)).collect::<Vec<_>>(),
            [("thread", 599), ("branch", 600), ("twig", 601)]
        );
        assert!(matches!(versions(&log, "thread"), Err(Error::StreamTombstoned { .. })));
        log = reopen(log, dir.path());
    }
    assert!(log.verify(None, |_| ()).unwrap().ok);
}

/// A fork shows nothing its source hid when it was forked: its window starts at the source's
/// first readable version then (its delete point, `truncate_before`, `max_count`), not at 0,
/// so a fork of a re-created stream does not bring back the deleted stream's events. Across a
/// reopen, since the clamp is recorded in the fork's event.
#[test]
fn a_fork_starts_at_its_sources_first_readable_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    // Deleted and written again: versions 0..=1 are the deleted stream's.
    append_n(&log, "recreated", 2);
    log.delete_stream("recreated", DeleteMode::Soft).unwrap();
    append_n(&log, "recreated", 2);
    log.fork_stream("recreated", "recreated-fork", StreamVersion(3)).unwrap();
    append_n(&log, "truncated", 6);
    let metadata = StreamMetadata { truncate_before: Some(4), ..StreamMetadata::default() };
    log.set_stream_metadata("truncated", metadata).unwrap();
    log.fork_stream("truncated", "truncated-fork", StreamVersion(5)).unwrap();
    // Forked at a version the source hides: the fork shares nothing readable.
    log.fork_stream("truncated", "hidden-fork", StreamVersion(2)).unwrap();
    append_n(&log, "counted", 6);
    let metadata = StreamMetadata { max_count: Some(2), ..StreamMetadata::default() };
    log.set_stream_metadata("counted", metadata).unwrap();
    log.fork_stream("counted", "counted-fork", StreamVersion(5)).unwrap();
    // A fork of the clamped fork is clamped as far.
    log.fork_stream("counted-fork", "counted-twig", StreamVersion(5)).unwrap();
    // Lifting the source's limits later changes no fork's window.
    log.set_stream_metadata("truncated", StreamMetadata::default()).unwrap();
    log.set_stream_metadata("counted", StreamMetadata::default()).unwrap();
    for _ in 0..2 {
        assert_eq!(versions(&log, "recreated-fork").unwrap(), [2, 3]);
        assert_eq!(versions(&log, "truncated-fork").unwrap(), [4, 5]);
        assert_eq!(versions(&log, "hidden-fork").unwrap(), Vec::<u64>::new());
        assert_eq!(versions(&log, "counted-fork").unwrap(), [4, 5]);
        assert_eq!(versions(&log, "counted-twig").unwrap(), [4, 5]);
        assert_eq!(backward(&log, "truncated-fork").unwrap(), [5, 4]);
        let read = log.read_stream("recreated-fork", Some(StreamVersion(0)), 10, Direction::Forward).unwrap();
        assert_eq!(read.iter().map(|e| e.version.0).collect::<Vec<_>>(), [2, 3]);
        // The sources read in full again; their forks keep their own windows.
        assert_eq!(versions(&log, "truncated").unwrap(), [0, 1, 2, 3, 4, 5]);
        // Own appends continue after the fork point as before.
        assert_eq!(log.stream_state("hidden-fork").unwrap().last_version, Some(StreamVersion(2)));
        log = reopen(log, dir.path());
    }
    let own = log.append("hidden-fork", ExpectedVersion::Exact(StreamVersion(2)), vec![event("hidden-fork", 3)]);
    assert_eq!(own.unwrap().first_version, StreamVersion(3));
    assert_eq!(versions(&log, "hidden-fork").unwrap(), [3]);
    // A fork of it shares its own version 3.
    log.fork_stream("hidden-fork", "hidden-twig", StreamVersion(3)).unwrap();
    assert_eq!(versions(&log, "hidden-twig").unwrap(), [3]);
    // The fork event says where the fork starts.
    let forked = log.read_stream(LIFECYCLE_STREAM, None, 1000, Direction::Forward).unwrap();
    let data: Vec<serde_json::Value> =
        forked.iter().filter(|e| e.event_type == "stream-forked").map(|e| e.data_json().unwrap()).collect();
    assert_eq!(
        data[0],
        serde_json::json!({"stream": "recreated-fork", "source": "recreated", "at_version": 3, "first_version": 2})
    );
    assert!(log.verify(None, |_| ()).unwrap().ok);
}

#[test]
fn bad_forks_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "a", 3);
    append_n(&log, "b", 1);
    append_n(&log, "gone", 1);
    log.delete_stream("gone", DeleteMode::Tombstone).unwrap();
    log.fork_stream("a", "f", StreamVersion(1)).unwrap();
    let head = log.head();
    match log.fork_stream("a", "c", StreamVersion(3)).unwrap_err() {
        Error::ForkPastEnd { stream, at_version, last_version } => {
            assert_eq!((stream.as_str(), at_version.0, last_version.0), ("a", 3, 2));
        }
        other => panic!("{other}"),
    }
    assert!(
        matches!(log.fork_stream("a", "b", StreamVersion(0)), Err(Error::StreamExists { ref stream }) if stream == "b")
    );
    assert!(matches!(log.fork_stream("a", "f", StreamVersion(0)), Err(Error::StreamExists { .. })));
    assert!(matches!(log.fork_stream("a", "a", StreamVersion(0)), Err(Error::StreamExists { .. })));
    assert!(matches!(log.fork_stream("gone", "c", StreamVersion(0)), Err(Error::StreamTombstoned { .. })));
    assert!(matches!(log.fork_stream("a", "gone", StreamVersion(0)), Err(Error::StreamTombstoned { .. })));
    assert!(matches!(log.fork_stream("missing", "c", StreamVersion(0)), Err(Error::StreamNotFound { .. })));
    // A soft-deleted prefix does not come back through a fork.
    log.delete_stream("b", DeleteMode::Soft).unwrap();
    let head_after_delete = log.head();
    assert!(matches!(log.fork_stream("b", "c", StreamVersion(0)), Err(Error::StreamDeleted { .. })));
    assert_eq!(log.head(), head_after_delete);
    assert_ne!(log.head(), head);
}

/// A reader in another process folds the writer's lifecycle events as it refreshes, within a
/// segment (the fast path that reads only the new records) and across a roll.
#[test]
fn a_reader_sees_lifecycle_changes_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open_small(dir.path());
    append_n(&writer, "a", 3);
    let reader = Log::open_read_only(dir.path(), small_options()).unwrap();
    writer.fork_stream("a", "fork", StreamVersion(1)).unwrap();
    writer.delete_stream("a", DeleteMode::Soft).unwrap();
    append_n(&writer, "fork", 1);
    assert_eq!(versions(&reader, "a").unwrap(), vec![0, 1, 2]);
    assert!(reader.refresh().unwrap());
    assert!(matches!(versions(&reader, "a"), Err(Error::StreamDeleted { .. })));
    assert_eq!(versions(&reader, "fork").unwrap(), vec![0, 1, 2]);
    // Across segment rolls: a full open of the new files.
    append_n(&writer, "filler", 2000);
    writer.close_stream("fork").unwrap();
    assert!(reader.refresh().unwrap());
    assert!(reader.stream_state("fork").unwrap().closed);
    assert_eq!(versions(&reader, "fork").unwrap(), vec![0, 1, 2]);
}

/// A copy of the log cut at a position (what point-in-time restore makes) shows the lifecycle
/// as it was at that position: the state is in the log, and retention is measured on the
/// copy's own clock, the newest event it holds.
#[test]
fn a_copy_cut_before_a_change_shows_the_stream_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "s", 3);
    let before_delete = log.head().unwrap().position;
    log.delete_stream("s", DeleteMode::Soft).unwrap();
    let at_delete = log.head().unwrap().position;
    let copy = |through: Position| {
        let (files, _) = log.segment_files_through(through).unwrap();
        let target = tempfile::tempdir().unwrap();
        let log_dir = target.path().join(log_engine::LOG_DIR);
        std::fs::create_dir_all(&log_dir).unwrap();
        for file in files {
            let mut bytes = std::fs::read(&file.path).unwrap();
            bytes.truncate(file.bytes as usize);
            bytes.resize(file.capacity as usize, 0);
            std::fs::write(log_dir.join(file.path.file_name().unwrap()), bytes).unwrap();
        }
        target
    };
    let early = copy(before_delete);
    let early_log = Log::open_read_only(early.path(), small_options()).unwrap();
    assert_eq!(versions(&early_log, "s").unwrap(), vec![0, 1, 2]);
    let late = copy(at_delete);
    let late_log = Log::open_read_only(late.path(), small_options()).unwrap();
    assert!(matches!(versions(&late_log, "s"), Err(Error::StreamDeleted { .. })));
}

/// A change can carry its event's metadata (who asked, why): the server stamps its principal
/// there as on any event. Metadata that is not a JSON object is refused and writes nothing.
#[test]
fn a_change_carries_the_metadata_it_is_given() {
    use log_engine::StreamChange;
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "s", 1);
    let who = serde_json::json!({"$principal": "ops", "reason": "user asked"});
    let change = StreamChange::Delete { stream: "s".into(), mode: DeleteMode::Soft };
    let written = log.change_stream(change.clone(), Some(&who)).unwrap();
    assert_eq!(log.read_event(written.position).unwrap().metadata_json(), who);
    let head = log.head();
    let refused = log.change_stream(change, Some(&serde_json::json!(["not", "an", "object"]))).unwrap_err();
    assert!(matches!(refused, Error::Invalid { .. }), "{refused}");
    let bad = StreamChange::SetMetadata {
        stream: "s".into(),
        metadata: StreamMetadata { max_count: Some(0), ..Default::default() },
    };
    assert!(matches!(log.change_stream(bad, Some(&who)), Err(Error::InvalidStreamMetadata { .. })));
    assert_eq!(log.head(), head);
}

/// Open reads the `$lifecycle` records of sealed segments (the only sealed records it reads):
/// damage in one fails the open with its location, as damage in a footer does, rather than
/// leaving a deleted stream readable.
#[test]
fn damage_in_a_sealed_lifecycle_record_fails_open_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "s", 2);
    let deleted = log.delete_stream("s", DeleteMode::Soft).unwrap();
    append_n(&log, "filler", 1000);
    let files = log.segment_files();
    assert!(files[0].sealed, "the delete is in a sealed segment");
    drop(log);
    let mut bytes = std::fs::read(&files[0].path).unwrap();
    let needle = b"before_version";
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the delete's data is in the segment");
    bytes[at] ^= 0x20;
    std::fs::write(&files[0].path, bytes).unwrap();
    match Log::open(dir.path(), small_options()).unwrap_err() {
        Error::Corrupt { position, .. } => assert_eq!(position, Some(deleted.position)),
        other => panic!("expected corruption, got {other}"),
    }
}

/// A stream that had metadata (or a close) before it was forked onto and written: after a
/// reopen its first own event, at the version after the fork point, is found in the active
/// segment's scan before the fork is folded, and must not read as a version gap. (Found by
/// tests/model.rs: the reopen failed.)
#[test]
fn a_fork_onto_a_stream_known_only_by_its_metadata_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    log.set_stream_metadata("target", StreamMetadata { max_count: Some(5), ..Default::default() }).unwrap();
    append_n(&log, "source", 2);
    // The metadata in a sealed segment, folded before the active segment is scanned.
    append_n(&log, "filler", 1000);
    log.fork_stream("source", "target", StreamVersion(0)).unwrap();
    append_n(&log, "target", 1);
    for _ in 0..2 {
        log = reopen(log, dir.path());
        assert_eq!(versions(&log, "target").unwrap(), vec![0, 1]);
        assert_eq!(log.stream_state("target").unwrap().metadata.max_count, Some(5));
    }
    // And once the fork and its events are in sealed segments, from their footers.
    append_n(&log, "filler", 1000);
    log = reopen(log, dir.path());
    assert_eq!(versions(&log, "target").unwrap(), vec![0, 1]);
}
