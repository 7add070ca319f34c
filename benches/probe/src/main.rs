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
//! $P grow DIR               # a pre-grown log: 1000-event batches (no fdatasync) until the
//!                           # active segment has the configured size, then closed
//! $P w3t DIR SECONDS        # 1 appender, durable 1000-event batches for SECONDS (the harness's
//!                           # W3 x1000) on DIR as it is (fresh, or made by `grow`): events/s,
//!                           # batch latencies, the time batches spent stalled beyond 2x the
//!                           # p50, the segments rolled into, fdatasyncs, process CPU per event
//! $P w2 DIR SECONDS         # 64 async appenders, 1 durable event each
//! $P scavenge DIR EVENTS PAYLOAD SECONDS
//!                           # loads EVENTS events of PAYLOAD data bytes (1000 streams, no
//!                           # fdatasync), soft-deletes half the streams (50% of events dead),
//!                           # reopens (durable), times durable 1-event appends for SECONDS
//!                           # alone, then again beside a scavenge; prints the scavenge's
//!                           # events/s, MB/s, bytes reclaimed against dead payload bytes, and
//!                           # the two append p99s side by side
//! $P fork DIR EVENTS        # one stream of EVENTS events, then forks of it (at its last
//!                           # version) and of a 1-event stream: time and log bytes of each
//! $P replay DIR [TIMES] [scan]  # Log::for_each (or Log::scan) over the whole log (the W5
//!                           # replay), events/s
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
            let t = Instant::now();
            load_streams(&log, n, streams, payload);
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
        "grow" => grow(dir),
        "w3t" => w3_timed(dir, args[3].parse().unwrap()),
        "replay" => {
            let times: usize = args.get(3).map_or(1, |s| s.parse().unwrap());
            let log = Log::open(dir, Options::default()).unwrap();
            for _ in 0..times {
                let t = Instant::now();
                let mut bytes = 0usize;
                let n = if args.get(4).map(String::as_str) == Some("scan") {
                    log.scan(Position(0), u64::MAX, |event| {
                        bytes += event.data.len();
                        true
                    })
                } else {
                    log.for_each(Position(0), u64::MAX, |event| {
                        bytes += event.data.as_bytes().len();
                        true
                    })
                }
                .unwrap();
                std::hint::black_box(bytes);
                eprintln!("replay: {n} events, {:.0} events/s", n as f64 / t.elapsed().as_secs_f64());
            }
            log.close();
        }
        "scavenge" => scavenge_probe(dir, &args[3..]),
        "fork" => fork_probe(dir, args[3].parse().unwrap()),
        other => {
            panic!("unknown probe {other:?}: load, loadkv, open, w1, w2, w3, w3c, grow, w3t, replay, scavenge or fork")
        }
    }
}

/// 1000 events of 256 bytes, varied by `seed`.
fn batch_of_1000(seed: usize) -> Vec<NewEvent> {
    (0..1000).map(|e| NewEvent::bytes("bench.event", vec![(seed + e) as u8; 256])).collect()
}

fn grow(dir: &str) {
    let log = Log::open(dir, Options { durability: Durability::None, ..Default::default() }).unwrap();
    let t = Instant::now();
    let mut b = 0;
    while log.segment_files().last().unwrap().capacity < SEGMENT_SIZE_DEFAULT {
        log.append("grow", ExpectedVersion::Any, batch_of_1000(b)).unwrap();
        b += 1;
    }
    let files = log.segment_files();
    eprintln!("grown: {} events, {} segments, in {:?}", log.stats().events, files.len(), t.elapsed());
    log.close();
}

/// The process's user + system CPU time in seconds (clock ticks of 10 ms).
fn process_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which ends with the last ')'): utime and stime are the
    // 12th and 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()) as f64 / 100.0
}

