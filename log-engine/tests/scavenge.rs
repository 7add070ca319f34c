//! Scavenging through the public API: a log whose streams were deleted, truncated and forked is
//! scavenged; every event keeps its position, header and chain hash, dead events read as husks
//! (`erased`, no payload), live ones read exactly as before (a fork's shared prefix included),
//! `verify` passes, the segment files shrink, and all of it holds across a reopen. A second
//! scavenge finds nothing to do; a reader cannot scavenge; appends go on while one runs. A
//! segment's snapshot (what copies and replication read through) taken before a scavenge still
//! reads the file it was listed from after the rewrite took its name.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use log_engine::{
    DeleteMode, Direction, Error, Event, ExpectedVersion, Log, NewEvent, Position, ScavengeOptions, ScavengeProgress,
    StreamMetadata, StreamVersion,
};

/// An event with a payload large enough that husking it gives space back.
fn big(stream: &str, n: u64) -> NewEvent {
    NewEvent::json("Big", &serde_json::json!({"stream": stream, "n": n, "pad": "y".repeat(1000)}))
        .with_metadata(&serde_json::json!({"n": n}))
}

fn all(log: &Log) -> Vec<Event> {
    log.read_all(Position(0), 100_000).unwrap()
}

fn stream(log: &Log, name: &str) -> Vec<Event> {
    log.read_stream(name, None, 100_000, Direction::Forward).unwrap()
}

fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Streams `gone` (deleted), `kept`, `trimmed` (truncated before version 100) and `child`
/// (forked from `trimmed` at version 50, so versions 0..=50 of `trimmed` stay readable through
/// it); returns the positions that are dead: all of `gone`, versions 51..=99 of `trimmed`.
fn build(log: &Log) -> BTreeSet<u64> {
    let mut dead = BTreeSet::new();
    for n in 0..150 {
        for name in ["gone", "kept", "trimmed"] {
            let written = log.append(name, ExpectedVersion::Any, vec![big(name, n)]).unwrap();
            if name == "gone" || (name == "trimmed" && (51..100).contains(&n)) {
                dead.insert(written.first_position.0);
            }
        }
    }
    log.fork_stream("trimmed", "child", StreamVersion(50)).unwrap();
    log.delete_stream("gone", DeleteMode::Soft).unwrap();
    let metadata = StreamMetadata { truncate_before: Some(100), ..StreamMetadata::default() };
    log.set_stream_metadata("trimmed", metadata).unwrap();
    append_n(log, "child", 3);
    dead
}

