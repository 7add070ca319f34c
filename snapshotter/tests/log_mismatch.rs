//! A checkpoint is bound to the log it was taken from: one whose recorded chain hash differs
//! from the log's at its position, or whose position the log does not have, is refused (with
//! a warning, and listed as a log mismatch), and the views come from the log alone.

mod common;

use common::*;
use snapshotter::{ChainStatus, CheckpointKind, Policy, Snapshotter};

#[test]
fn a_checkpoint_from_another_log_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let log_a = open_log(a.path());
    let log_b = open_log(b.path());
    let mut live_a = views();
    let mut live_b = views();
    let last_a = grow(&log_a, &mut live_a, &mut Rng::new(21), 100, 5);
    let last_b = grow(&log_b, &mut live_b, &mut Rng::new(22), 100, 5);
    assert_eq!(last_a, last_b, "same length, different events");
    let info = Snapshotter::open(&log_a, Policy::default())
        .unwrap()
        .checkpoint(&log_a, &mut live_a, last_a, CheckpointKind::Full)
        .unwrap();

    let snap_b = Snapshotter::open(&log_b, Policy::default()).unwrap();
    let planted = snap_b.dir().join(info.file.file_name().unwrap());
    std::fs::copy(&info.file, &planted).unwrap();

    let mut fresh = views();
    let restored =
        Snapshotter::open(&log_b, Policy::default()).unwrap().restore(&log_b, &mut fresh, &mut |_| {}).unwrap();
    assert_eq!(restored.checkpoint, None, "the foreign checkpoint must not be loaded");
    let warning = restored.warnings.iter().find(|w| w.sequence == Some(info.sequence)).expect("a warning names it");
    assert!(warning.message.contains("does not match the log"), "{warning}");
    assert!(warning.message.contains(&format!("position {}", last_a)), "{warning}");
    assert_eq!(restored.replayed.events, last_b.0 + 1, "full replay");
    assert_eq!(digests(&fresh), digests(&live_b));
    assert_ne!(digests(&fresh), digests(&live_a));

    let statuses = snap_b.list(&log_b, &mut |_| {}).unwrap();
    assert!(matches!(statuses[0].status, ChainStatus::LogMismatch(_)), "{:?}", statuses[0].status);
}

#[test]
fn a_checkpoint_beyond_the_log_head_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(23);
    // Log b holds 50 events; log a starts as a copy of b and goes on: b is a log that lost
    // the tail a still has.
    let log_b = open_log(b.path());
    let mut live_b = views();
    let last_b = grow(&log_b, &mut live_b, &mut rng, 50, 5);
    let copy = a.path().join("data");
    snapshotter::restore_to(&log_b, &copy, snapshotter::Overwrite::Refuse, &mut |_| {}).unwrap();
    let log_a = open_log(&copy);
    let mut live_a = views();
    snapshotter::replay(&log_a, &mut live_a, log_engine::Position(0), last_b, &mut |_| {}).unwrap();
    let last_a = grow(&log_a, &mut live_a, &mut rng, 50, 5);
    assert_eq!(log_a.hash_at(last_b).unwrap(), log_b.hash_at(last_b).unwrap(), "b is a prefix of a");
    let info = Snapshotter::open(&log_a, Policy::default())
        .unwrap()
        .checkpoint(&log_a, &mut live_a, last_a, CheckpointKind::Full)
        .unwrap();
    let dir_b = Snapshotter::checkpoints_dir(b.path());
    std::fs::create_dir_all(&dir_b).unwrap();
    std::fs::copy(&info.file, dir_b.join(info.file.file_name().unwrap())).unwrap();

    let mut fresh = views();
    let restored =
        Snapshotter::open(&log_b, Policy::default()).unwrap().restore(&log_b, &mut fresh, &mut |_| {}).unwrap();
    assert_eq!(restored.checkpoint, None);
    assert!(
        restored
            .warnings
            .iter()
            .any(|w| w.sequence == Some(info.sequence) && w.message.contains("beyond the log's head")),
        "{:?}",
        restored.warnings
    );
    assert_eq!(digests(&fresh), replayed_digests(&log_b, last_b));
}
