//! Damage in checkpoint files: a flipped bit in any byte of any checkpoint file is detected,
//! the file is skipped with a warning naming it, and the views still come back equal to a
//! full replay (from the older chain, or from position 0). A damaged or missing checkpoint in
//! the middle of a chain falls back to the valid prefix before it.

mod common;

use common::*;
use log_engine::Log;
use snapshotter::{ChainStatus, CheckpointKind, Policy, Restored, Snapshotter};

fn restore(log: &Log) -> (Restored, Vec<(&'static str, [u8; 32])>) {
    let mut fresh = views();
    let restored = Snapshotter::open(log, Policy::default()).unwrap().restore(log, &mut fresh, &mut |_| {}).unwrap();
    (restored, digests(&fresh))
}

#[test]
fn a_flipped_bit_in_any_byte_of_any_checkpoint_is_detected_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut rng = Rng::new(11);
    let mut live = views();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    let last = grow(&log, &mut live, &mut rng, 30, 4);
    let full = snap.checkpoint(&log, &mut live, last, CheckpointKind::Full).unwrap();
    let last = grow(&log, &mut live, &mut rng, 10, 4);
    let inc = snap.checkpoint(&log, &mut live, last, CheckpointKind::Incremental).unwrap();
    let head = grow(&log, &mut live, &mut rng, 10, 4);
    let expected = replayed_digests(&log, head);

    for (damaged, fallback) in [(&full, None), (&inc, Some(full.sequence))] {
        let original = std::fs::read(&damaged.file).unwrap();
        for i in 0..original.len() {
            let mut bytes = original.clone();
            bytes[i] ^= 1 << (i % 8);
            std::fs::write(&damaged.file, &bytes).unwrap();

            let (restored, got) = restore(&log);
            let context = format!("bit {} of byte {i} of checkpoint {}", i % 8, damaged.sequence);
            assert!(
                restored.warnings.iter().any(|w| w.sequence == Some(damaged.sequence)),
                "{context}: no warning names the damaged checkpoint: {:?}",
                restored.warnings
            );
            assert_eq!(restored.checkpoint.map(|c| c.sequence), fallback, "{context}");
            assert_eq!(got, expected, "{context}: views differ from a full replay");
            if i % 16 == 0 {
                let statuses = snap.list(&log, &mut |_| {}).unwrap();
                let row = statuses.iter().find(|s| s.sequence == damaged.sequence).unwrap();
                assert!(matches!(row.status, ChainStatus::Damaged(_)), "{context}: listed as {:?}", row.status);
            }
        }
        std::fs::write(&damaged.file, &original).unwrap();
    }
    let (restored, got) = restore(&log);
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_eq!((restored.checkpoint.map(|c| c.sequence), got), (Some(inc.sequence), expected));
}

#[test]
fn damage_in_the_middle_of_a_chain_falls_back_to_the_prefix_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut rng = Rng::new(12);
    let mut live = views();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    let mut infos = Vec::new();
    for i in 0..6 {
        let last = grow(&log, &mut live, &mut rng, 20, 6);
        let kind = if i == 0 { CheckpointKind::Full } else { CheckpointKind::Incremental };
        infos.push(snap.checkpoint(&log, &mut live, last, kind).unwrap());
    }
    let head = grow(&log, &mut live, &mut rng, 5, 6);
    let expected = replayed_digests(&log, head);

    // Damage the content of checkpoint 3 (its manifest still reads).
    let original = std::fs::read(&infos[3].file).unwrap();
    let mut bytes = original.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    std::fs::write(&infos[3].file, &bytes).unwrap();
    let (restored, got) = restore(&log);
    assert_eq!(restored.checkpoint.map(|c| c.sequence), Some(2), "{:?}", restored.warnings);
    assert_eq!(restored.checkpoints_loaded, 3);
    assert_eq!(restored.replayed.events, head.0 - infos[2].position.0);
    assert!(restored.warnings.iter().any(|w| w.sequence == Some(3) && w.message.contains("content digest")));
    assert!(
        restored.warnings.iter().any(|w| w.message.contains("build on checkpoint 3")),
        "the operator is told 4 and 5 were skipped with it: {:?}",
        restored.warnings
    );
    assert_eq!(got, expected);
    let statuses = snap.list(&log, &mut |_| {}).unwrap();
    let status = |s: u64| statuses.iter().find(|r| r.sequence == s).unwrap().status.clone();
    assert_eq!(status(2), ChainStatus::Valid);
    assert!(matches!(status(3), ChainStatus::Damaged(_)));
    assert!(matches!(status(4), ChainStatus::BrokenChain(_)));
    assert!(matches!(status(5), ChainStatus::BrokenChain(_)));

    // A missing checkpoint breaks the chain the same way.
    std::fs::remove_file(&infos[3].file).unwrap();
    let (restored, got) = restore(&log);
    assert_eq!(restored.checkpoint.map(|c| c.sequence), Some(2));
    assert!(restored
        .warnings
        .iter()
        .any(|w| w.sequence == Some(4) && w.message.contains("parent checkpoint 3 is missing")));
    assert_eq!(got, expected);
}

#[test]
fn a_checkpoint_renamed_to_another_sequence_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut live = views();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    let last = grow(&log, &mut live, &mut Rng::new(13), 20, 3);
    let info = snap.checkpoint(&log, &mut live, last, CheckpointKind::Full).unwrap();
    let renamed = info.file.with_file_name("00000000000000000009.ckpt");
    std::fs::rename(&info.file, &renamed).unwrap();
    let (restored, got) = restore(&log);
    assert_eq!(restored.checkpoint, None);
    assert!(restored.warnings.iter().any(|w| w.sequence == Some(9) && w.message.contains("file name says sequence 9")));
    assert_eq!(got, replayed_digests(&log, last));
}
