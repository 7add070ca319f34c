//! Writes docs/benchmarks.md from a run's [`Results`]: the headline ratios, the goals of
//! issues 2 and 7 with pass/miss, the machine, the method, one table per workload, and the
//! hand-written analysis kept beside the harness (`analysis.md`), which explains the misses.
//!
//! Only this module decides wording and layout; it computes nothing that the tables do not show.
//! It renders from a [`SavedRun`] alone, so a report written by `--report-from` is the one the
//! run would have written with the current analysis, plus a line saying when it was rewritten.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::machine::Machine;
use crate::results::{Kind, Results, Table};
use crate::saved::SavedRun;
use crate::stats::Summary;
use crate::workloads::Scale;

/// The peers, in the order the report lists them.
pub const PEERS: [&str; 4] = ["postgres", "sqlite", "fjall", "redis"];
/// Name of the raw pwrite + fdatasync baseline in the tables.
pub const RAW: &str = "raw pwrite+fdatasync";
/// Name of the BLAKE3 baseline in the tables.
pub const BLAKE3: &str = "BLAKE3 per event (1 core)";

/// Issue 5's floor for durable appends over HTTP with the most clients, events/s.
pub const HTTP_APPENDS_TARGET: f64 = 30_000.0;

/// Hand-written analysis, maintained with the harness and included verbatim.
const ANALYSIS: &str = include_str!("../analysis.md");

/// One goal from the issues and whether this run met it.
#[derive(Debug, Serialize)]
pub struct Goal {
    pub source: &'static str,
    pub what: String,
    pub target: String,
    pub measured: String,
    /// `None` when the run could not measure it (a peer skipped, say).
    pub met: Option<bool>,
}

pub fn goals(results: &Results, scale: &Scale) -> Vec<Goal> {
    let mut goals = Vec::new();
    let eps = |id: &str| results.table(id).and_then(|t| t.cell("cairn")?.median()).map(|s| s.events_per_second);
    let mut at_least = |source, what: String, target: f64, measured: Option<f64>, unit: &str| {
        goals.push(Goal {
            source,
            what,
            target: format!("≥ {}{unit}", fmt_num(target)),
            measured: measured.map_or("not measured".into(), |m| format!("{}{unit}", fmt_num(m))),
            met: measured.map(|m| m >= target),
        });
    };
    at_least("issue 2", "W2: 64 concurrent appenders, events/s".into(), 150_000.0, eps("W2 ×64"), "");
    at_least("issue 2", "W3: batches of 1,000, events/s".into(), 1_000_000.0, eps("W3 ×1000"), "");
    let n = fmt_num(scale.log_events() as f64);
    let large = scale.large_label().unwrap_or_else(|| "W5".into());
    let (replay, verify) = (format!("{large} replay"), format!("{large} verify"));
    at_least("issue 2", format!("{replay}: `Log::for_each` or `Log::scan` of {n} events, events/s"), 2_000_000.0, eps(&replay), "");
    at_least("issue 2", format!("{verify}: `Log::verify` of {n} events, events/s"), 1_000_000.0, eps(&verify), "");
    let ratio_goal = |goals: &mut Vec<Goal>, id: &str, peer: &str, target: f64| {
        let r = results.table(id).and_then(|t| t.throughput_ratio(peer));
        goals.push(Goal {
            source: if is_http(id) { "issue 5" } else { "issue 7" },
            what: format!("{id}: cairn ÷ {peer}, events/s"),
            target: format!("≥ {target}x"),
            measured: r.map_or_else(|| "not measured".into(), |r| format!("{r:.1}x")),
            met: r.map(|r| r >= target),
        });
    };
    ratio_goal(&mut goals, "W2 ×64", "postgres", 10.0);
    ratio_goal(&mut goals, "W2 ×64", "sqlite", 10.0);
    for id in ["W1", "W2 ×8", "W2 ×64", "W2 ×256"] {
        ratio_goal(&mut goals, id, "redis", 1.0);
    }
    if let Some(&clients) = scale.http_clients.iter().max() {
        let id = crate::run::http_table(clients);
        ratio_goal(&mut goals, &id, "redis", 1.0);
        let measured = eps(&id);
        goals.push(Goal {
            source: "issue 5",
            what: format!("{id}: cairn serve, durable appends/s"),
            target: format!("≥ {}", fmt_num(HTTP_APPENDS_TARGET)),
            measured: measured.map_or("not measured".into(), fmt_num),
            met: measured.map(|m| m >= HTTP_APPENDS_TARGET),
        });
    }
    let latency = results.table("W1").and_then(|t| t.paired_ratio("cairn", RAW, |s| s.p50_us));
    goals.push(Goal {
        source: "issues 2 and 7",
        what: "W1: 1 appender, p50 commit latency ÷ raw pwrite+fdatasync p50".into(),
        target: "≤ 1.3x".into(),
        measured: latency.map_or_else(|| "not measured".into(), |r| format!("{r:.2}x")),
        met: latency.map(|r| r <= 1.3),
    });
    let reopen = results
        .table("W6 cold")
        .and_then(|t| t.cell("cairn")?.median())
        .and_then(|s| s.p50_us)
        .or_else(|| results.table("W6 warm").and_then(|t| t.cell("cairn")?.median()).and_then(|s| s.p50_us));
    goals.push(Goal {
        source: "issue 2",
        what: format!("W6: reopen after SIGKILL at {n} events"),
        target: "< 1 s".into(),
        measured: reopen.map_or_else(|| "not measured".into(), |us| format!("{:.3} s", us / 1e6)),
        met: reopen.map(|us| us < 1e6),
    });
    goals
}

