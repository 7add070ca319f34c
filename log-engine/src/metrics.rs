//! The log's counters: what the writer and syncer count as they commit (fsync latency, events
//! per fdatasync, commits, bytes), and the [`Metrics`] snapshot a server exports. Counting is
//! relaxed atomics on the commit path; nothing here takes a lock.

use std::time::Duration;

/// Counters for metrics export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub commits: u64,
    pub events: u64,
    pub bytes: u64,
    pub fsyncs: u64,
    pub fsync_seconds_total: f64_bits::F64,
    /// Counts per bucket; bounds in [`crate::FSYNC_BUCKETS_US`], the last bucket is +Inf.
    pub fsync_buckets: Vec<u64>,
    /// Events made durable by fdatasyncs since open.
    pub events_synced: u64,
    /// Events made durable per fdatasync: counts per bucket, bounds in
    /// [`crate::SYNC_BATCH_BUCKETS`], the last bucket is +Inf.
    pub sync_batch_buckets: Vec<u64>,
}

/// `f64` wrapper so that [`Metrics`] can be `Eq`.
pub mod f64_bits {
    /// A float compared by bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct F64(pub u64);
    impl F64 {
        pub fn get(self) -> f64 {
            f64::from_bits(self.0)
        }
    }
}

/// Counters the server exports as metrics.
#[derive(Debug, Default)]
pub(crate) struct MetricsInner {
    pub commits: std::sync::atomic::AtomicU64,
    pub events: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
    pub fsyncs: std::sync::atomic::AtomicU64,
    pub fsync_nanos: std::sync::atomic::AtomicU64,
    /// fsync latency histogram, bucket upper bounds in [`FSYNC_BUCKETS_US`].
    pub fsync_buckets: [std::sync::atomic::AtomicU64; FSYNC_BUCKETS_US.len() + 1],
    /// Events made durable by fdatasyncs (the histogram's sum).
    pub events_synced: std::sync::atomic::AtomicU64,
    /// Events made durable per fdatasync, bucket upper bounds in [`SYNC_BATCH_BUCKETS`].
    pub sync_batch_buckets: [std::sync::atomic::AtomicU64; SYNC_BATCH_BUCKETS.len() + 1],
}

/// Upper bounds (microseconds) of the fsync latency histogram's buckets.
pub const FSYNC_BUCKETS_US: [u64; 10] = [50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 250_000];

/// Upper bounds (events) of the histogram of events made durable by one fdatasync.
pub const SYNC_BATCH_BUCKETS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1_024, 4_096, 16_384];

impl MetricsInner {
    /// The counters as they are now.
    pub(crate) fn snapshot(&self) -> Metrics {
        use std::sync::atomic::Ordering::Relaxed;
        Metrics {
            commits: self.commits.load(Relaxed),
            events: self.events.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            fsyncs: self.fsyncs.load(Relaxed),
            fsync_seconds_total: f64_bits::F64((self.fsync_nanos.load(Relaxed) as f64 / 1e9).to_bits()),
            fsync_buckets: self.fsync_buckets.iter().map(|b| b.load(Relaxed)).collect(),
            events_synced: self.events_synced.load(Relaxed),
            sync_batch_buckets: self.sync_batch_buckets.iter().map(|b| b.load(Relaxed)).collect(),
        }
    }

    pub(crate) fn record_fsync(&self, took: Duration, events: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let bucket = SYNC_BATCH_BUCKETS.iter().position(|&b| events <= b).unwrap_or(SYNC_BATCH_BUCKETS.len());
        self.sync_batch_buckets[bucket].fetch_add(1, Relaxed);
        self.events_synced.fetch_add(events, Relaxed);
        self.fsyncs.fetch_add(1, Relaxed);
        // A fdatasync longer than 584 years saturates rather than wraps.
        self.fsync_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = FSYNC_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(FSYNC_BUCKETS_US.len());
        self.fsync_buckets[bucket].fetch_add(1, Relaxed);
    }

    pub(crate) fn record_commit(&self, events: u64, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.commits.fetch_add(1, Relaxed);
        self.events.fetch_add(events, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
}
