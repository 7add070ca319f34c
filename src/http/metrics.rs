//! The server's metrics and their exposition (`GET /metrics`), in the OpenMetrics text format
//! that `prometheus-client` writes and Prometheus scrapes.
//!
//! The server's own counters (requests by route and status, appends over HTTP, subscribers,
//! connections) are live `prometheus-client` metrics. What the log, the views and the
//! checkpoints already count (commits, events, bytes, the fsync and sync-batch histograms,
//! view lag, checkpoint age) is read at scrape time and written as constant metrics beside
//! them: the log keeps its histograms as per-bucket counts of its own (it has no dependency
//! on a metrics crate), which [`BucketCounts`] hands to the encoder as they are.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log_engine::{Log, Position, FSYNC_BUCKETS_US, SYNC_BATCH_BUCKETS};
use parking_lot::Mutex;
use projections::RunnerStatus;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

/// A request's route template and method: a bounded set, whatever paths clients send.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// Upper bounds (seconds) of the request-latency histogram's buckets: from a cached read to a
/// slow fdatasync under load, and the long waits of long polls and `wait_ms`.
pub const REQUEST_SECONDS_BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(REQUEST_SECONDS_BUCKETS)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViewLabels {
    view: &'static str,
}

/// What the server counts. Cheap to record from any thread: counters and gauges are atomics,
/// requests a map keyed by matched route (a bounded set) and status.
#[derive(Debug)]
pub struct ServerMetrics {
    started: Instant,
    requests: Family<RequestLabels, Counter>,
    /// Time to each request's answer head, by route template and method.
    latency: LatencyFamily,
    append_requests: Counter,
    appended_events: Counter,
    /// Open SSE subscriptions.
    pub subscribers: Gauge,
    /// Open client connections, and connections closed at once because the cap was reached.
    pub connections: Gauge,
    pub connections_refused: Counter,
    /// Entries written to the access audit, and denials not written (beyond its rate bound).
    pub access_audit_entries: Counter,
    pub access_audit_dropped: Counter,
    /// The shared request-body budget, for its in-flight gauge (set when the server starts).
    pub body_limits: OnceLock<super::drain::BodyLimits>,
    /// The last verification's result and when it finished.
    verify_ok: Mutex<Option<(bool, SystemTime)>>,
    /// On a read replica (`--follow`): its follower, for the replica's lag (set at start).
    pub replica: OnceLock<std::sync::Arc<crate::replica::Follower>>,
    /// The last backup's and the last drill's result and when each finished.
    backup_ok: Mutex<Option<(bool, SystemTime)>>,
    drill_ok: Mutex<Option<(bool, SystemTime)>>,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics {
            started: Instant::now(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            append_requests: Counter::default(),
            appended_events: Counter::default(),
            subscribers: Gauge::default(),
            connections: Gauge::default(),
            connections_refused: Counter::default(),
            access_audit_entries: Counter::default(),
            access_audit_dropped: Counter::default(),
            body_limits: OnceLock::new(),
            verify_ok: Mutex::new(None),
            replica: OnceLock::new(),
            backup_ok: Mutex::new(None),
            drill_ok: Mutex::new(None),
        }
    }
}

/// What the views and checkpoints report at scrape time.
#[derive(Debug)]
pub struct ViewsReport {
    pub status: RunnerStatus,
    /// The newest checkpoint's position and age in seconds.
    pub checkpoint: Option<(Position, f64)>,
    /// `--archive`: what the archiver has done.
    pub archive: Option<crate::archive::ArchiveStatus>,
}

