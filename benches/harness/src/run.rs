//! The order of a run: start the peers, run workloads 1-4 on one set of stores, workload 5 on
//! fresh stores, workload 6 on cairn's workload-5 log, then save the numbers (benchmarks.json)
//! and write the report from them.
//!
//! Interleaving: each repetition runs every workload on every system back to back (the order
//! of systems rotates with the repetition), so a noisy minute on the shared machine hits all
//! systems of a workload alike. The raw baseline runs right before cairn in even repetitions
//! and right after it in odd ones. A failed run is recorded in its table and the run goes on;
//! only cairn failing to open, or the scratch area, stops everything.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cpu;
use crate::error::{BenchError, Result};
use crate::machine::Machine;
use crate::raw::{self, RawFile};
use crate::report::{self, BLAKE3, RAW};
use crate::results::{Kind, Results};
use crate::saved::{self, SavedRun};
use crate::stats::Measurement;
use crate::systems::cairn::{self, Cairn};
use crate::systems::fjall::Fjall;
use crate::systems::postgres::Cluster;
use crate::systems::redis::Redis;
use crate::systems::sqlite::Sqlite;
use crate::systems::{Payloads, System};
use crate::workloads::{append, http, read, reopen, Scale};

/// Seed of the shared payload pool.
const PAYLOAD_SEED: u64 = 0x5EED_CA1E_2026;

#[derive(Debug)]
pub struct Plan {
    pub scale: Scale,
    pub only: Vec<String>,
    pub scratch: Option<PathBuf>,
    pub out: PathBuf,
    pub keep: bool,
    /// Only the HTTP workloads (no PostgreSQL, no embedded workloads).
    pub http_only: bool,
}

pub fn run(plan: &Plan) -> Result<()> {
    let started = Instant::now();
    let scale = plan.scale;
    let scratch = plan
        .scratch
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("cairn-bench-{}", std::process::id())));
    std::fs::create_dir_all(&scratch).map_err(|e| BenchError::io("create the scratch directory", &scratch, e))?;
    // The PostgreSQL server runs as another user and must be able to reach its directory.
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| BenchError::io("open up the scratch directory", &scratch, e))?;
    eprintln!("cairn-bench --{}: scratch directory {}", scale.name, scratch.display());

    // Built (or found up to date) once, before anything is measured: a build while a workload
    // runs would compete with it, and one after a rebase would measure another commit.
    let (binary, commit) = match std::env::var_os("CAIRN_BENCH_BIN") {
        // A binary built elsewhere (another checkout or commit): the report says which file.
        Some(bin) => {
            let bin = PathBuf::from(bin);
            let said = format!("the binary {} (CAIRN_BENCH_BIN)", bin.display());
            (Ok(bin), said)
        }
        None => {
            let commit = http::checkout_commit();
            (http::cairn_binary(), commit)
        }
    };
    let binary = binary.map(|bin| (bin, commit.clone()));
    eprintln!("cairn serve for the HTTP workloads: {commit}");

    let machine = Machine::probe(&scratch);
    let payloads = Payloads::new(PAYLOAD_SEED);
    let mut results = Results {
        frame_bytes: cairn::frame_bytes_per_event(&scratch.join("probe"), &payloads)?,
        started: utc_now(),
        ..Default::default()
    };
    let wanted = |name: &str| plan.only.is_empty() || name == "cairn" || plan.only.iter().any(|o| o == name);

    let cluster = if wanted("postgres") {
        eprintln!("starting a throwaway PostgreSQL cluster");
        match Cluster::start(&scratch.join("postgres")) {
            Ok(c) => Some(c),
            Err(e) => {
                skip(&mut results, "postgres", &e.to_string());
                None
            }
        }
    } else {
        None
    };

    if !plan.http_only {
        let systems = open_systems("appends", &scratch, cluster.as_ref(), &mut results, &wanted)?;
        for s in &systems {
            results.systems.push((s.name().to_string(), s.version(), s.concurrency_model().to_string()));
        }
        let mut raw = RawFile::create(&scratch.join("raw.bin"))?;
        append_phase(&systems, &mut raw, &scale, &payloads, &mut results);
    }
    if !plan.http_only {
        let systems = open_systems("log", &scratch, cluster.as_ref(), &mut results, &wanted)?;
        read_phase(&systems, "W5", scale.peer_streams, &scale, &payloads, &mut results);
    }
    drop(cluster);
    http_phase(&scratch, &scale, &payloads, &mut results, wanted("redis"), &binary);
    if !plan.http_only {
        let reopen_log = match scale.large_label() {
            Some(label) => {
                let dir = scratch.join("cairn-large");
                let systems: Vec<Box<dyn System>> = vec![Box::new(Cairn::open(&dir)?)];
                let scale = Scale { reps: scale.large_reps, ..scale };
                read_phase(&systems, &label, scale.streams, &scale, &payloads, &mut results);
                dir
            }
            None => scratch.join("cairn-log"),
        };
        reopen_phase(&reopen_log, &scale, &mut results);
    }

    results.seconds = started.elapsed().as_secs_f64();
    let saved = SavedRun::new(results, machine, scale);
    // The numbers first: should writing the report fail, they can still be rendered later.
    let json = saved.write(&plan.out)?;
    let md = report::write(&plan.out, &saved, None)?;
    eprintln!("wrote {}, {} and benchmarks.svg after {:.0} s", json.display(), md.display(), saved.results.seconds);
    saved::check_reproducible(&json, &saved);
    report::print_goals(&saved);
    if !plan.keep {
        if let Err(e) = std::fs::remove_dir_all(&scratch) {
            eprintln!("warning: could not remove the scratch directory {}: {e}", scratch.display());
        }
    }
    Ok(())
}

