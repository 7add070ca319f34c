//! A broken build must fail: with the writer deliberately sabotaged, the power-loss suite's
//! checker must report lost acknowledged events. This proves that the suite can fail, so a
//! green power-loss run means something.
//!
//! - `Sabotage::SkipSync`: acknowledge after the pwrite, without fdatasync.
//! - `Sabotage::AckBeforeWrite`: acknowledge before the pwrite.
//! - `Sabotage::SkipScavengeSync`: a scavenge renames a segment's rewrite over the segment
//!   without fdatasyncing it first (tests/reliability/scavenge.rs must find a broken segment).
//!
//! Each test runs power-loss scenarios (tests/reliability/power.rs) until one reports a lost
//! acknowledged event, and fails if none does within `SCENARIOS_MAX`.

mod reliability;

use log_engine::Sabotage;
use reliability::power::run_seed;
use reliability::*;

/// Scenarios tried before concluding that the suite cannot see the sabotage.
const SCENARIOS_MAX: u64 = 200;

/// Runs scenarios until one loses an acknowledged event; returns how many it took and the loss.
fn scenarios_until_loss(sabotage: Sabotage) -> Option<(u64, String)> {
    let base = suite_seed(&format!("broken_build {sabotage:?}"));
    for i in 0..SCENARIOS_MAX {
        let outcome = run_seed(base.wrapping_add(i), sabotage);
        if let Some(lost) = outcome.report.lost.first() {
            return Some((i + 1, lost.clone()));
        }
    }
    None
}

#[test]
fn renaming_an_unsynced_scavenge_rewrite_is_caught() {
    let template = reliability::scavenge::template();
    let caught =
        (0..=template.operations).flat_map(|crash| (0..8).map(move |seed| (crash, seed))).find_map(|(crash, seed)| {
            reliability::scavenge::crash_and_check(&template, Sabotage::SkipScavengeSync, crash, seed)
                .err()
                .map(|e| format!("crash after {crash}, seed {seed}: {e}"))
        });
    let caught =
        caught.expect("a scavenge that skips its fdatasync before the rename lost nothing: the suite cannot fail");
    eprintln!("broken_build SkipScavengeSync: caught: {caught}");
}

#[test]
fn skipping_fdatasync_is_caught() {
    let found = scenarios_until_loss(Sabotage::SkipSync);
    let (n, lost) = found.unwrap_or_else(|| {
        panic!("{SCENARIOS_MAX} power-loss scenarios with fdatasync skipped lost nothing: the suite cannot fail")
    });
    eprintln!("broken_build SkipSync: caught after {n} scenarios: {lost}");
}

#[test]
fn acknowledging_before_the_write_is_caught() {
    let found = scenarios_until_loss(Sabotage::AckBeforeWrite);
    let (n, lost) = found.unwrap_or_else(|| {
        panic!(
            "{SCENARIOS_MAX} power-loss scenarios acknowledging before the write lost nothing: the suite cannot fail"
        )
    });
    eprintln!("broken_build AckBeforeWrite: caught after {n} scenarios: {lost}");
}
