//! The power-loss driver shared by `power_loss.rs` and `broken_build.rs`.
//!
//! One *seed* is one scenario: one to three rounds of "open through [`FaultFs`] with the power
//! set to fail after a random number of operations, append (one client, or three concurrent
//! ones) until the failure stops the log, drop it, apply a seeded power loss". A crash can land
//! anywhere: in the first segment's creation, a group's pwrite or fdatasync, a segment's seal,
//! the next segment's preparation, header, rename or directory fsync, or in the recovery of the
//! previous round's damage. Then the real file system reopens the log and [`check`] compares
//! it with every acknowledgement of every round; then a few more batches are appended, and the
//! log is reopened and checked again (damage left behind by recovery shows only then).

use std::sync::{Arc, Mutex};

use log_engine::faults::{FaultFs, PowerLossReport, SplitMix};
use log_engine::{Log, Options, Sabotage};

use super::*;

/// Crash points are drawn from `0..OPS_MAX` mutating operations (a few segments' worth).
pub const OPS_MAX: u64 = 400;
/// Crash rounds per scenario at most.
pub const ROUNDS_MAX: u64 = 3;
/// Concurrent clients in the concurrent variant.
pub const CLIENTS: u64 = 3;
/// Batches a client appends at most in one round (the crash normally stops it first).
pub const BATCHES_MAX: u64 = 5_000;
/// Batches appended after the check, before the second reopen.
pub const CONTINUE_BATCHES: u64 = 8;

/// What one scenario did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub report: Report,
    pub crashes: u64,
    pub loss: PowerLossReport,
    pub injected_ops: u64,
    /// The fault layer's last operations of the last round, for a failure message.
    pub trace: Vec<String>,
}

fn add(total: &mut PowerLossReport, r: PowerLossReport) {
    total.sectors_pending += r.sectors_pending;
    total.sectors_lost += r.sectors_lost;
    total.files_shrunk += r.files_shrunk;
    total.dir_ops_pending += r.dir_ops_pending;
    total.dir_ops_undone += r.dir_ops_undone;
}

/// Runs the scenario of `seed`, with the writer sabotaged as given.
pub fn run_seed(seed: u64, sabotage: Sabotage) -> Outcome {
    run(seed, sabotage, false)
}

/// Runs the scenario of `seed` with encryption at rest: the key store (a new stream's secret
/// is appended and fdatasynced before its first record) crashes and loses power with the rest.
pub fn run_seed_encrypted(seed: u64) -> Outcome {
    run(seed, Sabotage::Off, true)
}

fn run(seed: u64, sabotage: Sabotage, encrypted: bool) -> Outcome {
    let dir = scratch_dir();
    let mut rng = SplitMix(seed);
    let mut out = Outcome::default();
    let mut acks: Vec<Ack> = Vec::new();
    let rounds = 1 + rng.below(ROUNDS_MAX);
    for round in 0..rounds {
        let fs = FaultFs::new();
        // A quarter of the crashes land early: in open, recovery, or the first appends.
        let budget = if rng.below(4) == 0 { rng.below(24) } else { rng.below(OPS_MAX) };
        fs.crash_after(budget);
        let options = if encrypted {
            keyed_options(dir.path(), Arc::new(fs.clone())).map(|o| Options { sabotage, ..o })
        } else {
            Ok(Options { fs: Arc::new(fs.clone()), sabotage, ..options() })
        };
        if let Ok(log) = options.and_then(|options| Log::open(dir.path(), options)) {
            if rng.below(2) == 0 {
                let (mut a, _) = append_batches(&log, seed, round, 0, BATCHES_MAX);
                acks.append(&mut a);
            } else {
                let shared = Arc::new(Mutex::new(Vec::new()));
                std::thread::scope(|s| {
                    for client in 0..CLIENTS {
                        let log = log.clone();
                        let shared = shared.clone();
                        s.spawn(move || {
                            let (a, _) = append_batches(&log, seed, round, client, BATCHES_MAX);
                            shared.lock().expect("no panics while held").extend(a);
                        });
                    }
                });
                acks.extend(shared.lock().expect("no panics while held").drain(..));
            }
            drop(log);
        }
        out.crashes += u64::from(fs.crashed());
        out.injected_ops += fs.stats().ops;
        let loss = fs.power_loss_report(rng.next()).expect("apply power loss");
        add(&mut out.loss, loss);
        out.trace = fs.trace();
    }
    out.report = check_with(dir.path(), seed, &acks, encrypted);
    if out.report.ok() {
        // Recovery may leave damage that only shows once more is written: write, reopen, check.
        match reopen_options(dir.path(), encrypted).and_then(|options| Log::open(dir.path(), options)) {
            Ok(log) => {
                let (mut more, err) = append_batches(&log, seed, rounds, 0, CONTINUE_BATCHES);
                if let Some(e) = err {
                    out.report.violations.push(format!("append after recovery failed: {e}"));
                }
                acks.append(&mut more);
                drop(log);
                out.report = check_with(dir.path(), seed, &acks, encrypted);
            }
            Err(e) => out.report.violations.push(format!("second reopen failed: {e}")),
        }
    }
    out
}

/// Sums over many scenarios, for the suites' summaries and docs/reliability.md.
#[derive(Debug, Default)]
pub struct Totals {
    pub seeds: u64,
    pub crashes: u64,
    pub ops: u64,
    pub loss: PowerLossReport,
    pub events_checked: u64,
    pub acknowledged: u64,
    pub lost: u64,
    /// Seeds with a lost acknowledged event, or any other violation, with the first problem.
    pub failures: Vec<(u64, String)>,
}

impl Totals {
    pub fn add(&mut self, seed: u64, o: &Outcome) {
        self.seeds += 1;
        self.crashes += o.crashes;
        self.ops += o.injected_ops;
        add(&mut self.loss, o.loss);
        self.events_checked += o.report.events;
        self.acknowledged += o.report.acknowledged;
        self.lost += o.report.lost.len() as u64;
        if !o.report.ok() {
            self.failures.push((seed, o.report.summary()));
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} scenarios, {} crashes, {} file operations, {} non-durable sectors of which {} lost, {} files shrunk, \
             {} directory operations undone; {} events checked, {} acknowledged, {} lost; {} failing scenarios",
            self.seeds,
            self.crashes,
            self.ops,
            self.loss.sectors_pending,
            self.loss.sectors_lost,
            self.loss.files_shrunk,
            self.loss.dir_ops_undone,
            self.events_checked,
            self.acknowledged,
            self.lost,
            self.failures.len()
        )
    }
}
