//! Power loss: a simulated power cut at a random operation, then a seeded power loss that
//! keeps, drops or tears every write and directory operation not yet made durable, never loses
//! an acknowledged event, never shows a partial batch, and never stops the log from reopening.
//!
//! Each scenario (tests/reliability/power.rs) runs one to three crash rounds against one data
//! directory with 64 KiB segments, so crashes land in segment rolls, seals and renames as well
//! as in group commits and in the recovery of an earlier round's damage. The scenarios are
//! seeded: the suite prints its base seed, and a failing scenario prints its own.
//!
//! `CAIRN_POWER_LOSS_SCENARIOS` sets the number of scenarios (default 500 in an optimised build,
//! 20 in a debug one); `CAIRN_SEED` replays a base seed.

mod reliability;

use std::sync::Arc;

use log_engine::faults::{FaultFs, Op};
use log_engine::{Log, Options, Sabotage};
use reliability::power::{run_seed, run_seed_encrypted, Totals};
use reliability::*;

/// Scenarios in a default run: a debug build (`cargo test`) runs a few, the optimised build
/// that `.ci/reliability` runs (`cargo test --release`) runs more.
const SCENARIOS_DEFAULT: u64 = if cfg!(debug_assertions) { 20 } else { 500 };
/// Power-loss seeds tried at each crash point of a segment roll.
const ROLL_SEEDS: u64 = if cfg!(debug_assertions) { 8 } else { 32 };
/// Operations swept on either side of the roll (the segment-preparing thread can shift them).
const ROLL_MARGIN: u64 = 4;

#[test]
fn acknowledged_events_survive_power_loss_at_any_operation() {
    let (scenarios, totals) = run_scenarios("power_loss", |seed| run_seed(seed, Sabotage::Off));
    assert!(totals.loss.sectors_lost > 0, "the simulation lost no sector: it is not exercising anything");
    assert_no_failures(scenarios, &totals);
}

/// The same scenarios with encryption at rest: the key store is on the fault layer too, so a
/// crash lands in a new stream's secret append and fdatasync as well, and every acknowledged
/// event still decrypts after the power loss.
#[test]
fn encrypted_acknowledged_events_survive_power_loss_at_any_operation() {
    let (scenarios, totals) = run_scenarios("power_loss_encrypted", run_seed_encrypted);
    assert_no_failures(scenarios, &totals);
}

/// Runs the suite's scenarios (seeded from `suite`'s seed) with `run`, printing each failing
/// one; every scenario must crash at least once. Returns how many ran and their totals.
fn run_scenarios(suite: &str, run: impl Fn(u64) -> reliability::power::Outcome) -> (u64, Totals) {
    let base = suite_seed(suite);
    let scenarios = env_count("CAIRN_POWER_LOSS_SCENARIOS", SCENARIOS_DEFAULT);
    let mut totals = Totals::default();
    for i in 0..scenarios {
        let seed = base.wrapping_add(i);
        let outcome = run(seed);
        if !outcome.report.ok() {
            eprintln!(
                "scenario seed {seed} failed: {}\nlast operations:\n  {}",
                outcome.report.summary(),
                outcome.trace.join("\n  ")
            );
        }
        totals.add(seed, &outcome);
    }
    eprintln!("{suite}: {}", totals.line());
    assert!(totals.crashes >= scenarios, "every scenario must crash at least once: {}", totals.line());
    (scenarios, totals)
}

fn assert_no_failures(scenarios: u64, totals: &Totals) {
    assert!(
        totals.failures.is_empty(),
        "{} of {scenarios} scenarios failed; first (replay with CAIRN_SEED={} CAIRN_POWER_LOSS_SCENARIOS=1): {}",
        totals.failures.len(),
        totals.failures[0].0,
        totals.failures[0].1
    );
}

/// Appends batches of client 0 until the first segment roll; returns the acknowledgements and
/// the range of operation counts the rolling append spanned.
fn append_until_roll(fs: &FaultFs, log: &Log, seed: u64) -> (Vec<Ack>, std::ops::Range<u64>) {
    let mut acks = Vec::new();
    for seq in 0.. {
        let tag = Tag { round: 0, client: 0, seq };
        let (ops, renames) = (fs.stats().ops, fs.count(Op::Rename));
        let results = log.append_multi(batch(seed, tag)).expect("append without faults");
        acks.push(Ack::new(tag, &results));
        // The first segment is installed by a rename at open; the next one marks a roll.
        if fs.count(Op::Rename) > renames {
            return (acks, ops..fs.stats().ops);
        }
    }
    unreachable!("the loop only ends at a roll")
}

