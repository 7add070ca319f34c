//! Benchmarks of the read side.
//!
//! - `apply/<view>`: applying 100,000 in-memory events to an empty view (no log I/O): the cost of
//!   the view alone.
//! - `rebuild/kv_1m`: a full rebuild of the key-value view from a log of 1,000,000 mixed
//!   key-value events (sets, increments, deletes, list pushes and pops, set adds and removes over
//!   100,000 keys), read from the segments with `rebuild` (decode + CRC check + apply).
//!   Target: at least 500,000 events/s.
//! - `rebuild/all_1m`: a full rebuild of all three views from a log of 1,000,000 mixed events
//!   (60% key-value, 30% audit entries, 10% metadata).
//!
//! Run: `cargo bench -p projections --bench views`. The logs are written once per run, in a
//! temporary directory, without fdatasync (their durability is not what is measured).
//!
//! On a shared machine wall time depends on what else runs, so before each rebuild benchmark one
//! rebuild is also timed in CPU time of the benchmarking thread (from `/proc/thread-self/stat`,
//! 10 ms resolution) and printed: events per CPU-second is what one dedicated core would do.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use log_engine::{
    ChainHash, Durability, Event, ExpectedVersion, Log, NewEvent, Options, Payload, Position, StreamAppend, StreamName,
    StreamVersion, Uuid,
};
use projections::{rebuild, AuditView, KvView, MetaView, Projection, Views};
use serde_json::{json, Value};

const APPLY_EVENTS: usize = 100_000;
const REBUILD_EVENTS: usize = 1_000_000;
const KEYS: usize = 100_000;
/// Events per append call when writing the benchmark logs (distinct streams within a call).
const WRITE_BATCH: usize = 1000;

