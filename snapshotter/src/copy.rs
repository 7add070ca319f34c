//! Restore to another directory: a copy of the log and the checkpoints that opens and verifies
//! on its own.
//!
//! The log is copied through [`Log::segment_snapshots`]: sealed segments whole, the active one up
//! to its durable byte count, into a file of the segment's full capacity with zeros after the
//! durable bytes (the log requires a segment file to be exactly its header's capacity, and
//! zero-filled space is where the recovery scan stops). Bytes are read only below those
//! counts, which the writer never changes again, so the copy is a consistent prefix of the
//! log even while it is being appended to. The checkpoint files are listed before the log is,
//! so every copied checkpoint's position is inside the copied log.
//!
//! Invariants:
//! - The source is only read. A target that equals the source, lies inside it or contains it
//!   (compared after resolving symbolic links) is refused before anything is written: a data
//!   directory named `log` restored into its parent would otherwise be deleted by its own copy.
//! - The copy is built in a staging directory beside the target (`.NAME.restore-partial`,
//!   holding its own lock file) and renamed into place only when it is complete and fsynced,
//!   so the target is either absent (or left as it was) or a complete copy, whenever the copy
//!   stops: an error, an interruption ([`restore_to_cancellable`]) or a kill. A staging
//!   directory left by a killed restore is removed by the next restore to the same target.
//! - A non-empty target is replaced only with [`Overwrite::Force`], only when it looks like a
//!   cairn data directory (a `log/` directory and nothing but the names a data directory
//!   holds: [`DATA_DIR_ENTRIES`]), and never while another process holds its lock file. The
//!   old directory is renamed aside (`.NAME.restore-old`) before the new one takes its name and
//!   deleted afterwards; nothing else is ever deleted.
//!
//! [`restore_to_at`] cuts the copy at an earlier position instead: the log up to the end of
//! the batch holding that position ([`Log::segment_snapshots_through`]; a cut inside an atomic
//! batch would not be a valid log), and only the checkpoints at or before the cut.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use log_engine::fs::{DIR_MODE, FILE_MODE};
use log_engine::{DirLock, Head, Log, Position, KEY_STORE_FILE, LOCK_FILE, LOG_DIR, TORN_DIR};

use crate::error::{Error, Result};
use crate::format;
use crate::store::{create_dir_durable, sync_dir, Snapshotter, CHECKPOINTS_DIR};
use crate::types::{Progress, Stage};

/// Copies move this many bytes per read and write.
pub const COPY_CHUNK: usize = 1 << 20;
/// The file in which a running `cairn serve` records its address (written at start, removed at a
/// clean stop), so that commands run beside it find it. Never copied.
pub const SERVER_FILE: &str = "server.json";
/// The names a cairn data directory holds at its top level: the log's ([`log_engine::LOG_ENTRIES`]),
/// the checkpoints', a running server's address and an encrypted log's key store (which a
/// replacement keeps: see [`install`]). `--force` replaces only a directory holding `log/` and
/// nothing outside this list.
pub const DATA_DIR_ENTRIES: [&str; 6] = [LOCK_FILE, LOG_DIR, CHECKPOINTS_DIR, TORN_DIR, SERVER_FILE, KEY_STORE_FILE];
/// The staging directory beside the target is `.NAME` followed by this suffix.
pub const STAGING_SUFFIX: &str = ".restore-partial";
/// A replaced target waits under `.NAME` followed by this suffix until the new copy has its name.
const REPLACED_SUFFIX: &str = ".restore-old";

/// What to do when the target directory is not empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Refuse with [`Error::TargetNotEmpty`]. The default.
    #[default]
    Refuse,
    /// Replace the target if it is a cairn data directory (see [`DATA_DIR_ENTRIES`]); refuse
    /// with [`Error::TargetNotDataDir`] if it holds anything else.
    Force,
}

/// What [`restore_to`] copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copied {
    pub dir: PathBuf,
    pub segments: u64,
    /// Bytes written for the segments (their full capacities).
    pub log_bytes: u64,
    pub checkpoints: u64,
    /// The source's newest committed event when the copy began: the copy holds it.
    pub head: Option<Head>,
}

