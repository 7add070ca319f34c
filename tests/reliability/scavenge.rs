//! A scavenge cut at every operation: the scenario shared by tests/power_loss.rs (a correct
//! build loses nothing) and tests/broken_build.rs (a build that renames a rewrite it never
//! fdatasynced must be caught).
//!
//! A template log (64 KiB segments; streams `keep`, `drop` soft-deleted and `trim` truncated, so
//! its sealed segments hold dead events) is copied afresh for each scenario, opened on a
//! [`FaultFs`] that turns the machine off after N more operations of a scavenge, and then loses
//! power with a seed that keeps, drops or tears what was not durable. Reopened, the log must
//! open, verify from genesis, hold every event of the template at its position with its header
//! and chain hash, show each live event's payload unchanged, and show every sealed segment
//! either as it was or wholly scavenged: never a mix.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use log_engine::faults::{FaultFs, Op};
use log_engine::{
    DeleteMode, Event, ExpectedVersion, Log, NewEvent, Options, Position, Sabotage, ScavengeOptions, StreamMetadata,
};

use super::{copy_log, options, scratch_dir};

/// The template and what a complete scavenge of it does.
pub struct Template {
    dir: tempfile::TempDir,
    before: Vec<Event>,
    /// Positions a complete scavenge turns into husks.
    dead: BTreeSet<u64>,
    /// Each sealed segment's positions, `first..end`.
    sealed: Vec<std::ops::Range<u64>>,
    /// Mutating operations a complete scavenge performs.
    pub operations: u64,
}

fn all(log: &Log) -> Vec<Event> {
    log.read_all(Position(0), usize::MAX).expect("read the whole log")
}

/// Builds the template and scavenges a copy of it once, without faults, to learn its dead
/// events and how many operations a scavenge takes.
pub fn template() -> Template {
    let dir = scratch_dir();
    let log = Log::open(dir.path(), options()).expect("open the template");
    for n in 0..120u64 {
        for stream in ["keep", "drop", "trim"] {
            let event = NewEvent::json("Step", &serde_json::json!({"n": n, "pad": "z".repeat(600)}));
            log.append(stream, ExpectedVersion::Any, vec![event]).expect("append");
        }
    }
    log.delete_stream("drop", DeleteMode::Soft).expect("delete");
    log.set_stream_metadata("trim", StreamMetadata { truncate_before: Some(80), ..StreamMetadata::default() })
        .expect("truncate");
    let before = all(&log);
    let sealed = log
        .segment_files()
        .iter()
        .filter(|f| f.sealed)
        .map(|f| f.path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok()).expect("a name"))
        .collect::<Vec<u64>>();
    let active = log.segment_files().last().and_then(|f| f.path.file_stem()?.to_str()?.parse::<u64>().ok());
    let bounds: Vec<u64> = sealed.iter().copied().chain(active).collect();
    let sealed = bounds.windows(2).map(|w| w[0]..w[1]).collect::<Vec<_>>();
    drop(log);
    let dry = scratch_dir();
    copy_log(dir.path(), dry.path());
    let fs = FaultFs::new();
    let log = Log::open(dry.path(), Options { fs: Arc::new(fs.clone()), ..options() }).expect("open the dry run");
    let ops = fs.stats().ops;
    log.scavenge(&ScavengeOptions::default(), &mut |_| {}).expect("a scavenge without faults");
    let operations = fs.stats().ops - ops;
    let dead = all(&log).iter().filter(|e| e.erased).map(|e| e.position.0).collect::<BTreeSet<u64>>();
    assert!(dead.len() > 100 && sealed.len() > 3, "{} dead events in {} sealed segments", dead.len(), sealed.len());
    Template { dir, before, dead, sealed, operations }
}

/// Cuts a scavenge of a copy of `template` after `crash_after` operations, loses power with
/// `seed`, reopens and checks. Returns how many sealed segments were found scavenged; `Err`
/// says what was wrong.
pub fn crash_and_check(template: &Template, sabotage: Sabotage, crash_after: u64, seed: u64) -> Result<usize, String> {
    let dir = scratch_dir();
    copy_log(template.dir.path(), dir.path());
    let fs = FaultFs::new();
    let log = Log::open(dir.path(), Options { fs: Arc::new(fs.clone()), sabotage, ..options() })
        .map_err(|e| format!("open before the scavenge: {e}"))?;
    fs.crash_after(crash_after);
    // Fails at the crash (or completes, past the last operation): either way the power goes.
    let _ = log.scavenge(&ScavengeOptions::default(), &mut |_| {});
    fs.crash_now();
    drop(log);
    fs.power_loss(seed).map_err(|e| format!("power loss: {e}"))?;
    check(template, dir.path()).map_err(|e| format!("{e}\nlast operations:\n  {}", fs.trace().join("\n  ")))
}

