//! The server's counters and their Prometheus text exposition (`GET /metrics`).
//!
//! The log's own counters (commits, events, bytes, fsync latency histogram) come from
//! [`log_engine::Log::metrics`] at scrape time; this module adds what only the server knows:
//! requests by route and status, events appended over HTTP, live subscribers, and the result of
//! the last verification. Recording is lock-free except for the per-route table, which is a
//! short critical section with a bounded number of keys (routes are matched paths, not URLs).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use log_engine::{Log, FSYNC_BUCKETS_US, SYNC_BATCH_BUCKETS};

/// What the server counts.
#[derive(Debug)]
pub struct ServerMetrics {
    started: Instant,
    /// Requests by route, then by status.
    requests: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    append_requests: AtomicU64,
    appended_events: AtomicU64,
    pub subscribers: AtomicUsize,
    /// Open client connections, and connections closed at once because the cap was reached.
    pub connections: AtomicUsize,
    pub connections_refused: AtomicU64,
    /// Entries written to the access audit, and denials not written (beyond its rate bound).
    pub access_audit_entries: AtomicU64,
    pub access_audit_dropped: AtomicU64,
    /// The shared request-body budget, for its in-flight gauge (set when the server starts).
    pub body_limits: std::sync::OnceLock<super::drain::BodyLimits>,
    /// 1 ok, 0 damaged, -1 never run.
    verify_ok: Mutex<Option<(bool, SystemTime)>>,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics {
            started: Instant::now(),
            requests: Mutex::new(BTreeMap::new()),
            append_requests: AtomicU64::new(0),
            appended_events: AtomicU64::new(0),
            subscribers: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            connections_refused: AtomicU64::new(0),
            access_audit_entries: AtomicU64::new(0),
            access_audit_dropped: AtomicU64::new(0),
            body_limits: std::sync::OnceLock::new(),
            verify_ok: Mutex::new(None),
        }
    }
}

impl ServerMetrics {
    pub fn record_request(&self, route: &str, status: u16) {
        let mut requests = self.requests.lock();
        // Look up by &str first: the route's String is allocated once, not per request.
        let by_status = match requests.get_mut(route) {
            Some(by_status) => by_status,
            None => requests.entry(route.to_string()).or_default(),
        };
        *by_status.entry(status).or_insert(0) += 1;
    }

    pub fn record_append(&self, events: usize) {
        self.append_requests.fetch_add(1, Relaxed);
        self.appended_events.fetch_add(events as u64, Relaxed);
    }

    pub fn record_verify(&self, ok: bool) {
        *self.verify_ok.lock() = Some((ok, SystemTime::now()));
    }

