//! Checkpoint damage: bit rot in a checkpoint file, and a checkpoint write torn or cut short by
//! a crash. In every case a restore (what a restarting server or CLI does) must succeed, must
//! report the damaged file by name, must never load it, and must give views identical to a
//! replay of the whole log — the older chain plus a longer replay, or a replay from 0.
//!
//! The store is real: the key-value, audit and metadata views written through their facades,
//! a full checkpoint and two incrementals by the snapshotter, and a tail of events after them.
//! An optimised build flips every bit of the newest incremental and of the full checkpoint and
//! cuts the newest checkpoint at every byte; a debug build (`cargo test`) flips one bit of every
//! byte and cuts at every 5th byte.
//!
//! The process-crash side (a writer killed with SIGKILL while it checkpoints) is in
//! checkpoint_kill.rs.

mod reliability;

use std::path::Path;

use log_engine::Log;
use reliability::views::*;
use snapshotter::{ChainStatus, CheckpointInfo, CheckpointKind, Policy, Snapshotter};

const KINDS: [CheckpointKind; 3] = [CheckpointKind::Full, CheckpointKind::Incremental, CheckpointKind::Incremental];
/// Every bit in an optimised build; one bit per byte in a debug build.
const EVERY_BIT: bool = !cfg!(debug_assertions);
/// Cut points: every byte in an optimised build, every 5th in a debug one.
const CUT_STEP: usize = if cfg!(debug_assertions) { 5 } else { 1 };

/// Restores, and checks that the damaged `file` was reported, not used, not listed as valid,
/// and that the views equal a replay. Returns the sequence of the checkpoint restore used.
fn assert_damage_handled(log: &Log, file: &Path, expected: &[[u8; 32]], what: &str) -> Option<u64> {
    let (restored, got) = restore(log);
    assert!(
        restored.warnings.iter().any(|w| w.file.as_deref() == Some(file)),
        "{what}: the damaged checkpoint {} was not reported; warnings: {:?}",
        file.display(),
        restored.warnings
    );
    let used = restored.checkpoint.as_ref().map(|c| (c.sequence, c.file.clone()));
    assert!(used.as_ref().is_none_or(|(_, f)| f != file), "{what}: restore loaded the damaged checkpoint");
    assert_eq!(got, expected, "{what}: the restored views differ from a replay of the log");
    let rows = Snapshotter::open(log, Policy::default()).unwrap().list(log, &mut |_| {}).unwrap();
    if let Some(row) = rows.iter().find(|r| r.file == file) {
        assert_ne!(row.status, ChainStatus::Valid, "{what}: the damaged checkpoint is listed as valid");
    }
    used.map(|(s, _)| s)
}

/// Flips bits of `info`'s file one at a time; each flip must be handled as damage.
fn flip_every_bit(log: &Log, info: &CheckpointInfo, expected: &[[u8; 32]], fallback: Option<u64>) -> u64 {
    let original = std::fs::read(&info.file).unwrap();
    let mut flips = 0;
    for byte in 0..original.len() {
        let bits: Vec<u8> = if EVERY_BIT { (0..8).collect() } else { vec![(byte % 8) as u8] };
        for bit in bits {
            let mut damaged = original.clone();
            damaged[byte] ^= 1 << bit;
            std::fs::write(&info.file, &damaged).unwrap();
            let what = format!("bit {bit} of byte {byte} of checkpoint {}", info.sequence);
            let used = assert_damage_handled(log, &info.file, expected, &what);
            assert_eq!(used, fallback, "{what}: restore did not fall back to the newest intact chain");
            flips += 1;
        }
    }
    std::fs::write(&info.file, &original).unwrap();
    flips
}

#[test]
fn every_bit_flip_in_a_checkpoint_is_reported_and_restore_equals_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (log, infos) = build(dir.path(), &KINDS);
    let expected = replayed(&log);
    let (restored, got) = restore(&log);
    assert_eq!((restored.checkpoints_loaded, restored.warnings.len()), (3, 0), "the intact chain is used");
    assert_eq!(got, expected, "the intact chain restores the replayed views");

    // The newest incremental: restore falls back to the chain ending at its parent.
    let newest = flip_every_bit(&log, &infos[2], &expected, Some(infos[1].sequence));
    // The full checkpoint: every incremental builds on it, so restore replays from 0.
    let full = flip_every_bit(&log, &infos[0], &expected, None);
    eprintln!(
        "checkpoint bit flips: {newest} in the newest incremental ({} bytes), {full} in the full checkpoint \
         ({} bytes), all reported, none loaded, every restore equal to a replay",
        infos[2].file_bytes, infos[0].file_bytes
    );
}

#[test]
fn a_checkpoint_write_cut_at_any_byte_falls_back_to_the_previous_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (log, infos) = build(dir.path(), &KINDS);
    let expected = replayed(&log);
    let newest = &infos[2];
    let bytes = std::fs::read(&newest.file).unwrap();
    let tmp = newest.file.with_extension("ckpt.tmp");
    std::fs::remove_file(&newest.file).unwrap();
    let mut cases = 0;
    for cut in (0..bytes.len()).step_by(CUT_STEP) {
        // Killed before the rename: only the temporary file exists, with a prefix of the bytes.
        std::fs::write(&tmp, &bytes[..cut]).unwrap();
        let (restored, got) = restore(&log);
        assert!(!tmp.exists(), "cut at {cut}: the leftover temporary file was not removed at open");
        assert_eq!(restored.checkpoint.as_ref().map(|c| c.sequence), Some(infos[1].sequence), "cut at {cut}");
        assert!(restored.warnings.is_empty(), "cut at {cut}: a temporary file is not damage: {:?}", restored.warnings);
        assert_eq!(got, expected, "cut at {cut}: temporary file");

        // The rename became durable before the data (or a power loss tore the file): the final
        // name holds a prefix, or the full length with a zero-filled tail.
        std::fs::write(&newest.file, &bytes[..cut]).unwrap();
        let used = assert_damage_handled(&log, &newest.file, &expected, &format!("final file cut at {cut}"));
        assert_eq!(used, Some(infos[1].sequence));
        let mut zeroed = bytes.clone();
        zeroed[cut..].fill(0);
        std::fs::write(&newest.file, &zeroed).unwrap();
        let used = assert_damage_handled(&log, &newest.file, &expected, &format!("zero-filled from {cut}"));
        assert_eq!(used, Some(infos[1].sequence));
        std::fs::remove_file(&newest.file).unwrap();
        cases += 3;
    }

    // After the damage, the store goes on: the next checkpoint takes a new sequence number
    // (never the damaged file's), and it restores.
    std::fs::write(&newest.file, &bytes[..bytes.len() / 2]).unwrap();
    let mut views = projections::Views::projections();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    snap.restore(&log, &mut views, &mut |_| {}).unwrap();
    let head = log.head().unwrap().position;
    let next = snap.checkpoint(&log, &mut views, head, CheckpointKind::Incremental).unwrap();
    assert!(next.sequence > newest.sequence, "sequence {} reused or went back", next.sequence);
    let (restored, got) = restore(&log);
    assert_eq!(restored.checkpoint.map(|c| c.sequence), Some(next.sequence));
    assert_eq!(got, expected);
    eprintln!("checkpoint cuts: {cases} torn writes of a {}-byte checkpoint, all fell back", bytes.len());
}
