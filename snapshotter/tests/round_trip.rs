//! Checkpoints round-trip: full and incremental checkpoints written from live views restore
//! fresh views to the same state digests as a full replay of the log; a chain of 50
//! incrementals does too; compaction and retention keep what they promise; the policy
//! decides by event count and kind.

mod common;

use std::path::Path;

use common::*;
use log_engine::{ExpectedVersion, NewEvent, Position};
use snapshotter::{genesis_hash, ChainStatus, CheckpointKind, Digest, Error, Policy, Snapshotter};

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(Snapshotter::checkpoints_dir(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn seqs(dir: &Path) -> Vec<u64> {
    files(dir).iter().map(|n| n.trim_end_matches(".ckpt").parse().unwrap()).collect()
}

#[test]
fn full_checkpoint_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut rng = Rng::new(1);
    let mut live = views();
    let last = grow(&log, &mut live, &mut rng, 200, 10);
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    let info = snap.checkpoint(&log, &mut live, last, CheckpointKind::Full).unwrap();

    assert_eq!((info.sequence, info.kind, info.position), (0, CheckpointKind::Full, last));
    assert_eq!(info.log_hash, log.hash_at(last).unwrap());
    assert_eq!((info.parent, info.parent_hash), (None, Digest(genesis_hash())));
    let live_digests: Vec<_> = digests(&live).into_iter().map(|(n, d)| (n.to_string(), Digest(d))).collect();
    let manifest_digests: Vec<_> = info.projections.iter().map(|p| (p.name.clone(), p.digest)).collect();
    assert_eq!(manifest_digests, live_digests);
    assert_eq!(info.file_bytes, std::fs::metadata(&info.file).unwrap().len());
    assert!(info.raw_bytes > 0 && info.compressed_bytes > 0);

    let mut fresh = views();
    let restored = Snapshotter::open(&log, Policy::default()).unwrap().restore(&log, &mut fresh, &mut |_| {}).unwrap();
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_eq!(restored.checkpoint.map(|c| c.sequence), Some(0));
    assert_eq!((restored.checkpoints_loaded, restored.replayed.events), (1, 0));
    assert_eq!(digests(&fresh), digests(&live));
    assert_eq!(digests(&fresh), replayed_digests(&log, last));
}

#[test]
fn incremental_checkpoint_holds_only_the_changes_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut rng = Rng::new(2);
    let mut live = views();
    grow(&log, &mut live, &mut rng, 300, 50);
    // Make sure agent-2 exists, so that the Reset below is a removal.
    let done = log
        .append("agent-2", ExpectedVersion::Any, vec![NewEvent::json("Tick", &serde_json::json!({"n": 1}))])
        .unwrap();
    snapshotter::replay(&log, &mut live, done.first_position, done.last_position, &mut |_| {}).unwrap();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    let full = snap.checkpoint(&log, &mut live, done.last_position, CheckpointKind::Full).unwrap();

    let tick = |n: u64| NewEvent::json("Tick", &serde_json::json!({"n": n}));
    log.append("agent-0", ExpectedVersion::Any, (0..5).map(tick).collect()).unwrap();
    log.append("agent-1", ExpectedVersion::Any, (0..5).map(tick).collect()).unwrap();
    let done =
        log.append("agent-2", ExpectedVersion::Any, vec![NewEvent::json("Reset", &serde_json::json!({}))]).unwrap();
    snapshotter::replay(&log, &mut live, Position(full.position.0 + 1), done.last_position, &mut |_| {}).unwrap();
    let inc = snap.checkpoint(&log, &mut live, done.last_position, CheckpointKind::Incremental).unwrap();

    assert_eq!((inc.kind, inc.parent, inc.parent_hash), (CheckpointKind::Incremental, Some(full.sequence), full.hash));
    let streams = inc.projections.iter().find(|p| p.name == "stream_counts").unwrap();
    assert_eq!((streams.upserts, streams.removals), (2, 1), "agent-0 and agent-1 changed, agent-2 was removed");
    let types = inc.projections.iter().find(|p| p.name == "type_counts").unwrap();
    assert_eq!((types.upserts, types.removals), (2, 0), "Tick and Reset counts changed");
    assert!(inc.compressed_bytes * 5 < full.compressed_bytes, "{} vs {}", inc.compressed_bytes, full.compressed_bytes);

    // More events after the incremental: a restore replays exactly those.
    let tail_last = grow(&log, &mut live, &mut rng, 17, 50);
    let mut fresh = views();
    let restored = Snapshotter::open(&log, Policy::default()).unwrap().restore(&log, &mut fresh, &mut |_| {}).unwrap();
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_eq!(restored.checkpoint.map(|c| c.sequence), Some(inc.sequence));
    assert_eq!((restored.checkpoints_loaded, restored.replayed.events), (2, 17));
    assert_eq!(restored.applied_through, Some(tail_last.0));
    assert_eq!(digests(&fresh), digests(&live));
    assert_eq!(digests(&fresh), replayed_digests(&log, tail_last));
}

