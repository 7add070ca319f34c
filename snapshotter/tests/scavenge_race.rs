//! A restore copies while a scavenge rewrites a sealed segment of the source: the scavenger
//! renames a smaller rewrite (dead events as husks, so other offsets) over the segment's path
//! in the middle of the copy, here right after the first segment was copied (the progress
//! callback runs it, so the interleaving is fixed). Whole or cut at a position (`--at`), the
//! copy must open, verify, end at the listed head and hold every event the source held at the
//! listing: the bytes and the cut offset come from the segment as it was listed, never from
//! the file that took its name since.

use log_engine::{DeleteMode, Event, ExpectedVersion, Log, NewEvent, Options, Position, ScavengeOptions};
use snapshotter::{restore_to_at, Overwrite, Stage};

/// Small segments, so the log has several sealed ones.
const SEGMENT: u64 = 64 * 1024;

/// A log whose sealed segments hold dead events (stream `drop`, soft-deleted) among live ones.
fn source(dir: &std::path::Path) -> Log {
    let log = Log::open(dir, Options { segment_size: SEGMENT, ..Options::default() }).unwrap();
    for n in 0..150u64 {
        for stream in ["keep", "drop"] {
            let event = NewEvent::json("Step", &serde_json::json!({"n": n, "pad": "z".repeat(500)}));
            log.append(stream, ExpectedVersion::Any, vec![event]).unwrap();
        }
    }
    log.delete_stream("drop", DeleteMode::Soft).unwrap();
    assert!(log.segment_files().iter().filter(|f| f.sealed).count() >= 3, "the test needs sealed segments");
    log
}

fn headers(events: &[Event]) -> Vec<(u64, String, u64)> {
    events.iter().map(|e| (e.position.0, e.stream.to_string(), e.version.0)).collect()
}

/// Restores `log` (cut at `at` when given) while a scavenge rewrites its sealed segments after
/// the first segment is copied; checks the copy against the log as it was.
fn restore_across_a_scavenge(at: Option<Position>) {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let log = source(src.path());
    let before = log.read_all(Position(0), usize::MAX).unwrap();
    let through = at.map_or(before.len() - 1, |p| usize::try_from(p.0).unwrap());
    let sizes: Vec<u64> = log.segment_files().iter().map(|f| f.bytes).collect();

    let target = dst.path().join("copy");
    let mut scavenged = None;
    let copied = restore_to_at(&log, &target, at, Overwrite::Refuse, &mut |p| {
        if p.stage == Stage::CopyLog && scavenged.is_none() {
            scavenged = Some(log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap());
        }
    })
    .unwrap();
    let report = scavenged.expect("the copy reported progress");
    assert!(report.segments_rewritten >= 2, "the scavenge rewrote sealed segments: {report:?}");
    let after: Vec<u64> = log.segment_files().iter().map(|f| f.bytes).collect();
    assert_ne!(sizes, after, "the rewrites have other sizes than the files listed");

    let copy = Log::open(&target, Options::default()).unwrap();
    let verified = copy.verify(None, |_| {}).unwrap();
    assert!(verified.ok, "{:?}", verified.detail);
    let head = copied.head.expect("the copy has a head");
    assert_eq!(copy.head(), Some(head));
    let held = copy.read_all(Position(0), usize::MAX).unwrap();
    assert!(held.len() > through, "the copy holds the position asked for: {} events", held.len());
    assert_eq!(headers(&held), headers(&before[..held.len()]));
    assert_eq!(head.hash, before[held.len() - 1].hash);
    for (copied, original) in held.iter().zip(&before) {
        assert_eq!((copied.erased, &copied.data), (original.erased, &original.data), "at {}", original.position);
    }
}

#[test]
fn a_whole_copy_is_the_log_as_listed_although_a_scavenge_rewrote_it_meanwhile() {
    restore_across_a_scavenge(None);
}

#[test]
fn a_copy_cut_at_a_position_is_cut_where_the_listed_segment_had_it() {
    // A position inside the second sealed segment: the cut offset is one of that segment's
    // offsets before its rewrite.
    restore_across_a_scavenge(Some(Position(140)));
}