/// A report written again from a saved run (`--report-from`) instead of by the run itself.
#[derive(Debug)]
pub struct Regeneration {
    /// When it was written, e.g. `2026-11-22 21:05 UTC`.
    pub on: String,
    /// The saved run's file name.
    pub from: String,
}

/// Writes benchmarks.md and benchmarks.svg into `out` (created if missing) and returns the
/// report's path.
pub fn write(out: &Path, saved: &SavedRun, regenerated: Option<&Regeneration>) -> Result<PathBuf> {
    std::fs::create_dir_all(out).map_err(|e| BenchError::io("create the output directory", out, e))?;
    let md = out.join("benchmarks.md");
    let svg = out.join("benchmarks.svg");
    std::fs::write(&md, render(saved, regenerated)).map_err(|e| BenchError::io("write the report", &md, e))?;
    std::fs::write(&svg, crate::svg::render(&saved.results)).map_err(|e| BenchError::io("write the plot", &svg, e))?;
    Ok(md)
}

/// One line per goal on stderr, so that a run's verdicts are seen without opening the report.
pub fn print_goals(saved: &SavedRun) {
    for g in goals(&saved.results, &saved.scale) {
        let verdict = match g.met {
            Some(true) => "pass",
            Some(false) => "MISS",
            None => "not measured",
        };
        eprintln!("  {verdict:>12}  {} (target {}, measured {})", g.what, g.target, g.measured);
    }
}

pub fn render(saved: &SavedRun, regenerated: Option<&Regeneration>) -> String {
    let SavedRun { results, machine, scale, .. } = saved;
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Generated by `cargo run --release --manifest-path benches/harness/Cargo.toml -- --{}` \
         (started {}, took {:.0} s). Do not edit by hand: rerun the harness; to change only the analysis \
         at the end (kept in `benches/harness/analysis.md`) or the report's wording, rewrite this file \
         from the run's saved numbers with `-- --report-from docs/benchmarks.json`.\n",
        scale.name, results.started, results.seconds
    );
    if let Some(r) = regenerated {
        let _ = writeln!(
            w,
            "Regenerated on {} from `{}` (`--report-from`): the numbers, machine and sizes are those of \
             the run above; the analysis and the wording are the current ones.\n",
            r.on, r.from
        );
    }
    if scale.name != "full" {
        let _ = writeln!(w, "> **This is a `--quick` run**: short runs, fewer repetitions, a {}-event log. Use `--full` for the published numbers.\n", fmt_num(scale.log_events() as f64));
    }
    headline(w, results);
    let _ = writeln!(w, "\n![events per second per workload and system](benchmarks.svg)\n");
    goals_section(w, &goals(results, scale));
    machine_section(w, results, machine);
    method_section(w, results, scale);
    let _ = writeln!(w, "## Results per workload\n");
    let _ = writeln!(w, "Medians over the repetitions. Latency is per commit (appends), per stream read (W5 read-back) or per open (W6). \"cairn ÷ x\" is the median of per-repetition ratios of events/s (runs of a repetition are taken side by side).\n");
    for table in results.tables.iter().filter(|t| !is_http(&t.id)) {
        table_section(w, table);
    }
    http_section(w, results, scale);
    if !results.skipped.is_empty() {
        let _ = writeln!(w, "## Skipped\n");
        for (system, reason) in &results.skipped {
            let _ = writeln!(w, "- **{system}**: {reason}");
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "{}", ANALYSIS.trim_end());
    md
}

