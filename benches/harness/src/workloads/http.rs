//! The HTTP workload (issue 5): durable appends over the network, `cairn serve` beside Redis.
//!
//! - cairn: the real `cairn serve` binary (the root workspace's `target/release/cairn`, built
//!   first when missing or stale) on a free loopback port and a fresh data directory in the
//!   scratch area, default durability (an append answers after its fdatasync). The load
//!   generator runs N clients on one thread (like `redis-benchmark`), each with one kept-alive
//!   HTTP/1.1 connection, POSTing one event of the shared 256-byte payloads (as `data_b64`) at a
//!   time to its own stream until the run's time is up. Before and after each run it reads the
//!   server's `/metrics` (events per fdatasync) and `/v1/head` (the log must have grown by
//!   exactly the acknowledged appends).
//! - Redis: `redis-benchmark` against the harness's own `redis-server` (appendonly yes,
//!   appendfsync always, Unix socket), `XADD` from N clients, each command one 256-character
//!   value to one of N streams; p50/p99 are the ones `redis-benchmark --csv` reports.
//!
//! What this module does not do: start Redis (systems/redis.rs) or lay out the report.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::error::{BenchError, Result};
use crate::stats::{Measurement, ReportedLatency, SyncStats};
use crate::systems::{Payloads, SyncCounters, EVENT_BYTES, EVENT_TYPE};

const CAIRN: &str = "cairn";
const REDIS: &str = "redis";

/// Requests of `redis-benchmark`'s calibration run per client: enough to estimate the rate
/// that sizes the measured run to the same wall time as cairn's.
const REDIS_CALIBRATION_PER_CLIENT: u64 = 50;

/// The repository root (the main workspace), from the harness's own manifest directory.
fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `target/release/cairn` of the main workspace, after `cargo build --release -p cairn` (which
/// rebuilds it only when it is missing or older than its sources); says which it was.
pub fn cairn_binary() -> Result<PathBuf> {
    let root = repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let binary = target.join("release").join("cairn");
    let before = modified(&binary);
    eprintln!(
        "http: {} {}: running `cargo build --release -p cairn` in {}",
        binary.display(),
        if before.is_some() { "exists" } else { "is missing" },
        root.display()
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "-p", "cairn", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .status()
        .map_err(|e| BenchError::system(CAIRN, "run cargo build --release -p cairn", e))?;
    if !status.success() {
        return Err(BenchError::system(CAIRN, "build the cairn binary", format!("cargo exited with {status}")));
    }
    let after = modified(&binary);
    if after.is_none() {
        return Err(BenchError::system(CAIRN, "build the cairn binary", format!("no binary at {}", binary.display())));
    }
    eprintln!(
        "http: cairn binary {}",
        match before {
            None => "built",
            Some(b) if after != Some(b) => "was stale and was rebuilt",
            Some(_) => "was up to date",
        }
    );
    Ok(binary)
}

/// What one request of the HTTP load carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One event, as a JSON append request.
    Single,
    /// This many events in one JSON append request.
    Batch(usize),
    /// This many events, one per line, in one NDJSON append request.
    Ndjson(usize),
}

impl Shape {
    /// Events one request appends.
    pub fn events(self) -> u64 {
        match self {
            Shape::Single => 1,
            Shape::Batch(n) | Shape::Ndjson(n) => n as u64,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Shape::Ndjson(_) => "application/x-ndjson",
            _ => "application/json",
        }
    }
}

/// The short commit of the repository's checkout (with `+dirty` when it has changes), which the
/// binary [`cairn_binary`] builds is made from; stated in the report.
pub fn checkout_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo_root())
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{commit}+dirty")
    } else {
        commit
    }
}

/// A running `cairn serve`; killed when dropped (its data directory is throwaway).
#[derive(Debug)]
pub struct CairnServer {
    child: Child,
    addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
}