fn skip(results: &mut Results, system: &str, reason: &str) {
    eprintln!("skipping {system}: {reason}");
    if !results.skipped.iter().any(|(s, _)| s == system) {
        results.skipped.push((system.to_string(), reason.to_string()));
    }
}

/// cairn first, then every wanted peer that starts; `tag` keeps each phase's stores apart.
fn open_systems(
    tag: &str,
    scratch: &Path,
    cluster: Option<&Cluster>,
    results: &mut Results,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Box<dyn System>>> {
    let mut systems: Vec<Box<dyn System>> = vec![Box::new(Cairn::open(&scratch.join(format!("cairn-{tag}")))?)];
    let mut add = |name: &str, opened: Result<Box<dyn System>>| match opened {
        Ok(s) => systems.push(s),
        Err(e) => skip(results, name, &e.to_string()),
    };
    if let Some(cluster) = cluster {
        add("postgres", cluster.database(tag).map(|d| Box::new(d) as Box<dyn System>));
    }
    if wanted("sqlite") {
        add("sqlite", Sqlite::open(&scratch.join(format!("sqlite-{tag}.db"))).map(|s| Box::new(s) as Box<dyn System>));
    }
    if wanted("fjall") {
        add("fjall", Fjall::open(&scratch.join(format!("fjall-{tag}"))).map(|s| Box::new(s) as Box<dyn System>));
    }
    if wanted("redis") {
        add("redis", Redis::start(&scratch.join(format!("redis-{tag}"))).map(|s| Box::new(s) as Box<dyn System>));
    }
    Ok(systems)
}

/// Indices of `n` systems, rotated by the repetition number.
fn rotation(n: usize, rep: usize) -> Vec<usize> {
    (0..n).map(|i| (i + rep) % n).collect()
}

/// Runs `f` on every system in this repetition's order (raw next to cairn) and files results.
fn round(
    results: &mut Results,
    id: &str,
    rep: usize,
    systems: &[Box<dyn System>],
    mut raw: Option<&mut dyn FnMut() -> Result<Measurement>>,
    mut f: impl FnMut(&dyn System) -> Result<Measurement>,
) {
    for i in rotation(systems.len(), rep) {
        let system = systems[i].as_ref();
        let is_cairn = system.name() == "cairn";
        if is_cairn && rep.is_multiple_of(2) {
            if let Some(raw) = raw.as_mut() {
                let m = with_cpu(&mut **raw);
                results.table_mut(id).record(RAW, rep, m);
            }
        }
        let m = observed(system, &mut f);
        results.table_mut(id).record(system.name(), rep, m);
        if is_cairn && rep % 2 == 1 {
            if let Some(raw) = raw.as_mut() {
                let m = with_cpu(&mut **raw);
                results.table_mut(id).record(RAW, rep, m);
            }
        }
    }
}

/// Runs `f`, adding the process CPU time it took.
fn with_cpu(f: &mut dyn FnMut() -> Result<Measurement>) -> Result<Measurement> {
    let before = cpu::process_cpu();
    let mut m = f();
    if let (Ok(m), Some(before), Some(after)) = (m.as_mut(), before, cpu::process_cpu()) {
        m.cpu = Some(after.saturating_sub(before));
    }
    m
}

/// Runs `f` on `system`, adding the process CPU time and the engine's sync counters.
fn observed(system: &dyn System, f: &mut dyn FnMut(&dyn System) -> Result<Measurement>) -> Result<Measurement> {
    let syncs_before = system.sync_counters();
    let mut m = with_cpu(&mut || f(system));
    if let (Ok(m), Some(before), Some(after)) = (m.as_mut(), syncs_before, system.sync_counters()) {
        m.syncs = before.until(&after);
    }
    m
}

fn append_phase(
    systems: &[Box<dyn System>],
    raw: &mut RawFile,
    scale: &Scale,
    payloads: &Payloads,
    results: &mut Results,
) {
    let [a0, a1, a2] = scale.appenders;
    let [b0, b1] = scale.batch_sizes;
    let c = scale.checked_appenders;
    let tables = [
        ("W1".to_string(), "1 appender, 1 event per commit".to_string()),
        (format!("W2 ×{a0}"), format!("{a0} concurrent appenders, 1 event per commit")),
        (format!("W2 ×{a1}"), format!("{a1} concurrent appenders, 1 event per commit")),
        (format!("W2 ×{a2}"), format!("{a2} concurrent appenders, 1 event per commit")),
        (format!("W3 ×{b0}"), format!("1 appender, batches of {b0} events per commit")),
        (format!("W3 ×{b1}"), format!("1 appender, batches of {b1} events per commit")),
        ("W4".to_string(), "1 appender, 1 event per commit, with an expected-version check".to_string()),
        (format!("W4 ×{c}"), format!("{c} concurrent appenders, 1 event per commit, with an expected-version check")),
    ];
    for (id, title) in &tables {
        results.tables.push(crate::results::Table::new(id.clone(), title.clone(), Kind::Append));
    }
    let mut checks_ok = Vec::new();
    for s in systems {
        let ok = append::check_conflict_is_refused(s.as_ref(), "w4-conflict-probe", payloads);
        if let Err(e) = &ok {
            eprintln!("{}: the expected-version check did not hold: {e}", s.name());
            let msg = e.to_string();
            for id in ["W4".to_string(), format!("W4 ×{c}")] {
                results.table_mut(&id).record(
                    s.name(),
                    0,
                    Err(BenchError::system(s.name(), "refuse a conflicting append", msg.clone())),
                );
            }
        }
        checks_ok.push(ok.is_ok());
    }
    let frame = results.frame_bytes as usize;
    let run_for = scale.run_for;
    for rep in 0..scale.reps {
        eprintln!("appends, repetition {}/{}", rep + 1, scale.reps);
        let mut raw1 = || raw.commits(frame, 1, run_for, payloads);
        round(results, "W1", rep, systems, Some(&mut raw1), |s| {
            append::single(s, &format!("w1-r{rep}"), run_for, false, payloads)
        });
        for n in scale.appenders {
            round(results, &format!("W2 ×{n}"), rep, systems, None, |s| {
                append::concurrent(s, &format!("w2-{n}-r{rep}"), n, run_for, false, payloads)
            });
        }
        for size in scale.batch_sizes {
            let mut rawb = || raw.commits(frame * size, size as u64, run_for, payloads);
            round(results, &format!("W3 ×{size}"), rep, systems, Some(&mut rawb), |s| {
                append::batches(s, &format!("w3-{size}-r{rep}"), size, run_for, payloads)
            });
        }
        let ok = |s: &dyn System| systems.iter().zip(&checks_ok).any(|(x, ok)| x.name() == s.name() && *ok);
        round(results, "W4", rep, systems, None, |s| {
            if !ok(s) {
                return Err(skipped_check(s));
            }
            append::single(s, &format!("w4-r{rep}"), run_for, true, payloads)
        });
        round(results, &format!("W4 ×{c}"), rep, systems, None, |s| {
            if !ok(s) {
                return Err(skipped_check(s));
            }
            append::concurrent(s, &format!("w4-{c}-r{rep}"), c, run_for, true, payloads)
        });
    }
}

fn skipped_check(s: &dyn System) -> BenchError {
    BenchError::system(s.name(), "run W4", "its expected-version check did not refuse a conflict")
}

/// Workload 5 on `systems` with a data set of `streams` streams; its tables are `{label} …`.
fn read_phase(
    systems: &[Box<dyn System>],
    label: &str,
    streams: usize,
    scale: &Scale,
    payloads: &Payloads,
    results: &mut Results,
) {
    let n = (streams * scale.stream_events) as u64;
    let events = report::fmt_num(n as f64);
    let load_id = format!("{label} load");
    let read_id = format!("{label} read-back");
    let replay_id = format!("{label} replay");
    let verify_id = format!("{label} verify");
    let load_title = format!(
        "loading the W5 log: {events} events, durable commits of 100 streams × 10 events by {} threads (one run)",
        read::LOADERS
    );
    let read_title = format!(
        "read one whole {}-event stream out of {} streams ({events} events)",
        scale.stream_events,
        report::fmt_num(streams as f64)
    );
    for (id, title) in [
        (&load_id, load_title),
        (&read_id, read_title),
        (&replay_id, format!("replay of the whole {events}-event log")),
        (&verify_id, format!("chain verification of the whole {events}-event log")),
    ] {
        results.tables.push(crate::results::Table::new(id.clone(), title, Kind::Read));
    }
    let frame = results.frame_bytes as usize;
    let mut loaded = Vec::new();
    for s in systems {
        eprintln!("loading {events} events into {}", s.name());
        let m = observed(s.as_ref(), &mut |s| read::load(s, streams, scale.stream_events, payloads));
        loaded.push(m.is_ok());
        results.table_mut(&load_id).record(s.name(), 0, m);
    }
    let usable = |s: &dyn System| systems.iter().zip(&loaded).any(|(x, ok)| x.name() == s.name() && *ok);
    let not_loaded = |s: &dyn System| BenchError::system(s.name(), "run W5", "its load failed");
    for rep in 0..scale.reps {
        eprintln!("reads ({label}), repetition {}/{}", rep + 1, scale.reps);
        round(results, &read_id, rep, systems, None, |s| {
            if !usable(s) {
                return Err(not_loaded(s));
            }
            read::read_back(s, streams, scale.stream_events, scale.stream_reads, rep)
        });
        round(
            results,
            &replay_id,
            rep,
            systems,
            None,
            |s| if usable(s) { read::replay(s, n) } else { Err(not_loaded(s)) },
        );
        // BLAKE3 over the same bytes runs right before cairn's verify in even repetitions and
        // right after it in odd ones.
        let blake = |results: &mut Results| {
            let m = with_cpu(&mut || Ok(raw::blake3_per_event(n, frame, payloads)));
            results.table_mut(&verify_id).record(BLAKE3, rep, m);
        };
        if rep.is_multiple_of(2) {
            blake(results);
        }
        for s in systems.iter().filter(|s| s.verify_supported()) {
            let m = observed(s.as_ref(), &mut |s| s.verify().expect("verify is supported"));
            results.table_mut(&verify_id).record(s.name(), rep, m);
        }
        if !rep.is_multiple_of(2) {
            blake(results);
        }
    }
}

/// Table id of the HTTP workload at `clients` clients.
pub fn http_table(clients: usize) -> String {
    format!("HTTP ×{clients}")
}

/// Events per request of the HTTP batch workload (issue 22's batch path).
pub const HTTP_BATCH_EVENTS: usize = 1_000;
/// Events per request (lines) of the HTTP NDJSON workload.
pub const HTTP_NDJSON_EVENTS: usize = 10_000;
/// Concurrent clients of the batch workload.
pub const HTTP_BATCH_CLIENTS: usize = 4;

/// One HTTP workload: its table, what it runs, and whether Redis runs beside it.
#[derive(Debug, Clone)]
struct HttpWorkload {
    id: String,
    title: String,
    clients: usize,
    load: HttpLoad,
    with_redis: bool,
}

#[derive(Debug, Clone, Copy)]
enum HttpLoad {
    /// The harness's own load generator, requests of this shape.
    Harness(http::Shape),
    /// The Python client: `AsyncClient` (true) or the blocking `Client` (false).
    Python(bool),
}

fn http_workloads(scale: &Scale, python: bool) -> Vec<HttpWorkload> {
    let mut out: Vec<HttpWorkload> = scale
        .http_clients
        .iter()
        .map(|&n| HttpWorkload {
            id: http_table(n),
            title: format!(
                "{n} HTTP client{} appending one 256-byte event per request, durable",
                if n == 1 { "" } else { "s" }
            ),
            clients: n,
            load: HttpLoad::Harness(http::Shape::Single),
            with_redis: true,
        })
        .collect();
    out.push(HttpWorkload {
        id: format!("HTTP batch ×{HTTP_BATCH_EVENTS}"),
        title: format!(
            "{HTTP_BATCH_CLIENTS} HTTP clients appending {HTTP_BATCH_EVENTS} 256-byte events per JSON request, durable"
        ),
        clients: HTTP_BATCH_CLIENTS,
        load: HttpLoad::Harness(http::Shape::Batch(HTTP_BATCH_EVENTS)),
        with_redis: false,
    });
    out.push(HttpWorkload {
        id: format!("HTTP NDJSON ×{HTTP_NDJSON_EVENTS}"),
        title: format!("1 HTTP client streaming {HTTP_NDJSON_EVENTS} 256-byte events per NDJSON request, durable"),
        clients: 1,
        load: HttpLoad::Harness(http::Shape::Ndjson(HTTP_NDJSON_EVENTS)),
        with_redis: false,
    });
    if python {
        let most = scale.http_clients.iter().copied().max().unwrap_or(1);
        out.push(HttpWorkload {
            id: format!("HTTP Python async ×{most}"),
            title: format!("the Python AsyncClient, {most} concurrent single-event appends, durable"),
            clients: most,
            load: HttpLoad::Python(true),
            with_redis: false,
        });
        out.push(HttpWorkload {
            id: "HTTP Python sync ×1".into(),
            title: "the Python blocking Client, one connection, single-event appends, durable".into(),
            clients: 1,
            load: HttpLoad::Python(false),
            with_redis: false,
        });
    }
    out
}

/// The HTTP workloads: `cairn serve` (the binary built at the start of the run, from
/// `commit`) and (when wanted) Redis started fresh, then, per repetition and workload, cairn
/// and Redis side by side (the order alternates by repetition).
fn http_phase(
    scratch: &Path,
    scale: &Scale,
    payloads: &Payloads,
    results: &mut Results,
    with_redis: bool,
    binary: &Result<(PathBuf, String)>,
) {
    let python = match http::python_client() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("http: the Python client workloads are skipped: {e}");
            false
        }
    };
    let workloads = http_workloads(scale, python);
    for w in &workloads {
        results.tables.push(crate::results::Table::new(w.id.clone(), w.title.clone(), Kind::Append));
    }
    let record_all = |results: &mut Results, system: &str, e: &BenchError| {
        for w in &workloads {
            results.table_mut(&w.id).record(
                system,
                0,
                Err(BenchError::system("cairn-bench", "run the HTTP workload", e)),
            );
        }
    };
    let server = match binary {
        Ok((bin, _)) => http::CairnServer::start(bin, &scratch.join("cairn-http")),
        Err(e) => Err(BenchError::system("cairn", "build the cairn binary", e)),
    };
    let server = match server {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("http: cairn serve did not start: {e}");
            record_all(results, "cairn", &e);
            None
        }
    };
    let commit = binary.as_ref().map(|(_, c)| c.clone()).unwrap_or_default();
    let redis = if with_redis {
        match Redis::start(&scratch.join("redis-http")) {
            Ok(r) => Some(r),
            Err(e) => {
                skip(results, "redis", &e.to_string());
                None
            }
        }
    } else {
        None
    };
    for rep in 0..scale.reps {
        eprintln!("http appends, repetition {}/{}", rep + 1, scale.reps);
        for w in &workloads {
            let streams = format!("http-{}-r{rep}", w.id.replace([' ', '×'], ""));
            let cairn_run = |results: &mut Results| {
                if let Some(server) = &server {
                    // CPU time is the server's (measured inside), not the load generator's.
                    let m = match w.load {
                        HttpLoad::Harness(shape) => server.appends(&streams, w.clients, shape, scale.run_for, payloads),
                        HttpLoad::Python(asynchronous) => {
                            server.python_appends(&streams, w.clients, asynchronous, scale.run_for)
                        }
                    };
                    let m = m.map(|mut m| {
                        let built = format!("cairn serve at {commit}");
                        m.note = Some(m.note.map_or(built.clone(), |n| format!("{n}; {built}")));
                        m
                    });
                    results.table_mut(&w.id).record("cairn", rep, m);
                }
            };
            let redis_run = |results: &mut Results| {
                if let Some(redis) = redis.as_ref().filter(|_| w.with_redis) {
                    let m = http::redis_benchmark(redis.socket(), &streams, w.clients, scale.run_for, payloads);
                    results.table_mut(&w.id).record("redis", rep, m);
                }
            };
            if rep.is_multiple_of(2) {
                cairn_run(results);
                redis_run(results);
            } else {
                redis_run(results);
                cairn_run(results);
            }
        }
    }
}