/// Copies `log`'s segments and checkpoints into data directory `to`, so that `Log::open(to)`
/// recovers the same events and the checkpoints verify against them.
///
/// ```
/// # let src = tempfile::tempdir().unwrap();
/// # let dst = tempfile::tempdir().unwrap();
/// use log_engine::{ExpectedVersion, Log, NewEvent, Options};
/// use snapshotter::{restore_to, Overwrite};
/// let log = Log::open(src.path(), Options::default())?;
/// log.append("agent-7", ExpectedVersion::Any, vec![NewEvent::json("Started", &serde_json::json!({}))])?;
/// let copied = restore_to(&log, &dst.path().join("copy"), Overwrite::Refuse, &mut |_| {})?;
/// let copy = Log::open(&copied.dir, Options::default())?;
/// assert!(copy.verify(None, |_| {})?.ok);
/// assert_eq!(copy.head(), log.head());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn restore_to(log: &Log, to: &Path, overwrite: Overwrite, progress: &mut dyn FnMut(Progress)) -> Result<Copied> {
    restore_to_at(log, to, None, overwrite, progress)
}

/// [`restore_to`], cut at `at` when given: the copy's log ends with the batch that holds `at`
/// (its head is that batch's last event) and holds only checkpoints at or before it.
pub fn restore_to_at(
    log: &Log,
    to: &Path,
    at: Option<Position>,
    overwrite: Overwrite,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied> {
    restore_to_cancellable(log, to, at, overwrite, &AtomicBool::new(false), progress)
}

/// [`restore_to_at`], stopping with [`Error::Interrupted`] soon after `cancel` becomes true
/// (a signal handler sets it): the staging directory is removed and the target is as it was.
/// Once the copy is complete it is renamed into place without looking at `cancel` again.
pub fn restore_to_cancellable(
    log: &Log,
    to: &Path,
    at: Option<Position>,
    overwrite: Overwrite,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied> {
    check_apart(&resolve(log.dir())?, &resolve(to)?, to)?;
    let mut copied = install(to, overwrite, |staging| copy_into(log, staging, at, cancel, progress))?;
    copied.dir = to.to_path_buf();
    Ok(copied)
}

/// Makes data directory `to` with `build`, under the rules of this module: `build` fills the
/// empty staging directory it is given (and fsyncs what it writes in it); once it succeeds the
/// copy is renamed into place, replacing an earlier data directory only with
/// [`Overwrite::Force`]; if it fails, the staging directory is removed and the target is as it
/// was. [`restore_to_cancellable`] builds with a copy of a live log; a restore from a backup
/// builds with the backup's files.
pub fn install<T, E: From<Error>>(
    to: &Path,
    overwrite: Overwrite,
    build: impl FnOnce(&Path) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let target = resolve(to)?;
    let (parent, name) = match (target.parent(), target.file_name()) {
        (Some(parent), Some(name)) => (parent.to_path_buf(), name.to_os_string()),
        _ => {
            return Err(
                Error::Invalid { what: format!("cannot restore into {}: it has no parent", to.display()) }.into()
            )
        }
    };
    let existing = inspect_target(&target, overwrite)?;
    // Hold the old target's lock from now on: nobody may have it open while it is replaced.
    let _old_lock = match existing {
        Existing::DataDir => Some(lock(&target)?),
        Existing::Absent | Existing::Empty => None,
    };
    create_dir_durable(&parent)?;
    let staging = Staging::create(&parent, &name)?;
    let built = build(staging.path())?;
    sync_dir(staging.path())?;

    // The copy is complete and durable: give it the target's name.
    match existing {
        Existing::Absent | Existing::Empty => rename(staging.path(), &target)?,
        Existing::DataDir => {
            // The replaced directory's key store is the only copy of its secrets (backups never
            // carry one): the new copy keeps it, unless it brought one of its own.
            carry_key_store(&target, staging.path())?;
            let old = parent.join(hidden(&name, REPLACED_SUFFIX));
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(|e| Error::io("remove an earlier replaced copy", &old, e))?;
            }
            rename(&target, &old)?;
            rename(staging.path(), &target)?;
            sync_dir(&parent)?;
            std::fs::remove_dir_all(&old).map_err(|e| Error::io("remove the replaced copy", &old, e))?;
        }
    }
    sync_dir(&parent)?;
    staging.committed();
    Ok(built)
}

/// Copies `from/keys` into `to` (durably) when there is one and `to` has none.
fn carry_key_store(from: &Path, to: &Path) -> Result<()> {
    let (source, dest) = (from.join(KEY_STORE_FILE), to.join(KEY_STORE_FILE));
    if !source.exists() || dest.exists() {
        return Ok(());
    }
    std::fs::copy(&source, &dest).map_err(|e| Error::io("keep the replaced directory's key store", &source, e))?;
    File::open(&dest).and_then(|f| f.sync_all()).map_err(|e| Error::io("fsync key store", &dest, e))?;
    sync_dir(to)
}

/// What [`inspect_target`] found at the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Existing {
    Absent,
    Empty,
    /// A cairn data directory, to be replaced (only with [`Overwrite::Force`]).
    DataDir,
}

