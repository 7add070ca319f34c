//! cairn-bench: cairn's log engine against the stores people would pick instead, in one run,
//! on one machine, beside the physical limit (raw pwrite + fdatasync, BLAKE3).
//!
//! ```text
//! cargo run --release --manifest-path benches/harness/Cargo.toml -- --quick   # < 5 minutes
//! cargo run --release --manifest-path benches/harness/Cargo.toml -- --full    # the published run
//! ```
//!
//! A run writes `docs/benchmarks.md`, `docs/benchmarks.svg` and `docs/benchmarks.json` (`--out
//! DIR` puts them elsewhere). The JSON file holds the run's numbers (per-repetition summaries,
//! not raw samples) and the facts the report states about the run: sizes, machine, peer
//! versions, start time, duration. So the analysis (`analysis.md`, included verbatim) can be
//! written after seeing a run's numbers, and the report rewritten without running again:
//!
//! ```text
//! cargo run --release --manifest-path benches/harness/Cargo.toml -- --report-from docs/benchmarks.json
//! ```
//!
//! That writes `benchmarks.md` and `benchmarks.svg` into `--out` (docs/ by default) with the
//! current analysis and wording: the report the run wrote, plus one line saying when it was
//! regenerated (its header still says when and at which scale the numbers were measured). It
//! runs no workload and starts no peer.
//!
//! The HTTP workloads run the root workspace's `target/release/cairn` as `cairn serve` beside
//! `redis-benchmark`: `cargo build --release -p cairn` runs once when the run starts (it rebuilds
//! only when stale) and the report names the checkout's commit, or `$CAIRN_BENCH_BIN` names a
//! binary built elsewhere; `--http-only` runs just them.
//! The Python-client workloads need `cairn_client` importable by `$CAIRN_BENCH_PYTHON` (default
//! `python3`) and are skipped otherwise. Peers that cannot start
//! (`benches/setup.sh` installs them) are skipped with a message. Module map: `systems/` (one
//! module per system behind one trait), `workloads/` (what is measured), `raw.rs` (the
//! physical limits), `stats.rs`, `results.rs`, `report.rs` + `svg.rs` (output), `saved.rs` (benchmarks.json), `run.rs`
//! (the order of everything), `machine.rs`.
//!
//! The binary also has two hidden child modes used by workload 6 (`--child-kill DIR`,
//! `--child-open DIR`): the process that gets SIGKILLed, and the fresh process that reopens.

mod cpu;
mod error;
mod machine;
mod raw;
mod report;
mod results;
mod run;
mod saved;
mod stats;
mod svg;
mod systems;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Benchmarks cairn's log engine (and `cairn serve` over HTTP) against PostgreSQL, SQLite,
/// fjall and Redis Streams.
#[derive(Debug, Parser)]
#[command(group(
    clap::ArgGroup::new("mode").args(["quick", "full", "report_from", "child_kill", "child_open"]).required(true)
))]
struct Args {
    /// Short runs and a 1-million-event log; under five minutes.
    #[arg(long)]
    quick: bool,
    /// The published sizes: longer runs, more repetitions, a 10-million-event log.
    #[arg(long)]
    full: bool,
    /// Only these systems (comma-separated: cairn,postgres,sqlite,fjall,redis); cairn always runs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Scratch directory (on the disk to measure); a fresh one under the temp dir by default.
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Write the report again from a saved run's benchmarks.json (with the current analysis.md),
    /// running nothing.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["only", "scratch", "keep"])]
    report_from: Option<PathBuf>,
    /// Where to write benchmarks.md, benchmarks.svg and (after a run) benchmarks.json.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs"))]
    out: PathBuf,
    /// Keep the scratch directory afterwards.
    #[arg(long)]
    keep: bool,
    /// Only the HTTP workloads (cairn serve beside Redis, the batch and NDJSON paths, the Python
    /// client), at the chosen scale; write the report to a directory of its own with --out.
    #[arg(long)]
    http_only: bool,
    #[arg(long, hide = true, value_name = "DIR")]
    child_kill: Option<PathBuf>,
    #[arg(long, hide = true, value_name = "DIR")]
    child_open: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = if let Some(dir) = &args.child_kill {
        workloads::reopen::child_kill(dir)
    } else if let Some(dir) = &args.child_open {
        workloads::reopen::child_open(dir)
    } else if let Some(file) = &args.report_from {
        saved::regenerate(file, &args.out)
    } else {
        let scale = if args.full { workloads::Scale::FULL } else { workloads::Scale::QUICK };
        run::run(&run::Plan {
            scale,
            only: args.only,
            scratch: args.scratch,
            out: args.out,
            keep: args.keep,
            http_only: args.http_only,
        })
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