/// Fails the `skip`-th next operation of kind `op` with `errno` during a scavenge of a copy of
/// `template`: the scavenge must fail with an I/O error, the log must not be poisoned and must
/// take appends, a scavenge after the failure must complete, and after a reopen every sealed
/// segment must be scavenged and every event as [`check`] wants it.
pub fn fail_and_check(template: &Template, op: Op, skip: u64, errno: i32) -> Result<(), String> {
    let dir = scratch_dir();
    copy_log(template.dir.path(), dir.path());
    let fs = FaultFs::new();
    let log = Log::open(dir.path(), Options { fs: Arc::new(fs.clone()), ..options() })
        .map_err(|e| format!("open before the scavenge: {e}"))?;
    // The rewrite's own file operations are told apart from the writer's (which may prepare
    // its next segment meanwhile) by the file's name.
    match op {
        Op::Create | Op::Write | Op::Sync => fs.inject_at(op, "scavenge.tmp", skip, errno),
        _ => fs.inject(op, skip, errno),
    }
    match log.scavenge(&ScavengeOptions::default(), &mut |_| {}) {
        Err(e) if e.to_string().contains("scavenge") || e.to_string().contains("segment") => {}
        Err(e) => return Err(format!("the error does not say what failed: {e}")),
        Ok(report) => return Err(format!("the scavenge did not fail: {report:?}")),
    }
    fs.clear_injections();
    if let Some(cause) = log.poisoned() {
        return Err(format!("a failed scavenge poisoned the log: {cause}"));
    }
    let event = NewEvent::json("After", &serde_json::json!({}));
    let appended = log.append("after", ExpectedVersion::Any, vec![event]).map_err(|e| format!("append: {e}"))?;
    log.scavenge(&ScavengeOptions::default(), &mut |_| {}).map_err(|e| format!("the next scavenge: {e}"))?;
    drop(log);
    let scavenged = check(template, dir.path())?;
    if scavenged != template.sealed.len() {
        return Err(format!("{scavenged} of {} sealed segments scavenged", template.sealed.len()));
    }
    let log = Log::open(dir.path(), options()).map_err(|e| format!("reopen: {e}"))?;
    let read = log.read_event(appended.first_position).map_err(|e| format!("the append after: {e}"))?;
    if read.stream != "after" {
        return Err(format!("the append after the failure reads as {read:?}"));
    }
    Ok(())
}

/// Reopens the log in `dir` and checks it against `template` (module documentation); returns
/// how many sealed segments are scavenged.
pub fn check(template: &Template, dir: &Path) -> Result<usize, String> {
    let log = Log::open(dir, options()).map_err(|e| format!("the log does not reopen: {e}"))?;
    let verified = log.verify(None, |_| {}).map_err(|e| format!("verify failed to run: {e}"))?;
    if !verified.ok {
        return Err(format!("verify: {}", verified.detail.unwrap_or_default()));
    }
    let after = log.read_all(Position(0), usize::MAX).map_err(|e| format!("read: {e}"))?;
    // Events appended after the template's are not the template's to check.
    let after = &after[..after.len().min(template.before.len())];
    if after.len() != template.before.len() {
        return Err(format!("{} events after, {} before", after.len(), template.before.len()));
    }
    let mut husked = BTreeSet::new();
    for (b, a) in template.before.iter().zip(after) {
        let as_husk = Event { metadata: Vec::new(), data: a.data.clone(), erased: true, ..b.clone() };
        if a.erased && template.dead.contains(&b.position.0) && a == &as_husk && a.data.as_bytes().is_empty() {
            husked.insert(b.position.0);
        } else if a != b {
            return Err(format!("position {} changed: {a:?}", b.position));
        }
    }
    let mut scavenged = 0;
    for segment in &template.sealed {
        let here: BTreeSet<u64> = husked.range(segment.clone()).copied().collect();
        let dead: BTreeSet<u64> = template.dead.range(segment.clone()).copied().collect();
        if !here.is_empty() && here != dead {
            return Err(format!(
                "segment {segment:?} is a mix: {} of its {} dead events are husks",
                here.len(),
                dead.len()
            ));
        }
        scavenged += usize::from(!here.is_empty());
    }
    Ok(scavenged)
}