impl ServerMetrics {
    /// Counts a request by `route` (its template, never the raw path) and status, and its
    /// time to the answer's head.
    pub fn record_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { route: route.to_string(), status }).inc();
        self.latency
            .get_or_create(&RouteLabels { method: method.to_string(), route: route.to_string() })
            .observe(seconds);
    }

    pub fn record_append(&self, events: usize) {
        self.append_requests.inc();
        self.appended_events.inc_by(events as u64);
    }

    pub fn record_verify(&self, ok: bool) {
        *self.verify_ok.lock() = Some((ok, SystemTime::now()));
    }

    pub fn record_backup(&self, ok: bool) {
        *self.backup_ok.lock() = Some((ok, SystemTime::now()));
    }

    pub fn record_drill(&self, ok: bool) {
        *self.drill_ok.lock() = Some((ok, SystemTime::now()));
    }

    /// The exposition: the log's, the server's, and the views' and checkpoints' metrics.
    pub fn render(&self, log: &Log, views: &ViewsReport) -> String {
        let mut r = Registry::default();
        let m = log.metrics();
        let stats = log.stats();
        // Counters are registered without `_total`: the encoder appends it.
        r.register("cairn_log_commits", "Group commits written by the log", ConstCounter::new(m.commits));
        r.register(
            "cairn_log_appended_events",
            "Events appended since the log was opened",
            ConstCounter::new(m.events),
        );
        r.register(
            "cairn_log_appended_bytes",
            "Record bytes written since the log was opened",
            ConstCounter::new(m.bytes),
        );
        let mean_batch = if m.commits == 0 { 0.0 } else { m.events as f64 / m.commits as f64 };
        r.register(
            "cairn_log_commit_batch_events_mean",
            "Mean events per group commit since open",
            f64_gauge(mean_batch),
        );
        let fsync_bounds = FSYNC_BUCKETS_US.iter().map(|&us| us as f64 / 1e6);
        r.register(
            "cairn_log_fsync_seconds",
            "Latency of the log's fdatasync calls",
            BucketCounts::new(fsync_bounds, &m.fsync_buckets, m.fsync_seconds_total.get(), m.fsyncs),
        );
        // Group commit at work: how many events each fdatasync made durable.
        let batch_bounds = SYNC_BATCH_BUCKETS.iter().map(|&n| n as f64);
        r.register(
            "cairn_log_sync_batch_events",
            "Events made durable by one fdatasync",
            BucketCounts::new(batch_bounds, &m.sync_batch_buckets, m.events_synced as f64, m.fsyncs),
        );
        r.register("cairn_log_events", "Events in the log (head position + 1)", int_gauge(stats.events));
        r.register("cairn_log_streams", "Streams in the log", int_gauge(stats.streams));
        r.register("cairn_log_segments", "Segment files", int_gauge(stats.segments));
        r.register("cairn_log_record_bytes", "Bytes of records in all segments", int_gauge(stats.record_bytes));
        r.register(
            "cairn_log_poisoned",
            "1 if a failed write or fdatasync poisoned the log",
            ConstGauge::new(i64::from(log.poisoned().is_some())),
        );
        r.register("cairn_http_append_requests", "Successful append requests", self.append_requests.clone());
        r.register("cairn_http_appended_events", "Events appended through the HTTP API", self.appended_events.clone());
        r.register("cairn_subscribers", "Open SSE subscriptions", self.subscribers.clone());
        r.register("cairn_http_connections", "Open client connections", self.connections.clone());
        r.register(
            "cairn_http_connections_refused",
            "Connections closed at once because --max-connections were open",
            self.connections_refused.clone(),
        );
        r.register(
            "cairn_access_audit_entries",
            "Entries written to the access audit ($audit:authorization): denials and admin actions",
            self.access_audit_entries.clone(),
        );
        r.register(
            "cairn_access_audit_dropped",
            "Denied requests not written to the access audit: beyond ACCESS_DENIALS_PER_SECOND_MAX a second",
            self.access_audit_dropped.clone(),
        );
        r.register(
            "cairn_http_body_bytes_in_flight",
            "Memory charged to in-flight request bodies, 3 bytes per body byte (bounded by --body-budget)",
            int_gauge(self.body_limits.get().map_or(0, super::drain::BodyLimits::in_flight)),
        );
        r.register("cairn_http_requests", "HTTP requests by route and status", self.requests.clone());
        r.register(
            "cairn_http_request_duration_seconds",
            "Time from a request's arrival to its answer's head, by route template and method",
            self.latency.clone(),
        );
        let outcomes = [
            ("verify", "verification", "damage found", &self.verify_ok),
            ("backup", "backup", "it failed", &self.backup_ok),
            ("drill", "recovery drill", "it failed or found a mismatch", &self.drill_ok),
        ];
        for (name, what, failed, outcome) in outcomes {
            let (ok, at) = match *outcome.lock() {
                Some((ok, at)) => (i64::from(ok), at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())),
                None => (-1, 0.0),
            };
            r.register(
                format!("cairn_{name}_ok"),
                format!("Result of the last {what}: 1 ok, 0 {failed}, -1 none yet"),
                ConstGauge::new(ok),
            );
            r.register(
                format!("cairn_{name}_last_timestamp_seconds"),
                format!("When the last {what} finished (unix time)"),
                f64_gauge(at),
            );
        }
        r.register(
            "cairn_disk_used_bytes",
            "Bytes of every file in the data directory",
            int_gauge(crate::store::dir_bytes(log.dir())),
        );
        if let Some(free) = crate::store::disk_free(log.dir()) {
            r.register(
                "cairn_disk_free_bytes",
                "Bytes free for the server on the data directory's file system",
                int_gauge(free),
            );
        }
        r.register(
            "cairn_uptime_seconds",
            "Seconds since the server started",
            f64_gauge(self.started.elapsed().as_secs_f64()),
        );
        register_views(&mut r, views);
        if let Some(follower) = self.replica.get() {
            register_replica(&mut r, follower);
        }
        if let Some(archive) = &views.archive {
            register_archive(&mut r, archive);
        }
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &r).expect("writing to a String cannot fail");
        out
    }
}