#[test]
fn a_chain_of_fifty_incrementals_restores_to_the_full_replay_digest() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut rng = Rng::from_env("a_chain_of_fifty_incrementals_restores_to_the_full_replay_digest");
    let mut live = views();
    let policy = Policy { full_every: u32::MAX, ..Policy::default() };
    let mut snap = Snapshotter::open(&log, policy.clone()).unwrap();
    let last = grow(&log, &mut live, &mut rng, 100, 20);
    snap.checkpoint(&log, &mut live, last, CheckpointKind::Full).unwrap();
    let mut last = last;
    for _ in 0..50 {
        let n = 1 + rng.below(20);
        last = grow(&log, &mut live, &mut rng, n, 20);
        assert_eq!(snap.next_kind(), CheckpointKind::Incremental);
        snap.checkpoint(&log, &mut live, last, CheckpointKind::Incremental).unwrap();
    }

    let mut fresh = views();
    let restored = Snapshotter::open(&log, policy).unwrap().restore(&log, &mut fresh, &mut |_| {}).unwrap();
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_eq!((restored.checkpoints_loaded, restored.replayed.events), (51, 0));
    assert_eq!(digests(&fresh), replayed_digests(&log, last));
    assert_eq!(digests(&fresh), digests(&live));

    let statuses = snap.list(&log, &mut |_| {}).unwrap();
    assert_eq!(statuses.len(), 51);
    assert!(statuses.iter().all(|s| s.status == ChainStatus::Valid), "{statuses:?}");
}

#[test]
fn compaction_folds_a_chain_into_an_equal_full_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut rng = Rng::new(4);
    let mut live = views();
    let mut snap = Snapshotter::open(&log, Policy { keep_full: 1, ..Policy::default() }).unwrap();
    let last = grow(&log, &mut live, &mut rng, 100, 10);
    snap.checkpoint(&log, &mut live, last, CheckpointKind::Full).unwrap();
    let mut last = last;
    for _ in 0..5 {
        last = grow(&log, &mut live, &mut rng, 10, 10);
        snap.checkpoint(&log, &mut live, last, CheckpointKind::Incremental).unwrap();
    }
    assert_eq!(seqs(dir.path()), (0..6).collect::<Vec<_>>());

    let compacted = snap.compact(&log).unwrap().expect("a chain to compact");
    assert_eq!((compacted.sequence, compacted.kind, compacted.position), (6, CheckpointKind::Full, last));
    assert_eq!(compacted.parent, Some(5));
    assert_eq!(seqs(dir.path()), vec![6], "retention keeps one full checkpoint and removes the folded chain");
    assert!(snap.compact(&log).unwrap().is_none(), "a lone full checkpoint has nothing to compact");

    // The views' base moved to the compacted checkpoint: incrementals continue from it.
    last = grow(&log, &mut live, &mut rng, 10, 10);
    let inc = snap.checkpoint(&log, &mut live, last, CheckpointKind::Incremental).unwrap();
    assert_eq!(inc.parent, Some(6));
    let mut fresh = views();
    let restored = Snapshotter::open(&log, Policy::default()).unwrap().restore(&log, &mut fresh, &mut |_| {}).unwrap();
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_eq!(restored.checkpoints_loaded, 2);
    assert_eq!(digests(&fresh), replayed_digests(&log, last));
}

