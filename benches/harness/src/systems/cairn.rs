//! cairn's log engine, embedded, with `Durability::Sync`: every acknowledged append is durable.
//!
//! Single appenders use the blocking API on their own thread; concurrent appenders are async
//! tasks on a tokio runtime with one worker per core, calling `append_async`, so that the
//! writer thread's group commit can share one fdatasync among everything queued.
//! Each measurement notes events per fdatasync and the mean fdatasync time, read from
//! `Log::metrics()` before and after the run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log_engine::{
    Direction, Durability, ExpectedVersion, Log, NewEvent, Options, Position, StreamAppend, StreamName, StreamVersion,
};

use super::{finish, Append, Client, Payloads, SyncCounters, System, EVENT_TYPE};
use crate::error::{BenchError, Result};
use crate::stats::Measurement;

const NAME: &str = "cairn";

#[derive(Debug)]
pub struct Cairn {
    log: Log,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl Cairn {
    pub fn open(dir: &Path) -> Result<Cairn> {
        let log = Log::open(dir, Options { durability: Durability::Sync, ..Default::default() })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| BenchError::system(NAME, "start a tokio runtime", e))?;
        Ok(Cairn { log, runtime: Arc::new(runtime) })
    }
}

/// Bytes one 1-event commit of [`super::EVENT_BYTES`] writes (frame and all), measured on a
/// throwaway log: the raw baseline writes exactly this many bytes per commit.
pub fn frame_bytes_per_event(scratch: &Path, payloads: &Payloads) -> Result<u64> {
    const PROBE_EVENTS: u64 = 64;
    let log = Log::open(scratch, Options { durability: Durability::None, ..Default::default() })?;
    for i in 0..PROBE_EVENTS {
        log.append(
            "probe-stream-0",
            ExpectedVersion::Any,
            vec![NewEvent::bytes(EVENT_TYPE, payloads.get(i).to_vec())],
        )?;
    }
    let m = log.metrics();
    log.close();
    Ok(m.bytes / m.events.max(1))
}

fn to_new_events(events: &[&[u8]]) -> Vec<NewEvent> {
    events.iter().map(|e| NewEvent::bytes(EVENT_TYPE, e.to_vec())).collect()
}

fn expected(first_version: u64, checked: bool) -> ExpectedVersion {
    match (checked, first_version) {
        (false, _) => ExpectedVersion::Any,
        (true, 0) => ExpectedVersion::NoStream,
        (true, v) => ExpectedVersion::Exact(StreamVersion(v - 1)),
    }
}

impl System for Cairn {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> String {
        "cairn log-engine (this checkout), embedded, Durability::Sync".into()
    }

    fn concurrency_model(&self) -> &'static str {
        "async tasks calling `append_async` on a tokio runtime (one worker per core); one writer thread group-commits with one pwrite + one fdatasync per group"
    }

    fn client(&self) -> Result<Box<dyn Client>> {
        Ok(Box::new(CairnClient { log: self.log.clone() }))
    }

    fn concurrent(
        &self,
        streams: &str,
        appenders: usize,
        run_for: Duration,
        checked: bool,
        payloads: &Payloads,
    ) -> Result<Measurement> {
        let payloads: Arc<Vec<Vec<u8>>> =
            Arc::new((0..appenders as u64 * 8).map(|i| payloads.get(i).to_vec()).collect());
        let start = Instant::now();
        let results = self.runtime.block_on(async {
            let tasks: Vec<_> = (0..appenders)
                .map(|i| {
                    let log = self.log.clone();
                    let stream = format!("{streams}-{i}");
                    let payloads = payloads.clone();
                    tokio::spawn(async move {
                        let deadline = start + run_for;
                        let mut latencies = Vec::new();
                        let mut version = 0u64;
                        while Instant::now() < deadline {
                            let started = Instant::now();
                            let data = payloads[(i * 8 + (version % 8) as usize) % payloads.len()].clone();
                            log.append_async(
                                &stream,
                                expected(version, checked),
                                vec![NewEvent::bytes(EVENT_TYPE, data)],
                            )
                            .await?;
                            latencies.push(started.elapsed().as_nanos() as u64);
                            version += 1;
                        }
                        Ok::<_, BenchError>((latencies, Instant::now()))
                    })
                })
                .collect();
            let mut results = Vec::with_capacity(tasks.len());
            for t in tasks {
                results.push(t.await.unwrap_or_else(|e| Err(BenchError::system(NAME, "run an appender task", e))));
            }
            results
        });
        finish(results, start)
    }

    fn sync_counters(&self) -> Option<SyncCounters> {
        let m = self.log.metrics();
        Some(SyncCounters {
            events: m.events,
            bytes: m.bytes,
            fsyncs: m.fsyncs,
            fsync_seconds: m.fsync_seconds_total.get(),
        })
    }

    fn verify_supported(&self) -> bool {
        true
    }

    fn verify(&self) -> Option<Result<Measurement>> {
        let started = Instant::now();
        let report = match self.log.verify(None, |_| {}) {
            Ok(report) => report,
            Err(e) => return Some(Err(e.into())),
        };
        if !report.ok {
            return Some(Err(BenchError::Check {
                system: NAME,
                workload: "verify".into(),
                detail: report.detail.unwrap_or_else(|| "the chain did not verify".into()),
            }));
        }
        Some(Ok(Measurement {
            events: report.events,
            elapsed: started.elapsed(),
            latencies_ns: Vec::new(),
            note: None,
            syncs: None,
            cpu: None,
            reported: None,
        }))
    }
}

#[derive(Debug)]
struct CairnClient {
    log: Log,
}

impl Client for CairnClient {
    fn append(&mut self, appends: &[Append<'_>], checked: bool) -> Result<()> {
        if let [one] = appends {
            self.log.append(one.stream, expected(one.first_version, checked), to_new_events(one.events))?;
            return Ok(());
        }
        let multi = appends
            .iter()
            .map(|a| {
                Ok(StreamAppend {
                    stream: StreamName::new(a.stream)?,
                    expected: expected(a.first_version, checked),
                    events: to_new_events(a.events),
                })
            })
            .collect::<Result<Vec<_>, log_engine::Error>>()?;
        self.log.append_multi(multi)?;
        Ok(())
    }

    fn read_stream(&mut self, stream: &str) -> Result<u64> {
        let events = self.log.read_stream(stream, None, usize::MAX, Direction::Forward)?;
        Ok(events.len() as u64)
    }

    fn replay(&mut self) -> Result<u64> {
        let mut bytes = 0usize;
        // `scan` borrows each event from the mapped segment (CRC-checked, decoded, erasures
        // masked) as SQLite's replay borrows each row's blob; `for_each` would copy it out.
        let n = self.log.scan(Position(0), u64::MAX, |event| {
            // Touch the payload so that the decode cannot be skipped.
            bytes += event.data.len();
            true
        })?;
        std::hint::black_box(bytes);
        Ok(n)
    }
}