/// Makes the i-th event of a workload: (stream, event type, data).
type Op = fn(usize) -> (String, &'static str, Value);
/// Makes an empty view.
type Make = fn() -> Box<dyn Projection>;

/// The i-th key-value operation: (key, event type, data). Keys are typed by their number so that
/// every operation applies: 60% plain values, 20% lists, 20% sets.
fn kv_op(i: usize) -> (String, &'static str, Value) {
    let k = (i.wrapping_mul(7919)) % KEYS;
    let key = format!("agent/{k}/state");
    let at = 1_700_000_000_000u64 + i as u64;
    let (t, data) = match (k % 10, i % 4) {
        (0..=5, 0 | 1) => ("kv.set", json!({"value": {"step": i, "status": "running", "note": "some agent state"}})),
        (0..=5, 2) => ("kv.set", json!({"value": i, "ttl_ms": 3_600_000})),
        (0..=5, _) if i % 20 == 3 => ("kv.delete", json!({})),
        (0..=5, _) => ("kv.incr", json!({"delta": 1, "at": at})),
        (6 | 7, 3) => ("kv.pop", json!({"end": "left", "count": 1, "at": at})),
        (6 | 7, _) => ("kv.push", json!({"end": "right", "values": [format!("task-{i}")], "at": at})),
        (_, 3) => ("kv.srem", json!({"members": [format!("m{}", i % 16)], "at": at})),
        _ => ("kv.sadd", json!({"members": [format!("m{}", i % 16)], "at": at})),
    };
    (format!("kv:{key}"), t, data)
}

fn audit_op(i: usize) -> (String, &'static str, Value) {
    let categories = ["agent_activity", "data_access", "authorization", "workflow"];
    let level = ["info", "warn", "error"][i % 3];
    let data = json!({
        "level": level,
        "category": categories[i % 4],
        "event": "tool.called",
        "actor": {"type": "agent", "id": format!("agent-{}", i % 500), "roles": ["worker"]},
        "target": {"type": "tool", "id": format!("tool-{}", i % 50)},
        "context": {"trace_id": format!("trace-{}", i / 8), "workflow_id": format!("wf-{}", i % 200),
                    "task_id": format!("task-{}", i % 5000)},
        "outcome": "success",
        "metadata": {"latency_ms": i % 1000}
    });
    (format!("audit:{}", categories[i % 4]), "audit.entry", data)
}

fn meta_op(i: usize) -> (String, &'static str, Value) {
    match i % 3 {
        0 => {
            let (scope, key) = ("global", format!("feature/{}", i % 1000));
            (format!("meta:config:{scope}:{key}"), "meta.config.set", json!({"scope": scope, "key": key, "value": i}))
        }
        1 => {
            let service = format!("svc-{}", i % 20);
            let data = json!({"service": service, "instance": format!("i-{}", i % 7), "endpoints": ["http://10.0.0.1:80"],
                              "tags": ["eu"], "capabilities": ["search"], "ttl_ms": 30_000});
            (format!("meta:service:{service}"), "meta.service.registered", data)
        }
        _ => {
            let from = format!("agent-{}", i % 300);
            let data = json!({"from": from, "to": format!("tool-{}", i % 40), "type": "uses", "properties": {"n": i}});
            (format!("meta:relation:{from}"), "meta.relation.added", data)
        }
    }
}

/// 60% key-value, 30% audit, 10% metadata.
fn mixed_op(i: usize) -> (String, &'static str, Value) {
    match i % 10 {
        0..=5 => kv_op(i),
        6..=8 => audit_op(i),
        _ => meta_op(i),
    }
}

/// In-memory events for the apply benchmarks, with consistent per-stream versions.
fn events(n: usize, op: Op) -> Vec<Event> {
    let mut versions = std::collections::HashMap::new();
    (0..n)
        .map(|i| {
            let (stream, event_type, data) = op(i);
            let v = versions.entry(stream.clone()).or_insert(0u64);
            let version = *v;
            *v += 1;
            Event {
                position: Position(i as u64),
                stream,
                version: StreamVersion(version),
                id: Uuid::from_u128(i as u128 + 1),
                event_type: event_type.to_string(),
                timestamp_ms: 1_700_000_000_000 + i as u64,
                metadata: b"{}".to_vec(),
                data: Payload::Json(serde_json::to_vec(&data).unwrap()),
                hash: ChainHash::genesis(),
                erased: false,
            }
        })
        .collect()
}

/// Writes `n` events to a new log, in batches whose streams are distinct.
fn write_log(dir: &std::path::Path, n: usize, op: Op) -> Log {
    let log = Log::open(dir, Options { durability: Durability::None, ..Options::default() }).unwrap();
    let mut i = 0;
    while i < n {
        let mut batch: Vec<StreamAppend> = Vec::with_capacity(WRITE_BATCH);
        let mut streams = std::collections::HashSet::new();
        while i < n && batch.len() < WRITE_BATCH {
            let (stream, event_type, data) = op(i);
            if !streams.insert(stream.clone()) {
                break;
            }
            batch.push(StreamAppend {
                stream: StreamName::new(stream).unwrap(),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent::json(event_type, &data)],
            });
            i += 1;
        }
        log.append_multi(batch).unwrap();
    }
    log
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    group.throughput(Throughput::Elements(APPLY_EVENTS as u64));
    let cases: [(&str, Op, Make); 3] = [
        ("kv", kv_op, || Box::new(KvView::new())),
        ("audit", audit_op, || Box::new(AuditView::new())),
        ("meta", meta_op, || Box::new(MetaView::new())),
    ];
    for (name, op, make) in cases {
        let events = events(APPLY_EVENTS, op);
        group.bench_function(name, |b| {
            b.iter_batched(
                make,
                |mut view| {
                    for e in &events {
                        let _ = black_box(view.apply(e));
                    }
                    view
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

/// CPU time of the calling thread, in seconds (Linux; `None` elsewhere). The rebuild runs on
/// the calling thread only.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ: 100 on Linux.
    Some(ticks / 100.0)
}

/// One rebuild timed in wall and CPU time, printed next to criterion's numbers.
fn cpu_timed_rebuild(name: &str, log: &Log, make: impl Fn() -> Vec<Box<dyn Projection>>) {
    let mut views = make();
    let (wall, cpu) = (std::time::Instant::now(), thread_cpu_seconds());
    rebuild(log, &mut views, None, None).unwrap();
    let wall = wall.elapsed().as_secs_f64();
    if let (Some(before), Some(after)) = (cpu, thread_cpu_seconds()) {
        let cpu = after - before;
        println!(
            "{name}: one rebuild of {REBUILD_EVENTS} events: {wall:.2} s wall ({:.0} events/s), {cpu:.2} s CPU ({:.0} events per CPU-second)",
            REBUILD_EVENTS as f64 / wall,
            REBUILD_EVENTS as f64 / cpu.max(0.01)
        );
    }
}

fn rebuilds(c: &mut Criterion) {
    let mut group = c.benchmark_group("rebuild");
    group.sample_size(10);
    group.throughput(Throughput::Elements(REBUILD_EVENTS as u64));

    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), REBUILD_EVENTS, kv_op);
    assert_eq!(log.head().unwrap().position.0 + 1, REBUILD_EVENTS as u64);
    cpu_timed_rebuild("rebuild/kv_1m", &log, || vec![Box::new(KvView::new()) as Box<dyn Projection>]);
    group.bench_function("kv_1m", |b| {
        b.iter_batched(
            || vec![Box::new(KvView::new()) as Box<dyn Projection>],
            |mut views| {
                let done = rebuild(&log, &mut views, None, None).unwrap();
                assert_eq!(done.error_count, 0, "every benchmark event applies");
                views
            },
            BatchSize::PerIteration,
        );
    });
    drop(log);

    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), REBUILD_EVENTS, mixed_op);
    cpu_timed_rebuild("rebuild/all_1m", &log, Views::projections);
    group.bench_function("all_1m", |b| {
        b.iter_batched(
            Views::projections,
            |mut views| {
                let done = rebuild(&log, &mut views, None, None).unwrap();
                assert_eq!(done.error_count, 0, "every benchmark event applies");
                views
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, apply, rebuilds);
criterion_main!(benches);
