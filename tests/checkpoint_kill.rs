//! Process crash while checkpointing: a store (log, the three views, the snapshotter) whose
//! process is killed with SIGKILL at random moments while it writes views and takes
//! checkpoints back to back, so that many kills land inside a checkpoint (catching up,
//! encoding, the temporary file's write or fsync, the rename, the directory fsync, retention).
//!
//! The test re-executes its own binary as the child (env `CAIRN_CHECKPOINT_KILL_CHILD`). The
//! child opens the store the way `cairn serve` does (`cairn::store::Store::open`: restore from
//! the newest valid chain, replay the tail), then loops: a round of view writes, a `BEGIN`
//! line, a checkpoint, and a `CKPT <sequence> <position>` line once the checkpoint call
//! returned. The parent kills it after a random number of lines — after a `BEGIN` with a random
//! delay of up to 4 ms, so inside the checkpoint; after a `CKPT`, in the writes; sometimes at
//! once, during its restore — then checks the data directory: a restore succeeds; the views it
//! gives equal a replay of the whole log; it reaches at least the newest acknowledged
//! checkpoint's position from a checkpoint (an acknowledged checkpoint is never lost); no
//! temporary file survives an open; every file listed as not valid is reported by the restore.
//! A directory lives for `CYCLES_PER_DIR` kills, so later children restore from what earlier
//! kills left.
//!
//! `CAIRN_CHECKPOINT_CYCLES` sets the number of kills (default 100 in an optimised build, 20 in
//! a debug one); `CAIRN_SEED` replays a seed.

mod reliability;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn::store::Store;
use log_engine::faults::SplitMix;
use log_engine::{Log, Options};
use reliability::views::*;
use reliability::{env_count, suite_seed};
use snapshotter::{ChainStatus, Policy, Snapshotter};

const CHILD_ENV: &str = "CAIRN_CHECKPOINT_KILL_CHILD";
const CYCLES_DEFAULT: u64 = if cfg!(debug_assertions) { 20 } else { 100 };
const CYCLES_PER_DIR: u64 = 10;
/// The parent kills after at most this many acknowledged checkpoints.
const CHECKPOINTS_BEFORE_KILL_MAX: u64 = 6;
/// A kill inside a checkpoint comes up to this long after the child announced it. The delay
/// only spreads the kill over the checkpoint's steps; no outcome depends on it.
const KILL_DELAY_MAX_US: u64 = 4_000;
/// A child stops by itself after this many rounds (it is normally killed first).
const CHILD_ROUNDS_MAX: u64 = 10_000;
const TEST_NAME: &str = "checkpoints_survive_sigkill_mid_write";

/// Incrementals between fulls, and full checkpoints kept: small, so that kills also land in
/// full checkpoints and in retention's deletions.
fn policy() -> Policy {
    Policy { every_events: None, every_interval: None, full_every: 2, keep_full: 2 }
}

