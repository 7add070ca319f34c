//! Shared by the checkpoint suites: a store with the three real views (key-value, audit,
//! metadata) written through their facades, checkpointed by the real snapshotter, and the
//! reference every restore is compared with — the views' digests after replaying the log from
//! position 0.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use log_engine::{ExpectedVersion, Log, NewEvent, Options, Position};
use projections::{Actor, ActorType, Category, Level, NewAuditEntry, Projection, Views};
use serde_json::json;
use snapshotter::{CheckpointInfo, CheckpointKind, Policy, Restored, Snapshotter};

/// How long a test waits for the views' runner; a safety net, no assertion depends on it.
pub const CATCH_UP: Duration = Duration::from_secs(60);

/// Each view's state digest, in `Views::projections()` order.
pub fn digests(views: &[Box<dyn Projection>]) -> Vec<[u8; 32]> {
    views.iter().map(|v| v.digest()).collect()
}

/// The views rebuilt from nothing by replaying the log through its head.
pub fn replayed(log: &Log) -> Vec<[u8; 32]> {
    let mut fresh = Views::projections();
    if let Some(head) = log.head() {
        snapshotter::replay(log, &mut fresh, Position(0), head.position, &mut |_| {}).expect("replay from 0");
    }
    digests(&fresh)
}

/// Restores fresh views through a new snapshotter, as a restarting process does.
pub fn restore(log: &Log) -> (Restored, Vec<[u8; 32]>) {
    let mut fresh = Views::projections();
    let mut snap = Snapshotter::open(log, Policy::default()).expect("the snapshotter opens");
    let restored = snap.restore(log, &mut fresh, &mut |_| {}).expect("restore never fails on damaged checkpoints");
    (restored, digests(&fresh))
}

/// One round of writes to every view: key-value sets (overwriting earlier rounds' keys), an
/// increment, an append to a string, a list push, an audit entry and a configuration version.
pub fn write_round(views: &Views, round: u64) {
    let kv = views.kv();
    for i in 0..5u64 {
        let key = format!("session/{}", (i * 3 + round) % 7);
        kv.set(
            &key,
            json!({"round": round, "i": i, "note": "x".repeat((i * 13) as usize)}),
            None,
            ExpectedVersion::Any,
        )
        .expect("kv set");
    }
    kv.incr("counter", round.cast_signed() + 1).expect("kv incr");
    kv.append("transcript", &format!("r{round};")).expect("kv append");
    let actor = Actor { kind: ActorType::Agent, id: format!("agent-{}", round % 3), name: None, roles: vec![] };
    let entry = NewAuditEntry::new(Level::Info, Category::AgentActivity, "tool.called", actor);
    views.audit().append(&entry, None).expect("audit append");
    views.meta().set_config(None, "limits/rps", json!(round * 10)).expect("config");
}

/// A plain event no view reads, so that a restore has a tail to replay.
pub fn append_tail(log: &Log, n: u64) {
    for i in 0..n {
        log.append("tail", ExpectedVersion::Any, vec![NewEvent::json("Tick", &json!({"i": i}))]).expect("append");
    }
}

/// A data directory with checkpoints of `kinds` (each after one round of writes) and a tail of
/// events after the last one. Returns the log and the checkpoints, oldest first.
pub fn build(dir: &Path, kinds: &[CheckpointKind]) -> (Log, Vec<CheckpointInfo>) {
    let log = Log::open(dir, Options::default()).expect("create a log");
    let writers = Views::start(log.clone(), Views::projections().into_iter().map(|p| (p, None)).collect())
        .expect("start the views");
    let mut live = Views::projections();
    let mut snap = Snapshotter::open(&log, Policy::default()).expect("open the snapshotter");
    snap.restore(&log, &mut live, &mut |_| {}).expect("restore an empty store");
    let mut infos: Vec<CheckpointInfo> = Vec::new();
    for (round, &kind) in kinds.iter().enumerate() {
        write_round(&writers, round as u64);
        let head = log.head().expect("events were written").position;
        let from = infos.last().map_or(Position(0), |i| Position(i.position.0 + 1));
        snapshotter::replay(&log, &mut live, from, head, &mut |_| {}).expect("replay into the live views");
        infos.push(snap.checkpoint(&log, &mut live, head, kind).expect("checkpoint"));
    }
    writers.stop();
    append_tail(&log, 3);
    (log, infos)
}
