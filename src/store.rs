//! [`Store`]: the log with its views and its checkpoints, and the one place that opens a data
//! directory: as its writer ([`open_writer`]) or as a reader ([`open_reader`]), for the CLI,
//! the server and the demo alike.
//!
//! A writer creates a missing directory, and the log's lock makes a second writer fail with a
//! clear message. A reader takes no lock and creates or writes nothing, so reads run beside a
//! writer in another process and on read-only copies, and a missing or mistyped directory is
//! "not found" instead of a new, empty store.
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

use crate::codes::{self, Code};
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
    #[error("cannot open the data directory {}: {source}{}", dir.display(), open_hint(.source))]
    Open {
        dir: PathBuf,
        #[source]
        source: log_engine::Error,
    },
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

fn open_hint(e: &log_engine::Error) -> &'static str {
    match e {
        log_engine::Error::Locked { .. } => {
            "; stop the other cairn process (a running `cairn serve` owns its directory: use its HTTP API instead)"
        }
        log_engine::Error::NotAStore { .. } => {
            ". Check --data (or CAIRN_DATA): only commands that write (append, serve, demo, checkpoint, \
             restore's target) create a data directory"
        }
        _ => "",
    }
}

impl StoreError {
    /// The error code, HTTP status and exit code of this failure.
    pub fn code(&self) -> Code {
        match self {
            StoreError::Open { source: e, .. } | StoreError::Log(e) => codes::log(e),
            StoreError::Views(e) => codes::views(e),
            StoreError::Checkpoint(e) => codes::checkpoint(e),
            StoreError::Empty { .. } => codes::EMPTY_LOG,
        }
    }

    /// An open of `dir` failed.
    pub fn open(dir: &Path) -> impl FnOnce(log_engine::Error) -> StoreError + '_ {
        |source| StoreError::Open { dir: dir.to_path_buf(), source }
    }
}

/// Encryption at rest for this process: the key-encryption key and where the key store is
/// (`None`: `DIR/keys` of the data directory opened).
#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub kek: log_engine::Kek,
    pub store: Option<PathBuf>,
}

static KEYS: std::sync::OnceLock<KeyConfig> = std::sync::OnceLock::new();

/// Sets the process's key (from `--key-file`, `CAIRN_KEY_FILE` or `CAIRN_KEY`): every data
/// directory this process opens afterwards is read and written with it. Set once, at start.
pub fn configure_keys(config: KeyConfig) {
    let _ = KEYS.set(config);
}

static ARCHIVE: std::sync::OnceLock<bucket::Location> = std::sync::OnceLock::new();

/// Sets the process's archive (from `--archive` or `CAIRN_ARCHIVE`): every log this process
/// opens afterwards reads its evicted segments back from it. Set once, at start.
pub fn configure_archive(location: bucket::Location) {
    let _ = ARCHIVE.set(location);
}

/// Reading evicted segments from the process's archive, if one is set: fetched into
/// `cache_dir` (each copy unlinked once mapped), at most [`crate::tier::TIER_CACHE_DEFAULT`] kept.
fn archive_tiering(dir: &Path, cache_dir: &Path) -> Result<Option<log_engine::Tiering>, StoreError> {
    let Some(location) = ARCHIVE.get() else { return Ok(None) };
    let tiering = crate::tier::tiering_in(cache_dir, location, crate::tier::TIER_CACHE_DEFAULT).map_err(|e| {
        StoreError::open(dir)(log_engine::Error::Invalid { what: format!("reading the archive {location}: {e}") })
    })?;
    Ok(Some(tiering))
}

/// A reader's [`archive_tiering`]: fetched copies go to the system's temporary directory, so a
/// reader writes nothing in the data directory.
pub fn reader_tiering(dir: &Path) -> Result<Option<log_engine::Tiering>, StoreError> {
    archive_tiering(dir, &std::env::temp_dir())
}

/// Whether `dir` holds a log with at least one segment.
fn has_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir.join(log_engine::LOG_DIR))
        .map(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "seg")))
        .unwrap_or(false)
}

