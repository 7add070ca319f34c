//! `cairn demo`: a realistic multi-agent workload on a fresh data directory, then a summary.
//!
//! Several agents run concurrently (one thread each), and each step of an agent:
//! - appends its tool call and result (and now and then a state change) to its own stream with
//!   optimistic concurrency (exact expected versions), and sometimes a message to a peer: an
//!   atomic append to its own stream and the peer's inbox;
//! - counts the call in the key-value view (`agent/<n>/tool_calls`) and records its state
//!   (`agent/<n>/state`) every few steps;
//! - writes an audit entry (a denied call is a security warning).
//!
//! Before the agents start, each registers as a service instance and the run's schema and
//! configuration are registered in the metadata view; afterwards the demo relates agents to the
//! tools they used, shows an idempotent retry and a refused stale write, runs a short MCP
//! session in process (the SDK's client against `cairn mcp`'s server: initialize, the tools, a
//! memory-graph write read back), takes a full checkpoint, verifies the whole log and runs a
//! recovery drill. The agents' appends share the
//! log's group commits.
//!
//! Its directory is `./cairn-demo` unless `--data` names one, so the demo's events never mix with
//! a user's own in `./cairn-data`.
//!
//! Invariants: the demo never touches a directory that already holds anything (it runs in the
//! first free sibling, `cairn-demo-N` or `DIR-demo-N`, and says so). Its workload is deterministic (seeded per
//! agent) apart from timing. Every append is durable (`Durability::Sync`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use log_engine::{ExpectedVersion, Log, NewEvent, StreamAppend, StreamName, StreamVersion, Uuid};
use projections::{
    Actor, ActorType, Category, InstanceRegistration, Level, NewAuditEntry, Target, TraceContext, Views,
};
use serde::Serialize;
use serde_json::json;

use crate::error::{CliError, CliResult, Exit};
use crate::http::AppState;
use crate::mcp::round_trip::RoundTrip;
use crate::output::{self, Format, Out};
use crate::store::Store;
use crate::wire::InputError;

/// Most agents the demo runs.
const AGENTS_MAX: usize = 256;
/// Most steps per agent.
const STEPS_MAX: usize = 100_000;
/// Most `DIR-demo-N` siblings tried before giving up.
const SIBLINGS_MAX: u32 = 1000;
/// How long the demo waits for the views to apply the workload before checkpointing.
const CATCH_UP_WAIT: Duration = Duration::from_secs(60);
/// An agent records its state in the key-value view every this many steps.
const STATE_EVERY: usize = 4;
/// The memory graph the MCP round trip writes (stream `memory:demo`).
const MCP_GRAPH: &str = "demo";

const TOOLS: [&str; 6] = ["web_search", "read_file", "run_tests", "sql_query", "summarize", "send_email"];
const STATES: [&str; 4] = ["planning", "acting", "waiting", "reviewing"];
const ROLES: [&str; 3] = ["planner", "researcher", "coder"];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Concurrent agents.
    #[arg(long, default_value_t = 8)]
    pub agents: usize,
    /// Steps per agent (each appends 4 to 7 events).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
}

#[derive(Debug, Serialize)]
struct Summary {
    data_dir: PathBuf,
    agents: usize,
    events: u64,
    streams: u64,
    /// Events the agents' workload appended (the rest are setup and the checks after it).
    workload_events: u64,
    seconds: f64,
    events_per_second: f64,
    group_commits: u64,
    mean_events_per_commit: f64,
    kv_keys: u64,
    audit_entries: u64,
    services_registered: u64,
    head_position: Option<u64>,
    head_hash: Option<String>,
    idempotent_retry_ok: bool,
    stale_write_refused: bool,
    /// The MCP session run in process (`cairn mcp`'s tools, reached through the MCP SDK).
    mcp: RoundTrip,
    checkpoint: CheckpointSummary,
    verify_ok: bool,
    verified_events: u64,
    drill: DrillSummary,
}

