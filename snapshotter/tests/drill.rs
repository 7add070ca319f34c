//! The recovery drill: on a healthy store it reports ok with every checkpoint verified and
//! the three digests equal; a damaged checkpoint, or live views that differ from what the
//! log rebuilds, make it fail and say where. Its report serializes to the contract's JSON.

mod common;

use common::*;
use log_engine::{Log, Position};
use projections::Projection;
use snapshotter::{drill, CheckpointKind, DrillReport, Error, MismatchKind, Policy, Snapshotter};

/// A store with a full checkpoint, two incrementals and a tail; returns the live views and
/// the position they applied through.
fn store(log: &Log) -> (Vec<Box<dyn Projection>>, Position, Vec<snapshotter::CheckpointInfo>) {
    let mut rng = Rng::new(51);
    let mut live = views();
    let mut snap = Snapshotter::open(log, Policy::default()).unwrap();
    let mut infos = Vec::new();
    for kind in [CheckpointKind::Full, CheckpointKind::Incremental, CheckpointKind::Incremental] {
        let last = grow(log, &mut live, &mut rng, 400, 20);
        infos.push(snap.checkpoint(log, &mut live, last, kind).unwrap());
    }
    let head = grow(log, &mut live, &mut rng, 37, 20);
    (live, head, infos)
}

fn run(log: &Log, live: &[Box<dyn Projection>], at: Position, scratch: &std::path::Path) -> DrillReport {
    drill(log, live, Some(at), &views, scratch, &mut |_| {}).unwrap()
}

#[test]
fn a_healthy_store_passes_the_drill() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let (live, head, infos) = store(&log);

    let report = run(&log, &live, head, &scratch.path().join("drill"));
    assert!(report.ok, "{:?}", report.mismatches);
    assert!(report.mismatches.is_empty());
    assert_eq!(report.events_lost, 0);
    assert_eq!(report.checkpoints_verified, 3);
    assert_eq!(report.checkpoint_used, Some(infos[2].sequence));
    assert_eq!(report.events_replayed_from_checkpoint, 37);
    assert_eq!(report.events_replayed_from_zero, head.0 + 1);
    assert_eq!(report.events_verified, head.0 + 1);

    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "ok",
        "events_lost",
        "restore_ms",
        "rebuild_from_checkpoint_ms",
        "rebuild_from_zero_ms",
        "checkpoints_verified",
        "mismatches",
    ] {
        assert!(json.get(key).is_some(), "the contract's key {key} is missing from {json}");
    }
    assert_eq!(json["ok"], true);
    assert_eq!(json["mismatches"], serde_json::json!([]));
}

#[test]
fn a_damaged_checkpoint_fails_the_drill() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let (live, head, infos) = store(&log);
    let mut bytes = std::fs::read(&infos[1].file).unwrap();
    bytes[100] ^= 0x04;
    std::fs::write(&infos[1].file, bytes).unwrap();

    let report = run(&log, &live, head, &scratch.path().join("drill"));
    assert!(!report.ok);
    assert_eq!(report.checkpoints_verified, 1, "only the full checkpoint before the damage verifies");
    let damaged = report.mismatches.iter().find(|m| m.sequence == Some(infos[1].sequence)).expect("named");
    assert_eq!(damaged.kind, MismatchKind::Checkpoint);
    assert!(damaged.file.is_some());
    assert!(report.mismatches.iter().any(|m| m.sequence == Some(infos[2].sequence)), "its dependant is reported");
    // The views themselves still agree: the rebuild fell back to the full checkpoint.
    assert!(!report.mismatches.iter().any(|m| m.kind == MismatchKind::ProjectionDigest), "{:?}", report.mismatches);
    assert_eq!(report.checkpoint_used, Some(infos[0].sequence));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["mismatches"][0]["kind"], "checkpoint");
}

#[test]
fn live_views_that_differ_from_the_log_fail_the_drill() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let (mut live, head, _) = store(&log);
    // A live view that missed an event: apply one more Reset than the log holds.
    let victim = log.read_all(Position(0), 1).unwrap().remove(0);
    let mut fake = victim.clone();
    fake.event_type = "Reset".into();
    let streams = live.iter_mut().find(|v| v.name() == "stream_counts").unwrap();
    streams.apply(&fake).unwrap();

    let report = run(&log, &live, head, &scratch.path().join("drill"));
    assert!(!report.ok);
    assert_eq!(report.mismatches.len(), 1, "{:?}", report.mismatches);
    let m = &report.mismatches[0];
    assert_eq!(
        (m.kind, m.projection.as_deref(), m.position),
        (MismatchKind::ProjectionDigest, Some("stream_counts"), Some(head.0))
    );
    assert!(m.detail.contains("live digest"), "{}", m.detail);
}

#[test]
fn the_drill_never_overwrites_its_scratch_directory() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let (live, head, _) = store(&log);
    std::fs::write(scratch.path().join("keep-me"), b"operator data").unwrap();
    let err = drill(&log, &live, Some(head), &views, scratch.path(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::TargetNotEmpty { .. }), "{err}");
    assert_eq!(std::fs::read(scratch.path().join("keep-me")).unwrap(), b"operator data");
}
