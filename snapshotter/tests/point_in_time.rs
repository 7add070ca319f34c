//! Point-in-time: rebuilding the views as of a random log position (from the newest
//! checkpoint at or before it, plus a replay up to it) equals replaying the log from 0 to
//! that position. Seeded; the seed is printed (rerun with SNAPSHOTTER_SEED).

mod common;

use common::*;
use log_engine::Position;
use snapshotter::{Error, Policy, Snapshotter};

#[test]
fn rebuild_at_random_positions_equals_replay_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut rng = Rng::from_env("rebuild_at_random_positions_equals_replay_to_them");
    let mut live = views();
    let policy = Policy { full_every: 3, keep_full: 100, ..Policy::default() };
    let mut snap = Snapshotter::open(&log, policy.clone()).unwrap();
    let mut checkpoints = Vec::new();
    let n = 20 + rng.below(40);
    let mut last = grow(&log, &mut live, &mut rng, n, 8);
    for _ in 0..12 {
        let kind = snap.next_kind();
        checkpoints.push(snap.checkpoint(&log, &mut live, last, kind).unwrap().position);
        let n = 1 + rng.below(60);
        last = grow(&log, &mut live, &mut rng, n, 8);
    }

    let mut rebuilder = Snapshotter::open(&log, policy).unwrap();
    for _ in 0..40 {
        let at = Position(rng.below(last.0 + 1));
        let mut fresh = views();
        let restored = rebuilder.rebuild_at(&log, &mut fresh, at, &mut |_| {}).unwrap();
        assert!(restored.warnings.is_empty(), "at {at}: {:?}", restored.warnings);
        assert_eq!(restored.applied_through, Some(at.0));
        let newest_before = checkpoints.iter().copied().filter(|p| *p <= at).max();
        assert_eq!(restored.checkpoint.as_ref().map(|c| c.position), newest_before, "at {at}");
        assert_eq!(restored.replayed.events, at.0 + 1 - newest_before.map_or(0, |p| p.0 + 1), "at {at}");
        assert_eq!(digests(&fresh), replayed_digests(&log, at), "at {at}");
    }

    let err = rebuilder.rebuild_at(&log, &mut views(), Position(last.0 + 1), &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
}
