//! The workloads of issue 7, sized by [`Scale`]: `--quick` for development (under five
//! minutes in all), `--full` for the published report.
//!
//! - append.rs: workloads 1-4 (one appender; 8/64/256 concurrent appenders; batches of 100 and
//!   1,000; appends with an expected-version check). Each run is time-boxed, so slow and fast
//!   systems get the same wall time and the same chance of meeting a noisy neighbour.
//! - read.rs: workload 5 (bulk load, read back one stream of 1,000 events, full replay, verify).
//! - reopen.rs: workload 6 (reopen after SIGKILL, in a fresh process).
//! - http.rs: durable appends over HTTP to `cairn serve`, beside `redis-benchmark` XADD
//!   (issue 5), at [`Scale::http_clients`] concurrent clients.

pub mod append;
pub mod http;
pub mod read;
pub mod reopen;

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// `&'static str` behind an alias: serde's derive would otherwise make every `Scale` borrow
/// from its input for `'static`, although [`scale_name`] maps the name onto a constant.
pub type ScaleName = &'static str;

/// How big and how often. Saved in benchmarks.json, so that a regenerated report states the
/// sizes the numbers were measured at, not the current ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    /// `quick` or `full`: the flag that selected this scale.
    #[serde(deserialize_with = "scale_name")]
    pub name: ScaleName,
    /// Repetitions of every measurement; tables show medians.
    pub reps: usize,
    /// Wall time of one time-boxed append run.
    pub run_for: Duration,
    /// Concurrency levels of workload 2.
    pub appenders: [usize; 3],
    /// Concurrency of the concurrent variant of workload 4.
    pub checked_appenders: usize,
    /// Events per commit in workload 3.
    pub batch_sizes: [usize; 2],
    /// Streams in cairn's large workload-5 log (each with `stream_events` events): the size
    /// issue 2's replay, verify and reopen goals are stated at. Workload 6 reopens this log.
    pub streams: usize,
    /// Streams in the side-by-side workload-5 data set that every system loads. Smaller than
    /// `streams` in `--full`: loading 10 million events into four peers on the shared 2-core
    /// machine takes about half an hour, and the read costs per event do not depend on it.
    pub peer_streams: usize,
    pub stream_events: usize,
    /// Repetitions of the reads of cairn's large workload-5 log (each replays and verifies
    /// every event of it once).
    pub large_reps: usize,
    /// Stream read-backs per repetition in workload 5.
    pub stream_reads: usize,
    /// Kill-and-reopen cycles in workload 6.
    pub reopens: usize,
    /// Concurrent clients of the HTTP workload (each with one kept-alive connection).
    pub http_clients: [usize; 2],
}

impl Scale {
    pub const QUICK: Scale = Scale {
        name: "quick",
        reps: 3,
        run_for: Duration::from_millis(500),
        appenders: [8, 64, 256],
        checked_appenders: 64,
        batch_sizes: [100, 1_000],
        streams: 300,
        peer_streams: 300,
        large_reps: 3,
        stream_events: 1_000,
        stream_reads: 20,
        reopens: 2,
        http_clients: [64, 1],
    };

    pub const FULL: Scale = Scale {
        name: "full",
        reps: 5,
        run_for: Duration::from_secs(3),
        appenders: [8, 64, 256],
        checked_appenders: 64,
        batch_sizes: [100, 1_000],
        streams: 10_000,
        peer_streams: 1_000,
        large_reps: 3,
        stream_events: 1_000,
        stream_reads: 100,
        reopens: 3,
        http_clients: [64, 1],
    };

    /// Events in cairn's large workload-5 log (the one workload 6 reopens).
    pub fn log_events(&self) -> u64 {
        (self.streams * self.stream_events) as u64
    }

    /// Events in the side-by-side workload-5 data set.
    pub fn peer_log_events(&self) -> u64 {
        (self.peer_streams * self.stream_events) as u64
    }

    /// Table-id prefix of the large cairn-only log's workload-5 tables, when there is one.
    pub fn large_label(&self) -> Option<String> {
        (self.streams > self.peer_streams).then(|| format!("W5 {}M", self.log_events() / 1_000_000))
    }
}

/// Reads a saved scale's name as one of the two the harness knows (the field is `&'static str`
/// so that `Scale` stays `Copy` and its constants stay constants).
fn scale_name<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let name = String::deserialize(d)?;
    [Scale::QUICK.name, Scale::FULL.name].into_iter().find(|n| *n == name).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown scale name {name:?} (expected {:?} or {:?})",
            Scale::QUICK.name,
            Scale::FULL.name
        ))
    })
}
