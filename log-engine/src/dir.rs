//! The data directory: its lock file, and the layout of the log inside it.
//!
//! ```text
//! DIR/LOCK                      held (flock) while a process has the log open
//! DIR/log/00000000000000000000.seg
//! DIR/log/00000000000000004711.seg
//! DIR/log/spare.tmp             a prepared, zero-filled segment waiting to be used
//! DIR/log/extent                the newest segment the log has created (durable; extent.rs)
//! DIR/log/live                  the writer's published, durable offset, for other processes' readers
//! DIR/torn/<segment>-<offset>.bin   bytes cut from a torn tail, kept for inspection
//! ```
//!
//! Everything else in DIR (checkpoints, for one) belongs to other crates; the log never touches it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs::{DIR_MODE, FILE_MODE};

/// The data directory's lock file: a writer holds it (flock) for as long as its log is open.
pub const LOCK_FILE: &str = "LOCK";
/// The directory of segment files (and the side files `extent`, `live`) in a data directory.
pub const LOG_DIR: &str = "log";
/// Where bytes cut from a torn tail are kept, in a data directory.
pub const TORN_DIR: &str = "torn";
/// The next segment's file while it is prepared (zero-filled), before it gets its name.
pub(crate) const SPARE_FILE: &str = "spare.tmp";
/// Every name the log keeps at a data directory's top level; other crates own the rest.
pub const LOG_ENTRIES: [&str; 3] = [LOCK_FILE, LOG_DIR, TORN_DIR];

/// Holds a directory's lock file for as long as it lives. The log takes it on its data
/// directory; other tools take it on a directory they must keep every cairn writer out of
/// (a copy being built, a data directory being replaced).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes `dir`'s lock file (created if missing), or fails with [`Error::Locked`] while
    /// another handle holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
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
            Ok(()) => Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { dir: dir.to_path_buf(), lock: path }),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }
}

/// True while another handle holds the writer's lock on `dir`. Probes with a shared lock on a
/// read-only descriptor and lets it go at once, so a reader never keeps a writer out; a
/// directory without a lock file (or on media where locking fails) has no writer.
pub(crate) fn writer_active(dir: &Path) -> bool {
    match File::open(dir.join(LOCK_FILE)) {
        Ok(file) => matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

pub(crate) fn log_dir(dir: &Path) -> PathBuf {
    dir.join(LOG_DIR)
}

pub(crate) fn torn_dir(dir: &Path) -> PathBuf {
    dir.join(TORN_DIR)
}

/// Creates `path` (and parents, all [`DIR_MODE`]) and fsyncs its parent, so that the new
/// directory entry survives a power loss.
pub(crate) fn create_dir_durable(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|e| Error::io("create directory", path, e))?;
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        File::open(parent).and_then(|f| f.sync_all()).map_err(|e| Error::io("fsync directory", parent, e))?;
    }
    Ok(())
}
