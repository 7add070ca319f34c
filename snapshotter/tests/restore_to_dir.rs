//! Restore to another directory: the copy of the log (sealed segments, and the active one up
//! to its durable end) and of the checkpoints opens with `Log::open`, verifies, and restores
//! the same views, even while the source is being appended to. An existing non-empty target
//! is never overwritten without `Overwrite::Force`, and never while it is locked.

mod common;

use common::*;
use log_engine::{Log, Options, Position};
use snapshotter::{restore_to, ChainStatus, CheckpointKind, Error, Overwrite, Policy, Snapshotter, Stage};

#[test]
fn the_copy_opens_verifies_and_restores_the_same_views() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let log = open_log(src.path());
    let mut rng = Rng::new(41);
    let mut live = views();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    let last = grow(&log, &mut live, &mut rng, 1500, 30);
    snap.checkpoint(&log, &mut live, last, CheckpointKind::Full).unwrap();
    let last = grow(&log, &mut live, &mut rng, 300, 30);
    snap.checkpoint(&log, &mut live, last, CheckpointKind::Incremental).unwrap();
    let head = grow(&log, &mut live, &mut rng, 100, 30);
    let segments = log.segment_files();
    assert!(segments.iter().filter(|s| s.sealed).count() >= 2, "the test must copy sealed segments too");

    let target = dst.path().join("copy");
    let mut last_copy = None;
    let copied = restore_to(&log, &target, Overwrite::Refuse, &mut |p| {
        if p.stage == Stage::CopyLog {
            last_copy = Some((p.done, p.total));
        }
    })
    .unwrap();
    assert_eq!((copied.segments, copied.checkpoints), (segments.len() as u64, 2));
    assert_eq!(last_copy, Some((copied.log_bytes, copied.log_bytes)), "progress reaches the total");

    let copy = Log::open(&target, Options::default()).unwrap();
    let report = copy.verify(None, |_| {}).unwrap();
    assert!(report.ok, "{:?}", report.detail);
    assert_eq!(report.events, head.0 + 1);
    assert_eq!(copy.head(), log.head());
    assert_eq!(copy.segment_files().len(), segments.len());

    let mut copy_snap = Snapshotter::open(&copy, Policy::default()).unwrap();
    let statuses = copy_snap.list(&copy, &mut |_| {}).unwrap();
    assert!(statuses.iter().all(|s| s.status == ChainStatus::Valid), "{statuses:?}");
    let mut fresh = views();
    let restored = copy_snap.restore(&copy, &mut fresh, &mut |_| {}).unwrap();
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_eq!(restored.checkpoints_loaded, 2);
    assert_eq!(digests(&fresh), digests(&live));

    // The copy is a working store: it takes appends.
    grow(&copy, &mut fresh, &mut rng, 10, 30);
    assert!(copy.verify(None, |_| {}).unwrap().ok);
}

#[test]
fn a_non_empty_target_needs_force_and_a_locked_one_is_refused() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let log = open_log(src.path());
    let mut rng = Rng::new(42);
    grow(&log, &mut views(), &mut rng, 50, 5);

    // A target holding another store.
    let other = open_log(dst.path());
    grow(&other, &mut views(), &mut rng, 80, 5);
    let err = restore_to(&log, dst.path(), Overwrite::Force, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::TargetLocked { .. }), "{err}");
    other.close();

    let err = restore_to(&log, dst.path(), Overwrite::Refuse, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::TargetNotEmpty { .. }), "{err}");
    assert!(err.to_string().contains("pass force"), "{err}");
    let reopened = Log::open(dst.path(), Options::default()).unwrap();
    assert_eq!(reopened.head().unwrap().position, Position(79), "refused means untouched");
    reopened.close();

    restore_to(&log, dst.path(), Overwrite::Force, &mut |_| {}).unwrap();
    let copy = Log::open(dst.path(), Options::default()).unwrap();
    assert_eq!(copy.head(), log.head());
    assert!(copy.verify(None, |_| {}).unwrap().ok);

    let err = restore_to(&log, src.path(), Overwrite::Force, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "never onto itself: {err}");
}

#[test]
fn a_copy_taken_during_appends_is_a_consistent_prefix() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let log = open_log(src.path());
    let mut rng = Rng::new(43);
    grow(&log, &mut views(), &mut rng, 200, 10);
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(44);
            append_workload(&log, &mut rng, 3000, 10)
        })
    };
    let mut copies = Vec::new();
    for i in 0..4 {
        copies.push(restore_to(&log, &dst.path().join(format!("c{i}")), Overwrite::Refuse, &mut |_| {}).unwrap());
    }
    writer.join().unwrap();
    for copied in copies {
        let copy = Log::open(&copied.dir, Options::default()).unwrap();
        let report = copy.verify(None, |_| {}).unwrap();
        assert!(report.ok, "{}: {:?}", copied.dir.display(), report.detail);
        let head = copy.head().unwrap();
        assert!(head.position >= copied.head.unwrap().position, "the copy holds what was committed when it began");
        assert_eq!(log.hash_at(head.position).unwrap(), head.hash, "and it is a prefix of the source");
    }
}

#[test]
fn a_copy_cut_at_a_position_ends_there_and_keeps_only_earlier_checkpoints() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let log = open_log(src.path());
    let mut rng = Rng::new(43);
    let mut live = views();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    let first = grow(&log, &mut live, &mut rng, 800, 20);
    snap.checkpoint(&log, &mut live, first, CheckpointKind::Full).unwrap();
    let cut = grow(&log, &mut live, &mut rng, 400, 20);
    let after_cut = grow(&log, &mut live, &mut rng, 400, 20);
    snap.checkpoint(&log, &mut live, after_cut, CheckpointKind::Incremental).unwrap();

    let target = dst.path().join("copy");
    let copied = snapshotter::restore_to_at(&log, &target, Some(cut), Overwrite::Refuse, &mut |_| {}).unwrap();
    assert_eq!(copied.checkpoints, 1, "the checkpoint after the cut must be left out");
    let copy = Log::open(&target, Options::default()).unwrap();
    let head = copy.head().unwrap();
    assert!(head.position >= cut && head.position < after_cut, "head {:?}, cut {cut:?}", head.position);
    assert_eq!(Some(head), copied.head);
    assert_eq!(head.hash, log.hash_at(head.position).unwrap());
    assert!(copy.verify(None, |_| {}).unwrap().ok);
    // The views restored in the copy equal a replay of the source up to the copy's head.
    let mut copy_snap = Snapshotter::open(&copy, Policy::default()).unwrap();
    let mut fresh = views();
    let restored = copy_snap.restore(&copy, &mut fresh, &mut |_| {}).unwrap();
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_eq!(digests(&fresh), replayed_digests(&log, head.position));
}