impl CairnServer {
    /// Starts `cairn --data DIR serve --listen 127.0.0.1:0` on a fresh directory and waits for
    /// the address it prints.
    pub fn start(binary: &Path, dir: &Path) -> Result<CairnServer> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| BenchError::io("clear the server's data directory", dir, e))?;
        }
        let stderr_path = dir.with_extension("stderr.log");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| BenchError::io("create the server's log", &stderr_path, e))?;
        let mut child = Command::new(binary)
            .arg("--data")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| BenchError::system(CAIRN, "start cairn serve", format!("{}: {e}", binary.display())))?;
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut line);
        let addr = line.trim().strip_prefix("listening on http://").and_then(|a| a.parse().ok());
        let Some(addr) = addr.filter(|_| read.is_ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            return Err(BenchError::system(CAIRN, "start cairn serve", format!("it printed {line:?}; stderr: {log}")));
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BenchError::system(CAIRN, "start the load generator's runtime", e))?;
        Ok(CairnServer { child, addr, runtime })
    }

    /// The log's commit counters, from `/metrics`.
    fn sync_counters(&self) -> Result<SyncCounters> {
        let text = self.runtime.block_on(get(self.addr, "/metrics"))?;
        let value = |name: &str| -> Result<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .ok_or_else(|| BenchError::system(CAIRN, "read /metrics", format!("no {name} in it")))
        };
        Ok(SyncCounters {
            events: value("cairn_log_appended_events_total")? as u64,
            bytes: value("cairn_log_appended_bytes_total")? as u64,
            fsyncs: value("cairn_log_fsync_seconds_count")? as u64,
            fsync_seconds: value("cairn_log_fsync_seconds_sum")?,
        })
    }

    /// Events in the log, from `/v1/head`.
    fn events(&self) -> Result<u64> {
        let text = self.runtime.block_on(get(self.addr, "/v1/head"))?;
        // {"position": P|null, ...}: the head position is the last event's, so events = P + 1.
        let position = text.split("\"position\":").nth(1).map(|rest| rest.trim_start());
        match position {
            Some(rest) if rest.starts_with("null") => Ok(0),
            Some(rest) => rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse::<u64>().ok())
                .map(|p| p + 1)
                .ok_or_else(|| BenchError::system(CAIRN, "read /v1/head", format!("unexpected answer {text}"))),
            None => Err(BenchError::system(CAIRN, "read /v1/head", format!("unexpected answer {text}"))),
        }
    }

    /// `clients` kept-alive connections appending requests of `shape` to their own streams
    /// (`{streams}-{i}`) until `run_for` has passed.
    pub fn appends(
        &self,
        streams: &str,
        clients: usize,
        shape: Shape,
        run_for: Duration,
        payloads: &Payloads,
    ) -> Result<Measurement> {
        let bodies = Arc::new(request_bodies(payloads, shape));
        let (syncs_before, events_before) = (self.sync_counters()?, self.events()?);
        let cpu_before = crate::cpu::pid_cpu(self.child.id());
        let (outcomes, start) = self.runtime.block_on(async {
            let barrier = Arc::new(tokio::sync::Barrier::new(clients + 1));
            let mut tasks = Vec::with_capacity(clients);
            for i in 0..clients {
                let (addr, barrier, bodies) = (self.addr, barrier.clone(), bodies.clone());
                let path = format!("/v1/streams/{streams}-{i}/events");
                tasks.push(tokio::spawn(async move {
                    let mut send = connect(addr).await;
                    barrier.wait().await;
                    let deadline = Instant::now() + run_for;
                    let mut latencies = Vec::new();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let sender = send.as_mut().map_err(|e| BenchError::system(CAIRN, "connect", e.to_string()))?;
                        let body =
                            bodies[(n.wrapping_mul(31).wrapping_add(i as u64) % bodies.len() as u64) as usize].clone();
                        let started = Instant::now();
                        post(sender, addr, &path, shape.content_type(), body).await?;
                        latencies.push(started.elapsed().as_nanos() as u64);
                        n += 1;
                    }
                    Ok((latencies, Instant::now()))
                }));
            }
            barrier.wait().await;
            let start = Instant::now();
            let mut outcomes = Vec::with_capacity(clients);
            for task in tasks {
                outcomes.push(task.await.unwrap_or_else(|e| {
                    Err(BenchError::system(CAIRN, "run a client task", format!("it panicked: {e}")))
                }));
            }
            (outcomes, start)
        });
        let mut m = crate::systems::finish(outcomes, start)?;
        m.events *= shape.events();
        let cpu_after = crate::cpu::pid_cpu(self.child.id());
        let (syncs_after, events_after) = (self.sync_counters()?, self.events()?);
        if events_after - events_before != m.events {
            return Err(BenchError::system(
                CAIRN,
                "check the log after the run",
                format!(
                    "{} appends were acknowledged but the log grew by {} events",
                    m.events,
                    events_after - events_before
                ),
            ));
        }
        m.syncs = syncs_before.until(&syncs_after);
        // The server's CPU time, not the harness's (which is only the load generator here).
        m.cpu = cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b));
        Ok(m)
    }
}

