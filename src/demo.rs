//! `cairn demo`: a realistic multi-agent workload on a fresh data directory, then a summary.
//!
//! Several agents run concurrently, each appending to its own stream with optimistic
//! concurrency (exact expected versions): tool calls and their results, messages to other
//! agents (an atomic append to the sender's stream and the receiver's inbox), and run-state
//! changes. Their appends share the log's group commits. Then the demo shows an idempotent
//! retry, a refused stale write, and a full verification, and prints what it did.
//!
//! Invariants: the demo never touches a directory that already holds anything: it then runs in
//! the first free sibling `DIR-demo-N` and says so. Its workload is deterministic (seeded per
//! agent) apart from timing; all appends are durable (`Durability::Sync`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use log_engine::{ExpectedVersion, Log, NewEvent, StreamAppend, StreamName, StreamVersion, Uuid};
use serde::Serialize;
use serde_json::json;

use crate::error::{CliError, CliResult, Exit};
use crate::output::{self, Format, Out};
use crate::wire::InputError;

/// Most agents the demo runs.
const AGENTS_MAX: usize = 256;
/// Most steps per agent.
const STEPS_MAX: usize = 100_000;
/// Most `DIR-demo-N` siblings tried before giving up.
const SIBLINGS_MAX: u32 = 1000;

const TOOLS: [&str; 6] = ["web_search", "read_file", "run_tests", "sql_query", "summarize", "send_email"];
const STATES: [&str; 4] = ["planning", "acting", "waiting", "reviewing"];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Concurrent agents.
    #[arg(long, default_value_t = 8)]
    pub agents: usize,
    /// Steps per agent (each appends 2 to 4 events).
    #[arg(long, default_value_t = 400)]
    pub steps: usize,
}

#[derive(Debug, Serialize)]
struct Summary {
    data_dir: PathBuf,
    agents: usize,
    events: u64,
    streams: u64,
    appends: u64,
    seconds: f64,
    events_per_second: f64,
    group_commits: u64,
    mean_events_per_commit: f64,
    head_position: Option<u64>,
    head_hash: Option<String>,
    verify_ok: bool,
    verified_events: u64,
    idempotent_retry_ok: bool,
    stale_write_refused: bool,
}

/// A small deterministic generator (xorshift64*): the workload repeats run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn run(dir: &Path, format: Format, args: DemoArgs) -> CliResult<Exit> {
    if args.agents == 0 || args.agents > AGENTS_MAX || args.steps == 0 || args.steps > STEPS_MAX {
        return Err(InputError(format!(
            "--agents must be 1 to {AGENTS_MAX} and --steps 1 to {STEPS_MAX} (got {} and {})",
            args.agents, args.steps
        ))
        .into());
    }
    let dir = fresh_dir(dir)?;
    let log = crate::cli::open_log(&dir)?;
    let result = run_on(&log, &dir, &args);
    log.close();
    let summary = result?;
    print_summary(format, &summary)?;
    Ok(if summary.verify_ok { Exit::Ok } else { Exit::Integrity })
}

/// `dir` if it is absent or empty, else the first free sibling `DIR-demo-N`.
fn fresh_dir(dir: &Path) -> CliResult<PathBuf> {
    let is_free = |d: &Path| match std::fs::read_dir(d) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(_) => false,
    };
    if is_free(dir) {
        return Ok(dir.to_path_buf());
    }
    let name = dir.file_name().map_or("cairn-data".into(), |n| n.to_string_lossy().into_owned());
    for n in 1..=SIBLINGS_MAX {
        let candidate = dir.with_file_name(format!("{name}-demo-{n}"));
        if is_free(&candidate) {
            eprintln!(
                "{} already holds data; the demo leaves it alone and runs in {} instead",
                dir.display(),
                candidate.display()
            );
            return Ok(candidate);
        }
    }
    Err(CliError::Server(format!(
        "{} holds data and so do {name}-demo-1 to {name}-demo-{SIBLINGS_MAX}; pass --data with an empty directory",
        dir.display()
    )))
}

