//! [`Store`]: the log with its views and its checkpoints, as the CLI's view commands and the
//! server open it.
//!
//! Opening restores the views from the newest valid checkpoint chain and replays the log after
//! it (a damaged checkpoint is skipped with a warning, which is logged and returned), then
//! keeps them current with a projection runner. Checkpoints are taken on a consistent cut: the
//! runner is paused, every view has applied the same position, and that position is the
//! checkpoint's.
//!
//! Calling order: [`Store::open`] → reads, writes, checkpoints from any thread →
//! [`Store::close`] (stops the runner, then closes the log).
//!
//! This module owns no format and no policy of its own; it wires `projections` and
//! `snapshotter` together for the binary.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{log_exit, Exit};
use log_engine::{Log, Position};
use parking_lot::Mutex;
use projections::Views;
use snapshotter::{
    CheckpointInfo, CheckpointKind, CheckpointStatus, DrillReport, Policy, Progress, Restored, Snapshotter,
};

/// Why a store operation failed, with what and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{0}")]
    Log(#[from] log_engine::Error),
    #[error("{0}")]
    Views(#[from] projections::Error),
    #[error("{}", checkpoint_message(.0))]
    Checkpoint(#[from] snapshotter::Error),
    #[error("there is nothing to checkpoint: the log in {} is empty", dir.display())]
    Empty { dir: PathBuf },
}

/// How long a checkpoint waits for the views to apply what was committed before it.
const CHECKPOINT_CATCH_UP_WAIT: Duration = Duration::from_secs(30);

/// The snapshotter's message, in the CLI's and API's words where they differ.
fn checkpoint_message(e: &snapshotter::Error) -> String {
    match e {
        snapshotter::Error::TargetNotEmpty { dir } => {
            format!("restore target {} is not empty; pass --force to replace it (only a cairn data directory is ever replaced)", dir.display())
        }
        other => other.to_string(),
    }
}

impl StoreError {
    /// The contract's exit code for this failure.
    pub fn exit(&self) -> Exit {
        match self {
            StoreError::Log(e) => log_exit(e),
            StoreError::Views(e) => views_exit(e),
            StoreError::Checkpoint(e) => checkpoint_exit(e),
            StoreError::Empty { .. } => Exit::Error,
        }
    }
}

/// Exit code of a view error: 5 not found, 4 a lost compare-and-set, 2 bad input, else 1.
pub fn views_exit(e: &projections::Error) -> Exit {
    use projections::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => Exit::NotFound,
        ErrorKind::Conflict if e.code() == "wrong_expected_version" => Exit::WrongExpectedVersion,
        ErrorKind::Invalid => Exit::Usage,
        _ => Exit::Error,
    }
}

/// Exit code of a checkpoint error: 3 for damage or a mismatch with the log.
pub fn checkpoint_exit(e: &snapshotter::Error) -> Exit {
    use snapshotter::Error as E;
    match e {
        E::Corrupt { .. } | E::LogMismatch { .. } | E::BrokenChain { .. } | E::DigestMismatch { .. } => Exit::Integrity,
        E::Invalid { .. } => Exit::Usage,
        E::Interrupted => Exit::Interrupted,
        E::Log(e) => log_exit(e),
        _ => Exit::Error,
    }
}

/// The log, its views and its snapshotter.
#[derive(Debug)]
pub struct Store {
    log: Log,
    views: Views,
    snapshotter: Mutex<Snapshotter>,
    /// The newest checkpoint written or restored from: its position and creation time.
    last_checkpoint: Mutex<Option<(Position, u64)>>,
}

impl Store {
    /// Opens the views of `log`: restores them from checkpoints, replays the tail, and starts
    /// the runner. `progress` sees the restore's stages.
    pub fn open(log: Log, policy: Policy, progress: &mut dyn FnMut(Progress)) -> Result<(Store, Restored), StoreError> {
        let mut snapshotter = Snapshotter::open(&log, policy)?;
        let mut projections = Views::projections();
        let restored = snapshotter.restore(&log, &mut projections, progress)?;
        for warning in &restored.warnings {
            tracing::warn!(%warning, "checkpoint skipped during restore");
        }
        let at = restored.applied_through.map(Position);
        let views = Views::start(log.clone(), projections.into_iter().map(|p| (p, at)).collect())?;
        // Events the restore's replay skipped count as the views' apply errors, as the runner's
        // own would: /healthz and /metrics report them.
        for (name, count, last) in &restored.replayed.errors_by_view {
            views.runner().note_errors(name, *count, last.clone());
        }
        let last_checkpoint = restored.checkpoint.as_ref().map(|c| (c.position, c.created_ms));
        let store =
            Store { log, views, snapshotter: Mutex::new(snapshotter), last_checkpoint: Mutex::new(last_checkpoint) };
        Ok((store, restored))
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn views(&self) -> &Views {
        &self.views
    }

    pub fn dir(&self) -> &Path {
        self.log.dir()
    }

    /// Takes a checkpoint now: `kind`, or what the policy asks for next (full when there is
    /// nothing to build on). It covers at least every event committed before the call (the
    /// views catch up first, for at most `CHECKPOINT_CATCH_UP_WAIT`). Blocks appliers and
    /// readers of the views only while it captures them (the changed entries of an
    /// incremental, every entry of a full one); encoding, the fsyncs and retention run after
    /// the views go on.
    pub fn checkpoint(&self, kind: Option<CheckpointKind>) -> Result<CheckpointInfo, StoreError> {
        // "Now" means everything committed before the call: let the views apply it first.
        self.catch_up(CHECKPOINT_CATCH_UP_WAIT)?;
        let mut snapshotter = self.snapshotter.lock();
        let kind = kind.unwrap_or_else(|| snapshotter.next_kind());
        let captured = self.views.runner().with_paused(|views, applied| match applied {
            None => Err(StoreError::Empty { dir: self.log.dir().to_path_buf() }),
            Some(at) => snapshotter.capture(&self.log, views, at, kind).map_err(StoreError::from),
        })??;
        let info = snapshotter.write_captured(&self.log, captured)?;
        *self.last_checkpoint.lock() = Some((info.position, info.created_ms));
        Ok(info)
    }

    /// Takes a checkpoint if the policy says one is due. `Ok(None)`: none was due.
    pub fn checkpoint_if_due(&self) -> Result<Option<CheckpointInfo>, StoreError> {
        let Some(applied) = self.views.runner().applied_through() else { return Ok(None) };
        let due = self.snapshotter.lock().due(applied);
        match due {
            Some(kind) => self.checkpoint(Some(kind)).map(Some),
            None => Ok(None),
        }
    }

    /// Every checkpoint file with its verification status.
    pub fn checkpoints(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<CheckpointStatus>, StoreError> {
        Ok(self.snapshotter.lock().list(&self.log, progress)?)
    }

    /// The newest checkpoint's position and age in seconds, if there is one.
    pub fn last_checkpoint(&self) -> Option<(Position, f64)> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.last_checkpoint.lock().map(|(p, created)| (p, now.saturating_sub(created) as f64 / 1e3))
    }

    /// The recovery drill against the live views, into `scratch` (absent or empty); its copy
    /// stops, leaving nothing behind, once `cancel` is set.
    pub fn drill(
        &self,
        scratch: &Path,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<DrillReport, StoreError> {
        let report = self.views.runner().with_paused(|views, applied| {
            snapshotter::drill_cancellable(&self.log, views, applied, &Views::projections, scratch, cancel, progress)
        })??;
        Ok(report)
    }

    /// Waits (bounded) until the views have applied every event committed now.
    pub fn catch_up(&self, timeout: Duration) -> Result<(), StoreError> {
        if let Some(head) = self.log.head() {
            self.views.wait_for(head.position, timeout)?;
        }
        Ok(())
    }

    /// Stops the runner and closes the log (other handles to the log see it closed).
    pub fn close(&self) {
        self.views.stop();
        self.log.clone().close();
    }
}

impl From<projections::Error> for crate::error::CliError {
    fn from(e: projections::Error) -> crate::error::CliError {
        crate::error::CliError::Store(StoreError::Views(e))
    }
}
