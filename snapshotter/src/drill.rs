//! The recovery drill (`cairn drill`): proof, on demand, that the store can be recovered.
//!
//! One call restores the log and checkpoints into a scratch directory, verifies the copied
//! log's CRCs and chain and every copied checkpoint, rebuilds the views twice on the copy
//! (newest valid checkpoint chain + log tail, and full replay from position 0) up to the
//! position the live views have applied, and compares the three sets of state digests.
//! Anything damaged, lost or different is a [`Mismatch`] and makes the report not ok.
//!
//! The drill only reads the live log; everything it writes is inside the scratch directory,
//! which it leaves in place for inspection (the caller removes it).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use log_engine::{Log, Options, Position};
use projections::Projection;
use serde::{Deserialize, Serialize};

use crate::copy::{restore_to_cancellable, Overwrite};
use crate::error::Result;
use crate::policy::Policy;
use crate::restore::replay;
use crate::store::{ChainStatus, Snapshotter};
use crate::types::{Digest, Progress, Stage, Warning};

/// What kind of problem a [`Mismatch`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// The copied log fails verification, or differs from the live log.
    Log,
    /// The copy holds fewer events than the live log had committed or the views had applied.
    EventsLost,
    /// A checkpoint file is damaged, its chain is broken, or it does not match the log.
    Checkpoint,
    /// A checkpoint was skipped while rebuilding from checkpoints (for example a projection
    /// digest differed after loading it).
    Restore,
    /// The live views, the views rebuilt from checkpoints and the views replayed from 0 do
    /// not all have the same projections.
    ProjectionSet,
    /// A projection's state digest differs between the live view and a rebuilt one.
    ProjectionDigest,
}

/// One problem the drill found, with its location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub kind: MismatchKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// A sentence saying what differs.
    pub detail: String,
}

impl Mismatch {
    fn new(kind: MismatchKind, detail: impl Into<String>) -> Mismatch {
        Mismatch { kind, projection: None, sequence: None, position: None, file: None, detail: detail.into() }
    }
}

/// The drill's result; serializes to the JSON of `cairn drill -o json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillReport {
    /// True when nothing was damaged, lost or different.
    pub ok: bool,
    pub events_lost: u64,
    pub restore_ms: u64,
    pub rebuild_from_checkpoint_ms: u64,
    pub rebuild_from_zero_ms: u64,
    /// Checkpoint files in the copy whose status is valid.
    pub checkpoints_verified: u64,
    pub mismatches: Vec<Mismatch>,
    /// Events replayed after the checkpoint chain (the work a restart does).
    pub events_replayed_from_checkpoint: u64,
    /// Events replayed from position 0.
    pub events_replayed_from_zero: u64,
    /// Events in the copied log, all verified.
    pub events_verified: u64,
    /// The position the views were compared at (the live views' position).
    pub position: Option<u64>,
    /// The checkpoint the rebuild started from (`None`: none was usable).
    pub checkpoint_used: Option<u64>,
    /// Checkpoint files copied.
    pub checkpoints_copied: u64,
    pub scratch: PathBuf,
}