/// The archive's lag, progress and failures (`serve --archive`).
fn register_archive(r: &mut Registry, a: &crate::archive::ArchiveStatus) {
    r.register(
        "cairn_archive_lag_events",
        "Committed events not yet in the archive (the active segment's, and sealed ones not uploaded)",
        int_gauge(a.lag_events),
    );
    r.register(
        "cairn_archive_position",
        "The last position the archive holds (-1: none yet)",
        ConstGauge::new(a.archived_position.map_or(-1, |p| i64::try_from(p).unwrap_or(i64::MAX))),
    );
    r.register("cairn_archive_segments", "Sealed segments in the archive", int_gauge(a.segments_archived));
    r.register(
        "cairn_archive_segments_reshipped",
        "Archived segments shipped again because a scavenge rewrote them",
        ConstCounter::new(a.segments_reshipped),
    );
    r.register("cairn_archive_checkpoints", "Checkpoints uploaded to the archive", int_gauge(a.checkpoints_archived));
    r.register("cairn_archive_uploaded_bytes", "Bytes uploaded to the archive", ConstCounter::new(a.bytes_uploaded));
    r.register(
        "cairn_archive_failures",
        "Archive rounds that failed (retried with backoff)",
        ConstCounter::new(a.failures),
    );
    r.register(
        "cairn_archive_consecutive_failures",
        "Archive rounds failed in a row (0 once one succeeds)",
        int_gauge(a.consecutive_failures),
    );
    r.register(
        "cairn_archive_last_success_timestamp_seconds",
        "When an archive round last succeeded (unix time; 0: never)",
        f64_gauge(a.last_success_ms.map_or(0.0, |ms| ms as f64 / 1e3)),
    );
    r.register(
        "cairn_archive_stopped",
        "1 once archiving stopped for good (see /healthz)",
        ConstGauge::new(i64::from(a.stopped)),
    );
    let t = &a.tiering;
    r.register(
        "cairn_tier_segments_local",
        "Sealed segments whose file is on the local disk",
        int_gauge(t.segments_local),
    );
    r.register(
        "cairn_tier_segments_evicted",
        "Sealed segments evicted to the archive (a stub left locally)",
        int_gauge(t.segments_evicted),
    );
    r.register(
        "cairn_tier_evictions",
        "Segments the archiver evicted since the server started",
        ConstCounter::new(a.segments_evicted),
    );
    r.register(
        "cairn_tier_cache_hits",
        "Reads of an evicted segment served from the cache",
        ConstCounter::new(t.cache_hits),
    );
    r.register(
        "cairn_tier_cache_misses",
        "Reads of an evicted segment that fetched it from the archive",
        ConstCounter::new(t.cache_misses),
    );
    r.register("cairn_tier_cache_bytes", "Bytes of fetched segments held in the cache", int_gauge(t.cache_bytes));
    r.register(
        "cairn_tier_fetched_bytes",
        "Bytes of evicted segments fetched from the archive",
        ConstCounter::new(t.fetched_bytes),
    );
}

/// The views' lag and apply errors, the runner's state, and the newest checkpoint.
fn register_views(r: &mut Registry, views: &ViewsReport) {
    let lag = Family::<ViewLabels, Gauge>::default();
    let errors = Family::<ViewLabels, Counter>::default();
    for v in &views.status.views {
        lag.get_or_create(&ViewLabels { view: v.name }).set(saturating_i64(v.lag));
        errors.get_or_create(&ViewLabels { view: v.name }).inc_by(v.errors);
    }
    r.register("cairn_view_lag_events", "Committed events a view has not applied yet", lag);
    r.register("cairn_view_apply_errors", "Events a view understood but could not apply", errors);
    r.register(
        "cairn_views_stopped",
        "1 if the projection runner has stopped",
        ConstGauge::new(i64::from(views.status.stopped.is_some())),
    );
    let (age, position) = match views.checkpoint {
        Some((p, age)) => (age, saturating_i64(p.0)),
        None => (-1.0, -1),
    };
    r.register("cairn_checkpoint_age_seconds", "Age of the newest checkpoint (-1: none)", f64_gauge(age));
    r.register(
        "cairn_checkpoint_position",
        "Log position of the newest checkpoint (-1: none)",
        ConstGauge::new(position),
    );
}