/// The first position of the active segment: scavenging never touches it, so its dead events
/// keep their payloads until it is sealed.
fn active_start(log: &Log) -> u64 {
    let active = log.segment_files().pop().unwrap();
    assert!(!active.sealed);
    active.path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// `after` is `before` with the dead events' payloads gone, and nothing else changed.
fn assert_husked(before: &[Event], after: &[Event], dead: &BTreeSet<u64>) {
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(after) {
        if dead.contains(&b.position.0) {
            assert!(a.erased && a.metadata.is_empty() && a.data.as_bytes().is_empty(), "position {}", b.position);
            let header = Event { metadata: Vec::new(), data: a.data.clone(), erased: true, ..b.clone() };
            assert_eq!(a, &header, "position {}", b.position);
        } else {
            assert_eq!(a, b, "position {}", b.position);
        }
    }
}

#[test]
fn scavenging_husks_dead_events_and_keeps_every_read_and_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    let dead = build(&log);
    let active = active_start(&log);
    let in_active = dead.iter().filter(|&&p| p >= active).count();
    assert!(in_active > 0, "the test wants dead events in the active segment too");
    let dead: BTreeSet<u64> = dead.into_iter().filter(|&p| p < active).collect();
    let before = all(&log);
    let streams: Vec<(&str, Vec<Event>)> = ["kept", "trimmed", "child"].map(|s| (s, stream(&log, s))).into();
    assert_eq!(streams[2].1.len(), 51 + 3, "the fork reads its shared prefix");
    let size_before = segment_bytes(dir.path());
    let mut seen: Vec<ScavengeProgress> = Vec::new();
    let report = log.scavenge(&ScavengeOptions::default(), &mut |p| seen.push(*p)).unwrap();
    assert_eq!(report.events_husked, dead.len() as u64);
    assert!(report.segments_rewritten > 0 && report.segments_removed == 0, "{report:?}");
    assert!(report.bytes_after < report.bytes_before, "{report:?}");
    let last = seen.last().copied().unwrap();
    assert_eq!((last.segments_done, last.events_husked), (last.segments_total, dead.len() as u64));
    assert_eq!(last.bytes_reclaimed, report.bytes_before - report.bytes_after);
    assert!(seen.windows(2).all(|w| w[0].segments_done + 1 == w[1].segments_done), "one call per segment");
    // What a user cares about: the dead payloads' space is back. Each is ~1 KiB; a husk ~150 B.
    let reclaimed = size_before - segment_bytes(dir.path());
    assert!(reclaimed >= dead.len() as u64 * 700, "reclaimed {reclaimed} bytes for {} dead events", dead.len());
    for round in 0..2 {
        assert_husked(&before, &all(&log), &dead);
        for (name, events) in &streams {
            assert_eq!(&stream(&log, name), events, "stream {name}, round {round}");
        }
        let verified = log.verify(None, |_| {}).unwrap();
        assert!(verified.ok, "round {round}: {:?}", verified.detail);
        assert_eq!(verified.events, before.len() as u64);
        drop(log);
        log = open_small(dir.path());
    }
    // Nothing left to do; the log goes on.
    let again = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert_eq!((again.events_husked, again.segments_rewritten), (0, 0), "{again:?}");
    assert_eq!(again.bytes_before, again.bytes_after);
    append_n(&log, "kept", 1);
    assert_eq!(stream(&log, "kept").len(), 151);
    assert!(log.verify(None, |_| {}).unwrap().ok);
}

#[test]
fn a_reader_cannot_scavenge() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    build(&log);
    drop(log);
    let reader = Log::open_read_only(dir.path(), small_options()).unwrap();
    let err = reader.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
}

/// Appends go on while a scavenge rewrites segments beside them, and every one is read back.
#[test]
fn appends_go_on_while_a_scavenge_runs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let dead = build(&log);
    let active = active_start(&log);
    let dead: BTreeSet<u64> = dead.into_iter().filter(|&p| p < active).collect();
    let before = all(&log);
    std::thread::scope(|scope| {
        let appender = scope.spawn(|| {
            for n in 0..200 {
                log.append("during", ExpectedVersion::Any, vec![big("during", n)]).unwrap();
            }
        });
        let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(report.events_husked, dead.len() as u64);
        appender.join().unwrap();
    });
    let after = all(&log);
    assert_husked(&before, &after[..before.len()], &dead);
    assert_eq!(stream(&log, "during").len(), 200);
    assert!(log.verify(None, |_| {}).unwrap().ok);
}

/// An idempotent retry of an append whose events a scavenge has since turned into husks is
/// still recognised by its content (the husk keeps the payload digests) and returns the original
/// positions; a different payload under the same id is still refused.
#[test]
fn a_retry_of_husked_events_is_still_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let request = |n: u64| {
        vec![
            big("t", n).with_id(log_engine::Uuid::from_u64_pair(9, n)),
            big("t", n + 1).with_id(log_engine::Uuid::from_u64_pair(9, n + 1)),
        ]
    };
    let first = log.append("t", ExpectedVersion::NoStream, request(0)).unwrap();
    for n in 0..120 {
        log.append("other", ExpectedVersion::Any, vec![big("other", n)]).unwrap();
    }
    log.set_stream_metadata("t", StreamMetadata { truncate_before: Some(2), ..StreamMetadata::default() }).unwrap();
    let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(report.events_husked, 2);
    assert!(log.read_event(first.first_position).unwrap().erased);
    let again = log.append("t", ExpectedVersion::NoStream, request(0)).unwrap();
    assert_eq!(again, first);
    let mut changed = request(0);
    changed[1] = big("t", 99).with_id(log_engine::Uuid::from_u64_pair(9, 1));
    let err = log.append("t", ExpectedVersion::NoStream, changed).unwrap_err();
    assert!(matches!(err, Error::IdConflict { .. }), "{err}");
    assert!(err.to_string().contains("content"), "{err}");
}