#[derive(Debug, Serialize)]
struct CheckpointSummary {
    sequence: u64,
    position: u64,
    file_bytes: u64,
    hash: String,
}

#[derive(Debug, Serialize)]
struct DrillSummary {
    ok: bool,
    events_lost: u64,
    restore_ms: u64,
    rebuild_from_checkpoint_ms: u64,
    rebuild_from_zero_ms: u64,
    checkpoints_verified: u64,
    mismatches: Vec<String>,
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
    let log = crate::store::open_writer(&dir)?;
    let (store, _) = Store::open(log, snapshotter::Policy::default(), &mut |_| {})?;
    // The store inside the API's state, so that the MCP round trip reaches it as an agent would.
    let state = Arc::new(crate::mcp::embedded(store, &dir));
    let result = run_on(&state, &dir, &args);
    state.store.close();
    let summary = result?;
    print_summary(format, &summary)?;
    Ok(if summary.verify_ok && summary.drill.ok && summary.mcp.read_back { Exit::Ok } else { Exit::Integrity })
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
    let name = dir.file_name().map_or("cairn-demo".into(), |n| n.to_string_lossy().into_owned());
    // ./cairn-demo's siblings are cairn-demo-1, ...; a directory of another name gets NAME-demo-1.
    let stem = if name.ends_with("demo") { name.clone() } else { format!("{name}-demo") };
    for n in 1..=SIBLINGS_MAX {
        let candidate = dir.with_file_name(format!("{stem}-{n}"));
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
        "{} holds data and so do {stem}-1 to {stem}-{SIBLINGS_MAX}; pass --data with an empty directory",
        dir.display()
    )))
}

fn run_on(state: &Arc<AppState>, dir: &Path, args: &DemoArgs) -> CliResult<Summary> {
    let store = &state.store;
    let log = store.log();
    let views = store.views();
    let (agents, steps) = (args.agents, args.steps);
    setup(views, agents)?;

    let bar = output::progress_bar((agents * steps) as u64, "agents working");
    let commits_before = log.metrics().commits;
    let events_before = log.stats().events;
    let started = Instant::now();
    let outcomes: Vec<CliResult<AgentReport>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..agents)
            .map(|agent| {
                let bar = bar.clone();
                scope.spawn(move || agent_loop(views, agent, agents, steps, &bar))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(CliError::Server("a demo agent panicked".into()))))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let reports = outcomes.into_iter().collect::<CliResult<Vec<_>>>()?;
    let workload_events = log.stats().events - events_before;
    let commits = log.metrics().commits - commits_before;

    // Who used what, as relations of the metadata view.
    for (agent, report) in reports.iter().enumerate() {
        for tool in &report.tools {
            views.meta().relate(&format!("agent-{agent}"), &format!("tool:{tool}"), "uses", None)?;
        }
    }
    let idempotent_retry_ok = idempotent_retry(log, dir)?;
    let stale_write_refused = stale_write(log, dir)?;
    let mcp = crate::mcp::round_trip::run(state.clone(), MCP_GRAPH)
        .map_err(|e| CliError::Server(format!("the demo's MCP round trip failed: {e}")))?;

    store.catch_up(CATCH_UP_WAIT)?;
    let info = store.checkpoint(Some(snapshotter::CheckpointKind::Full))?;
    let checkpoint = CheckpointSummary {
        sequence: info.sequence,
        position: info.position.0,
        file_bytes: info.file_bytes,
        hash: info.hash.to_hex(),
    };

    let stats = log.stats();
    let total = stats.head.map_or(0, |h| h.position.0 + 1);
    let bar = output::progress_bar(total, "verifying");
    let report = log.verify(None, |p| bar.set_position(p.checked)).map_err(|e| CliError::log(dir, e))?;
    bar.finish_and_clear();

    // The drill's copy and its staging directory live in one temporary directory of the demo's
    // own, which Ctrl-C removes as `cairn drill` does (see crate::interrupt).
    let root = std::env::temp_dir().join(format!("cairn-demo-drill-{}-{}", std::process::id(), stats.events));
    // The handler first: once the directory exists, a signal removes it.
    let interrupt = crate::interrupt::Interrupt::install(Some(root.clone()))?;
    std::fs::create_dir(&root).map_err(|e| CliError::io("create the drill's temporary directory", &root, e))?;
    let drilled = store.drill(&root.join("copy"), interrupt.cancel_flag(), &mut |p| {
        if !matches!(p.stage, snapshotter::Stage::CopyLog | snapshotter::Stage::CopyCheckpoints) {
            interrupt.commit();
        }
    });
    interrupt.remove_cleanup();
    let drilled = drilled?;

    let now = projections::now_ms();
    Ok(Summary {
        data_dir: dir.to_path_buf(),
        agents,
        events: stats.events,
        streams: stats.streams,
        workload_events,
        // Rounded as the text shows them: more digits would be noise, not precision.
        seconds: round_to(seconds, 3),
        events_per_second: round_to(workload_events as f64 / seconds.max(1e-9), 0),
        group_commits: commits,
        mean_events_per_commit: round_to(if commits == 0 { 0.0 } else { workload_events as f64 / commits as f64 }, 1),
        kv_keys: count_keys(views)?,
        audit_entries: reports.iter().map(|r| r.audit_entries).sum(),
        services_registered: views.meta().discover(Some("agents"), None, now).len() as u64,
        head_position: stats.head.map(|h| h.position.0),
        head_hash: stats.head.map(|h| h.hash.to_hex()),
        idempotent_retry_ok,
        stale_write_refused,
        mcp,
        checkpoint,
        verify_ok: report.ok,
        verified_events: report.events,
        drill: DrillSummary {
            ok: drilled.ok,
            events_lost: drilled.events_lost,
            restore_ms: drilled.restore_ms,
            rebuild_from_checkpoint_ms: drilled.rebuild_from_checkpoint_ms,
            rebuild_from_zero_ms: drilled.rebuild_from_zero_ms,
            checkpoints_verified: drilled.checkpoints_verified,
            mismatches: drilled.mismatches.iter().map(|m| m.detail.clone()).collect(),
        },
    })
}

