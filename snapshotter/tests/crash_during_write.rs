//! A crash while a checkpoint is being written leaves the previous chain valid: a half-written
//! temporary file is removed at open and never read; a file that reached its final name with
//! only part of its bytes (a rename made durable before the data, or torn by power loss) is
//! reported and skipped. A new checkpoint never reuses the damaged file's sequence number.

mod common;

use std::path::Path;

use common::*;
use log_engine::Log;
use snapshotter::{CheckpointInfo, CheckpointKind, Policy, Snapshotter};

/// A chain (full + incremental), then a third checkpoint whose bytes are returned and whose
/// file is removed again: what a crash would have been writing.
fn setup(dir: &Path) -> (Log, Vec<CheckpointInfo>, Vec<u8>, Rng) {
    let log = open_log(dir);
    let mut rng = Rng::new(31);
    let mut live = views();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    let mut infos = Vec::new();
    for kind in [CheckpointKind::Full, CheckpointKind::Incremental, CheckpointKind::Incremental] {
        let last = grow(&log, &mut live, &mut rng, 25, 4);
        infos.push(snap.checkpoint(&log, &mut live, last, kind).unwrap());
    }
    let third = infos.pop().unwrap();
    let bytes = std::fs::read(&third.file).unwrap();
    std::fs::remove_file(&third.file).unwrap();
    (log, infos, bytes, rng)
}

#[test]
fn a_half_written_temporary_file_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, infos, bytes, mut rng) = setup(dir.path());
    let ckpt_dir = Snapshotter::checkpoints_dir(dir.path());
    let tmp = ckpt_dir.join("00000000000000000002.ckpt.tmp");
    std::fs::write(&tmp, &bytes[..bytes.len() / 2]).unwrap();

    let mut fresh = views();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    assert!(!tmp.exists(), "open removes leftovers of interrupted writes");
    let restored = snap.restore(&log, &mut fresh, &mut |_| {}).unwrap();
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_eq!(restored.checkpoint.map(|c| c.sequence), Some(infos[1].sequence));
    let head = log.head().unwrap().position;
    assert_eq!(digests(&fresh), replayed_digests(&log, head));

    // Writing resumes on the restored chain.
    let last = grow(&log, &mut fresh, &mut rng, 5, 4);
    let next = snap.checkpoint(&log, &mut fresh, last, CheckpointKind::Incremental).unwrap();
    assert_eq!((next.sequence, next.parent), (2, Some(infos[1].sequence)));
}

#[test]
fn a_renamed_but_incomplete_checkpoint_is_skipped_and_its_sequence_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, infos, bytes, mut rng) = setup(dir.path());
    let final_name = Snapshotter::checkpoints_dir(dir.path()).join("00000000000000000002.ckpt");
    let head = log.head().unwrap().position;
    let expected = replayed_digests(&log, head);
    let zeros = vec![0u8; bytes.len()];
    let cases: Vec<(&str, &[u8])> = vec![
        ("empty (name durable, data not)", &[]),
        ("zero-filled (size durable, data not)", &zeros),
        ("cut inside the header", &bytes[..20]),
        ("cut inside the manifest", &bytes[..60]),
        ("cut inside the content", &bytes[..bytes.len() - 3]),
    ];
    for (what, content) in cases {
        std::fs::write(&final_name, content).unwrap();
        let mut fresh = views();
        let restored =
            Snapshotter::open(&log, Policy::default()).unwrap().restore(&log, &mut fresh, &mut |_| {}).unwrap();
        assert_eq!(restored.checkpoint.map(|c| c.sequence), Some(infos[1].sequence), "{what}");
        assert!(restored.warnings.iter().any(|w| w.sequence == Some(2)), "{what}: {:?}", restored.warnings);
        assert_eq!(digests(&fresh), expected, "{what}");
    }

    let mut fresh = views();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    snap.restore(&log, &mut fresh, &mut |_| {}).unwrap();
    let last = grow(&log, &mut fresh, &mut rng, 5, 4);
    let next = snap.checkpoint(&log, &mut fresh, last, CheckpointKind::Incremental).unwrap();
    assert_eq!(next.sequence, 3, "sequence 2 names the damaged file; it is never reused");
    assert_eq!(next.parent, Some(infos[1].sequence));
    let restored =
        Snapshotter::open(&log, Policy::default()).unwrap().restore(&log, &mut views(), &mut |_| {}).unwrap();
    assert_eq!(restored.checkpoint.map(|c| c.sequence), Some(3));
    assert_eq!(restored.checkpoints_loaded, 3, "0, 1 and 3");
}