fn w3_timed(dir: &str, secs: f64) {
    let log = Log::open(dir, Options::default()).unwrap();
    let segments_before = log.segment_files().len();
    let m0 = log.metrics();
    let cpu0 = process_cpu_s();
    let mut lat = Vec::new();
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < secs {
        let events = batch_of_1000(lat.len());
        let s = Instant::now();
        log.append("w3-stream", ExpectedVersion::Any, events).unwrap();
        lat.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let el = t.elapsed().as_secs_f64();
    let cpu = process_cpu_s() - cpu0;
    let m = log.metrics();
    let files = log.segment_files();
    lat.sort_by(f64::total_cmp);
    let p50 = lat[lat.len() / 2];
    let stalled: f64 = lat.iter().filter(|&&l| l > 2.0 * p50).map(|l| l - p50).sum();
    let fsyncs = m.fsyncs - m0.fsyncs;
    let buckets: Vec<u64> = m.fsync_buckets.iter().zip(&m0.fsync_buckets).map(|(a, b)| a - b).collect();
    eprintln!(
        "w3t: {:.0} events/s; batches p50 {p50:.2} ms, p99 {:.2} ms, max {:.1} ms; stalled {stalled:.0} ms of {:.0} ms; \
         rolled into {} segments (now {} x {} MiB active); {fsyncs} fsyncs, {:.0} us each; {:.2} us CPU per event",
        (lat.len() * 1000) as f64 / el,
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1],
        el * 1e3,
        files.len() - segments_before,
        files.len(),
        files.last().unwrap().capacity >> 20,
        (m.fsync_seconds_total.get() - m0.fsync_seconds_total.get()) * 1e6 / fsyncs.max(1) as f64,
        cpu * 1e6 / (lat.len() * 1000) as f64,
    );
    eprintln!("fsync buckets (us) {:?}: {buckets:?}", log_engine::FSYNC_BUCKETS_US);
    log.close();
}

