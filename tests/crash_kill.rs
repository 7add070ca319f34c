//! Process crash: a writer process killed with SIGKILL at random moments never loses an event
//! it acknowledged, and the log always reopens with gapless positions and a verified chain.
//!
//! The test re-executes its own binary (`std::env::current_exe()`) with `CAIRN_CRASH_KILL_CHILD`
//! set: that child opens the log and appends from several concurrent clients (group commit),
//! printing one `ACK` line per acknowledged append (tag, positions, content digest) and
//! flushing it. The parent reads those lines, kills the child after a random number of them
//! (sometimes at once, during the child's open and recovery), reads what was already printed,
//! reopens the log and runs the shared checker (tests/reliability/mod.rs) against every
//! acknowledgement so far. A data directory lives for `CYCLES_PER_DIR` kills, so later children
//! recover what earlier ones left behind.
//!
//! A SIGKILL leaves the page cache intact, so this suite cannot catch a missing fdatasync (the
//! power-loss and broken-build suites do); it catches lost or reordered writes, torn batches
//! from a kill inside a pwrite or a segment roll, and recovery that fails or loses data.
//!
//! `CAIRN_CRASH_CYCLES` sets the number of kills (default 200 in an optimised build, 20 in a
//! debug one); `CAIRN_SEED` replays a seed.

mod reliability;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use log_engine::faults::SplitMix;
use log_engine::Log;
use reliability::*;

/// Set in the child: `<data dir>|<workload seed>|<round>`.
const CHILD_ENV: &str = "CAIRN_CRASH_KILL_CHILD";
/// Kills in a default run: 200 in the optimised build that `.ci/reliability` runs, a few in a
/// debug build (`cargo test`).
const CYCLES_DEFAULT: u64 = if cfg!(debug_assertions) { 20 } else { 200 };
/// Kills that share one data directory.
const CYCLES_PER_DIR: u64 = 40;
/// Concurrent appending clients in the child.
const CHILD_CLIENTS: u64 = 4;
/// The parent kills after at most this many acknowledgements.
const ACKS_BEFORE_KILL_MAX: u64 = 100;
/// A child stops by itself after this many batches per client (it is normally killed first).
const CHILD_BATCHES_MAX: u64 = 100_000;
/// This test's name, for re-executing only it.
const TEST_NAME: &str = "acknowledged_events_survive_sigkill";

#[test]
fn acknowledged_events_survive_sigkill() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
    }
    let base = suite_seed("crash_kill");
    let cycles = env_count("CAIRN_CRASH_CYCLES", CYCLES_DEFAULT);
    let mut rng = SplitMix(base);
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut dir = tempfile::tempdir().expect("a data directory");
    let mut acks: Vec<Ack> = Vec::new();
    let (mut kills, mut acknowledged, mut checked, mut immediate) = (0u64, 0u64, 0u64, 0u64);
    for cycle in 0..cycles {
        if cycle % CYCLES_PER_DIR == 0 {
            dir = tempfile::tempdir().expect("a data directory");
            acks.clear();
        }
        let round = cycle % CYCLES_PER_DIR;
        let kill_after = if rng.below(10) == 0 { 0 } else { 1 + rng.below(ACKS_BEFORE_KILL_MAX) };
        immediate += u64::from(kill_after == 0);
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{}|{base}|{round}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut seen = 0u64;
        if kill_after == 0 {
            child.kill().expect("SIGKILL the child");
        }
        // Lines already printed when the kill lands were acknowledged before it: read them all.
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("child output is text");
            let Some(ack) = parse_ack(&line, base) else { continue };
            acks.push(ack);
            seen += 1;
            if seen == kill_after {
                child.kill().expect("SIGKILL the child");
            }
        }
        let status = child.wait().expect("reap the child");
        assert!(
            status.code().is_none(),
            "cycle {cycle}: the child exited by itself ({status}) instead of being killed"
        );
        kills += 1;
        acknowledged += seen;
        let report = check(dir.path(), base, &acks);
        checked += report.events;
        assert!(
            report.ok(),
            "cycle {cycle} (seed {base}, killed after {kill_after} acknowledgements): {}",
            report.summary()
        );
    }
    eprintln!(
        "crash_kill: {kills} kills ({immediate} during open), {acknowledged} acknowledged appends, \
         {checked} events checked across reopens, 0 lost"
    );
}

/// Parses `ACK <round> <client> <seq> <first>+<count>,... <digest>`, checking the digest against
/// the batch the parent regenerates.
fn parse_ack(line: &str, seed: u64) -> Option<Ack> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    let mut num = || parts.next().and_then(|p| p.parse::<u64>().ok());
    let tag = Tag { round: num()?, client: num()?, seq: num()? };
    let spans = parts
        .next()?
        .split(',')
        .map(|s| {
            let (first, count) = s.split_once('+')?;
            Some((first.parse().ok()?, count.parse().ok()?))
        })
        .collect::<Option<Vec<(u64, u64)>>>()?;
    let printed = parts.next()?;
    assert_eq!(printed, digest(&batch(seed, tag)), "the parent regenerates a different batch {tag:?}");
    Some(Ack { tag, spans })
}

/// The child writer: appends until killed, printing each acknowledgement as soon as it has it.
fn child(spec: &str) -> ! {
    let mut parts = spec.split('|');
    let dir = parts.next().expect("dir").to_string();
    let seed: u64 = parts.next().and_then(|s| s.parse().ok()).expect("seed");
    let round: u64 = parts.next().and_then(|s| s.parse().ok()).expect("round");
    let log = Log::open(&dir, options()).unwrap_or_else(|e| {
        eprintln!("child: open failed: {e}");
        std::process::exit(2)
    });
    std::thread::scope(|s| {
        for client in 0..CHILD_CLIENTS {
            let log = log.clone();
            s.spawn(move || {
                for seq in 0..CHILD_BATCHES_MAX {
                    let tag = Tag { round, client, seq };
                    let appends = batch(seed, tag);
                    let digest = digest(&appends);
                    let results = log.append_multi(appends).unwrap_or_else(|e| {
                        eprintln!("child: append failed: {e}");
                        std::process::exit(3)
                    });
                    let spans: Vec<String> =
                        Ack::new(tag, &results).spans.iter().map(|(first, count)| format!("{first}+{count}")).collect();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {round} {client} {seq} {} {digest}", spans.join(","))
                        .and_then(|()| out.flush())
                        .unwrap_or_else(|_| std::process::exit(4));
                }
            });
        }
    });
    std::process::exit(0)
}