fn headline(w: &mut String, results: &Results) {
    let _ = writeln!(w, "## Headline: cairn ÷ peer, events/s\n");
    let _ = writeln!(w, "Ratios above 1 mean cairn is faster. Medians of ratios of runs taken side by side; absolute numbers move with the shared machine's load, ratios much less.\n");
    let present: Vec<&str> =
        PEERS.iter().copied().filter(|p| results.tables.iter().any(|t| t.cell(p).is_some())).collect();
    let _ = write!(w, "| workload | cairn events/s |");
    for p in &present {
        let _ = write!(w, " ÷ {p} |");
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "|---|---:|{}", "---:|".repeat(present.len()));
    for t in results.tables.iter().filter(|t| t.kind != Kind::Reopen) {
        let Some(cairn) = t.cell("cairn").and_then(|c| c.median()) else { continue };
        let _ = write!(w, "| {} | {} |", t.id, fmt_num(cairn.events_per_second));
        for p in &present {
            let _ = write!(w, " {} |", t.throughput_ratio(p).map_or("–".into(), |r| format!("{}x", fmt_ratio(r))));
        }
        let _ = writeln!(w);
    }
}

fn goals_section(w: &mut String, goals: &[Goal]) {
    let _ = writeln!(w, "## Goals (issues 2, 5 and 7)\n");
    let _ = writeln!(w, "| goal | from | target | measured | verdict |\n|---|---|---|---|---|");
    for g in goals {
        let verdict = match g.met {
            Some(true) => "pass",
            Some(false) => "**miss**",
            None => "not measured",
        };
        let _ = writeln!(w, "| {} | {} | {} | {} | {verdict} |", g.what, g.source, g.target, g.measured);
    }
    let _ = writeln!(w);
}

fn machine_section(w: &mut String, results: &Results, m: &Machine) {
    let _ = writeln!(w, "## Machine\n");
    let _ = writeln!(w, "- CPU: {} ({} cores available)", m.cpu, m.cores);
    let _ = writeln!(w, "- Memory: {}", m.memory);
    let _ = writeln!(w, "- Kernel: Linux {}", m.kernel);
    let _ = writeln!(w, "- Disk: {}", m.filesystem);
    let _ = writeln!(w, "- Toolchain: {}", m.rustc);
    let _ = writeln!(w, "- Shared: other jobs (compilers, tests) ran on the same two cores during the run.\n");
    let _ = writeln!(w, "| system | version and settings | concurrency model |\n|---|---|---|");
    for (name, version, model) in &results.systems {
        let _ = writeln!(w, "| {name} | {version} | {model} |");
    }
    let _ = writeln!(w);
}