fn inspect_target(target: &Path, overwrite: Overwrite) -> Result<Existing> {
    let listing = match std::fs::read_dir(target) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Absent),
        Err(e) => return Err(Error::io("list restore target", target, e)),
    };
    let mut names = Vec::new();
    for entry in listing {
        names.push(entry.map_err(|e| Error::io("list restore target", target, e))?.file_name());
    }
    if names.is_empty() {
        return Ok(Existing::Empty);
    }
    if overwrite == Overwrite::Refuse {
        return Err(Error::TargetNotEmpty { dir: target.to_path_buf() });
    }
    names.sort();
    if let Some(foreign) = names.iter().find(|n| !DATA_DIR_ENTRIES.iter().any(|known| n.as_os_str() == *known)) {
        return Err(Error::TargetNotDataDir {
            dir: target.to_path_buf(),
            reason: format!("it holds {}, which is not part of a cairn data directory", foreign.to_string_lossy()),
        });
    }
    if !target.join(LOG_DIR).is_dir() {
        return Err(Error::TargetNotDataDir {
            dir: target.to_path_buf(),
            reason: format!("it has no {LOG_DIR}/ directory"),
        });
    }
    Ok(Existing::DataDir)
}

/// Refuses a target that is the source, lies inside it or contains it (both resolved).
fn check_apart(source: &Path, target: &Path, given: &Path) -> Result<()> {
    let what = if source == target {
        "is the source data directory itself"
    } else if target.starts_with(source) {
        "lies inside the source data directory"
    } else if source.starts_with(target) {
        "contains the source data directory"
    } else {
        return Ok(());
    };
    Err(Error::Invalid {
        what: format!(
            "cannot restore into {} ({}): it {what} {}; choose a directory outside it",
            given.display(),
            target.display(),
            source.display()
        ),
    })
}

/// `path` made absolute with every symbolic link resolved, for the part that exists; the
/// rest (which cannot hold links) is appended with `.` and `..` applied.
fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| Error::io("read the current directory", path, e))?.join(path)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    let mut resolved = loop {
        match existing.canonicalize() {
            Ok(real) => break real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = parent;
                }
                // `..` or the root: let the lexical pass below handle it.
                _ => {
                    rest.extend(existing.components().rev().map(|c| c.as_os_str().to_os_string()));
                    break PathBuf::from("/");
                }
            },
            Err(e) => return Err(Error::io("resolve", existing, e)),
        }
    };
    for part in rest.into_iter().rev() {
        match Path::new(&part).components().next() {
            Some(Component::ParentDir) => {
                resolved.pop();
            }
            Some(Component::Normal(name)) => resolved.push(name),
            _ => {}
        }
    }
    Ok(resolved)
}

/// `.NAME` followed by `suffix`.
fn hidden(name: &OsString, suffix: &str) -> OsString {
    let mut hidden = OsString::from(".");
    hidden.push(name);
    hidden.push(suffix);
    hidden
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io("rename into place", to, e))
}

/// The directory a copy is built in, removed on drop unless the copy was committed.
struct Staging {
    path: PathBuf,
    /// Held while the copy is made, so a second restore to the same target waits its turn.
    _lock: DirLock,
    committed: bool,
}

