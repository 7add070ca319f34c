//! Damage outside a torn tail is corruption: it is reported with its segment, offset and
//! position, and never returned as data.

mod common;

use common::*;
use log_engine::{CorruptionKind, Error, Log, Position};
use std::os::unix::fs::FileExt;

/// A log of several segments, closed; returns its directory and segment files.
fn sealed_log() -> (tempfile::TempDir, Vec<log_engine::SegmentFile>) {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "agent-1", 700);
    let files = log.segment_files();
    assert!(files.len() >= 3 && files[0].sealed);
    drop(log);
    (dir, files)
}

/// A segment's first position: its file name.
fn first(file: &log_engine::SegmentFile) -> u64 {
    let name = file.path.file_name().unwrap().to_str().unwrap();
    name.split('.').next().unwrap().parse().unwrap()
}

fn flip(path: &std::path::Path, offset: u64, mask: u8) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= mask;
    f.write_all_at(&b, offset).unwrap();
}

#[test]
fn flipped_bit_in_a_sealed_record_is_reported_by_verify_and_reads() {
    let (dir, files) = sealed_log();
    // Records start at 4096 and are a few hundred bytes each: offset 4496 lies inside one of
    // the first records. Verify must find which.
    flip(&files[0].path, 4096 + 400, 0x10);
    let log = open_small(dir.path());
    let report = log.verify(None, |_| {}).unwrap();
    assert!(!report.ok);
    let bad = report.first_bad_position.expect("a bad position");
    let detail = report.detail.unwrap();
    assert!(detail.contains("segment 00000000000000000000"), "{detail}");
    assert!(detail.contains("offset"), "{detail}");
    // Reading the damaged event fails with the location; never returns altered data.
    match log.read_event(bad).unwrap_err() {
        Error::Corrupt { position, offset, .. } => {
            assert_eq!(position, Some(bad));
            assert!(offset <= 4096 + 400);
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert!(log.read_all(Position(0), 10_000).is_err());
    // Events before the damage still read.
    assert_eq!(log.read_all(Position(0), bad.0 as usize).unwrap().len() as u64, bad.0);
}

/// Segments are verified in parallel; the report must still be a front-to-back scan's: the
/// earliest damage, with exactly the events before it counted.
#[test]
fn verify_reports_the_earliest_of_several_damaged_segments() {
    let (dir, files) = sealed_log();
    let last_sealed = files.iter().rposition(|f| f.sealed).unwrap();
    assert!(last_sealed >= 1);
    flip(&files[last_sealed].path, 4096 + 200, 0x01);
    flip(&files[1].path, 4096 + 200, 0x01);
    let log = open_small(dir.path());
    let report = log.verify(None, |_| {}).unwrap();
    assert!(!report.ok);
    let bad = report.first_bad_position.unwrap();
    assert!(bad.0 >= first(&files[1]), "{bad} is before segment 1");
    assert!(bad.0 < first(&files[2]), "{bad} is not in segment 1 ({})", report.detail.unwrap());
    assert_eq!(report.events, bad.0, "events before the damage");
    assert!(report.detail.unwrap().contains(&format!("segment {:020}", first(&files[1]))));
}

/// From every kind of trusted starting point (segment start, middle, last record of a segment,
/// head) a clean log verifies, counting exactly the events after the trusted one.
#[test]
fn verify_from_trusted_points_across_segments() {
    let (dir, files) = sealed_log();
    let log = open_small(dir.path());
    let head = log.head().unwrap();
    let mut points = vec![0, first(&files[1]) - 1, first(&files[1]), first(&files[1]) + 3, head.position.0];
    points.push(first(&files[2]) - 1);
    for p in points {
        let hash = log.read_event(Position(p)).unwrap().hash;
        let trusted = log_engine::Head { position: Position(p), hash };
        let mut last_progress = None;
        let report = log.verify(Some(trusted), |p| last_progress = Some(p)).unwrap();
        assert!(report.ok, "from {p}: {:?}", report.detail);
        assert_eq!(report.events, head.position.0 - p, "from {p}");
        assert_eq!(last_progress.unwrap().checked, head.position.0 - p);
    }
    let wrong = log_engine::Head { position: Position(5), hash: log.read_event(Position(6)).unwrap().hash };
    let report = log.verify(Some(wrong), |_| {}).unwrap();
    assert!(!report.ok);
    assert_eq!(report.first_bad_position, Some(Position(5)));
}

#[test]
fn damaged_segment_header_fails_open_with_its_location() {
    let (dir, files) = sealed_log();
    flip(&files[1].path, 20, 0x01);
    let err = Log::open(dir.path(), small_options()).unwrap_err();
    match &err {
        Error::Corrupt { segment, offset: 0, kind: CorruptionKind::SegmentHeader(_), .. } => {
            assert_eq!(files[1].path.file_name().unwrap().to_str().unwrap(), format!("{segment}.seg"));
        }
        other => panic!("expected a header error, got {other}"),
    }
    assert!(err.to_string().contains("header CRC mismatch"), "{err}");
}

#[test]
fn damaged_footer_fails_open() {
    let (dir, files) = sealed_log();
    let len = std::fs::metadata(&files[0].path).unwrap().len();
    // The trailer's footer_offset field.
    flip(&files[0].path, len - 64 + 8, 0x08);
    // A trailer with a bad CRC looks unsealed; a non-newest unsealed segment is corruption.
    let err = Log::open(dir.path(), small_options()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { kind: CorruptionKind::Footer(_), .. }), "{err}");
}

#[test]
fn damage_below_the_watermark_of_the_newest_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "a", 10);
    let newest = log.segment_files().last().unwrap().clone();
    drop(log);
    // The first record of the newest segment was acknowledged long before the last ones were
    // written, whose watermarks prove it.
    flip(&newest.path, 4096 + 100, 0x40);
    let err = Log::open(dir.path(), small_options()).unwrap_err();
    match err {
        Error::Corrupt { kind: CorruptionKind::BelowWatermark { .. }, position: Some(p), offset, .. } => {
            assert_eq!(p, Position(0));
            assert_eq!(offset, 4096);
        }
        other => panic!("expected corruption below the watermark, got {other}"),
    }
    // The operator's salvage mode cuts there and keeps the bytes aside.
    let log = Log::open(
        dir.path(),
        log_engine::Options { recovery: log_engine::Recovery::SalvageNewestSegment, ..small_options() },
    )
    .unwrap();
    assert_eq!(log.head(), None);
    assert!(dir.path().join("torn").read_dir().unwrap().count() == 1);
}