/// The run's metadata: a schema for tool calls, its configuration, and every agent as a
/// service instance.
fn setup(views: &Views, agents: usize) -> CliResult {
    let meta = views.meta();
    meta.register_schema(
        "ToolCalled",
        json!({
            "type": "object",
            "properties": {"step": {"type": "integer"}, "tool": {"type": "string"}, "args": {"type": "object"}},
            "required": ["step", "tool"]
        }),
    )?;
    meta.set_config(Some("demo"), "model", json!("planner-large"))?;
    meta.set_config(Some("demo"), "max_steps", json!(STEPS_MAX))?;
    for agent in 0..agents {
        let registration = InstanceRegistration {
            endpoints: vec![format!("agent://agent-{agent}")],
            tags: vec![ROLES[agent % ROLES.len()].to_string()],
            capabilities: TOOLS.iter().map(|t| t.to_string()).collect(),
            ttl_ms: 10 * 60 * 1000,
        };
        meta.register_instance("agents", &format!("agent-{agent}"), registration)?;
    }
    Ok(())
}

struct AgentReport {
    tools: BTreeSet<&'static str>,
    audit_entries: u64,
}

/// One agent: calls tools, messages a peer now and then, changes state, counts and audits.
fn agent_loop(
    views: &Views,
    agent: usize,
    agents: usize,
    steps: usize,
    bar: &indicatif::ProgressBar,
) -> CliResult<AgentReport> {
    let log = views.log();
    let dir = log.dir().to_path_buf();
    let err = |e| CliError::log(&dir, e);
    let (kv, audit) = (views.kv(), views.audit());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (agent as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let stream = format!("agent-{agent}");
    let run_id = format!("run-{agent}");
    let meta = json!({ "run_id": run_id, "agent_id": stream });
    let mut version: Option<u64> = None;
    let mut report = AgentReport { tools: BTreeSet::new(), audit_entries: 0 };
    for step in 0..steps {
        let expected = version.map_or(ExpectedVersion::NoStream, |v| ExpectedVersion::Exact(StreamVersion(v)));
        let tool = TOOLS[rng.below(TOOLS.len())];
        let denied = tool == "send_email" && rng.below(3) == 0;
        let ok = !denied && rng.below(10) != 0;
        let mut events = vec![
            NewEvent::json(
                "ToolCalled",
                &json!({ "step": step, "tool": tool, "args": { "query": format!("task {agent} item {}", rng.below(1000)) } }),
            )
            .with_metadata(&meta),
            NewEvent::json(
                "ToolReturned",
                &json!({ "step": step, "tool": tool, "ok": ok, "latency_ms": 20 + rng.below(900), "tokens": 50 + rng.below(2000) }),
            )
            .with_metadata(&meta),
        ];
        let state = STATES[(step / 10) % STATES.len()];
        if step % 10 == 0 {
            events.push(NewEvent::json("StateChanged", &json!({ "step": step, "state": state })).with_metadata(&meta));
        }
        let mut appends = Vec::new();
        if agents > 1 && rng.below(4) == 0 {
            let peer = (agent + 1 + rng.below(agents - 1)) % agents;
            let text = format!("agent-{agent} to agent-{peer}: partial result of step {step}");
            events.push(
                NewEvent::json("MessageSent", &json!({ "to": format!("agent-{peer}"), "text": text }))
                    .with_metadata(&meta),
            );
            appends.push(StreamAppend {
                stream: StreamName::new(format!("inbox-{peer}")).map_err(err)?,
                expected: ExpectedVersion::Any,
                events: vec![
                    NewEvent::json("MessageReceived", &json!({ "from": stream, "text": text })).with_metadata(&meta)
                ],
            });
        }
        appends.insert(0, StreamAppend { stream: StreamName::new(stream.clone()).map_err(err)?, expected, events });
        // The sender's stream and the receiver's inbox in one atomic append: both or neither.
        let results = log.append_multi(appends).map_err(err)?;
        version = Some(results[0].last_version.0);
        report.tools.insert(tool);

        kv.incr(&format!("agent/{agent}/tool_calls"), 1)?;
        if step % STATE_EVERY == 0 {
            kv.set(
                &format!("agent/{agent}/state"),
                json!({ "step": step, "state": state, "last_tool": tool }),
                None,
                ExpectedVersion::Any,
            )?;
        }
        let actor = Actor {
            kind: ActorType::Agent,
            id: stream.clone(),
            name: None,
            roles: vec![ROLES[agent % ROLES.len()].into()],
        };
        let (level, category, event, outcome) = if denied {
            (Level::Warn, Category::Security, "tool.denied", "denied")
        } else {
            (Level::Info, Category::AgentActivity, "tool.called", if ok { "success" } else { "failure" })
        };
        let mut entry = NewAuditEntry::new(level, category, event, actor);
        entry.target = Some(Target { kind: "tool".into(), id: tool.into(), name: None, properties: None });
        entry.outcome = Some(outcome.into());
        entry.context = TraceContext {
            trace_id: Some(format!("{run_id}-step-{step}")),
            workflow_id: Some(run_id.clone()),
            agent_id: Some(stream.clone()),
            ..TraceContext::default()
        };
        audit.append(&entry, None)?;
        report.audit_entries += 1;
        bar.inc(1);
    }
    Ok(report)
}

/// Live keys of the key-value view, counted a page at a time.
fn count_keys(views: &Views) -> CliResult<u64> {
    let kv = views.kv();
    let mut after: Option<String> = None;
    let mut count = 0;
    loop {
        let page = kv.list("", after.as_deref(), projections::LIST_LIMIT_MAX, projections::now_ms())?;
        count += page.keys.len() as u64;
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(count),
        }
    }
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

/// `x` rounded to `decimals` decimal places.
fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// How the "Next:" lines spell the binary: a `cargo run` user has no `cairn` on the PATH.
fn next_command() -> &'static str {
    match std::env::var_os("CARGO") {
        Some(_) if cfg!(debug_assertions) => "cargo run --",
        Some(_) => "cargo run --release --",
        None => "cairn",
    }
}

