//! Workloads 1-4: durable appends of 256-byte events.
//!
//! Every run is time-boxed ([`super::Scale::run_for`]) and records each commit's latency.
//! Stream names carry the workload and repetition, so runs never touch each other's streams.

use std::time::{Duration, Instant};

use crate::error::{BenchError, Result};
use crate::stats::Measurement;
use crate::systems::{run_threads, Append, Payloads, System};

/// Workload 1 (and 4 with `checked`): one appender, one event per commit, blocking client.
pub fn single(
    system: &dyn System,
    stream: &str,
    run_for: Duration,
    checked: bool,
    payloads: &Payloads,
) -> Result<Measurement> {
    run_threads(system, stream, 1, run_for, checked, payloads)
}

/// Workload 2 (and 4 with `checked`): concurrent appenders, one event per commit, each on its
/// own stream, in the system's own concurrency model.
pub fn concurrent(
    system: &dyn System,
    streams: &str,
    appenders: usize,
    run_for: Duration,
    checked: bool,
    payloads: &Payloads,
) -> Result<Measurement> {
    system.concurrent(streams, appenders, run_for, checked, payloads)
}

/// Workload 3: one appender committing `size` events at a time to its stream.
pub fn batches(
    system: &dyn System,
    stream: &str,
    size: usize,
    run_for: Duration,
    payloads: &Payloads,
) -> Result<Measurement> {
    let mut client = system.client()?;
    let mut latencies = Vec::new();
    let mut version = 0u64;
    let start = Instant::now();
    let deadline = start + run_for;
    while Instant::now() < deadline {
        let events: Vec<&[u8]> = (0..size as u64).map(|i| payloads.get(version + i)).collect();
        let t = Instant::now();
        client.append(&[Append { stream, first_version: version, events: &events }], false)?;
        latencies.push(t.elapsed().as_nanos() as u64);
        version += size as u64;
    }
    Ok(Measurement {
        events: version,
        elapsed: start.elapsed(),
        latencies_ns: latencies,
        note: None,
        syncs: None,
        cpu: None,
        reported: None,
    })
}

/// Proves a system's expected-version check bites before it is timed: a second append that
/// claims the same version must be refused.
pub fn check_conflict_is_refused(system: &dyn System, stream: &str, payloads: &Payloads) -> Result<()> {
    let mut client = system.client()?;
    let event = [payloads.get(0)];
    client.append(&[Append { stream, first_version: 0, events: &event }], true)?;
    match client.append(&[Append { stream, first_version: 0, events: &event }], true) {
        Err(_) => Ok(()),
        Ok(()) => Err(BenchError::Check {
            system: system.name(),
            workload: "workload 4".into(),
            detail: format!("a second append claiming version 0 of stream {stream} was accepted"),
        }),
    }
}