/// Runs the recovery drill.
///
/// - `live`: the running views, applied through `live_applied_through` (`None`: nothing).
/// - `factory`: makes a fresh, empty set of the same views, for each rebuild.
/// - `scratch`: a directory that does not exist or is empty; the copy goes there.
///
/// `Err` means the drill itself could not run (I/O, a bad argument); damage it finds is in
/// the report.
pub fn drill(
    log: &Log,
    live: &[Box<dyn Projection>],
    live_applied_through: Option<Position>,
    factory: &dyn Fn() -> Vec<Box<dyn Projection>>,
    scratch: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<DrillReport> {
    drill_cancellable(log, live, live_applied_through, factory, scratch, &AtomicBool::new(false), progress)
}

/// [`drill`], whose copy stops with [`Error::Interrupted`](crate::Error::Interrupted) once
/// `cancel` is set, leaving no partial copy behind (see [`restore_to_cancellable`]). The
/// copy is complete when the first progress report of a stage after the copy arrives.
pub fn drill_cancellable(
    log: &Log,
    live: &[Box<dyn Projection>],
    live_applied_through: Option<Position>,
    factory: &dyn Fn() -> Vec<Box<dyn Projection>>,
    scratch: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<DrillReport> {
    let mut mismatches = Vec::new();
    let started = Instant::now();
    let copied = restore_to_cancellable(log, scratch, None, Overwrite::Refuse, cancel, progress)?;
    let restore_ms = millis(started.elapsed());

    // The copy is read with the live log's key store (the store is not in the copy): the
    // replays read payloads.
    let copy = Log::open(scratch, Options { keys: log.keys().cloned(), ..Options::default() })?;
    let verified =
        copy.verify(None, |p| progress(Progress { stage: Stage::VerifyLog, done: p.checked, total: p.total }))?;
    if !verified.ok {
        let mut m = Mismatch::new(
            MismatchKind::Log,
            format!("the copied log fails verification: {}", verified.detail.as_deref().unwrap_or("no detail")),
        );
        m.position = verified.first_bad_position.map(|p| p.0);
        mismatches.push(m);
    }
    let copy_events = copy.head().map_or(0, |h| h.position.0 + 1);
    let expected_events = copied.head.map_or(0, |h| h.position.0 + 1).max(live_applied_through.map_or(0, |p| p.0 + 1));
    let events_lost = expected_events.saturating_sub(copy_events);
    if events_lost > 0 {
        let mut m = Mismatch::new(
            MismatchKind::EventsLost,
            format!("the copy holds {copy_events} events; {expected_events} were committed or applied"),
        );
        m.position = Some(copy_events);
        mismatches.push(m);
    }
    if let Some(head) = copied.head.filter(|h| h.position.0 < copy_events) {
        let found = copy.hash_at(head.position)?;
        if found != head.hash {
            let mut m = Mismatch::new(
                MismatchKind::Log,
                format!(
                    "the copy's chain hash at position {} is {found}, the live log's is {}",
                    head.position, head.hash
                ),
            );
            m.position = Some(head.position.0);
            mismatches.push(m);
        }
    }

    let mut snapshotter = Snapshotter::open(&copy, Policy::default())?;
    let statuses = snapshotter.list(&copy, progress)?;
    let mut checkpoints_verified = 0;
    let mut reported = Vec::new();
    for row in &statuses {
        let detail = match &row.status {
            ChainStatus::Valid => {
                checkpoints_verified += 1;
                continue;
            }
            ChainStatus::Damaged(d) | ChainStatus::LogMismatch(d) | ChainStatus::BrokenChain(d) => d.clone(),
        };
        reported.push(row.sequence);
        let mut m = Mismatch::new(MismatchKind::Checkpoint, detail);
        m.sequence = Some(row.sequence);
        m.file = Some(row.file.clone());
        m.position = row.info.as_ref().map(|i| i.position.0);
        mismatches.push(m);
    }

    // Compare where the live views are; if the copy lost events, as far as it goes.
    let target = match (live_applied_through, copy.head()) {
        (Some(p), Some(head)) => Some(p.min(head.position)),
        _ => None,
    };
    let started = Instant::now();
    let mut from_checkpoint = factory();
    let (checkpoint_used, events_from_checkpoint) = match target {
        Some(at) => {
            let restored = snapshotter.rebuild_at(&copy, &mut from_checkpoint, at, progress)?;
            for w in restored.warnings.iter().filter(|w| w.sequence.is_none_or(|s| !reported.contains(&s))) {
                mismatches.push(restore_mismatch(w));
            }
            (restored.checkpoint.map(|c| c.sequence), restored.replayed.events)
        }
        None => (None, 0),
    };
    let rebuild_from_checkpoint_ms = millis(started.elapsed());

    let started = Instant::now();
    let mut from_zero = factory();
    let events_from_zero = match target {
        Some(at) => replay(&copy, &mut from_zero, Position(0), at, progress)?.events,
        None => 0,
    };
    let rebuild_from_zero_ms = millis(started.elapsed());
    copy.close();

    compare(live, &from_checkpoint, &from_zero, live_applied_through, &mut mismatches);
    Ok(DrillReport {
        ok: mismatches.is_empty() && events_lost == 0,
        events_lost,
        restore_ms,
        rebuild_from_checkpoint_ms,
        rebuild_from_zero_ms,
        checkpoints_verified,
        mismatches,
        events_replayed_from_checkpoint: events_from_checkpoint,
        events_replayed_from_zero: events_from_zero,
        events_verified: verified.events,
        position: live_applied_through.map(|p| p.0),
        checkpoint_used,
        checkpoints_copied: copied.checkpoints,
        scratch: scratch.to_path_buf(),
    })
}

fn restore_mismatch(w: &Warning) -> Mismatch {
    let mut m = Mismatch::new(MismatchKind::Restore, w.message.clone());
    m.sequence = w.sequence;
    m.file.clone_from(&w.file);
    m
}

/// Compares the three sets of views by name and digest.
fn compare(
    live: &[Box<dyn Projection>],
    from_checkpoint: &[Box<dyn Projection>],
    from_zero: &[Box<dyn Projection>],
    position: Option<Position>,
    mismatches: &mut Vec<Mismatch>,
) {
    let names = |views: &[Box<dyn Projection>]| {
        let mut n: Vec<&str> = views.iter().map(|v| v.name()).collect();
        n.sort_unstable();
        n
    };
    let (a, b, c) = (names(live), names(from_checkpoint), names(from_zero));
    if a != b || a != c {
        mismatches.push(Mismatch::new(
            MismatchKind::ProjectionSet,
            format!(
                "live views [{}], rebuilt from checkpoint [{}], replayed from 0 [{}]",
                a.join(", "),
                b.join(", "),
                c.join(", ")
            ),
        ));
        return;
    }
    let find = |views: &[Box<dyn Projection>], name: &str| {
        Digest(views.iter().find(|v| v.name() == name).expect("same names").digest())
    };
    for view in live {
        let name = view.name();
        let (l, k, z) = (Digest(view.digest()), find(from_checkpoint, name), find(from_zero, name));
        if l != k || l != z {
            let mut m = Mismatch::new(
                MismatchKind::ProjectionDigest,
                format!("projection {name}: live digest {l}, from checkpoint + tail {k}, from position 0 {z}"),
            );
            m.projection = Some(name.to_string());
            m.position = position.map(|p| p.0);
            mismatches.push(m);
        }
    }
}

/// A duration in whole milliseconds (saturating: a drill does not last 584 million years).
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