impl Staging {
    /// Creates `.NAME.restore-partial` in `parent`, removing one a killed restore left.
    fn create(parent: &Path, name: &OsString) -> Result<Staging> {
        let path = parent.join(hidden(name, STAGING_SUFFIX));
        if path.exists() {
            // Left by a restore that died, unless one is running now (it holds the lock).
            drop(lock(&path)?);
            std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove an abandoned partial copy", &path, e))?;
        }
        std::fs::DirBuilder::new()
            .mode(DIR_MODE)
            .create(&path)
            .map_err(|e| Error::io("create staging directory", &path, e))?;
        let staging = Staging { _lock: lock(&path)?, path, committed: false };
        sync_dir(parent)?;
        Ok(staging)
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn committed(mut self) {
        self.committed = true;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a copy that stopped must not look like a store; a failure here
            // leaves the directory for the next restore to remove.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Copies the log and the checkpoints into the (empty) directory `to`.
fn copy_into(
    log: &Log,
    to: &Path,
    at: Option<Position>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied> {
    let source = log.dir();
    let log_to = to.join(LOG_DIR);
    let checkpoints_to = Snapshotter::checkpoints_dir(to);
    create_dir_durable(&log_to)?;
    create_dir_durable(&checkpoints_to)?;

    let mut checkpoints = checkpoint_files(&Snapshotter::checkpoints_dir(source))?;
    // Snapshots, not paths: a scavenge may rename a smaller rewrite over a sealed segment while
    // this copies, and the byte counts and the cut offset are those of the mapping listed.
    let (head, segments) = match at {
        None => (log.head(), log.segment_snapshots()),
        Some(at) => {
            let (segments, last) = log.segment_snapshots_through(at)?;
            let head = Head { position: last, hash: log.hash_at(last)? };
            // A checkpoint past the cut would not match the copied log; one that cannot be read
            // is left out too (restore would skip it anyway).
            checkpoints.retain(|path| {
                let sequence = path.file_name().and_then(|n| n.to_str()).and_then(format::parse_file_name);
                sequence
                    .and_then(|sequence| crate::store::read_manifest(path, sequence).ok())
                    .is_some_and(|loaded| loaded.manifest.position <= last.0)
            });
            (Some(head), segments)
        }
    };
    let total: u64 = segments.iter().map(|s| s.file().capacity).sum();
    let mut done = 0;
    for snapshot in &segments {
        let segment = snapshot.file();
        assert!(segment.bytes <= segment.capacity, "segment {} has more final bytes than room", segment.path.display());
        let name = segment.path.file_name().expect("segment files have names");
        // The log's rule for a copied segment (`log_engine::SegmentFile`): its final bytes, then
        // zeros up to its capacity.
        // An evicted segment is fetched from the archive here (checked against its digest).
        let mut input = snapshot.bytes()?;
        copy_prefix(
            &mut input,
            &segment.path,
            segment.bytes,
            segment.capacity,
            &log_to.join(name),
            cancel,
            &mut |n| {
                done += n;
                progress(Progress { stage: Stage::CopyLog, done, total });
            },
        )?;
    }
    sync_dir(&log_to)?;
    for (i, path) in checkpoints.iter().enumerate() {
        let name = path.file_name().expect("checkpoint files have names");
        let mut input = File::open(path).map_err(|e| Error::io("open for copying", path, e))?;
        let len = input.metadata().map_err(|e| Error::io("stat checkpoint", path, e))?.len();
        copy_prefix(&mut input, path, len, len, &checkpoints_to.join(name), cancel, &mut |_| {})?;
        progress(Progress { stage: Stage::CopyCheckpoints, done: i as u64 + 1, total: checkpoints.len() as u64 });
    }
    sync_dir(&checkpoints_to)?;
    Ok(Copied {
        dir: to.to_path_buf(),
        segments: segments.len() as u64,
        log_bytes: total,
        checkpoints: checkpoints.len() as u64,
        head,
    })
}

/// The checkpoint files (not temporary ones) in `dir` (a data directory's
/// [`Snapshotter::checkpoints_dir`]), by sequence; none if it does not exist.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut files = Vec::new();
    for entry in listing {
        let path = entry.map_err(|e| Error::io("list", dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(sequence) = format::parse_file_name(name) {
            files.push((sequence, path));
        }
    }
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// Writes a new file `to` of `len` bytes: the first `bytes` bytes of `input` (read from `from`),
/// then zeros; fsynced. Stops with [`Error::Interrupted`] before a chunk once `cancel` is set.
fn copy_prefix(
    input: &mut dyn Read,
    from: &Path,
    bytes: u64,
    len: u64,
    to: &Path,
    cancel: &AtomicBool,
    on_chunk: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(to)
        .map_err(|e| Error::io("create copy", to, e))?;
    let mut buf = vec![0u8; COPY_CHUNK.min(usize::try_from(len).unwrap_or(usize::MAX))];
    let mut at = 0u64;
    while at < len {
        if cancel.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        let n = COPY_CHUNK.min(usize::try_from(len - at).unwrap_or(usize::MAX));
        let data = n.min(usize::try_from(bytes.saturating_sub(at)).unwrap_or(usize::MAX));
        input.read_exact(&mut buf[..data]).map_err(|e| Error::io("read for copying", from, e))?;
        buf[data..n].fill(0);
        output.write_all(&buf[..n]).map_err(|e| Error::io("write copy", to, e))?;
        at += n as u64;
        on_chunk(n as u64);
    }
    output.sync_all().map_err(|e| Error::io("fsync copy", to, e))?;
    Ok(())
}

/// Takes a directory's lock file, as the log's writer does, so that no cairn process opens it.
fn lock(dir: &Path) -> Result<DirLock> {
    DirLock::acquire(dir).map_err(|e| match e {
        log_engine::Error::Locked { .. } => Error::TargetLocked { dir: dir.to_path_buf() },
        other => Error::Log(other),
    })
}