    /// The Prometheus text exposition, with `extra` (view and checkpoint metrics) appended.
    pub fn render(&self, log: &Log, extra: &str) -> String {
        let mut out = String::with_capacity(4096);
        let m = log.metrics();
        let stats = log.stats();
        counter(&mut out, "cairn_log_commits_total", "Group commits written by the log.", m.commits);
        counter(&mut out, "cairn_log_appended_events_total", "Events appended since the log was opened.", m.events);
        counter(&mut out, "cairn_log_appended_bytes_total", "Record bytes written since the log was opened.", m.bytes);
        let mean_batch = if m.commits == 0 { 0.0 } else { m.events as f64 / m.commits as f64 };
        gauge(&mut out, "cairn_log_commit_batch_events_mean", "Mean events per group commit since open.", mean_batch);
        // fsync latency: the log keeps per-bucket counts; Prometheus wants cumulative ones.
        let _ = writeln!(out, "# HELP cairn_log_fsync_seconds Latency of the log's fdatasync calls.");
        let _ = writeln!(out, "# TYPE cairn_log_fsync_seconds histogram");
        let mut cumulative = 0u64;
        for (i, bound_us) in FSYNC_BUCKETS_US.iter().enumerate() {
            cumulative += m.fsync_buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "cairn_log_fsync_seconds_bucket{{le=\"{}\"}} {cumulative}", *bound_us as f64 / 1e6);
        }
        cumulative += m.fsync_buckets.get(FSYNC_BUCKETS_US.len()).copied().unwrap_or(0);
        let _ = writeln!(out, "cairn_log_fsync_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "cairn_log_fsync_seconds_sum {}", m.fsync_seconds_total.get());
        let _ = writeln!(out, "cairn_log_fsync_seconds_count {}", m.fsyncs);
        // Group commit at work: how many events each fdatasync made durable.
        let _ = writeln!(out, "# HELP cairn_log_sync_batch_events Events made durable by one fdatasync.");
        let _ = writeln!(out, "# TYPE cairn_log_sync_batch_events histogram");
        let mut cumulative = 0u64;
        for (i, bound) in SYNC_BATCH_BUCKETS.iter().enumerate() {
            cumulative += m.sync_batch_buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "cairn_log_sync_batch_events_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += m.sync_batch_buckets.get(SYNC_BATCH_BUCKETS.len()).copied().unwrap_or(0);
        let _ = writeln!(out, "cairn_log_sync_batch_events_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "cairn_log_sync_batch_events_sum {}", m.events_synced);
        let _ = writeln!(out, "cairn_log_sync_batch_events_count {}", m.fsyncs);
        gauge(&mut out, "cairn_log_events", "Events in the log (head position + 1).", stats.events as f64);
        gauge(&mut out, "cairn_log_streams", "Streams in the log.", stats.streams as f64);
        gauge(&mut out, "cairn_log_segments", "Segment files.", stats.segments as f64);
        gauge(&mut out, "cairn_log_record_bytes", "Bytes of records in all segments.", stats.record_bytes as f64);
        gauge(&mut out, "cairn_log_poisoned", "1 if a failed write or fdatasync poisoned the log.", {
            if log.poisoned().is_some() {
                1.0
            } else {
                0.0
            }
        });
        counter(
            &mut out,
            "cairn_http_append_requests_total",
            "Successful append requests.",
            self.append_requests.load(Relaxed),
        );
        counter(
            &mut out,
            "cairn_http_appended_events_total",
            "Events appended through the HTTP API.",
            self.appended_events.load(Relaxed),
        );
        gauge(&mut out, "cairn_subscribers", "Open SSE subscriptions.", self.subscribers.load(Relaxed) as f64);
        gauge(&mut out, "cairn_http_connections", "Open client connections.", self.connections.load(Relaxed) as f64);
        counter(
            &mut out,
            "cairn_http_connections_refused_total",
            "Connections closed at once because --max-connections were open.",
            self.connections_refused.load(Relaxed),
        );
        counter(
            &mut out,
            "cairn_access_audit_entries_total",
            "Entries written to the access audit ($audit:authorization): denials and admin actions.",
            self.access_audit_entries.load(Relaxed),
        );
        counter(
            &mut out,
            "cairn_access_audit_dropped_total",
            "Denied requests not written to the access audit: beyond ACCESS_DENIALS_PER_SECOND_MAX a second.",
            self.access_audit_dropped.load(Relaxed),
        );
        gauge(
            &mut out,
            "cairn_http_body_bytes_in_flight",
            "Memory charged to in-flight request bodies, 3 bytes per body byte (bounded by --body-budget).",
            self.body_limits.get().map_or(0, super::drain::BodyLimits::in_flight) as f64,
        );
        let _ = writeln!(out, "# HELP cairn_http_requests_total HTTP requests by route and status.");
        let _ = writeln!(out, "# TYPE cairn_http_requests_total counter");
        for (route, by_status) in self.requests.lock().iter() {
            for (status, n) in by_status {
                let _ =
                    writeln!(out, "cairn_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}", escape(route));
            }
        }
        let (verify, verify_at) = match *self.verify_ok.lock() {
            Some((ok, at)) => {
                (if ok { 1.0 } else { 0.0 }, at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()))
            }
            None => (-1.0, 0.0),
        };
        gauge(
            &mut out,
            "cairn_verify_ok",
            "Result of the last verification: 1 ok, 0 damage found, -1 none yet.",
            verify,
        );
        gauge(
            &mut out,
            "cairn_verify_last_timestamp_seconds",
            "When the last verification finished (unix time).",
            verify_at,
        );
        gauge(
            &mut out,
            "cairn_uptime_seconds",
            "Seconds since the server started.",
            self.started.elapsed().as_secs_f64(),
        );
        out.push_str(extra);
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

/// Writes a gauge with HELP and TYPE lines.
pub fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

/// Escapes a label value.
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
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
        metrics.record_request("/v1/head", 200);
        metrics.record_append(3);
        let text = metrics.render(&log, "");
        assert!(text.contains("cairn_log_appended_events_total 3"), "{text}");
        assert!(text.contains("cairn_http_appended_events_total 3"), "{text}");
        assert!(text.contains("cairn_http_requests_total{route=\"/v1/head\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("cairn_verify_ok -1"), "{text}");
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