impl Drop for CairnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Request bodies of `shape` over the pooled payloads, each event `{"type", "data_b64"}`:
/// 4,096 single-event bodies, or 16 bodies of a batch's events.
fn request_bodies(payloads: &Payloads, shape: Shape) -> Vec<Bytes> {
    let event = |i: u64| {
        let data = base64::engine::general_purpose::STANDARD.encode(payloads.get(i));
        format!(r#"{{"type":"{EVENT_TYPE}","data_b64":"{data}"}}"#)
    };
    let (bodies, per_body) = match shape {
        Shape::Single => (4096u64, 1u64),
        Shape::Batch(n) | Shape::Ndjson(n) => (16, n as u64),
    };
    (0..bodies)
        .map(|b| {
            let events = (0..per_body).map(|i| event(b * per_body + i));
            Bytes::from(match shape {
                Shape::Ndjson(_) => events.map(|e| e + "\n").collect::<String>(),
                _ => format!(r#"{{"events":[{}]}}"#, events.collect::<Vec<_>>().join(",")),
            })
        })
        .collect()
}

async fn connect(addr: SocketAddr) -> std::result::Result<SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("set TCP_NODELAY: {e}"))?;
    let (send, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(send)
}

async fn post(
    send: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: Bytes,
) -> Result<()> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .map_err(|e| BenchError::system(CAIRN, "build a request", e))?;
    send.ready().await.map_err(|e| BenchError::system(CAIRN, "wait for the connection", e))?;
    let response = send.send_request(request).await.map_err(|e| BenchError::system(CAIRN, "POST an event", e))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| BenchError::system(CAIRN, "read an answer", e))?;
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
        return Err(BenchError::system(CAIRN, "append over HTTP", format!("{path} answered {status}: {text}")));
    }
    Ok(())
}

/// A GET on a fresh connection; the answer's body as text.
async fn get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut send = connect(addr).await.map_err(|e| BenchError::system(CAIRN, "connect", e))?;
    let request = Request::builder()
        .uri(path)
        .header(header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| BenchError::system(CAIRN, "build a request", e))?;
    let response = send.send_request(request).await.map_err(|e| BenchError::system(CAIRN, "GET", e))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| BenchError::system(CAIRN, "read an answer", e))?;
    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    if status != StatusCode::OK {
        return Err(BenchError::system(CAIRN, "GET", format!("{path} answered {status}: {text}")));
    }
    Ok(text)
}

/// The Python client's load script, beside this file.
const PYTHON_LOAD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pyload.py");

/// The Python interpreter with `cairn_client` installed: `$CAIRN_BENCH_PYTHON`, else `python3`.
fn python() -> std::ffi::OsString {
    std::env::var_os("CAIRN_BENCH_PYTHON").unwrap_or_else(|| "python3".into())
}

/// Whether the Python client can be imported (the Python workloads are skipped otherwise).
pub fn python_client() -> std::result::Result<(), String> {
    let out = Command::new(python())
        .args(["-c", "import cairn_client, sys; print(sys.version.split()[0])"])
        .output()
        .map_err(|e| format!("run {:?}: {e}", python()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} cannot import cairn_client (pip install clients/python, or set CAIRN_BENCH_PYTHON): {}",
            python(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl CairnServer {
    /// The Python client appending one event per call for `run_for`: `AsyncClient` with
    /// `clients` concurrent calls (`asynchronous`), or the blocking `Client` on one connection.
    /// The process is the Python client's: its events/s and its latencies, checked against the
    /// log's growth like the other HTTP runs.
    pub fn python_appends(
        &self,
        streams: &str,
        clients: usize,
        asynchronous: bool,
        run_for: Duration,
    ) -> Result<Measurement> {
        let events_before = self.events()?;
        let cpu_before = crate::cpu::pid_cpu(self.child.id());
        let out = Command::new(python())
            .arg(PYTHON_LOAD)
            .arg(format!("http://{}", self.addr))
            .arg(if asynchronous { "async" } else { "sync" })
            .arg(format!("{}", run_for.as_secs_f64()))
            .arg(clients.to_string())
            .arg(streams)
            .output()
            .map_err(|e| BenchError::system(CAIRN, "run the Python client", e))?;
        let cpu_after = crate::cpu::pid_cpu(self.child.id());
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(BenchError::system(CAIRN, "run the Python client", format!("{}: {stderr}", out.status)));
        }
        // One line: EVENTS SECONDS CLIENT_CPU_SECONDS WARM_UP_EVENTS, then one latency in ns
        // per line.
        let mut lines = text.lines();
        let head: Vec<f64> = lines.next().unwrap_or("").split_whitespace().filter_map(|f| f.parse().ok()).collect();
        let [events, seconds, client_cpu, warm_up] = head[..] else {
            return Err(BenchError::system(CAIRN, "read the Python client's result", format!("{text:?}")));
        };
        let latencies_ns: Vec<u64> = lines.filter_map(|l| l.trim().parse().ok()).collect();
        let events = events as u64;
        let grown = self.events()? - events_before - warm_up as u64;
        if grown != events {
            return Err(BenchError::system(
                CAIRN,
                "check the log after the Python run",
                format!("{events} appends were acknowledged but the log grew by {grown} events"),
            ));
        }
        Ok(Measurement {
            events,
            elapsed: Duration::from_secs_f64(seconds),
            latencies_ns,
            note: Some(format!("client CPU {:.0} µs per append", client_cpu * 1e6 / events.max(1) as f64)),
            syncs: None,
            cpu: cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b)),
            reported: None,
        })
    }
}