fn run_on(log: &Log, dir: &Path, args: &DemoArgs) -> CliResult<Summary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("start the async runtime for", "demo", e))?;
    let agents = args.agents;
    let steps = args.steps;
    let bar = output::progress_bar((agents * steps) as u64, "agents working");
    let commits_before = log.metrics().commits;
    let started = Instant::now();
    let appends: u64 = runtime.block_on(async {
        let mut tasks = Vec::new();
        for agent in 0..agents {
            let log = log.clone();
            let bar = bar.clone();
            tasks.push(tokio::spawn(async move { agent_loop(&log, agent, agents, steps, &bar).await }));
        }
        let mut appends = 0;
        for task in tasks {
            appends += task.await.map_err(|e| CliError::Server(format!("a demo agent stopped: {e}")))??;
        }
        Ok::<u64, CliError>(appends)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let commits = log.metrics().commits - commits_before;
    let workload_events = log.stats().events;

    let idempotent_retry_ok = idempotent_retry(log, dir)?;
    let stale_write_refused = stale_write(log, dir)?;

    let stats = log.stats();
    let total = stats.head.map_or(0, |h| h.position.0 + 1);
    let bar = output::progress_bar(total, "verifying");
    let report = log.verify(None, |p| bar.set_position(p.checked)).map_err(|e| CliError::log(dir, e))?;
    bar.finish_and_clear();
    Ok(Summary {
        data_dir: dir.to_path_buf(),
        agents,
        events: stats.events,
        streams: stats.streams,
        appends,
        seconds,
        events_per_second: workload_events as f64 / seconds.max(1e-9),
        group_commits: commits,
        mean_events_per_commit: if commits == 0 { 0.0 } else { workload_events as f64 / commits as f64 },
        head_position: stats.head.map(|h| h.position.0),
        head_hash: stats.head.map(|h| h.hash.to_hex()),
        verify_ok: report.ok,
        verified_events: report.events,
        idempotent_retry_ok,
        stale_write_refused,
    })
}

/// One agent: plans, calls tools, messages a peer now and then, changes state. Returns the
/// number of append calls it made.
async fn agent_loop(
    log: &Log,
    agent: usize,
    agents: usize,
    steps: usize,
    bar: &indicatif::ProgressBar,
) -> CliResult<u64> {
    let stream = format!("agent-{agent}");
    let dir = log.dir().to_path_buf();
    let err = |e| CliError::log(&dir, e);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (agent as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut version: Option<u64> = None;
    let mut appends = 0;
    let run_id = format!("run-{agent}");
    let meta = json!({ "run_id": run_id, "agent_id": stream });
    for step in 0..steps {
        let expected = version.map_or(ExpectedVersion::NoStream, |v| ExpectedVersion::Exact(StreamVersion(v)));
        let tool = TOOLS[rng.below(TOOLS.len())];
        let mut events = vec![
            NewEvent::json(
                "ToolCalled",
                &json!({ "step": step, "tool": tool, "args": { "query": format!("task {} item {}", agent, rng.below(1000)) } }),
            )
            .with_metadata(&meta),
            NewEvent::json(
                "ToolReturned",
                &json!({ "step": step, "tool": tool, "ok": rng.below(10) != 0, "latency_ms": 20 + rng.below(900), "tokens": 50 + rng.below(2000) }),
            )
            .with_metadata(&meta),
        ];
        let mut appends_now = Vec::new();
        if step % 10 == 0 {
            events.push(
                NewEvent::json("StateChanged", &json!({ "step": step, "state": STATES[(step / 10) % STATES.len()] }))
                    .with_metadata(&meta),
            );
        }
        let message = agents > 1 && rng.below(4) == 0;
        let peer = (agent + 1 + rng.below(agents.max(2) - 1)) % agents;
        if message {
            let text = format!("agent-{agent} to agent-{peer}: partial result of step {step}");
            events.push(
                NewEvent::json("MessageSent", &json!({ "to": format!("agent-{peer}"), "text": text }))
                    .with_metadata(&meta),
            );
            appends_now.push(StreamAppend {
                stream: StreamName::new(format!("inbox-{peer}")).map_err(err)?,
                expected: ExpectedVersion::Any,
                events: vec![
                    NewEvent::json("MessageReceived", &json!({ "from": stream, "text": text })).with_metadata(&meta)
                ],
            });
        }
        let n = events.len() as u64;
        appends_now.insert(0, StreamAppend { stream: StreamName::new(stream.clone()).map_err(err)?, expected, events });
        // Sender's stream and receiver's inbox in one atomic append: both or neither.
        let results = log.append_multi_async(appends_now).await.map_err(err)?;
        version = Some(results[0].last_version.0);
        debug_assert_eq!(results[0].last_version.0 - results[0].first_version.0 + 1, n);
        appends += 1;
        bar.inc(1);
    }
    Ok(appends)
}

/// Appends an event with a fixed id twice: the retry must answer the original position.
fn idempotent_retry(log: &Log, dir: &Path) -> CliResult<bool> {
    let id = Uuid::new_v4();
    let event = || NewEvent::json("TaskSubmitted", &json!({ "task": "summarize the run" })).with_id(id);
    let first = log.append("orchestrator", ExpectedVersion::Any, vec![event()]).map_err(|e| CliError::log(dir, e))?;
    let retry = log.append("orchestrator", ExpectedVersion::Any, vec![event()]).map_err(|e| CliError::log(dir, e))?;
    Ok(first == retry && log.stream_version("orchestrator") == Some(first.last_version))
}

/// A write with a stale expected version must be refused and write nothing.
fn stale_write(log: &Log, dir: &Path) -> CliResult<bool> {
    let before = log.stats().events;
    let stale = ExpectedVersion::Exact(StreamVersion(0));
    match log.append("agent-0", stale, vec![NewEvent::json("StateChanged", &json!({ "state": "stale" }))]) {
        Err(log_engine::Error::WrongExpectedVersion { .. }) => Ok(log.stats().events == before),
        Err(e) => Err(CliError::log(dir, e)),
        Ok(_) => Ok(false),
    }
}

fn print_summary(format: Format, s: &Summary) -> CliResult {
    let mut out = Out::new();
    match format {
        Format::Json | Format::Ndjson => out.json_line(s)?,
        Format::Text => {
            let lines = [
                format!("cairn demo in {}", s.data_dir.display()),
                format!("  agents      {} concurrent: tool calls, results, messages, state changes", s.agents),
                format!("  events      {} in {} streams ({} atomic appends)", s.events, s.streams, s.appends),
                format!(
                    "  throughput  {:.0} durable events/s ({:.2} s; {} group commits, {:.1} events each)",
                    s.events_per_second, s.seconds, s.group_commits, s.mean_events_per_commit
                ),
                format!(
                    "  head        position {}, hash {}",
                    s.head_position.map_or("none".into(), |p| p.to_string()),
                    s.head_hash.as_deref().unwrap_or("-")
                ),
                format!(
                    "  verify      {}: {} events, every CRC and the hash chain",
                    if s.verify_ok { "ok" } else { "DAMAGED" },
                    s.verified_events
                ),
                format!(
                    "  retry       {}",
                    if s.idempotent_retry_ok {
                        "an idempotent retry (same event id) returned the original position and wrote nothing"
                    } else {
                        "FAILED: an idempotent retry wrote a second event"
                    }
                ),
                format!(
                    "  conflict    {}",
                    if s.stale_write_refused {
                        "a write with a stale expected version was refused (409 over HTTP, exit 4 in the CLI)"
                    } else {
                        "FAILED: a stale write was accepted"
                    }
                ),
                String::new(),
                format!("Next: cairn --data {} read agent-0 --limit 5", s.data_dir.display()),
                format!("      cairn --data {} serve", s.data_dir.display()),
            ];
            for line in lines {
                out.line(&line)?;
            }
        }
    }
    out.flush()
}