/// An erased event is dead: a scavenge makes it a husk, so its payload leaves the disk (the
/// bytes of the segment files no longer hold it), while reads, the chain and `verify` stay as
/// they were after the erasure.
#[test]
fn a_scavenge_removes_erased_payloads_from_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    for n in 0..10 {
        let secret = NewEvent::json("Said", &serde_json::json!({"text": format!("SECRET-{n:04}")}));
        log.append("pii", ExpectedVersion::Any, vec![secret]).unwrap();
    }
    for n in 0..120 {
        log.append("other", ExpectedVersion::Any, vec![big("other", n)]).unwrap();
    }
    log.erase("pii", Some(StreamVersion(2)), Some(StreamVersion(7)), "the user asked").unwrap();
    let disk = || {
        let mut found = BTreeSet::new();
        for entry in std::fs::read_dir(dir.path().join("log")).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            found.extend(bytes.windows(11).filter(|w| w.starts_with(b"SECRET-")).map(|w| w[7..].to_vec()));
        }
        found.into_iter().map(|d| String::from_utf8(d).unwrap()).collect::<Vec<String>>()
    };
    assert_eq!(disk().len(), 10, "before the scavenge every payload is on disk");
    let before = all(&log);
    let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(report.events_husked, 6, "{report:?}");
    assert_eq!(disk(), ["0000", "0001", "0008", "0009"]);
    assert_eq!(all(&log), before, "reads are what they were after the erasure");
    assert!(log.verify(None, |_| {}).unwrap().ok);
}

#[test]
fn a_snapshot_reads_the_file_it_was_listed_from_after_a_scavenge_replaced_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_options()).unwrap();
    for n in 0..120u64 {
        for stream in ["keep", "drop"] {
            let event = NewEvent::json("Step", &serde_json::json!({"n": n, "pad": "z".repeat(500)}));
            log.append(stream, ExpectedVersion::Any, vec![event]).unwrap();
        }
    }
    log.delete_stream("drop", DeleteMode::Soft).unwrap();

    let listed = log.segment_snapshots();
    let sealed = listed.iter().find(|s| s.file().sealed).expect("a sealed segment").clone();
    let on_disk = std::fs::read(&sealed.file().path).unwrap();
    assert_eq!(sealed.bytes().unwrap(), &on_disk[..], "a sealed segment's snapshot is its whole file");
    assert_eq!(log.segment_snapshot(sealed.id()).unwrap().bytes().unwrap(), &on_disk[..]);

    let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert!(report.segments_rewritten >= 1, "{report:?}");
    let rewritten = std::fs::read(&sealed.file().path).unwrap();
    assert_ne!(rewritten, on_disk, "the scavenge replaced the file");

    assert_eq!(sealed.bytes().unwrap(), &on_disk[..], "the snapshot still reads the file it was listed from");
    let now = log.segment_snapshot(sealed.id()).unwrap();
    assert_eq!(now.file().bytes, rewritten.len() as u64);
    assert_eq!(now.bytes().unwrap(), &rewritten[..], "a new listing reads the rewrite");
}