/// `redis-benchmark -s SOCKET -c CLIENTS -n N -r CLIENTS --csv XADD {streams}:__rand_int__ * d
/// VALUE`, with N sized by a calibration run so that the measured run lasts about `run_for`.
pub fn redis_benchmark(
    socket: &Path,
    streams: &str,
    clients: usize,
    run_for: Duration,
    payloads: &Payloads,
) -> Result<Measurement> {
    // A command-line argument cannot hold arbitrary bytes: the 256-byte value is the hex of 128
    // of the shared random payload bytes (as incompressible to Redis, which compresses nothing).
    let value: String = payloads.get(0)[..EVENT_BYTES / 2].iter().map(|b| format!("{b:02x}")).collect();
    let calibration =
        redis_benchmark_once(socket, streams, clients, REDIS_CALIBRATION_PER_CLIENT * clients as u64, &value)?;
    let n = ((calibration.rps * run_for.as_secs_f64()) as u64).max(REDIS_CALIBRATION_PER_CLIENT * clients as u64);
    let run = redis_benchmark_once(socket, streams, clients, n, &value)?;
    Ok(Measurement {
        events: n,
        elapsed: Duration::from_secs_f64(n as f64 / run.rps.max(f64::MIN_POSITIVE)),
        latencies_ns: Vec::new(),
        note: Some("p50/p99 as redis-benchmark reports them".into()),
        syncs: None::<SyncStats>,
        cpu: None,
        reported: Some(ReportedLatency { p50_us: run.p50_ms * 1e3, p99_us: run.p99_ms * 1e3 }),
    })
}

#[derive(Debug)]
struct RedisRun {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn redis_benchmark_once(socket: &Path, streams: &str, clients: usize, n: u64, value: &str) -> Result<RedisRun> {
    let output = Command::new("redis-benchmark")
        .arg("-s")
        .arg(socket)
        .args(["-c", &clients.to_string(), "-n", &n.to_string(), "-r", &clients.to_string(), "--csv"])
        .args(["XADD", &format!("{streams}:__rand_int__"), "*", "d", value])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| BenchError::system(REDIS, "run redis-benchmark", format!("{e}; run benches/setup.sh")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let fail = |why: String| {
        BenchError::system(
            REDIS,
            "run redis-benchmark",
            format!("{why}; stdout {stdout:?}, stderr {:?}", String::from_utf8_lossy(&output.stderr)),
        )
    };
    if !output.status.success() {
        return Err(fail(format!("it exited with {}", output.status)));
    }
    parse_csv(&stdout).map_err(fail)
}

/// The `--csv` output: a header row naming the columns, then one row for the command.
fn parse_csv(text: &str) -> std::result::Result<RedisRun, String> {
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split("\",\"").map(|f| f.trim().trim_matches('"').to_string()).collect())
        .collect();
    let [header, row, ..] = rows.as_slice() else { return Err("no header and result row".into()) };
    let column = |name: &str| -> std::result::Result<f64, String> {
        let i = header.iter().position(|h| h == name).ok_or(format!("no column {name:?}"))?;
        row.get(i).and_then(|v| v.parse().ok()).ok_or(format!("column {name:?} is not a number"))
    };
    Ok(RedisRun { rps: column("rps")?, p50_ms: column("p50_latency_ms")?, p99_ms: column("p99_latency_ms")? })
}

#[cfg(test)]
mod tests {
    use super::parse_csv;

    #[test]
    fn redis_benchmark_csv_is_read_by_column_name() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                    \"XADD s:__rand_int__ * d ab\",\"51234.57\",\"1.100\",\"0.300\",\"1.051\",\"1.700\",\"2.500\",\"9.000\"\n";
        let run = parse_csv(text).expect("parses");
        assert_eq!(run.rps, 51234.57);
        assert_eq!(run.p50_ms, 1.051);
        assert_eq!(run.p99_ms, 2.5);
        assert!(parse_csv("\"test\",\"rps\"\n").is_err());
    }
}
