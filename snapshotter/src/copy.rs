//! Restore to another directory: a copy of the log and the checkpoints that opens and verifies
//! on its own.
//!
//! The log is copied through [`Log::segment_files`]: sealed segments whole, the active one up
//! to its durable byte count, into a file of the segment's full capacity with zeros after the
//! durable bytes (the log requires a segment file to be exactly its header's capacity, and
//! zero-filled space is where the recovery scan stops). Bytes are read only below those
//! counts, which the writer never changes again, so the copy is a consistent prefix of the
//! log even while it is being appended to. The checkpoint files are listed before the log is,
//! so every copied checkpoint's position is inside the copied log.
//!
//! Invariants: the source is only read; the target is never written into when it is a
//! non-empty directory unless the caller passes [`Overwrite::Force`], and never while
//! another process holds its lock file. An interrupted copy leaves a partial target; run it
//! again with [`Overwrite::Force`].
//!
//! [`restore_to_at`] cuts the copy at an earlier position instead: the log up to the end of
//! the batch holding that position ([`Log::segment_files_through`]; a cut inside an atomic
//! batch would not be a valid log), and only the checkpoints at or before the cut.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use log_engine::fs::FILE_MODE;
use log_engine::{Head, Log, Position};

use crate::error::{Error, Result};
use crate::format;
use crate::store::{create_dir_durable, sync_dir, Snapshotter, CHECKPOINTS_DIR};
use crate::types::{Progress, Stage};

/// Copies move this many bytes per read and write.
pub const COPY_CHUNK: usize = 1 << 20;
/// The log's directory inside a data directory (log-engine's layout).
const LOG_DIR: &str = "log";
/// Where log-engine keeps bytes cut from a torn tail (log-engine's layout).
const TORN_DIR: &str = "torn";
/// The data directory's lock file (log-engine's layout).
const LOCK_FILE: &str = "LOCK";

/// What to do when the target directory is not empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Refuse with [`Error::TargetNotEmpty`]. The default.
    #[default]
    Refuse,
    /// Replace the target's `log/`, `checkpoints/` and `torn/` (other files are left alone).
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
    let source = log.dir();
    if let (Ok(a), Ok(b)) = (source.canonicalize(), to.canonicalize()) {
        if a == b {
            return Err(Error::Invalid { what: format!("cannot restore {} onto itself", to.display()) });
        }
    }
    let non_empty = match std::fs::read_dir(to) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io("list restore target", to, e)),
    };
    if non_empty && overwrite == Overwrite::Refuse {
        return Err(Error::TargetNotEmpty { dir: to.to_path_buf() });
    }
    create_dir_durable(to)?;
    // Hold the target's lock while copying, so nobody opens a half-made copy.
    let _lock = lock(to)?;
    if non_empty {
        for sub in [LOG_DIR, CHECKPOINTS_DIR, TORN_DIR] {
            let path = to.join(sub);
            if path.exists() {
                std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove old copy", &path, e))?;
            }
        }
        sync_dir(to)?;
    }
    let log_to = to.join(LOG_DIR);
    let checkpoints_to = Snapshotter::checkpoints_dir(to);
    create_dir_durable(&log_to)?;
    create_dir_durable(&checkpoints_to)?;

    let mut checkpoints = checkpoint_files(&Snapshotter::checkpoints_dir(source))?;
    let (head, segments) = match at {
        None => (log.head(), log.segment_files()),
        Some(at) => {
            let (segments, last) = log.segment_files_through(at)?;
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
    let mut capacities = Vec::with_capacity(segments.len());
    for s in &segments {
        let len = std::fs::metadata(&s.path).map_err(|e| Error::io("stat segment", &s.path, e))?.len();
        assert!(s.bytes <= len, "segment {} reports {} final bytes of {len}", s.path.display(), s.bytes);
        capacities.push(len);
    }
    let total: u64 = capacities.iter().sum();
    let mut done = 0;
    for (segment, &capacity) in segments.iter().zip(&capacities) {
        let name = segment.path.file_name().expect("segment files have names");
        copy_prefix(&segment.path, segment.bytes, capacity, &log_to.join(name), &mut |n| {
            done += n;
            progress(Progress { stage: Stage::CopyLog, done, total });
        })?;
    }
    sync_dir(&log_to)?;
    for (i, path) in checkpoints.iter().enumerate() {
        let name = path.file_name().expect("checkpoint files have names");
        let len = std::fs::metadata(path).map_err(|e| Error::io("stat checkpoint", path, e))?.len();
        copy_prefix(path, len, len, &checkpoints_to.join(name), &mut |_| {})?;
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

/// The checkpoint files (not temporary ones) in `dir`, by sequence; none if it does not exist.
fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
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

/// Writes a new file `to` of `len` bytes: the first `bytes` bytes of `from`, then zeros; fsynced.
fn copy_prefix(from: &Path, bytes: u64, len: u64, to: &Path, on_chunk: &mut dyn FnMut(u64)) -> Result<()> {
    let mut input = File::open(from).map_err(|e| Error::io("open for copying", from, e))?;
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(to)
        .map_err(|e| Error::io("create copy", to, e))?;
    let mut buf = vec![0u8; COPY_CHUNK.min(len as usize)];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(COPY_CHUNK as u64) as usize;
        let data = bytes.saturating_sub(at).min(n as u64) as usize;
        input.read_exact(&mut buf[..data]).map_err(|e| Error::io("read for copying", from, e))?;
        buf[data..n].fill(0);
        output.write_all(&buf[..n]).map_err(|e| Error::io("write copy", to, e))?;
        at += n as u64;
        on_chunk(n as u64);
    }
    output.sync_all().map_err(|e| Error::io("fsync copy", to, e))?;
    Ok(())
}

/// Takes the data directory's lock file the way the log does.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::TargetLocked { dir: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}