fn method_section(w: &mut String, results: &Results, scale: &Scale) {
    let _ = writeln!(w, "## Method\n");
    let _ = writeln!(
        w,
        "- Every event carries 256 bytes of incompressible data (a pool of 4,096 random payloads shared by all systems), type `bench.event`; in cairn's log one such event takes {} bytes with its frame.",
        results.frame_bytes
    );
    let _ = writeln!(w, "- Every commit is durable before it is acknowledged: cairn `Durability::Sync` (fdatasync), PostgreSQL `synchronous_commit=on`, SQLite WAL + `synchronous=FULL`, fjall `PersistMode::SyncData` per batch, Redis `appendfsync always`.");
    let _ = writeln!(
        w,
        "- {} repetitions; in each, every workload runs on every system back to back (the order rotates by repetition; the raw baseline runs right before or after cairn). Append runs are time-boxed at {:.1} s each.",
        scale.reps,
        scale.run_for.as_secs_f64()
    );
    let _ = writeln!(w, "- The raw baseline writes exactly the bytes of a cairn commit (one event: {} bytes; batches: that times the batch size) with pwrite + fdatasync, sequentially, into a 256 MiB file that was preallocated and fully written before (so no extent conversion or file growth).", results.frame_bytes);
    let _ = writeln!(w, "- W1: one appender, one event per commit (blocking call). W2: N appenders on N streams, one event per commit, each system in its own concurrency model (table above). W3: one appender, batches of 100 / 1,000 events per commit. W4: as W1 and W2 ×{}, but every append carries an expected version (cairn `ExpectedVersion::Exact`/`NoStream`; PostgreSQL and SQLite the unique (stream, version) key, SQLite also reading the last version in the transaction; fjall a read of the stream's last key; Redis a Lua script comparing XLEN). Before timing, each system must refuse a second append claiming the same version.", scale.checked_appenders);
    let _ = writeln!(
        w,
        "- W5: a log of {} streams × {} events ({} events) that every system loads, streams interleaved (4 loader threads, commits of 100 streams × 10 events). Read-back: {} whole streams per repetition, each checked to hold {} events. Replay: every event in global order (cairn `Log::scan`, which hands out each event borrowed from the mapped segment as SQLite hands out each row's blob, in runs from issue 22 on, `Log::for_each` before; Redis, which has no global order, reads each stream in turn), counted and checked. Verify: cairn `Log::verify` from genesis (CRC + chain), beside BLAKE3 over the same bytes on one core.",
        fmt_num(scale.peer_streams as f64),
        fmt_num(scale.stream_events as f64),
        fmt_num(scale.peer_log_events() as f64),
        scale.stream_reads,
        fmt_num(scale.stream_events as f64)
    );
    if let Some(large) = scale.large_label() {
        let _ = writeln!(
            w,
            "- {large}: the same on cairn alone with {} streams ({} events), the size issue 2's replay, verify and reopen goals are stated at ({} repetitions). The peers load the smaller data set only: loading 10 million events into four peers on this shared 2-core machine takes about half an hour, and their per-event read costs do not depend on it.",
            fmt_num(scale.streams as f64),
            fmt_num(scale.log_events() as f64),
            scale.large_reps
        );
    }
    let _ = writeln!(w, "- W6: a child process appends to cairn's largest W5 log with 16 async appenders and is SIGKILLed mid-append; then a fresh process times `Log::open` (recovery included), first after `sync` + dropping the page cache (cold), then again (warm). {} cycles.\n", scale.reopens);
}

/// Whether a table belongs to the HTTP workload (shown in its own section).
fn is_http(id: &str) -> bool {
    id.starts_with("HTTP ")
}

fn http_section(w: &mut String, results: &Results, scale: &Scale) {
    let tables: Vec<&Table> = results.tables.iter().filter(|t| is_http(&t.id)).collect();
    if tables.is_empty() {
        return;
    }
    let _ = writeln!(w, "## HTTP appends (issue 5)\n");
    let _ = writeln!(
        w,
        "Durable appends over the network: the release `cairn serve` binary on a loopback port and a fresh data directory (default durability: each append answers after its fdatasync), driven by a load generator in the harness that runs N clients on one thread, each with one kept-alive HTTP/1.1 connection, POSTing one event (256 random bytes as `data_b64`) per request to its own stream. Beside it, `redis-benchmark` (also one thread) runs `XADD` with a 256-character value from N clients against the harness's own Redis (Unix socket, appendonly yes, appendfsync always), sized by a calibration run to about the same {:.1} s; its p50/p99 are the ones it reports. The two alternate in order by repetition; medians over {} repetitions. Events per fdatasync come from the server's `/metrics` before and after each run; after each run the harness checks that `/v1/head` grew by exactly the acknowledged appends. Server CPU is the `cairn serve` process's user + system time per append (from /proc, all its threads; the load generator is not counted), in µs: the cost of an append that does not depend on how busy the shared machine was. The batch workload ({} clients, {} events per JSON request) and the NDJSON workload (one client, {} events per request, which the server appends in batches of 1,000 as they arrive) count events, not requests, and their latencies are per request; the Python workloads run the project's client (clients/python: `AsyncClient` with concurrent calls, or the blocking `Client` on one connection) in a process of their own, one event per call, with latencies as the client sees them. Every table notes the commit the server was built from (once, when the run starts).\n",
        scale.run_for.as_secs_f64(),
        scale.reps,
        crate::run::HTTP_BATCH_CLIENTS,
        crate::run::HTTP_BATCH_EVENTS,
        crate::run::HTTP_NDJSON_EVENTS,
    );
    let _ = writeln!(w, "| workload | cairn appends/s | cairn p50 µs | cairn p99 µs | events per fdatasync | server CPU µs per append | Redis XADD/s | Redis p50 µs | Redis p99 µs | cairn ÷ Redis |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for t in &tables {
        let cairn = t.cell("cairn").and_then(|c| c.median());
        let redis = t.cell("redis").and_then(|c| c.median());
        let num =
            |s: &Option<Summary>, f: fn(&Summary) -> Option<f64>| s.as_ref().and_then(f).map_or("–".into(), fmt_num);
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.id.trim_start_matches("HTTP "),
            num(&cairn, |s| Some(s.events_per_second)),
            num(&cairn, |s| s.p50_us),
            num(&cairn, |s| s.p99_us),
            num(&cairn, |s| s.events_per_sync),
            num(&cairn, |s| s.cpu_us_per_event),
            num(&redis, |s| Some(s.events_per_second)),
            num(&redis, |s| s.p50_us),
            num(&redis, |s| s.p99_us),
            t.throughput_ratio("redis").map_or("–".into(), |r| format!("{}x", fmt_ratio(r))),
        );
    }
    let _ = writeln!(
        w,
        "\nTargets (issue 5), with the most clients: at least Redis's rate, and at least {} appends/s in any case; see the goals table above.\n",
        fmt_num(HTTP_APPENDS_TARGET)
    );
    for table in tables {
        table_section(w, table);
    }
}