/// Appends `events` events of `payload` bytes to streams `agent-00000`.. (`streams` of them):
/// rounds of ten events to each, a hundred streams per call.
fn load_streams(log: &Log, events: usize, streams: usize, payload: usize) {
    let per_round = 10usize;
    for round in 0..events / streams / per_round {
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
}

/// Durable one-event appends until `stop` says so; their latencies, sorted.
fn append_latencies(log: &Log, stop: &dyn Fn() -> bool) -> Vec<std::time::Duration> {
    let mut lat = Vec::new();
    while !stop() {
        let event = NewEvent::bytes("bench.event", vec![lat.len() as u8; 256]);
        let s = Instant::now();
        log.append("appender", ExpectedVersion::Any, vec![event]).unwrap();
        lat.push(s.elapsed());
    }
    lat.sort();
    lat
}

fn p99_us(lat: &[std::time::Duration]) -> f64 {
    lat[lat.len() * 99 / 100].as_secs_f64() * 1e6
}

fn scavenge_probe(dir: &str, args: &[String]) {
    let events: usize = args[0].parse().unwrap();
    let payload: usize = args[1].parse().unwrap();
    let secs: u64 = args[2].parse().unwrap();
    let streams = 1000usize;
    let log = Log::open(dir, Options { durability: Durability::None, ..Default::default() }).unwrap();
    let t = Instant::now();
    load_streams(&log, events, streams, payload);
    for s in (0..streams).step_by(2) {
        log.delete_stream(&format!("agent-{s:05}"), DeleteMode::Soft).unwrap();
    }
    eprintln!("loaded {} events of {payload} data bytes in {:?}", log.stats().events, t.elapsed());
    log.close();
    let log = Log::open(dir, Options::default()).unwrap();
    let sealed_bytes = |log: &Log| log.segment_files().iter().filter(|f| f.sealed).map(|f| f.capacity).sum::<u64>();
    // Dead payload bytes in sealed segments: what a scavenge can give back at most.
    let active_start =
        log.segment_files().last().unwrap().path.file_stem().unwrap().to_str().unwrap().parse::<u64>().unwrap();
    let mut dead_payload = 0u64;
    let mut dead_events = 0u64;
    log.for_each(Position(0), active_start, |e| {
        if e.stream.starts_with("agent-") && e.stream[6..].parse::<usize>().unwrap() % 2 == 0 {
            dead_payload += (e.data.as_bytes().len() + e.metadata.len()) as u64;
            dead_events += 1;
        }
        true
    })
    .unwrap();
    let before_disk = sealed_bytes(&log);
    let t = Instant::now();
    let records_at_start = log.stats().record_bytes;
    let alone = append_latencies(&log, &|| t.elapsed().as_secs() >= secs);
    // Every appended record is the same size: one event of 256 bytes on one stream.
    let per_append = (log.stats().record_bytes - records_at_start) / alone.len() as u64;
    let records_before = log.stats().record_bytes;
    let done = std::sync::atomic::AtomicBool::new(false);
    let (report, elapsed, beside) = std::thread::scope(|scope| {
        let appender = scope.spawn(|| append_latencies(&log, &|| done.load(std::sync::atomic::Ordering::Acquire)));
        let t = Instant::now();
        let mut scanned = 0;
        let report = log.scavenge(&ScavengeOptions::default(), &mut |p| scanned = p.events_scanned).unwrap();
        let elapsed = t.elapsed();
        done.store(true, std::sync::atomic::Ordering::Release);
        eprintln!("scavenge: {scanned} events scanned");
        (report, elapsed, appender.join().unwrap())
    });
    let reclaimed = before_disk - sealed_bytes(&log);
    let records_shrank = records_before + per_append * beside.len() as u64 - log.stats().record_bytes;
    eprintln!("{report:?}");
    eprintln!(
        "scavenge: {:.2} s, {:.0} events/s, {:.1} MB/s read; {} of {} events husked; records shrank by {} bytes, {:.1}% of the {} dead payload bytes; sealed segment files {} -> {} bytes ({} given back)",
        elapsed.as_secs_f64(),
        (active_start as f64) / elapsed.as_secs_f64(),
        report.bytes_before as f64 / 1e6 / elapsed.as_secs_f64(),
        report.events_husked,
        dead_events,
        records_shrank,
        records_shrank as f64 * 100.0 / dead_payload as f64,
        dead_payload,
        before_disk,
        sealed_bytes(&log),
        reclaimed,
    );
    eprintln!(
        "append p99: alone {:.0} us ({} appends in {secs} s), beside the scavenge {:.0} us ({} appends): {:.2}x",
        p99_us(&alone),
        alone.len(),
        p99_us(&beside),
        beside.len(),
        p99_us(&beside) / p99_us(&alone)
    );
    assert!(log.verify(None, |_| {}).unwrap().ok);
    log.close();
}

fn fork_probe(dir: &str, events: usize) {
    let log = Log::open(dir, Options { durability: Durability::None, ..Default::default() }).unwrap();
    for first in (0..events).step_by(1000) {
        let batch =
            (first..(first + 1000).min(events)).map(|i| NewEvent::bytes("bench.event", vec![i as u8; 256])).collect();
        log.append("big", ExpectedVersion::Any, batch).unwrap();
    }
    log.append("small", ExpectedVersion::Any, vec![NewEvent::bytes("bench.event", vec![1; 256])]).unwrap();
    log.close();
    let log = Log::open(dir, Options::default()).unwrap();
    let used = |log: &Log| log.segment_files().iter().map(|f| f.bytes).sum::<u64>();
    for (source, at) in [("big", events as u64 - 1), ("small", 0), ("big", events as u64 / 2)] {
        let before = used(&log);
        let t = Instant::now();
        log.fork_stream(source, &format!("fork-of-{source}-{at}"), StreamVersion(at)).unwrap();
        let took = t.elapsed();
        eprintln!(
            "fork of {source} at version {at}: {:.0} us, {} log bytes",
            took.as_secs_f64() * 1e6,
            used(&log) - before
        );
    }
    let read = log
        .read_stream(
            &format!("fork-of-big-{}", events - 1),
            Some(StreamVersion(events as u64 - 3)),
            10,
            Direction::Forward,
        )
        .unwrap();
    assert_eq!(read.len(), 3);
    log.close();
}