/// The key store for `dir`, opened for a writer (created if missing, for a new log only) or a
/// reader. A writer without a key refuses a directory that has a key store: it would write
/// events in the clear beside encrypted ones.
fn keyring(
    dir: &Path,
    writer: bool,
    fs: &std::sync::Arc<dyn log_engine::fs::FileSystem>,
) -> Result<Option<std::sync::Arc<log_engine::Keyring>>, StoreError> {
    let refuse = |path: &Path, detail: String| {
        StoreError::open(dir)(log_engine::Error::KeyStore { path: path.to_path_buf(), detail })
    };
    let Some(config) = KEYS.get() else {
        let default = dir.join(log_engine::KEY_STORE_FILE);
        if writer && default.exists() {
            return Err(refuse(
                &default,
                "the log is encrypted: a writer needs its key (--key-file FILE, CAIRN_KEY_FILE or CAIRN_KEY); \
                 without it, events would be written in the clear"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let path = config.store.clone().unwrap_or_else(|| dir.join(log_engine::KEY_STORE_FILE));
    if writer && !path.exists() && has_segments(dir) {
        // A new store for an existing log would number secrets from 1 again, colliding with
        // the records the right store sealed.
        return Err(refuse(
            &path,
            "there is no key store here, and the log already has events: give the log's own store with \
             --key-store (or CAIRN_KEY_STORE); a key store is created only with a new log"
                .into(),
        ));
    }
    if !writer && !path.exists() {
        return Err(refuse(
            &path,
            "there is no key store here: a copy of an encrypted log (a restore, a backup) does not carry one; \
             give the log's own store with --key-store (or CAIRN_KEY_STORE)"
                .into(),
        ));
    }
    let ring = if writer {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::open(dir)(log_engine::Error::KeyStore { path: path.clone(), detail: e.to_string() })
            })?;
        }
        log_engine::Keyring::open_on(fs.clone(), &path, config.kek.clone())
    } else {
        log_engine::Keyring::open_read_only(&path, config.kek.clone())
    };
    ring.map(Some).map_err(StoreError::open(dir))
}

/// Opens the log in `dir` as its writer, with the default (durable) options, creating the
/// directory if it is missing. For commands that write, the server and the demo. With a key
/// configured ([`configure_keys`]), new events are written encrypted.
pub fn open_writer(dir: &Path) -> Result<Log, StoreError> {
    let tiering = archive_tiering(dir, &dir.join(crate::tier::TIER_CACHE_DIR))?;
    open_writer_with(dir, &crate::config::LogSettings::default(), tiering)
}

/// [`open_writer`] with the log's settings of `cairn serve` (segment size, durability, writer
/// queue; see [`crate::config`]), reading evicted segments back through `tiering` (the server
/// with `--archive`).
pub fn open_writer_with(
    dir: &Path,
    settings: &crate::config::LogSettings,
    tiering: Option<log_engine::Tiering>,
) -> Result<Log, StoreError> {
    let mut options = log_engine::Options {
        segment_size: settings.segment_size,
        durability: settings.durability,
        writer_queue_bytes: settings.writer_queue_bytes,
        tiering,
        ..log_engine::Options::default()
    };
    options.keys = keyring(dir, true, &options.fs)?;
    let log = Log::open(dir, options).map_err(StoreError::open(dir))?;
    if log.append_needs_key() {
        // The store lives outside DIR (`--key-store`), so `keyring` found none here; the
        // log's newest segment says it is encrypted.
        log.close();
        return Err(StoreError::open(dir)(log_engine::Error::AppendNeedsKey { dir: dir.to_path_buf() }));
    }
    Ok(log)
}

/// [`open_writer`] for a command that copies the log and appends nothing (a backup, a
/// restore's source): an encrypted log whose key store is elsewhere opens without the key,
/// and the engine refuses any append to it ([`log_engine::Error::AppendNeedsKey`]).
///
/// Evicted segments are read back from the process's archive, as [`open_writer`] does.
pub fn open_writer_to_copy(dir: &Path) -> Result<Log, StoreError> {
    let mut options = log_engine::Options::default();
    options.keys = keyring(dir, true, &options.fs)?;
    options.tiering = archive_tiering(dir, &dir.join(crate::tier::TIER_CACHE_DIR))?;
    Log::open(dir, options).map_err(StoreError::open(dir))
}

/// Opens the log in `dir` as a reader: no lock, nothing created or written. A missing
/// directory, or one that is not a cairn data directory, fails naming the path (not found).
/// Damage or a torn batch at the end of the newest segment does not fail the open: the events
/// before it are readable, and [`Log::read_stop`] (see [`describe_stop`]) says where the
/// reader stopped.
///
/// With an archive set ([`configure_archive`]) evicted segments are fetched into the system's
/// temporary directory (a reader writes nothing in the data directory) and unlinked once mapped.
pub fn open_reader(dir: &Path) -> Result<Log, StoreError> {
    let mut options = log_engine::Options::default();
    options.keys = keyring(dir, false, &options.fs)?;
    options.tiering = reader_tiering(dir)?;
    Log::open_read_only(dir, options).map_err(StoreError::open(dir))
}

/// Opens a copy of a log (a fetched backup, a restore's result) read-only, to cut, copy or
/// verify it: with the key store when the process has a key and the store is there (verify then
/// authenticates every sealed payload), keyless otherwise (the chain, the headers and the
/// timestamps need no key). Never creates or writes a key store.
pub fn open_copy(dir: &Path) -> Result<Log, StoreError> {
    let mut options = log_engine::Options::default();
    if let Some(config) = KEYS.get() {
        let path = config.store.clone().unwrap_or_else(|| dir.join(log_engine::KEY_STORE_FILE));
        if path.exists() {
            options.keys =
                Some(log_engine::Keyring::open_read_only(&path, config.kek.clone()).map_err(StoreError::open(dir))?);
        }
    }
    Log::open_read_only(dir, options).map_err(StoreError::open(dir))
}

/// Where a reader stopped short of the newest segment's end, and what to do about it.
pub fn describe_stop(stop: &log_engine::ReadStop) -> String {
    let position = stop.position.map_or(String::new(), |p| format!(" (position {p})"));
    if stop.corrupt {
        format!(
            "segment {} is damaged at byte offset {}{position}: {}; only the events before it are shown. \
             `cairn repair` cuts the damaged end off, keeping its bytes aside",
            stop.segment, stop.offset, stop.kind
        )
    } else {
        format!(
            "segment {} ends with a torn or unfinished batch at byte offset {}{position} ({}); it is not shown, \
             and the next writer to open the directory cuts it, keeping its bytes in torn/",
            stop.segment, stop.offset, stop.kind
        )
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
    /// the runner. `progress` sees the restore's stages. On failure the log is closed.
    pub fn open(log: Log, policy: Policy, progress: &mut dyn FnMut(Progress)) -> Result<(Store, Restored), StoreError> {
        Store::open_views(log.clone(), policy, progress).inspect_err(|_| log.close())
    }

    fn open_views(
        log: Log,
        policy: Policy,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Store, Restored), StoreError> {
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

/// How this binary scavenges: the views' streams keep the payloads of what only retention
/// hides, since the views fold those events (a key keeps the value `max_count` hides from its
/// stream), and a replay from the log (a restore, a drill, a replica) must fold the same bytes.
/// Deleted, tombstoned, expired and erased events of those streams are husked as elsewhere:
/// the views forget them at the lifecycle event, live and replayed alike.
pub fn scavenge_options() -> log_engine::ScavengeOptions {
    log_engine::ScavengeOptions::default().keeping_hidden(projections::VIEW_FOLDED_PREFIXES)
}

/// What `cairn stats` and `GET /v1/admin/stats` report.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StatsJson {
    pub events: u64,
    pub streams: u64,
    pub segments: u64,
    /// Bytes of records in all segments.
    pub record_bytes: u64,
    /// Bytes of every file in the data directory: preallocated segments, the spare segment,
    /// checkpoints, bytes cut from a torn tail.
    pub disk_bytes: u64,
    /// Bytes free for an unprivileged writer on the data directory's file system (null if it
    /// cannot be read).
    pub disk_free_bytes: Option<u64>,
    pub head_position: Option<u64>,
    pub head_hash: Option<String>,
    pub checkpoints: u64,
    pub checkpoints_valid: u64,
}

/// The statistics of `log` with its checkpoints' statuses.
pub fn stats(log: &Log, checkpoints: &[CheckpointStatus]) -> StatsJson {
    let s = log.stats();
    StatsJson {
        events: s.events,
        streams: s.streams,
        segments: s.segments,
        record_bytes: s.record_bytes,
        disk_bytes: dir_bytes(log.dir()),
        disk_free_bytes: disk_free(log.dir()),
        head_position: s.head.map(|h| h.position.0),
        head_hash: s.head.map(|h| h.hash.to_hex()),
        checkpoints: checkpoints.len() as u64,
        checkpoints_valid: checkpoints.iter().filter(|c| c.status == snapshotter::ChainStatus::Valid).count() as u64,
    }
}

/// The bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
pub fn disk_free(dir: &Path) -> Option<u64> {
    rustix::fs::statvfs(dir).ok().map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// A fresh directory name under the system's temporary directory, for a drill's scratch copy.
pub fn temp_scratch() -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("cairn-drill-{}-{nanos}", std::process::id()))
}

/// What a restore, drill or checkpoint listing is doing, in words (progress bars and lines).
pub fn stage_name(stage: snapshotter::Stage) -> &'static str {
    match stage {
        snapshotter::Stage::LoadCheckpoints => "loading checkpoints",
        snapshotter::Stage::Replay => "replaying the log",
        snapshotter::Stage::CopyLog => "copying segments",
        snapshotter::Stage::CopyCheckpoints => "copying checkpoints",
        snapshotter::Stage::VerifyLog => "verifying the log",
        snapshotter::Stage::VerifyCheckpoints => "verifying checkpoints",
    }
}