#[test]
fn a_power_loss_at_every_operation_of_a_segment_roll_loses_nothing() {
    let seed = suite_seed("power_loss roll sweep");
    let dry = FaultFs::new();
    let dir = scratch_dir();
    let log = Log::open(dir.path(), Options { fs: Arc::new(dry.clone()), ..options() }).unwrap();
    let (_, roll) = append_until_roll(&dry, &log, seed);
    drop(log);
    let mut totals = Totals::default();
    for crash_at in roll.start.saturating_sub(ROLL_MARGIN)..roll.end + ROLL_MARGIN {
        for loss_seed in 0..ROLL_SEEDS {
            let dir = scratch_dir();
            let fs = FaultFs::new();
            fs.crash_after(crash_at);
            let log = Log::open(dir.path(), Options { fs: Arc::new(fs.clone()), ..options() }).unwrap();
            let mut acks = Vec::new();
            for seq in 0.. {
                let tag = Tag { round: 0, client: 0, seq };
                match log.append_multi(batch(seed, tag)) {
                    Ok(results) => acks.push(Ack::new(tag, &results)),
                    Err(_) => break,
                }
            }
            drop(log);
            let loss = fs.power_loss_report(loss_seed).unwrap();
            let report = check(dir.path(), seed, &acks);
            let injected_ops = fs.stats().ops;
            let outcome = reliability::power::Outcome { report, crashes: 1, loss, injected_ops, trace: Vec::new() };
            if !outcome.report.ok() {
                eprintln!(
                    "crash after {crash_at} operations, power-loss seed {loss_seed}: {}\nlast operations:\n  {}",
                    outcome.report.summary(),
                    fs.trace().join("\n  ")
                );
            }
            totals.add(crash_at * 1000 + loss_seed, &outcome);
        }
    }
    eprintln!("power_loss roll sweep (operations {roll:?}): {}", totals.line());
    assert!(totals.loss.sectors_lost > 0 && totals.loss.dir_ops_undone > 0, "{}", totals.line());
    assert!(
        totals.failures.is_empty(),
        "{} crash points failed; first (crash point * 1000 + power-loss seed = {}): {}",
        totals.failures.len(),
        totals.failures[0].0,
        totals.failures[0].1
    );
}

/// Power-loss seeds tried at each operation of a scavenge.
const SCAVENGE_SEEDS: u64 = if cfg!(debug_assertions) { 3 } else { 16 };

/// A power cut at every operation of a scavenge (each followed by power losses that keep, drop
/// or tear what was not durable) leaves every sealed segment as it was or wholly scavenged, and
/// every live event as it was (tests/reliability/scavenge.rs). The sweep must see both
/// outcomes, or it would not be cutting inside the scavenge.
#[test]
fn a_power_loss_at_every_operation_of_a_scavenge_leaves_each_segment_old_or_new() {
    let template = reliability::scavenge::template();
    let (mut failures, mut outcomes) = (Vec::new(), std::collections::BTreeSet::new());
    for crash_after in 0..=template.operations {
        for seed in 0..SCAVENGE_SEEDS {
            match reliability::scavenge::crash_and_check(&template, Sabotage::Off, crash_after, seed) {
                Ok(scavenged) => {
                    outcomes.insert(scavenged);
                }
                Err(e) => failures.push(format!("crash after {crash_after} operations, power-loss seed {seed}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} of the scavenge's crash points failed; first: {}", failures.len(), failures[0]);
    assert!(outcomes.len() > 2, "scavenged segment counts seen: {outcomes:?}");
}

/// Power-loss seeds the lifecycle scenario tries.
const LIFECYCLE_SEEDS: u64 = if cfg!(debug_assertions) { 16 } else { 64 };

/// Runs the lifecycle scenario under `sabotage` for each power-loss seed: a soft delete, a
/// tombstone and a close are acknowledged, then the power is cut (unsynced writes kept, dropped
/// or torn by the seed), and after recovery each must hold. Returns the first seed at which one
/// did not, with what was lost.
fn lifecycle_lost_after_power_loss(sabotage: Sabotage) -> Option<(u64, String)> {
    use log_engine::{DeleteMode, Direction, ExpectedVersion, NewEvent};
    for seed in 0..LIFECYCLE_SEEDS {
        let dir = scratch_dir();
        let fs = FaultFs::new();
        let options = || Options { fs: Arc::new(fs.clone()), sabotage, ..options() };
        let log = Log::open(dir.path(), options()).unwrap();
        for stream in ["deleted", "tombstoned", "closed"] {
            let events = (0..3).map(|n| NewEvent::json("Step", &serde_json::json!({ "n": n }))).collect();
            log.append(stream, ExpectedVersion::Any, events).unwrap();
        }
        log.delete_stream("deleted", DeleteMode::Soft).unwrap();
        log.delete_stream("tombstoned", DeleteMode::Tombstone).unwrap();
        log.close_stream("closed").unwrap();
        // The power goes now: nothing more reaches the disk (not even the sync of a clean close).
        fs.crash_now();
        drop(log);
        fs.power_loss(seed).unwrap();
        let log = match Log::open(dir.path(), Options { fs: Arc::new(FaultFs::new()), ..options() }) {
            Ok(log) => log,
            Err(e) => return Some((seed, format!("the log does not reopen: {e}"))),
        };
        let mut lost = Vec::new();
        if !matches!(
            log.read_stream("deleted", None, 10, Direction::Forward),
            Err(log_engine::Error::StreamDeleted { .. })
        ) {
            lost.push("the soft delete");
        }
        if !log.stream_state("tombstoned").is_ok_and(|s| s.tombstoned) {
            lost.push("the tombstone");
        }
        if !log.stream_state("closed").is_ok_and(|s| s.closed) {
            lost.push("the close");
        }
        if !lost.is_empty() {
            return Some((seed, lost.join(", ")));
        }
    }
    None
}

/// An acknowledged delete, tombstone or close holds after a power cut (one that was not
/// acknowledged is there entirely or not at all: tests/model.rs cuts the power inside them).
/// The broken build that acknowledges without fdatasync must fail the same scenario, or it
/// would prove nothing.
#[test]
fn an_acknowledged_lifecycle_change_survives_power_loss() {
    if let Some((seed, lost)) = lifecycle_lost_after_power_loss(Sabotage::Off) {
        panic!("power-loss seed {seed}: {lost} was acknowledged and then lost");
    }
    let caught = lifecycle_lost_after_power_loss(Sabotage::SkipSync);
    assert!(caught.is_some(), "a build that skips fdatasync lost nothing: the scenario cannot catch it");
}
