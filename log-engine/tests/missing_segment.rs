//! Issue 14 item 4: a lost newest segment went unnoticed. Deleting the newest segment file, the
//! log opened as if nothing had happened and handed the lost events' positions out again.
//!
//! The extent record (`log/extent`) names the newest segment the log has created; open refuses
//! a log whose newest segment file is older, naming the missing file and positions, in every
//! shape: one segment only, several segments, with a prepared spare beside them, and more than
//! one segment lost. `Recovery::AcceptMissingTail` (the operator's `cairn repair
//! --accept-missing-tail`) continues exactly where the lost segment began, never lower than what
//! the surviving footers prove; with more than one segment lost it refuses even so.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use log_engine::{Error, ExpectedVersion, Log, Options, Position, Recovery};

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    segments
}

fn accepting() -> Options {
    Options { recovery: Recovery::AcceptMissingTail, ..small_options() }
}

/// Both a writer's and a reader's open refuse, naming the missing file and where the log ends.
fn assert_refused(dir: &Path, missing: &Path, ends: &str) {
    let name = missing.file_name().unwrap().to_str().unwrap();
    for result in [Log::open(dir, small_options()), Log::open_read_only(dir, small_options())] {
        match result {
            Err(e @ Error::MissingSegment { .. }) => {
                let text = e.to_string();
                assert!(text.contains(name), "{text}");
                assert!(text.contains(ends), "{text}");
                assert!(e.is_corruption());
            }
            other => panic!("expected a missing segment, got {other:?}"),
        }
    }
}

#[test]
fn the_only_segment_deleted_is_refused_and_accepting_it_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "agent-1", 5);
    log.close();
    let only = segments(dir.path()).pop().unwrap();
    std::fs::remove_file(&only).unwrap();

    assert_refused(dir.path(), &only, "is empty");
    // Refusing wrote nothing: still refused.
    assert_refused(dir.path(), &only, "is empty");

    let log = Log::open(dir.path(), accepting()).unwrap();
    assert_eq!(log.head(), None);
    let done = log.append("agent-1", ExpectedVersion::Any, vec![event("agent-1", 0)]).unwrap();
    assert_eq!(done.first_position, Position(0), "nothing on disk proves a position was used");
    log.close();
    assert_eq!(open_small(dir.path()).stats().events, 1, "the repaired log opens normally");
}

#[test]
fn the_newest_of_several_segments_deleted_is_refused_and_never_reissues_a_proven_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "agent-1", 1200);
    let stats = log.stats();
    assert!(stats.segments >= 3, "{stats:?}");
    log.close();
    let all = segments(dir.path());
    let newest = all.last().unwrap().clone();
    let newest_first: u64 = newest.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    // A prepared spare beside the segments changes nothing.
    std::fs::write(dir.path().join("log/spare.tmp"), vec![0u8; 4096]).unwrap();
    std::fs::remove_file(&newest).unwrap();

    assert_refused(dir.path(), &newest, &format!("ends at position {}", newest_first - 1));

    let log = Log::open(dir.path(), accepting()).unwrap();
    assert_eq!(log.head().unwrap().position, Position(newest_first - 1));
    let done = log.append("agent-1", ExpectedVersion::Any, vec![event("agent-1", 0)]).unwrap();
    assert_eq!(done.first_position, Position(newest_first));
    assert!(log.verify(None, |_| {}).unwrap().ok);
    log.close();
    let log = open_small(dir.path());
    assert_eq!(log.stats().events, newest_first + 1);
}

#[test]
fn two_lost_segments_are_refused_even_when_accepting_a_missing_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "agent-1", 1200);
    log.close();
    let all = segments(dir.path());
    assert!(all.len() >= 3);
    let kept_end: u64 = all[all.len() - 2].file_stem().unwrap().to_str().unwrap().parse().unwrap();
    for lost in &all[all.len() - 2..] {
        std::fs::remove_file(lost).unwrap();
    }
    for options in [small_options(), accepting()] {
        match Log::open(dir.path(), options) {
            Err(e @ Error::MissingSegments { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&format!("ends at position {}", kept_end - 1)), "{text}");
                assert!(text.contains(all.last().unwrap().file_name().unwrap().to_str().unwrap()), "{text}");
            }
            other => panic!("expected missing segments, got {other:?}"),
        }
    }
}

#[test]
fn a_directory_without_an_extent_record_opens_and_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "agent-1", 700);
    log.close();
    let extent = dir.path().join("log/extent");
    std::fs::remove_file(&extent).unwrap();
    let log = open_small(dir.path());
    assert_eq!(log.stats().events, 700);
    log.close();
    assert!(extent.exists());
    // From now on the loss is caught.
    let newest = segments(dir.path()).pop().unwrap();
    std::fs::remove_file(&newest).unwrap();
    assert!(matches!(Log::open(dir.path(), small_options()), Err(Error::MissingSegment { .. })));
}

#[test]
fn a_damaged_extent_record_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    append_n(&open_small(dir.path()), "agent-1", 3);
    let extent = dir.path().join("log/extent");
    let mut bytes = std::fs::read(&extent).unwrap();
    bytes[18] ^= 0x10;
    std::fs::write(&extent, &bytes).unwrap();
    match Log::open(dir.path(), small_options()) {
        Err(e @ Error::BadSideFile { .. }) => assert!(e.to_string().contains("extent"), "{e}"),
        other => panic!("expected a bad extent record, got {other:?}"),
    }
}