/// A read replica's lag behind its leader and the state of its link.
fn register_replica(r: &mut Registry, follower: &crate::replica::Follower) {
    let status = follower.status();
    r.register(
        "cairn_replica_lag_events",
        "Events the leader had when last asked that this replica does not hold yet",
        int_gauge(follower.lag_events()),
    );
    r.register(
        "cairn_replica_lag_seconds",
        "Seconds since this replica last held everything its leader had (0 while caught up)",
        f64_gauge(follower.lag_seconds()),
    );
    r.register(
        "cairn_replica_contact_age_seconds",
        "Seconds since the leader last answered (-1: never)",
        f64_gauge(follower.contact_age().unwrap_or(-1.0)),
    );
    r.register(
        "cairn_replica_shipped_bytes",
        "Segment bytes taken from the leader since start",
        ConstCounter::new(status.shipped_bytes),
    );
    r.register(
        "cairn_replica_refused_rounds",
        "Rounds whose shipped bytes failed a check (CRC, position or chain) and were not taken",
        ConstCounter::new(status.refused),
    );
    r.register(
        "cairn_replica_error",
        "1 if the last round of following the leader failed (the reason is in /healthz and the log)",
        ConstGauge::new(i64::from(status.last_error.is_some())),
    );
}

fn saturating_i64(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

fn int_gauge(value: impl TryInto<i64>) -> ConstGauge<i64> {
    ConstGauge::new(saturating_i64(value))
}

fn f64_gauge(value: f64) -> ConstGauge<f64> {
    ConstGauge::new(value)
}

/// A histogram the log keeps itself: a count per bucket (not cumulative), the last one above
/// every bound, with the sum and the count of observations.
#[derive(Debug)]
struct BucketCounts {
    /// (upper bound, observations in this bucket only); the last bound is +Inf.
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

impl BucketCounts {
    fn new(bounds: impl Iterator<Item = f64>, counts: &[u64], sum: f64, count: u64) -> BucketCounts {
        let buckets = bounds
            .chain(std::iter::once(f64::INFINITY))
            .enumerate()
            .map(|(i, bound)| (bound, counts.get(i).copied().unwrap_or(0)))
            .collect();
        BucketCounts { buckets, sum, count }
    }
}

impl EncodeMetric for BucketCounts {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_the_log_counters_and_a_cumulative_histogram() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), log_engine::Options::default()).unwrap();
        for _ in 0..3 {
            log.append("s", log_engine::ExpectedVersion::Any, vec![log_engine::NewEvent::bytes("T", vec![1])]).unwrap();
        }
        let metrics = ServerMetrics::default();
        metrics.record_request("GET", "/v1/head", 200, 0.003);
        metrics.record_append(3);
        let status =
            RunnerStatus { head: None, applied_through: None, views: vec![], recent_errors: vec![], stopped: None };
        let views = ViewsReport { status, checkpoint: None, archive: None };
        let text = metrics.render(&log, &views);
        assert!(text.contains("cairn_log_appended_events_total 3"), "{text}");
        assert!(text.contains("cairn_http_appended_events_total 3"), "{text}");
        assert!(text.contains("cairn_http_requests_total{route=\"/v1/head\",status=\"200\"} 1"), "{text}");
        let bucket = |le: &str| {
            format!("cairn_http_request_duration_seconds_bucket{{le=\"{le}\",method=\"GET\",route=\"/v1/head\"}}")
        };
        assert!(text.contains(&format!("{} 0", bucket("0.0025"))), "{text}");
        assert!(text.contains(&format!("{} 1", bucket("0.005"))), "{text}");
        assert!(text.contains("cairn_verify_ok -1"), "{text}");
        assert!(text.contains("cairn_checkpoint_position -1"), "{text}");
        let count: u64 =
            text.lines().find_map(|l| l.strip_prefix("cairn_log_fsync_seconds_count ")).unwrap().parse().unwrap();
        let inf: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("cairn_log_fsync_seconds_bucket{le=\"+Inf\"} "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(count >= 3, "three durable appends need at least three fsyncs: {text}");
        assert_eq!(inf, count, "the +Inf bucket counts every fsync");
        log.close();
    }
}
