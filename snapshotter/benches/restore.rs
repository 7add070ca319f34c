//! Benchmarks of restarts: views restored from a checkpoint against views rebuilt from the log.
//!
//! A restarting process opens the log and brings its three views up to the head, either way:
//!
//! - `restart/checkpoint_1pct_behind`: `Log::open`, then the snapshotter restores the views from
//!   a full checkpoint taken 1% of the log before its head and replays the last 1% (100,000
//!   events) from the log.
//! - `restart/full_replay`: `Log::open`, then all 10,000,000 events replayed into empty views.
//! - `views/checkpoint_1pct_behind` and `views/full_replay`: the same on an already open log,
//!   the views' part alone.
//!
//! Target (issue 4): open-and-rebuild from the checkpoint at least 20x faster than a full replay.
//! The log holds 10,000,000 key-value writes over 100,000 keys, written once per run without
//! fdatasync (their durability is not what is measured). After timing, a full checkpoint is taken
//! at the head, 1% of the keys are changed, and an incremental checkpoint is taken; both sizes
//! are printed. Target (issue 4): the incremental at least 10x smaller.
//!
//! Run: `cargo bench -p snapshotter --bench restore`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use log_engine::{Durability, ExpectedVersion, Log, NewEvent, Options, Position, StreamAppend, StreamName};
use projections::{Projection, Views};
use serde_json::json;
use snapshotter::{CheckpointKind, Policy, Snapshotter};

const EVENTS: u64 = 10_000_000;
/// Where the checkpoint is taken: 1% of the log before the head.
const CHECKPOINT_AT: u64 = EVENTS - EVENTS / 100 - 1;
const KEYS: u64 = 100_000;
/// Events per append call when writing the log (one per key, distinct keys within a call).
const WRITE_BATCH: u64 = 1000;

/// Writes `EVENTS` key-value sets, each call to `WRITE_BATCH` distinct keys.
fn write_log(dir: &Path) -> Log {
    let log = Log::open(dir, Options { durability: Durability::None, ..Options::default() }).unwrap();
    for first in (0..EVENTS).step_by(WRITE_BATCH as usize) {
        let batch = (first..first + WRITE_BATCH)
            .map(|i| StreamAppend {
                stream: StreamName::new(format!("kv:agent/{}/state", (i * 7919) % KEYS)).unwrap(),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent::json("kv.set", &json!({"value": {"step": i, "status": "running"}}))],
            })
            .collect();
        log.append_multi(batch).unwrap();
    }
    log
}

fn restore(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let head = log.head().unwrap().position;
    assert_eq!(head.0 + 1, EVENTS);

    // The views as a running process has them at the checkpoint, then the checkpoint itself.
    let mut live = Views::projections();
    snapshotter::replay(&log, &mut live, Position(0), Position(CHECKPOINT_AT), &mut |_| {}).unwrap();
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    snap.checkpoint(&log, &mut live, Position(CHECKPOINT_AT), CheckpointKind::Full).unwrap();
    drop(snap);
    let mut live = Views::projections();

    let mut group = c.benchmark_group("views");
    group.sample_size(10);
    group.bench_function("checkpoint_1pct_behind", |b| {
        b.iter_batched(Views::projections, |views| restore_views(&log, views, head), BatchSize::PerIteration);
    });
    group.bench_function("full_replay", |b| {
        b.iter_batched(Views::projections, |views| replay_views(&log, views, head), BatchSize::PerIteration);
    });
    group.finish();

    // A restart opens the log too; the snapshotter's writer below needs it open again after.
    let path = dir.path().to_path_buf();
    log.close();
    let reopen = |path: &Path| Log::open(path, Options { durability: Durability::None, ..Options::default() }).unwrap();
    // Only the open and the rebuild are timed: closing waits for the next segment's zero-fill,
    // which a restarted process does in the background.
    let restart = |b: &mut criterion::Bencher, rebuild: Rebuild| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let views = Views::projections();
                let started = Instant::now();
                let log = reopen(&path);
                let views = rebuild(&log, views, head);
                timed += started.elapsed();
                drop(views);
                log.close();
            }
            timed
        });
    };
    let mut group = c.benchmark_group("restart");
    group.sample_size(10);
    group.bench_function("checkpoint_1pct_behind", |b| restart(b, restore_views));
    group.bench_function("full_replay", |b| restart(b, replay_views));
    group.finish();
    let log = reopen(&path);
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    snap.restore(&log, &mut live, &mut |_| {}).unwrap();

    // Sizes: a full checkpoint at the head, then 1% of the keys changed, then an incremental.
    let base = snap.checkpoint(&log, &mut live, head, CheckpointKind::Full).unwrap();
    let changed = KEYS / 100;
    let batch = (0..changed)
        .map(|k| StreamAppend {
            stream: StreamName::new(format!("kv:agent/{k}/state")).unwrap(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent::json("kv.set", &json!({"value": {"step": k, "status": "done"}}))],
        })
        .collect();
    log.append_multi(batch).unwrap();
    let new_head = log.head().unwrap().position;
    snapshotter::replay(&log, &mut live, Position(head.0 + 1), new_head, &mut |_| {}).unwrap();
    let incremental = snap.checkpoint(&log, &mut live, new_head, CheckpointKind::Incremental).unwrap();
    println!(
        "checkpoint sizes ({KEYS} keys): full {} bytes; incremental after {changed} keys changed {} bytes ({:.0}x smaller)",
        base.file_bytes,
        incremental.file_bytes,
        base.file_bytes as f64 / incremental.file_bytes as f64,
    );
}

/// Brings fresh views up to the head of an open log, one way or the other.
type Rebuild = fn(&Log, Vec<Box<dyn Projection>>, Position) -> Vec<Box<dyn Projection>>;

/// Restores `views` from the newest checkpoint and replays the log's tail, as a restart does.
fn restore_views(log: &Log, mut views: Vec<Box<dyn Projection>>, head: Position) -> Vec<Box<dyn Projection>> {
    let mut snap = Snapshotter::open(log, Policy::default()).unwrap();
    let restored = snap.restore(log, &mut views, &mut |_| {}).unwrap();
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_eq!(restored.checkpoint.as_ref().map(|c| c.position), Some(Position(CHECKPOINT_AT)));
    assert_eq!(restored.applied_through, Some(head.0));
    black_box(views)
}

/// Rebuilds `views` by replaying the whole log.
fn replay_views(log: &Log, mut views: Vec<Box<dyn Projection>>, head: Position) -> Vec<Box<dyn Projection>> {
    snapshotter::replay(log, &mut views, Position(0), head, &mut |_| {}).unwrap();
    black_box(views)
}

criterion_group!(benches, restore);
criterion_main!(benches);
