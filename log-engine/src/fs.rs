//! File access behind a small trait, so tests can inject faults (failed fsyncs, short or lost
//! writes) deterministically. Production uses [`OsFs`].
//!
//! The trait is deliberately narrow: positional writes and reads, preallocation, fdatasync,
//! and the directory operations the log needs. Mapping for readers goes through
//! [`StorageFile::as_file`]: a fault layer still keeps real files underneath.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::cast::usize_of;

/// One open file.
pub trait StorageFile: Send + Sync + Debug {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Reserves `len` bytes on disk (fallocate) and makes them written zeros, so that later
    /// writes neither fail with ENOSPC nor pay for extent conversion at fdatasync.
    fn preallocate(&self, len: u64) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// The real file, for read-only mapping.
    fn as_file(&self) -> &File;
}

/// A directory held open, so that fsyncing it never needs a new file descriptor: the log holds
/// its segment directory's for as long as it is open, and a roll cannot fail for lack of one.
pub trait DirHandle: Send + Sync + Debug {
    /// fsync of the directory: makes creations, renames and removals in it durable.
    fn sync(&self) -> io::Result<()>;
}

/// Directory-level operations.
pub trait FileSystem: Send + Sync + Debug {
    /// Opens a directory for [`DirHandle::sync`].
    fn open_dir(&self, path: &Path) -> io::Result<Box<dyn DirHandle>>;
    /// Creates a new file; fails if it exists.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for reading only (a reader's open, which must work on read-only
    /// files and must never write). Fault layers pass it through to the real file system.
    fn open_read_only(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).open(path)?;
        Ok(Box::new(OsFile::new(file)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory: makes creations, renames and removals in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// The entries of a directory (full paths), in no particular order.
    fn list(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs;

/// A file of the real file system.
#[derive(Debug)]
pub struct OsFile {
    file: File,
}

impl OsFile {
    pub fn new(file: File) -> OsFile {
        OsFile { file }
    }
}

/// Permission bits of every file the log creates: events are the users' data, readable by the
/// owner only (the umask may narrow this further, never widen it).
pub const FILE_MODE: u32 = 0o600;
/// Permission bits of every directory the log creates.
pub const DIR_MODE: u32 = 0o700;

/// Zero-filling happens in chunks of this size.
const ZERO_CHUNK: usize = 1024 * 1024;

impl StorageFile for OsFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn preallocate(&self, len: u64) -> io::Result<()> {
        rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), 0, len)?;
        // fallocate leaves unwritten extents; converting them at the first fdatasync of each
        // region doubles commit latency (docs/benchmarks.md, "What missed, and why"), so write
        // the zeros once now.
        let zeros = vec![0u8; ZERO_CHUNK];
        let mut at = 0;
        while at < len {
            let n = usize_of((len - at).min(ZERO_CHUNK as u64));
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn as_file(&self) -> &File {
        &self.file
    }
}

/// A directory of the real file system, held open.
#[derive(Debug)]
pub struct OsDir {
    dir: File,
}

impl DirHandle for OsDir {
    fn sync(&self) -> io::Result<()> {
        self.dir.sync_all()
    }
}

impl FileSystem for OsFs {
    fn open_dir(&self, path: &Path) -> io::Result<Box<dyn DirHandle>> {
        Ok(Box::new(OsDir { dir: File::open(path)? }))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(FILE_MODE).open(path)?;
        Ok(Box::new(OsFile::new(file)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(OsFile::new(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn list(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?.map(|entry| entry.map(|e| e.path())).collect()
    }
}
