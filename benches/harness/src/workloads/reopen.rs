//! Workload 6: reopen a large log after the process that was writing it is SIGKILLed.
//!
//! Each cycle: a child process (this binary, `--child-kill DIR`) opens the log and runs
//! [`KILL_APPENDERS`] async appenders; once [`KILL_READY_ACKS`] appends are acknowledged it says
//! so on stdout, and the parent SIGKILLs it while appends are in flight. Then a fresh child
//! (`--child-open DIR`) times `Log::open` (recovery of the torn active segment included), first
//! after dropping the page cache when the harness may (root), then again with a warm cache.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log_engine::{ExpectedVersion, Log, NewEvent, Options};

use crate::error::{BenchError, Result};
use crate::systems::{Payloads, EVENT_TYPE};

/// Concurrent appenders in the process that gets killed.
const KILL_APPENDERS: usize = 16;
/// Acknowledged appends before the child reports that it is writing.
const KILL_READY_ACKS: u64 = 2_000;
const READY: &str = "ready";
const SYSTEM: &str = "cairn";

/// One kill-and-reopen cycle's result.
#[derive(Debug, Clone, Copy)]
pub struct Reopen {
    /// (wall, CPU) of `Log::open` in a fresh process after dropping the page cache; `None`
    /// when not permitted.
    pub cold: Option<(Duration, Duration)>,
    /// (wall, CPU) of the same with the page cache warm.
    pub warm: (Duration, Duration),
    pub events: u64,
}

/// Runs one cycle on the log in `dir` (which no process may hold open).
pub fn cycle(dir: &Path) -> Result<Reopen> {
    let exe = std::env::current_exe().map_err(|e| BenchError::io("find the harness binary", "/proc/self/exe", e))?;
    let mut child = Command::new(&exe)
        .arg("--child-kill")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::io("start the child that gets killed", &exe, e))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| BenchError::io("read the child's output", &exe, e))?;
    if line.trim() != READY {
        let _ = child.kill();
        let _ = child.wait();
        return Err(BenchError::system(
            SYSTEM,
            "start writing in the child",
            format!("the child said \"{}\" instead of \"{READY}\"", line.trim()),
        ));
    }
    child.kill().map_err(|e| BenchError::io("SIGKILL the child", &exe, e))?;
    let status = child.wait().map_err(|e| BenchError::io("wait for the killed child", &exe, e))?;
    if status.signal() != Some(9) {
        return Err(BenchError::system(
            SYSTEM,
            "kill the writing child",
            format!("it ended with {status} instead of SIGKILL"),
        ));
    }
    let cold = if drop_page_cache() {
        let (wall, _, cpu) = timed_open(&exe, dir)?;
        Some((wall, cpu))
    } else {
        None
    };
    let (wall, events, cpu) = timed_open(&exe, dir)?;
    Ok(Reopen { cold, warm: (wall, cpu), events })
}

/// Writes back and drops the page cache (root only); false when not permitted.
fn drop_page_cache() -> bool {
    let synced = Command::new("sync").status().map(|s| s.success()).unwrap_or(false);
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Wall time of `Log::open`, events in the log, and the CPU time the opening process had used
/// by then (its start-up included, which is small beside the open).
fn timed_open(exe: &Path, dir: &Path) -> Result<(Duration, u64, Duration)> {
    let out = Command::new(exe)
        .arg("--child-open")
        .arg(dir)
        .output()
        .map_err(|e| BenchError::io("start the child that reopens", exe, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let tag = words.next();
    let mut number = || words.next().and_then(|w| w.parse::<u64>().ok());
    match (tag, number(), number(), number()) {
        (Some("opened"), Some(nanos), Some(events), Some(cpu)) if out.status.success() => {
            Ok((Duration::from_nanos(nanos), events, Duration::from_nanos(cpu)))
        }
        _ => Err(BenchError::system(
            SYSTEM,
            "reopen the killed log",
            format!("the child exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        )),
    }
}

/// `--child-kill DIR`: append until killed.
pub fn child_kill(dir: &Path) -> Result<()> {
    let log = Log::open(dir, Options::default())?;
    let payloads = Arc::new(Payloads::new(7));
    let acked = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::system(SYSTEM, "start a tokio runtime", e))?;
    runtime.block_on(async {
        let tasks: Vec<_> = (0..KILL_APPENDERS)
            .map(|i| {
                let (log, payloads, acked) = (log.clone(), payloads.clone(), acked.clone());
                tokio::spawn(async move {
                    let stream = format!("killed-writer-{i}");
                    for n in 0u64.. {
                        let event = NewEvent::bytes(EVENT_TYPE, payloads.get(n).to_vec());
                        log.append_async(&stream, ExpectedVersion::Any, vec![event]).await?;
                        if acked.fetch_add(1, Ordering::Relaxed) + 1 == KILL_READY_ACKS {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "{READY}");
                            let _ = out.flush();
                        }
                    }
                    Ok::<(), log_engine::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await.map_err(|e| BenchError::system(SYSTEM, "append in the child", e))??;
        }
        Ok(())
    })
}

/// `--child-open DIR`: time one open and print `opened NANOS EVENTS`.
pub fn child_open(dir: &Path) -> Result<()> {
    let started = Instant::now();
    let log = Log::open(dir, Options::default())?;
    let took = started.elapsed();
    let cpu = crate::cpu::process_cpu().unwrap_or_default();
    println!("opened {} {} {}", took.as_nanos(), log.stats().events, cpu.as_nanos());
    log.close();
    Ok(())
}