#[test]
fn checkpoints_survive_sigkill_mid_write() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
    let seed = suite_seed("checkpoint_kill");
    let cycles = env_count("CAIRN_CHECKPOINT_CYCLES", CYCLES_DEFAULT);
    let mut rng = SplitMix(seed);
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut dir = tempfile::tempdir().expect("a data directory");
    let mut newest_ack: Option<(u64, u64)> = None;
    let (mut acked, mut temps_left, mut damaged_seen, mut from_checkpoint) = (0u64, 0u64, 0u64, 0u64);
    let mut during = 0u64;
    for cycle in 0..cycles {
        if cycle % CYCLES_PER_DIR == 0 {
            dir = tempfile::tempdir().expect("a data directory");
            newest_ack = None;
        }
        // Kill after a number of output lines: odd counts land right after a BEGIN (inside a
        // checkpoint), even ones after a CKPT (between checkpoints, in the views' writes).
        let kill_after = if rng.below(8) == 0 { 0 } else { 1 + rng.below(2 * CHECKPOINTS_BEFORE_KILL_MAX) };
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("piped stdout");
        if kill_after == 0 {
            child.kill().expect("SIGKILL the child");
        }
        let (mut lines, mut seen) = (0, 0);
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("child output is text");
            if let Some(rest) = line.strip_prefix("CKPT ") {
                let (s, p) = rest.split_once(' ').expect("CKPT <sequence> <position>");
                newest_ack = Some((s.parse().unwrap(), p.parse().unwrap()));
                seen += 1;
            } else if line != "BEGIN" {
                continue;
            }
            lines += 1;
            if lines == kill_after {
                if line == "BEGIN" {
                    // A checkpoint is under way (catching up, encoding, writing, fsyncs,
                    // rename, retention): land the kill at a random point of it.
                    std::thread::sleep(Duration::from_micros(rng.below(KILL_DELAY_MAX_US)));
                    during += 1;
                }
                child.kill().expect("SIGKILL the child");
            }
        }
        let status = child.wait().expect("reap the child");
        assert!(status.code().is_none(), "cycle {cycle} (seed {seed}): the child exited by itself ({status})");
        acked += seen;

        let what = format!("cycle {cycle} (seed {seed}, killed after {kill_after} checkpoints)");
        let checkpoints = dir.path().join(snapshotter::CHECKPOINTS_DIR);
        temps_left += count_temps(&checkpoints);
        let log = Log::open(dir.path(), Options::default()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
        let expected = replayed(&log);
        let (restored, got) = restore(&log);
        assert_eq!(count_temps(&checkpoints), 0, "{what}: a temporary file survived the snapshotter's open");
        assert_eq!(got, expected, "{what}: the restored views differ from a replay; warnings {:?}", restored.warnings);
        if let Some((sequence, position)) = newest_ack {
            let reached = restored.checkpoint.as_ref().map(|c| c.position.0);
            assert!(
                reached.is_some_and(|p| p >= position),
                "{what}: checkpoint {sequence} at position {position} was acknowledged, restore reached {reached:?} \
                 from a checkpoint; warnings {:?}",
                restored.warnings
            );
        }
        from_checkpoint += u64::from(restored.checkpoint.is_some());
        let rows = Snapshotter::open(&log, Policy::default()).unwrap().list(&log, &mut |_| {}).unwrap();
        for row in &rows {
            if row.status != ChainStatus::Valid {
                damaged_seen += 1;
                assert!(
                    restored.warnings.iter().any(|w| w.sequence == Some(row.sequence)),
                    "{what}: checkpoint {} is {:?} but restore did not report it",
                    row.sequence,
                    row.status
                );
            }
        }
        assert!(log.verify(None, |_| {}).unwrap().ok, "{what}: the log does not verify");
    }
    eprintln!(
        "checkpoint_kill: {cycles} kills ({during} inside a checkpoint), {acked} checkpoints acknowledged, \
         {temps_left} temporary files left by kills (removed at open), {damaged_seen} damaged checkpoints \
         reported, {from_checkpoint} restores from a checkpoint, all equal to a replay, 0 acknowledged \
         checkpoints lost"
    );
}

fn count_temps(dir: &std::path::Path) -> u64 {
    let Ok(listing) = std::fs::read_dir(dir) else { return 0 };
    listing.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tmp"))).count() as u64
}

/// The child: restore, then view writes and checkpoints until killed.
fn child(dir: &str) -> ! {
    let log = Log::open(dir, Options::default()).unwrap_or_else(|e| {
        eprintln!("child: open failed: {e}");
        std::process::exit(2)
    });
    let (store, _) = Store::open(log, policy(), &mut |_| {}).unwrap_or_else(|e| {
        eprintln!("child: store open failed: {e}");
        std::process::exit(2)
    });
    let start = store.log().head().map_or(0, |h| h.position.0);
    for round in 0..CHILD_ROUNDS_MAX {
        write_round(store.views(), start + round);
        let mut out = std::io::stdout().lock();
        writeln!(out, "BEGIN").and_then(|()| out.flush()).unwrap_or_else(|_| std::process::exit(4));
        drop(out);
        let info = store.checkpoint(None).unwrap_or_else(|e| {
            eprintln!("child: checkpoint failed: {e}");
            std::process::exit(3)
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "CKPT {} {}", info.sequence, info.position.0)
            .and_then(|()| out.flush())
            .unwrap_or_else(|_| std::process::exit(4));
    }
    std::process::exit(0)
}