fn reopen_phase(dir: &Path, scale: &Scale, results: &mut Results) {
    let events = report::fmt_num(scale.log_events() as f64);
    results.tables.push(crate::results::Table::new(
        "W6 cold",
        format!("reopen after SIGKILL at {events} events, page cache dropped"),
        Kind::Reopen,
    ));
    results.tables.push(crate::results::Table::new(
        "W6 warm",
        format!("reopen after SIGKILL at {events} events, page cache warm"),
        Kind::Reopen,
    ));
    for rep in 0..scale.reopens {
        eprintln!("reopen after kill, cycle {}/{}", rep + 1, scale.reopens);
        match reopen::cycle(dir) {
            Ok(r) => {
                let as_measurement = |(wall, cpu): (Duration, Duration)| Measurement {
                    events: r.events,
                    elapsed: wall,
                    latencies_ns: vec![wall.as_nanos() as u64],
                    note: Some(format!("{:.2} million events in the log", r.events as f64 / 1e6)),
                    syncs: None,
                    cpu: Some(cpu),
                    reported: None,
                };
                match r.cold {
                    Some(times) => results.table_mut("W6 cold").record("cairn", rep, Ok(as_measurement(times))),
                    None => results.table_mut("W6 cold").record(
                        "cairn",
                        rep,
                        Err(BenchError::system(
                            "cairn",
                            "drop the page cache",
                            "only root may; cold reopen not measured",
                        )),
                    ),
                }
                results.table_mut("W6 warm").record("cairn", rep, Ok(as_measurement(r.warm)));
            }
            Err(e) => results.table_mut("W6 warm").record("cairn", rep, Err(e)),
        }
    }
}

/// The current time as the report states it, e.g. `2026-11-22 20:39 UTC`.
pub fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map_or_else(|| "at an unknown time".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}
