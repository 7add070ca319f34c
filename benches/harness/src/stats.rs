//! Small statistics over measurements: medians across repetitions and latency percentiles.
//!
//! Percentiles use the nearest-rank method on the sorted samples, so a reported p99 is a
//! latency that was actually observed. Nothing here allocates more than one sorted copy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One timed run of a workload on one system.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Events committed (or read) in the run.
    pub events: u64,
    /// Wall time of the run, from the start barrier to the last operation's end.
    pub elapsed: Duration,
    /// Per-operation latencies in nanoseconds (empty when the run has no per-operation timing).
    pub latencies_ns: Vec<u64>,
    /// A remark that holds for every run of this kind (e.g. bytes per raw commit).
    pub note: Option<String>,
    /// What the engine counted during the run (cairn only).
    pub syncs: Option<SyncStats>,
    /// CPU time the harness process used during the run (all threads).
    pub cpu: Option<Duration>,
    /// Latency percentiles a peer's own tool reported (`redis-benchmark`), for runs without
    /// per-operation samples.
    pub reported: Option<ReportedLatency>,
}

/// Percentiles measured by someone else's tool, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportedLatency {
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Group-commit behaviour of a run, from the engine's own counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncStats {
    pub events_per_sync: f64,
    pub mean_sync_us: f64,
}

impl Measurement {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    pub fn summary(&self) -> Summary {
        let mut sorted = self.latencies_ns.clone();
        sorted.sort_unstable();
        let us = |p: f64| percentile(&sorted, p).map(|ns| ns as f64 / 1_000.0);
        Summary {
            events_per_second: self.events_per_second(),
            p50_us: us(50.0).or(self.reported.map(|r| r.p50_us)),
            p99_us: us(99.0).or(self.reported.map(|r| r.p99_us)),
            p999_us: us(99.9),
            seconds: self.elapsed.as_secs_f64(),
            events_per_sync: self.syncs.map(|s| s.events_per_sync),
            sync_us: self.syncs.map(|s| s.mean_sync_us),
            cpu_us_per_event: self.cpu.filter(|_| self.events > 0).map(|c| c.as_secs_f64() * 1e6 / self.events as f64),
            cpu_seconds: self.cpu.map(|c| c.as_secs_f64()),
        }
    }
}

/// What a table shows of one run (and what benchmarks.json keeps of it: no raw samples).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub events_per_second: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub seconds: f64,
    pub events_per_sync: Option<f64>,
    pub sync_us: Option<f64>,
    /// Process CPU time per event, microseconds.
    pub cpu_us_per_event: Option<f64>,
    /// Process CPU time of the run, seconds.
    pub cpu_seconds: Option<f64>,
}

impl Summary {
    /// The field-wise median of several runs' summaries.
    pub fn median_of(runs: &[Summary]) -> Option<Summary> {
        if runs.is_empty() {
            return None;
        }
        let opt = |f: fn(&Summary) -> Option<f64>| median(&runs.iter().filter_map(f).collect::<Vec<_>>());
        Some(Summary {
            events_per_second: median(&runs.iter().map(|s| s.events_per_second).collect::<Vec<_>>())?,
            p50_us: opt(|s| s.p50_us),
            p99_us: opt(|s| s.p99_us),
            p999_us: opt(|s| s.p999_us),
            seconds: median(&runs.iter().map(|s| s.seconds).collect::<Vec<_>>())?,
            events_per_sync: opt(|s| s.events_per_sync),
            sync_us: opt(|s| s.sync_us),
            cpu_us_per_event: opt(|s| s.cpu_us_per_event),
            cpu_seconds: opt(|s| s.cpu_seconds),
        })
    }
}

/// Nearest-rank percentile of sorted samples; `None` when there are none.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // The epsilon keeps 99.9% of 1,000 at rank 999 despite 0.999 not being exact in binary.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Median of the values (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_are_observed_values() {
        let sorted: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(500));
        assert_eq!(percentile(&sorted, 99.0), Some(990));
        assert_eq!(percentile(&sorted, 99.9), Some(999));
        assert_eq!(percentile(&sorted, 100.0), Some(1000));
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn summary_median_is_field_wise() {
        let run = |eps: f64, p50: f64| Summary {
            events_per_second: eps,
            p50_us: Some(p50),
            p99_us: None,
            p999_us: None,
            seconds: 1.0,
            events_per_sync: None,
            sync_us: None,
            cpu_us_per_event: None,
            cpu_seconds: None,
        };
        let m = Summary::median_of(&[run(10.0, 9.0), run(30.0, 1.0), run(20.0, 5.0)]).expect("three runs");
        assert_eq!(m.events_per_second, 20.0);
        assert_eq!(m.p50_us, Some(5.0));
        assert_eq!(m.p99_us, None);
    }
}