fn table_section(w: &mut String, table: &Table) {
    let _ = writeln!(w, "### {}: {}\n", table.id, table.title);
    let latency_unit = if table.kind == Kind::Reopen { "ms" } else { "µs" };
    let _ = writeln!(
        w,
        "| system | events/s | p50 {latency_unit} | p99 {latency_unit} | p99.9 {latency_unit} | runs | cairn ÷ system | notes |\n|---|---:|---:|---:|---:|---:|---:|---|"
    );
    for cell in &table.cells {
        let m = cell.median();
        let lat = |f: fn(&Summary) -> Option<f64>| {
            m.as_ref().and_then(f).map_or("–".into(), |us| {
                if table.kind == Kind::Reopen {
                    format!("{:.0}", us / 1000.0)
                } else {
                    fmt_num(us)
                }
            })
        };
        let ratio = if cell.system == "cairn" {
            "".into()
        } else if cell.system == RAW && table.kind == Kind::Append {
            table.paired_ratio("cairn", RAW, |s| s.p50_us).map_or("–".into(), |r| format!("{r:.2}x latency"))
        } else {
            table.throughput_ratio(&cell.system).map_or("–".into(), |r| format!("{}x", fmt_ratio(r)))
        };
        let mut notes = cell.notes.join("; ");
        if let (Some(per), Some(us)) = (m.as_ref().and_then(|s| s.events_per_sync), m.as_ref().and_then(|s| s.sync_us))
        {
            if !notes.is_empty() {
                notes.push_str("; ");
            }
            let _ = write!(notes, "{per:.1} events per fdatasync, {us:.0} µs per fdatasync");
        }
        // Process CPU is the engine's own only for cairn and the in-process baselines (peers'
        // servers run elsewhere, and the harness's client threads would be counted instead).
        if cell.system == "cairn" && table.kind == Kind::Reopen {
            if let Some(cpu) = m.as_ref().and_then(|s| s.cpu_seconds) {
                let _ = write!(notes, "; CPU time of the opening process {:.0} ms", cpu * 1000.0);
            }
        } else if cell.system == "cairn" || cell.system == RAW || cell.system == BLAKE3 {
            if let Some(cpu) = m.as_ref().and_then(|s| s.cpu_us_per_event) {
                if !notes.is_empty() {
                    notes.push_str("; ");
                }
                let _ = write!(
                    notes,
                    "{cpu:.2} µs CPU per event (all threads; {} events per CPU-second)",
                    fmt_num(1e6 / cpu)
                );
            }
        }
        for e in &cell.errors {
            if !notes.is_empty() {
                notes.push_str("; ");
            }
            let _ = write!(notes, "failed: {e}");
        }
        let eps = if table.kind == Kind::Reopen {
            "–".into()
        } else {
            m.as_ref().map_or("–".into(), |s| fmt_num(s.events_per_second))
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            cell.system,
            eps,
            lat(|s| s.p50_us),
            lat(|s| s.p99_us),
            lat(|s| s.p999_us),
            cell.runs.iter().flatten().count(),
            ratio,
            notes.replace('|', "/")
        );
    }
    let _ = writeln!(w);
}

/// 1234567.8 → "1,234,568"; values under 100 keep one decimal.
pub fn fmt_num(v: f64) -> String {
    if v.abs() < 100.0 {
        return format!("{v:.1}");
    }
    let s = format!("{:.0}", v.round());
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_num;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(fmt_num(1_234_567.8), "1,234,568");
        assert_eq!(fmt_num(999.0), "999");
        assert_eq!(fmt_num(100_000.0), "100,000");
        assert_eq!(fmt_num(12.34), "12.3");
    }
}