/// A fork made after a scavenge husked its source's truncated prefix reads none of those husks:
/// its window starts where the source's did (before the clamp it read them as erased events).
#[test]
fn a_fork_after_a_scavenge_reads_no_husks() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    for n in 0..40 {
        log.append("source", ExpectedVersion::Any, vec![big("source", n)]).unwrap();
    }
    let metadata = StreamMetadata { truncate_before: Some(30), ..StreamMetadata::default() };
    log.set_stream_metadata("source", metadata).unwrap();
    append_n(&log, "filler", 200);
    let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert!(report.events_husked >= 20, "{report:?}");
    log.fork_stream("source", "fork", StreamVersion(35)).unwrap();
    let read = stream(&log, "fork");
    assert_eq!(read.iter().map(|e| e.version.0).collect::<Vec<_>>(), (30..=35).collect::<Vec<_>>());
    assert!(read.iter().all(|e| !e.erased), "a fork reads husks");
}

/// `keep_hidden`: the events of a kept stream that only retention hides (`max_count` here) keep
/// their payloads, so something that folds them (a view) replays the same bytes; its deleted
/// and erased events, and every hidden event of the other streams, are husked.
#[test]
fn keep_hidden_streams_keep_what_only_retention_hides() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    for n in 0..5 {
        for name in ["kv:counted", "plain", "kv:gone", "kv:erased"] {
            log.append(name, ExpectedVersion::Any, vec![big(name, n)]).unwrap();
        }
    }
    let metadata = StreamMetadata { max_count: Some(1), ..StreamMetadata::default() };
    log.set_stream_metadata("kv:counted", metadata.clone()).unwrap();
    log.set_stream_metadata("plain", metadata).unwrap();
    log.delete_stream("kv:gone", DeleteMode::Soft).unwrap();
    log.erase("kv:erased", Some(StreamVersion(1)), Some(StreamVersion(2)), "test").unwrap();
    append_n(&log, "filler", 200);
    let options = ScavengeOptions::default().keeping_hidden(["kv:"]);
    assert_eq!(options.keep_hidden, ["kv:"]);
    let report = log.scavenge(&options, &mut |_| {}).unwrap();
    // plain 0..=3, kv:gone 0..=4, kv:erased 1..=2.
    assert_eq!(report.events_husked, 4 + 5 + 2, "{report:?}");
    let husks = |name: &str| -> Vec<u64> {
        all(&log).iter().filter(|e| e.stream == name && e.erased).map(|e| e.version.0).collect()
    };
    assert_eq!(husks("kv:counted"), Vec::<u64>::new());
    assert_eq!(husks("plain"), [0, 1, 2, 3]);
    assert_eq!(husks("kv:gone"), [0, 1, 2, 3, 4]);
    assert_eq!(husks("kv:erased"), [1, 2]);
    // Reads are as before: retention still hides the kept stream's older versions.
    assert_eq!(stream(&log, "kv:counted").iter().map(|e| e.version.0).collect::<Vec<_>>(), [4]);
    assert!(log.verify(None, |_| ()).unwrap().ok);
}

/// A scavenge never holds appends back beyond one segment's swap: between its segments (while
/// it is still in progress: segments remain) an append from another thread completes and reads
/// back. Nothing is timed: the append is awaited inside the scavenge's progress callback, so
/// the scavenge cannot end before it does.
#[test]
fn appends_complete_while_a_scavenge_is_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    build(&log);
    let mut during = Vec::new();
    let report = log
        .scavenge(&ScavengeOptions::default(), &mut |p| {
            if p.segments_done < p.segments_total {
                let appended = std::thread::scope(|scope| {
                    scope
                        .spawn(|| log.append("during", ExpectedVersion::Any, vec![big("during", p.segments_done)]))
                        .join()
                        .unwrap()
                });
                during.push(appended.unwrap().first_position);
            }
        })
        .unwrap();
    assert!(report.segments_rewritten >= 2, "{report:?}");
    assert!(during.len() >= 2, "appends made while the scavenge ran: {}", during.len());
    let read = stream(&log, "during");
    assert_eq!(read.iter().map(|e| e.position).collect::<Vec<_>>(), during);
}