#[test]
fn retention_keeps_the_newest_full_checkpoints_with_their_incrementals() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut rng = Rng::new(5);
    let mut live = views();
    let mut snap = Snapshotter::open(&log, Policy { keep_full: 2, ..Policy::default() }).unwrap();
    let kinds = [
        CheckpointKind::Full,
        CheckpointKind::Incremental,
        CheckpointKind::Incremental,
        CheckpointKind::Full,
        CheckpointKind::Incremental,
        CheckpointKind::Full,
    ];
    for kind in kinds {
        let last = grow(&log, &mut live, &mut rng, 10, 5);
        snap.checkpoint(&log, &mut live, last, kind).unwrap();
    }
    assert_eq!(seqs(dir.path()), vec![3, 4, 5], "checkpoints 0-2 are older than the second-newest full one");
    let last = grow(&log, &mut live, &mut rng, 10, 5);
    snap.checkpoint(&log, &mut live, last, CheckpointKind::Incremental).unwrap();
    assert_eq!(seqs(dir.path()), vec![3, 4, 5, 6], "incrementals do not trigger retention");
    let last = grow(&log, &mut live, &mut rng, 10, 5);
    snap.checkpoint(&log, &mut live, last, CheckpointKind::Full).unwrap();
    assert_eq!(seqs(dir.path()), vec![5, 6, 7]);
}

#[test]
fn retention_never_counts_a_damaged_full_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut rng = Rng::new(6);
    let mut live = views();
    let mut snap = Snapshotter::open(&log, Policy { keep_full: 2, ..Policy::default() }).unwrap();
    for kind in [CheckpointKind::Full, CheckpointKind::Incremental, CheckpointKind::Full] {
        let last = grow(&log, &mut live, &mut rng, 10, 5);
        snap.checkpoint(&log, &mut live, last, kind).unwrap();
    }
    // Damage the newest full checkpoint's content, then prune keeping only one.
    let newest = Snapshotter::checkpoints_dir(dir.path()).join("00000000000000000002.ckpt");
    let mut bytes = std::fs::read(&newest).unwrap();
    let at = bytes.len() - 1;
    bytes[at] ^= 0x40;
    std::fs::write(&newest, bytes).unwrap();
    let strict = Snapshotter::open(&log, Policy { keep_full: 1, ..Policy::default() }).unwrap();
    assert_eq!(strict.prune(&log).unwrap(), Vec::<u64>::new(), "the damaged full one must not replace 0 and 1");
    assert_eq!(seqs(dir.path()), vec![0, 1, 2]);
}

#[test]
fn an_incremental_checkpoint_needs_a_base() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut live = views();
    let last = grow(&log, &mut live, &mut Rng::new(7), 10, 5);
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    let err = snap.checkpoint(&log, &mut live, last, CheckpointKind::Incremental).unwrap_err();
    assert!(matches!(err, Error::NoParent { .. }), "{err}");
    assert!(files(dir.path()).is_empty(), "nothing written");
    // Nothing was marked either: a full checkpoint still captures everything.
    let full = snap.checkpoint(&log, &mut live, last, CheckpointKind::Full).unwrap();
    assert_eq!(full.projections.iter().map(|p| p.digest).collect::<Vec<_>>().len(), 2);
}

#[test]
fn the_policy_decides_when_and_which_kind() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut rng = Rng::new(8);
    let mut live = views();
    let policy = Policy { every_events: Some(100), every_interval: None, full_every: 2, keep_full: 1 };
    let mut snap = Snapshotter::open(&log, policy.clone()).unwrap();
    let last = grow(&log, &mut live, &mut rng, 99, 5);
    assert_eq!(snap.due(last), None, "99 events");
    let last = grow(&log, &mut live, &mut rng, 1, 5);
    assert_eq!(snap.due(last), Some(CheckpointKind::Full), "100 events, no base");
    let mut kinds = Vec::new();
    let mut last = last;
    for _ in 0..4 {
        let kind = snap.due(last).expect("due");
        kinds.push(snap.checkpoint(&log, &mut live, last, kind).unwrap().kind);
        assert_eq!(snap.due(last), None, "nothing new since the checkpoint");
        last = grow(&log, &mut live, &mut rng, 100, 5);
    }
    use CheckpointKind::*;
    assert_eq!(kinds, vec![Full, Incremental, Incremental, Full]);

    // A new snapshotter counts from the newest checkpoint on disk, not from position 0.
    let reopened = Snapshotter::open(&log, policy).unwrap();
    assert_eq!(reopened.due(Position(last.0 - 100)), None);
    assert_eq!(reopened.due(last), Some(Full), "no base until the views are restored through it");
}
