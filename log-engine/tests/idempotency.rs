//! Event ids are unique within their stream.
//!
//! Issue 14 item 9: a batch `[new C, existing A]` appended A a second time in the same stream,
//! and the `IdConflict` named the wrong id and position. The contract: a retried batch (same ids,
//! same content, or a run of them as stored) returns the original positions and writes nothing; a batch mixing new and
//! already-written ids, or repeating an id, is refused, names the id and where it lives, and
//! writes nothing.

mod common;

use common::*;
use log_engine::{Direction, Error, ExpectedVersion, IdConflictReason, Log, Position, StreamAppend, StreamName, Uuid};

fn ev(n: u64, id: Uuid) -> log_engine::NewEvent {
    event("agent", n).with_id(id)
}

/// Events in `stream` and the log's head, to show a refused append wrote nothing.
fn shape(log: &Log, stream: &str) -> (usize, Option<Position>) {
    (log.read_stream(stream, None, 10_000, Direction::Forward).unwrap().len(), log.head().map(|h| h.position))
}

fn conflict(err: Error) -> (Uuid, Position, IdConflictReason) {
    match err {
        Error::IdConflict { id, position, reason, .. } => (id, position, reason),
        other => panic!("expected an id conflict, got {other}"),
    }
}

/// Issue 14 item 9: `[new C, existing A]` is refused, names A at its position, writes nothing.
#[test]
fn a_batch_mixing_new_and_written_ids_is_refused_and_names_the_written_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    append_n(&log, "other", 2);
    let first = log.append("agent", ExpectedVersion::Any, vec![ev(0, a), ev(1, b)]).unwrap();
    append_n(&log, "other", 2);
    let before = shape(&log, "agent");

    // New C first, then A: A is not written a second time.
    let err = log.append("agent", ExpectedVersion::Any, vec![ev(5, c), ev(0, a)]).unwrap_err();
    let msg = err.to_string();
    assert_eq!(conflict(err), (a, first.first_position, IdConflictReason::NotARetry), "{msg}");
    assert!(msg.contains(&a.to_string()) && msg.contains(&format!("position {}", first.first_position)), "{msg}");
    assert_eq!(shape(&log, "agent"), before);

    // A then new C (the retry with one more event): refused, A named.
    let err = log.append("agent", ExpectedVersion::Any, vec![ev(0, a), ev(1, b), ev(5, c)]).unwrap_err();
    assert_eq!(conflict(err), (a, first.first_position, IdConflictReason::NotARetry));
    // B alone, as stored: idempotent, B's original result.
    let only_b = log.append("agent", ExpectedVersion::Any, vec![ev(1, b)]).unwrap();
    assert_eq!((only_b.first_position, only_b.last_position), (first.last_position, first.last_position));
    // The original order reversed: refused, the id out of place named where it lives.
    let err = log.append("agent", ExpectedVersion::Any, vec![ev(1, b), ev(0, a)]).unwrap_err();
    assert_eq!(conflict(err), (a, first.first_position, IdConflictReason::NotARetry));
    // Same ids, B with other content: B named, at its own position.
    let err = log.append("agent", ExpectedVersion::Any, vec![ev(0, a), ev(9, b)]).unwrap_err();
    assert_eq!(conflict(err), (b, first.last_position, IdConflictReason::DifferentContent));
    assert_eq!(shape(&log, "agent"), before);

    // The exact retry still answers the original result and writes nothing.
    assert_eq!(log.append("agent", ExpectedVersion::Any, vec![ev(0, a), ev(1, b)]).unwrap(), first);
    assert_eq!(shape(&log, "agent"), before);
    // And C alone is new.
    log.append("agent", ExpectedVersion::Any, vec![ev(5, c)]).unwrap();
    assert_eq!(shape(&log, "agent").0, before.0 + 1);
}

/// Issue 14 item 9: an id repeated within one request's stream is refused; writes nothing.
#[test]
fn an_id_repeated_within_one_append_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let err = log.append("agent", ExpectedVersion::Any, vec![ev(0, a), ev(1, b), ev(2, a)]).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    assert!(err.to_string().contains(&a.to_string()), "{err}");
    // Across two appends to the same stream in one atomic request, too.
    let stream = StreamName::new("agent").unwrap();
    let err = log
        .append_multi(vec![
            StreamAppend { stream: stream.clone(), expected: ExpectedVersion::Any, events: vec![ev(0, a)] },
            StreamAppend { stream, expected: ExpectedVersion::Any, events: vec![ev(1, a)] },
        ])
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    assert_eq!(log.head(), None, "nothing was written");
    // The same id in two different streams is fine: ids are unique within a stream.
    let other = StreamName::new("other").unwrap();
    let stream = StreamName::new("agent").unwrap();
    log.append_multi(vec![
        StreamAppend { stream, expected: ExpectedVersion::Any, events: vec![ev(0, a)] },
        StreamAppend { stream: other, expected: ExpectedVersion::Any, events: vec![ev(0, a)] },
    ])
    .unwrap();
    assert_eq!(log.head().unwrap().position, Position(1));
}

/// An id reused in another stream later does not hide its first use: a retry in the first stream
/// is still recognised, and a reuse there still refused.
#[test]
fn an_id_used_in_two_streams_is_found_in_each() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let (a, c) = (Uuid::new_v4(), Uuid::new_v4());
    let first = log.append("agent", ExpectedVersion::Any, vec![ev(0, a)]).unwrap();
    log.append("other", ExpectedVersion::Any, vec![event("other", 0).with_id(a)]).unwrap();
    assert_eq!(log.append("agent", ExpectedVersion::Any, vec![ev(0, a)]).unwrap(), first);
    let err = log.append("agent", ExpectedVersion::Any, vec![ev(3, c), ev(0, a)]).unwrap_err();
    assert_eq!(conflict(err), (a, first.first_position, IdConflictReason::NotARetry));
    assert_eq!(log.head().unwrap().position, Position(1));
}
