//! The systems under test behind one small interface, and the thread-per-appender driver that
//! every blocking client shares.
//!
//! Every system stores the same thing: events of [`EVENT_BYTES`] opaque bytes in named streams,
//! with a per-stream version and (where the system has one) a global order. Each appender owns
//! its stream, so it knows the version its next event takes; systems that store versions
//! explicitly use it, and with `checked` the system must refuse the append unless the stream's
//! last version is the one before it (an optimistic-concurrency check, each in its own way).
//!
//! What this module does not do: decide what is measured (workloads/) or how it is shown
//! (report.rs).

pub mod cairn;
pub mod fjall;
pub mod postgres;
pub mod redis;
pub mod sqlite;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::error::{BenchError, Result};
use crate::stats::{Measurement, SyncStats};

/// Size of every event's payload.
pub const EVENT_BYTES: usize = 256;
/// Distinct payloads cycled through, so no store can compress repeats away.
const PAYLOAD_POOL: usize = 4096;
/// Event type written by every system.
pub const EVENT_TYPE: &str = "bench.event";

/// A fixed pool of incompressible payloads, shared by all systems (same bytes everywhere).
#[derive(Debug)]
pub struct Payloads {
    pool: Vec<Vec<u8>>,
}

impl Payloads {
    pub fn new(seed: u64) -> Payloads {
        let mut state = seed | 1;
        let pool = (0..PAYLOAD_POOL)
            .map(|_| {
                (0..EVENT_BYTES)
                    .map(|_| {
                        // xorshift64: fast, and random enough that LZ4/snappy find nothing.
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect()
            })
            .collect();
        Payloads { pool }
    }

    pub fn get(&self, i: u64) -> &[u8] {
        &self.pool[(i % PAYLOAD_POOL as u64) as usize]
    }
}

/// Events for one stream within one commit.
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    pub stream: &'a str,
    /// Version the first event takes (the stream's last version + 1; 0 for a new stream).
    pub first_version: u64,
    pub events: &'a [&'a [u8]],
}

/// "version 41" or "no version (the stream does not exist)", for error messages.
pub fn describe_version(version: Option<u64>) -> String {
    version.map_or_else(|| "no version (the stream does not exist)".into(), |v| format!("version {v}"))
}

/// One connection (or handle) used by one appender or reader at a time.
pub trait Client: Send {
    /// Commits all `appends` atomically and durably. With `checked`, fails unless each
    /// stream's last version is `first_version - 1` (or the stream is new for version 0).
    fn append(&mut self, appends: &[Append<'_>], checked: bool) -> Result<()>;
    /// Reads a whole stream in version order; returns how many events it has.
    fn read_stream(&mut self, stream: &str) -> Result<u64>;
    /// Reads every event in the store (in global order where the system has one); returns the count.
    fn replay(&mut self) -> Result<u64>;
}

/// One system under test.
pub trait System: Send + Sync {
    fn name(&self) -> &'static str;
    /// Product and version, for the report.
    fn version(&self) -> String;
    fn client(&self) -> Result<Box<dyn Client>>;
    /// How this system serves concurrent appenders, for the report's method section.
    fn concurrency_model(&self) -> &'static str;

    /// `appenders` concurrent appenders, each committing one event at a time to its own stream
    /// until `run_for` has passed. The default runs one OS thread and one client per appender.
    fn concurrent(
        &self,
        streams: &str,
        appenders: usize,
        run_for: Duration,
        checked: bool,
        payloads: &Payloads,
    ) -> Result<Measurement> {
        run_threads(self, streams, appenders, run_for, checked, payloads)
    }

    /// The engine's own commit counters, where it has them (cairn's `Log::metrics`).
    fn sync_counters(&self) -> Option<SyncCounters> {
        None
    }

    /// Whether [`System::verify`] does anything.
    fn verify_supported(&self) -> bool {
        false
    }

    /// Checks the whole store's integrity, where the system can (cairn's chain verify).
    fn verify(&self) -> Option<Result<Measurement>> {
        None
    }
}

/// What one appender brings back: its commit latencies (ns) and when it stopped.
pub type AppenderOutcome = Result<(Vec<u64>, Instant)>;

/// Commit counters of an engine at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncCounters {
    pub events: u64,
    pub bytes: u64,
    pub fsyncs: u64,
    pub fsync_seconds: f64,
}

impl SyncCounters {
    /// Group-commit behaviour between this snapshot and a later one; `None` if nothing synced.
    pub fn until(&self, later: &SyncCounters) -> Option<SyncStats> {
        let fsyncs = later.fsyncs.checked_sub(self.fsyncs).filter(|&n| n > 0)? as f64;
        Some(SyncStats {
            events_per_sync: (later.events - self.events) as f64 / fsyncs,
            mean_sync_us: (later.fsync_seconds - self.fsync_seconds) * 1e6 / fsyncs,
        })
    }
}

/// The thread-per-appender driver behind [`System::concurrent`].
pub fn run_threads<S: System + ?Sized>(
    system: &S,
    streams: &str,
    appenders: usize,
    run_for: Duration,
    checked: bool,
    payloads: &Payloads,
) -> Result<Measurement> {
    let clients = (0..appenders).map(|_| system.client()).collect::<Result<Vec<_>>>()?;
    let barrier = Barrier::new(appenders + 1);
    let results: (Vec<AppenderOutcome>, Instant) = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut client)| {
                let barrier = &barrier;
                let stream = format!("{streams}-{i}");
                scope.spawn(move || -> Result<(Vec<u64>, Instant)> {
                    barrier.wait();
                    let deadline = Instant::now() + run_for;
                    let mut latencies = Vec::new();
                    let mut version = 0u64;
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        let payload = payloads.get(version.wrapping_mul(31).wrapping_add(i as u64));
                        client.append(
                            &[Append { stream: &stream, first_version: version, events: &[payload] }],
                            checked,
                        )?;
                        latencies.push(started.elapsed().as_nanos() as u64);
                        version += 1;
                    }
                    Ok((latencies, Instant::now()))
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let joined = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BenchError::system(system.name(), "run an appender thread", "the thread panicked"))
                })
            })
            .collect();
        (joined, start)
    });
    let (results, start) = results;
    finish(results, start)
}

/// Folds per-appender latencies and end times into one measurement of single-event commits.
/// The run lasts from `start` (the barrier's release) to the end of the slowest appender's
/// last operation, which began before the deadline.
pub fn finish(results: Vec<AppenderOutcome>, start: Instant) -> Result<Measurement> {
    let mut latencies = Vec::new();
    let mut last_end = start;
    for r in results {
        let (l, end) = r?;
        latencies.extend(l);
        last_end = last_end.max(end);
    }
    Ok(Measurement {
        events: latencies.len() as u64,
        elapsed: last_end - start,
        latencies_ns: latencies,
        note: None,
        syncs: None,
        cpu: None,
        reported: None,
    })
}
