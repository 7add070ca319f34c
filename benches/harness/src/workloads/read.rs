//! Workload 5: a log of `streams` × `stream_events` events, streams interleaved the way many
//! agents writing at once interleave them; then reading one whole stream back, replaying the
//! whole log, and (cairn) verifying its chain.
//!
//! The load itself is reported too: it is durable batch appends of [`LOAD_COMMIT_STREAMS`] ×
//! [`LOAD_EVENTS_PER_STREAM`] events by [`LOADERS`] threads, each owning a share of the streams.
//! Every read is checked: a stream must come back whole and a replay must count every event.

use std::time::Instant;

use crate::error::{BenchError, Result};
use crate::stats::Measurement;
use crate::systems::{Append, Payloads, System};

/// Loader threads (each owns the streams whose index is congruent to its number).
pub const LOADERS: usize = 4;
/// Streams per load commit.
pub const LOAD_COMMIT_STREAMS: usize = 100;
/// Events per stream per load commit.
pub const LOAD_EVENTS_PER_STREAM: usize = 10;

pub fn stream_name(i: usize) -> String {
    format!("agent-{i:05}")
}

/// Fills an empty system with the data set.
pub fn load(system: &dyn System, streams: usize, stream_events: usize, payloads: &Payloads) -> Result<Measurement> {
    let start = Instant::now();
    let results: Vec<Result<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..LOADERS)
            .map(|loader| {
                scope.spawn(move || -> Result<u64> {
                    let mut client = system.client()?;
                    let mine: Vec<usize> = (loader..streams).step_by(LOADERS).collect();
                    let names: Vec<String> = mine.iter().map(|&i| stream_name(i)).collect();
                    let mut written = 0u64;
                    for round in (0..stream_events).step_by(LOAD_EVENTS_PER_STREAM) {
                        let per = LOAD_EVENTS_PER_STREAM.min(stream_events - round);
                        for chunk in names.chunks(LOAD_COMMIT_STREAMS) {
                            let events: Vec<Vec<&[u8]>> = chunk
                                .iter()
                                .enumerate()
                                .map(|(s, _)| {
                                    (0..per).map(|e| payloads.get((written + (s * per + e) as u64) * 13)).collect()
                                })
                                .collect();
                            let appends: Vec<Append<'_>> = chunk
                                .iter()
                                .zip(&events)
                                .map(|(stream, events)| Append { stream, first_version: round as u64, events })
                                .collect();
                            client.append(&appends, false)?;
                            written += (chunk.len() * per) as u64;
                        }
                    }
                    Ok(written)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Err(BenchError::system(system.name(), "load", "a loader thread panicked")))
            })
            .collect()
    });
    let mut events = 0;
    for r in results {
        events += r?;
    }
    Ok(Measurement {
        events,
        elapsed: start.elapsed(),
        latencies_ns: Vec::new(),
        note: None,
        syncs: None,
        cpu: None,
        reported: None,
    })
}

/// Reads `reads` whole streams (a fixed pseudo-random choice) and checks each is complete.
pub fn read_back(
    system: &dyn System,
    streams: usize,
    stream_events: usize,
    reads: usize,
    rep: usize,
) -> Result<Measurement> {
    let mut client = system.client()?;
    let mut latencies = Vec::with_capacity(reads);
    let mut pick = 0x9E37_79B9_7F4A_7C15u64 ^ rep as u64;
    let start = Instant::now();
    for _ in 0..reads {
        pick = pick.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let stream = stream_name((pick >> 33) as usize % streams);
        let t = Instant::now();
        let n = client.read_stream(&stream)?;
        latencies.push(t.elapsed().as_nanos() as u64);
        if n != stream_events as u64 {
            return Err(BenchError::Check {
                system: system.name(),
                workload: "stream read-back".into(),
                detail: format!("stream {stream} returned {n} events, not {stream_events}"),
            });
        }
    }
    Ok(Measurement {
        events: (reads * stream_events) as u64,
        elapsed: start.elapsed(),
        latencies_ns: latencies,
        note: None,
        syncs: None,
        cpu: None,
        reported: None,
    })
}

/// Reads every event and checks the count.
pub fn replay(system: &dyn System, expected: u64) -> Result<Measurement> {
    let mut client = system.client()?;
    let start = Instant::now();
    let n = client.replay()?;
    let elapsed = start.elapsed();
    if n != expected {
        return Err(BenchError::Check {
            system: system.name(),
            workload: "replay".into(),
            detail: format!("the replay saw {n} events, not {expected}"),
        });
    }
    Ok(Measurement { events: n, elapsed, latencies_ns: Vec::new(), note: None, syncs: None, cpu: None, reported: None })
}