fn ok_or(ok: bool, yes: &str, no: &str) -> String {
    if ok { yes } else { no }.to_string()
}

fn print_summary(format: Format, s: &Summary) -> CliResult {
    let cairn = next_command();
    let mut out = Out::new();
    match format {
        Format::Json | Format::Ndjson => out.json_line(s)?,
        Format::Text => {
            let d = &s.drill;
            let lines = [
                format!("cairn demo in {}", s.data_dir.display()),
                format!("  agents      {} concurrent: tool calls, results, messages, state changes", s.agents),
                format!("  events      {} in {} streams", s.events, s.streams),
                format!(
                    "  throughput  {:.0} durable events/s ({} events in {:.2} s; {} group commits, {:.1} events each)",
                    s.events_per_second, s.workload_events, s.seconds, s.group_commits, s.mean_events_per_commit
                ),
                format!(
                    "  views       {} keys, {} audit entries, {} agents registered as services",
                    s.kv_keys, s.audit_entries, s.services_registered
                ),
                format!(
                    "  head        position {}, hash {}",
                    s.head_position.map_or("none".into(), |p| p.to_string()),
                    s.head_hash.as_deref().unwrap_or("-")
                ),
                format!(
                    "  retry       {}",
                    ok_or(
                        s.idempotent_retry_ok,
                        "an idempotent retry (same event id) returned the original position and wrote nothing",
                        "FAILED: an idempotent retry wrote a second event"
                    )
                ),
                format!(
                    "  conflict    {}",
                    ok_or(
                        s.stale_write_refused,
                        "a write with a stale expected version was refused (409 over HTTP, exit 4 in the CLI)",
                        "FAILED: a stale write was accepted"
                    )
                ),
                format!(
                    "  mcp         {}: initialize (protocol {}), {} tools listed, {} entities, {} relation and {} observations written as {} events on {}, read back with read_graph",
                    ok_or(s.mcp.read_back, "ok", "MISMATCH"),
                    s.mcp.protocol_version,
                    s.mcp.tools,
                    s.mcp.entities,
                    s.mcp.relations,
                    s.mcp.observations,
                    s.mcp.events,
                    s.mcp.graph_stream
                ),
                format!(
                    "  checkpoint  {} (full) at position {}, {} bytes, hash {}",
                    s.checkpoint.sequence, s.checkpoint.position, s.checkpoint.file_bytes, s.checkpoint.hash
                ),
                format!(
                    "  verify      {}: {} events, every CRC and the hash chain",
                    ok_or(s.verify_ok, "ok", "DAMAGED"),
                    s.verified_events
                ),
                format!(
                    "  drill       {}: {} events lost, restore {} ms, rebuild from checkpoint {} ms, from zero {} ms, {} checkpoint(s) verified{}",
                    ok_or(d.ok, "ok", "FAILED"),
                    d.events_lost,
                    d.restore_ms,
                    d.rebuild_from_checkpoint_ms,
                    d.rebuild_from_zero_ms,
                    d.checkpoints_verified,
                    if d.mismatches.is_empty() { String::new() } else { format!("; mismatches: {}", d.mismatches.join("; ")) }
                ),
                String::new(),
                format!("Next: {cairn} --data {} read agent-0 --limit 5", s.data_dir.display()),
                format!("      {cairn} --data {} kv get agent/0/state", s.data_dir.display()),
                format!("      {cairn} --data {} serve", s.data_dir.display()),
                "      (`cargo install --path .` puts `cairn` on your PATH)".to_string(),
            ];
            for line in lines {
                out.line(&line)?;
            }
        }
    }
    out.flush()
}
