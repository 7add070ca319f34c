//! Single-workload probes of log-engine, small enough to run under `perf record` or to run
//! two builds back to back (A/B). The numbers in benches/harness/analysis.md that are not the
//! harness's own (open of a 10M-event log, the W2- and W3-shaped runs) come from these.
//!
//! ```text
//! cargo build --release --manifest-path benches/probe/Cargo.toml
//! P=benches/probe/target/release/cairn-probe
//! $P load DIR EVENTS [STREAMS [PAYLOAD]]  # 10,000 streams and 256-byte payloads unless given,
//!                           # commits of 100 streams x 10 events, no fdatasync
//! $P loadkv DIR            # the restore benchmark's log: 10M one-event appends to 1000 of 100k
//!                           # streams per call, small JSON data, no fdatasync
//! $P open DIR [TIMES]       # times Log::open (drop the page cache first for a cold open)
//! $P w3 DIR BATCHES [SEG]   # 1 appender, durable 1000-event batches; optional segment size
//! $P w3c DIR SECONDS N      # N appenders (threads), durable 1000-event batches each
//! $P w2 DIR SECONDS         # 64 async appenders, 1 durable event each
//! $P w1 DIR SECONDS [none]  # 1 appender, 1 event per blocking commit; `none`: Durability::None,
//!                           # so the per-commit CPU path (e.g. the `live` file's pwrite) is not
//!                           # hidden behind the fdatasync
//! ```
use log_engine::*;
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = &args[2];
    match args[1].as_str() {
        "load" => {
            let n: usize = args[3].parse().unwrap();
            let log = Log::open(dir, Options { durability: Durability::None, ..Default::default() }).unwrap();
            let streams: usize = args.get(4).map_or(10_000, |s| s.parse().unwrap());
            let payload: usize = args.get(5).map_or(256, |s| s.parse().unwrap());
            let per_round = 10usize;
            let rounds = n / streams / per_round;
            let t = Instant::now();
            for round in 0..rounds {
                for chunk in (0..streams).collect::<Vec<_>>().chunks(100) {
                    let appends = chunk
                        .iter()
                        .map(|s| StreamAppend {
                            stream: StreamName::new(format!("agent-{s:05}")).unwrap(),
                            expected: ExpectedVersion::Any,
                            events: (0..per_round)
                                .map(|e| NewEvent::bytes("bench.event", vec![(round * 7 + e) as u8; payload]))
                                .collect(),
                        })
                        .collect();
                    log.append_multi(appends).unwrap();
                }
            }
            eprintln!("loaded {} in {:?}", log.stats().events, t.elapsed());
            log.close();
        }
        "loadkv" => {
            let log = Log::open(dir, Options { durability: Durability::None, ..Default::default() }).unwrap();
            for first in (0..10_000_000u64).step_by(1000) {
                let batch = (first..first + 1000)
                    .map(|i| StreamAppend {
                        stream: StreamName::new(format!("kv:agent/{}/state", (i * 7919) % 100_000)).unwrap(),
                        expected: ExpectedVersion::Any,
                        events: vec![NewEvent::bytes(
                            "kv.set",
                            format!("{{\"value\":{{\"step\":{i},\"status\":\"running\"}}}}").into_bytes(),
                        )],
                    })
                    .collect();
                log.append_multi(batch).unwrap();
            }
            log.close();
        }
        "open" => {
            let times: usize = args.get(3).map_or(1, |s| s.parse().unwrap());
            for _ in 0..times {
                let t = Instant::now();
                let log = Log::open(dir, Options::default()).unwrap();
                eprintln!("opened {} events in {:?}", log.stats().events, t.elapsed());
                log.close();
            }
        }
        "w3" => {
            let batches: usize = args[3].parse().unwrap();
            let seg: u64 = args.get(4).map(|s| s.parse().unwrap()).unwrap_or(SEGMENT_SIZE_DEFAULT);
            let log = Log::open(dir, Options { segment_size: seg, ..Default::default() }).unwrap();
            let t = Instant::now();
            let mut lat = Vec::new();
            for b in 0..batches {
                let events: Vec<NewEvent> =
                    (0..1000).map(|e| NewEvent::bytes("bench.event", vec![(b + e) as u8; 256])).collect();
                let s = Instant::now();
                log.append("w3-stream", ExpectedVersion::Any, events).unwrap();
                lat.push(s.elapsed());
            }
            let el = t.elapsed();
            lat.sort();
            let m = log.metrics();
            eprintln!(
                "w3: {:.0} events/s, p50 {:?}; {:.0} us/fsync",
                (batches * 1000) as f64 / el.as_secs_f64(),
                lat[lat.len() / 2],
                m.fsync_seconds_total.get() * 1e6 / m.fsyncs as f64
            );
            log.close();
        }
        "w2" => {
            let secs: u64 = args[3].parse().unwrap();
            let log = Log::open(dir, Options::default()).unwrap();
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            let t = Instant::now();
            let total: u64 = rt.block_on(async {
                let tasks: Vec<_> = (0..64)
                    .map(|i| {
                        let log = log.clone();
                        tokio::spawn(async move {
                            let stream = format!("w2-{i}");
                            let mut n = 0u64;
                            let start = Instant::now();
                            while start.elapsed().as_secs() < secs {
                                log.append_async(
                                    &stream,
                                    ExpectedVersion::Any,
                                    vec![NewEvent::bytes("bench.event", vec![n as u8; 256])],
                                )
                                .await
                                .unwrap();
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                let mut total = 0;
                for t in tasks {
                    total += t.await.unwrap();
                }
                total
            });
            let m = log.metrics();
            eprintln!(
                "w2: {:.0} events/s; {:.1} events/fsync; {:.0} us/fsync; fsyncs {}",
                total as f64 / t.elapsed().as_secs_f64(),
                m.events as f64 / m.fsyncs as f64,
                m.fsync_seconds_total.get() * 1e6 / m.fsyncs as f64,
                m.fsyncs
            );
            eprintln!("buckets {:?} {:?}", log_engine::SYNC_BATCH_BUCKETS, m.sync_batch_buckets);
            log.close();
        }
        "w1" => {
            let secs: u64 = args[3].parse().unwrap();
            let durability = match args.get(4).map(String::as_str) {
                Some("none") => Durability::None,
                None => Durability::Sync,
                Some(other) => panic!("unknown durability {other:?}: leave it out (Sync) or say none"),
            };
            let log = Log::open(dir, Options { durability, ..Default::default() }).unwrap();
            let mut lat = Vec::new();
            let t = Instant::now();
            while t.elapsed().as_secs() < secs {
                let event = NewEvent::bytes("bench.event", vec![lat.len() as u8; 256]);
                let s = Instant::now();
                log.append("w1-stream", ExpectedVersion::Any, vec![event]).unwrap();
                lat.push(s.elapsed());
            }
            let el = t.elapsed();
            lat.sort();
            let m = log.metrics();
            eprintln!(
                "w1: {:.0} events/s, p50 {:.1} us, p99 {:.1} us; {:.0} us/fsync over {} fsyncs",
                lat.len() as f64 / el.as_secs_f64(),
                lat[lat.len() / 2].as_secs_f64() * 1e6,
                lat[lat.len() * 99 / 100].as_secs_f64() * 1e6,
                m.fsync_seconds_total.get() * 1e6 / (m.fsyncs as f64).max(1.0),
                m.fsyncs
            );
            log.close();
        }
        "w3c" => {
            let secs: u64 = args[3].parse().unwrap();
            let appenders: usize = args[4].parse().unwrap();
            let log = Log::open(dir, Options::default()).unwrap();
            let t = Instant::now();
            let total: usize = std::thread::scope(|scope| {
                let threads: Vec<_> = (0..appenders)
                    .map(|i| {
                        let log = &log;
                        scope.spawn(move || {
                            let stream = format!("w3c-{i}");
                            let mut n = 0;
                            while t.elapsed().as_secs() < secs {
                                let events: Vec<NewEvent> = (0..1000)
                                    .map(|e| NewEvent::bytes("bench.event", vec![(n + e) as u8; 256]))
                                    .collect();
                                log.append(&stream, ExpectedVersion::Any, events).unwrap();
                                n += 1000;
                            }
                            n
                        })
                    })
                    .collect();
                threads.into_iter().map(|h| h.join().unwrap()).sum()
            });
            let m = log.metrics();
            eprintln!(
                "w3c x{appenders}: {:.0} events/s; {:.0} events/fsync; {:.0} us/fsync",
                total as f64 / t.elapsed().as_secs_f64(),
                m.events as f64 / m.fsyncs as f64,
                m.fsync_seconds_total.get() * 1e6 / m.fsyncs as f64
            );
            log.close();
        }
        other => panic!("unknown probe {other:?}: load, loadkv, open, w1, w2, w3 or w3c"),
    }
}
