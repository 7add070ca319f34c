//! Fault injection for the reliability suites (cargo feature `faults`; never in a release build).
//!
//! [`FaultFs`] wraps the real file system. It remembers every write, preallocation, creation and
//! rename that has not been made durable (by fdatasync of the file, or fsync of the directory),
//! and can:
//! - fail a chosen operation with a chosen errno ([`FaultFs::inject`]);
//! - cut the power after N more mutating operations ([`FaultFs::crash_after`]): from then on
//!   every operation fails and does nothing, like a dead machine;
//! - apply a simulated power loss to the files on disk ([`FaultFs::power_loss`]): each
//!   non-durable write is kept, dropped, or torn at 512-byte sector granularity, and each
//!   non-durable directory operation is kept or undone, chosen by a seeded generator.
//!
//! Files stay real files underneath, so the log's read-only maps work unchanged.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::fs::{FileSystem, OsFile, OsFs, StorageFile};

/// An operation that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Write,
    Sync,
    Preallocate,
    Rename,
    SyncDir,
    Create,
}

/// Sector size used when tearing writes.
const SECTOR: u64 = 512;

#[derive(Debug)]
enum Undo {
    Write { offset: u64, old: Vec<u8>, new_len: usize },
    Extend { old_len: u64 },
}

#[derive(Debug)]
enum DirOp {
    Create(PathBuf),
    Rename { from: PathBuf, to: PathBuf },
}

#[derive(Debug, Default)]
struct State {
    /// Mutating operations allowed before the power is cut.
    budget: Option<u64>,
    crashed: bool,
    /// (operation, how many more to let through before failing one, errno).
    injections: Vec<(Op, u64, i32)>,
    /// Non-durable changes per file id.
    unsynced: HashMap<u64, Vec<Undo>>,
    paths: HashMap<u64, PathBuf>,
    next_id: u64,
    dir_ops: Vec<DirOp>,
    counts: HashMap<Op, u64>,
}

impl State {
    /// Decides whether an operation goes ahead: `Err` for a crash or an injected failure.
    fn admit(&mut self, op: Op) -> io::Result<()> {
        if self.crashed {
            return Err(io::Error::other("simulated power loss: the machine is off"));
        }
        if let Some(budget) = self.budget.as_mut() {
            if *budget == 0 {
                self.crashed = true;
                return Err(io::Error::other("simulated power loss: the machine is off"));
            }
            *budget -= 1;
        }
        *self.counts.entry(op).or_default() += 1;
        if let Some(i) = self.injections.iter().position(|(o, _, _)| *o == op) {
            if self.injections[i].1 == 0 {
                let (_, _, errno) = self.injections.remove(i);
                return Err(io::Error::from_raw_os_error(errno));
            }
            self.injections[i].1 -= 1;
        }
        Ok(())
    }
}

/// The fault-injecting file system. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
}

impl FaultFs {
    pub fn new() -> FaultFs {
        FaultFs::default()
    }

    /// Fails the operation `op` after letting `skip` more of them through, with `errno`
    /// (for example `libc`'s EIO = 5, ENOSPC = 28).
    pub fn inject(&self, op: Op, skip: u64, errno: i32) {
        self.state.lock().injections.push((op, skip, errno));
    }

    /// Cuts the power after `ops` more mutating operations.
    pub fn crash_after(&self, ops: u64) {
        self.state.lock().budget = Some(ops);
    }

    /// Cuts the power now.
    pub fn crash_now(&self) {
        self.state.lock().crashed = true;
    }

    pub fn crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// How many operations of a kind were admitted.
    pub fn count(&self, op: Op) -> u64 {
        self.state.lock().counts.get(&op).copied().unwrap_or(0)
    }

    /// Applies a simulated power loss to the files on disk: every change not yet made durable
    /// is kept, dropped or torn, as a seeded generator decides. Call it after the log using
    /// this file system has been dropped. Returns how many changes were dropped or torn.
    pub fn power_loss(&self, seed: u64) -> io::Result<u64> {
        let mut state = self.state.lock();
        state.crashed = true;
        let mut rng = SplitMix(seed);
        let mut damaged = 0;
        let unsynced = std::mem::take(&mut state.unsynced);
        for (id, undos) in unsynced {
            let Some(path) = state.paths.get(&id).cloned() else { continue };
            let Ok(file) = OpenOptions::new().write(true).open(&path) else { continue };
            for undo in undos.into_iter().rev() {
                match undo {
                    Undo::Write { offset, old, new_len } => match rng.next() % 4 {
                        0 => {}
                        1 => {
                            file.write_all_at(&old, offset)?;
                            damaged += 1;
                        }
                        _ => {
                            // Tear: each sector independently lands or not.
                            let sectors = (new_len as u64).div_ceil(SECTOR);
                            for s in 0..sectors {
                                if rng.next().is_multiple_of(2) {
                                    let from = (s * SECTOR) as usize;
                                    let to = ((s + 1) * SECTOR).min(new_len as u64) as usize;
                                    file.write_all_at(&old[from..to], offset + from as u64)?;
                                }
                            }
                            damaged += 1;
                        }
                    },
                    Undo::Extend { old_len } => {
                        if rng.next().is_multiple_of(2) {
                            file.set_len(old_len)?;
                            damaged += 1;
                        }
                    }
                }
            }
        }
        let dir_ops = std::mem::take(&mut state.dir_ops);
        for op in dir_ops.into_iter().rev() {
            if rng.next().is_multiple_of(2) {
                continue;
            }
            damaged += 1;
            match op {
                DirOp::Create(path) => {
                    let _ = std::fs::remove_file(path);
                }
                DirOp::Rename { from, to } => {
                    let _ = std::fs::rename(to, from);
                }
            }
        }
        Ok(damaged)
    }

    fn register(&self, path: &Path) -> u64 {
        let mut state = self.state.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.paths.insert(id, path.to_path_buf());
        id
    }
}

/// A file opened through [`FaultFs`].
#[derive(Debug)]
pub struct FaultFile {
    id: u64,
    inner: OsFile,
    file_for_reads: File,
    state: Arc<Mutex<State>>,
}

impl StorageFile for FaultFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.admit(Op::Write)?;
        let mut old = vec![0u8; buf.len()];
        let len = self.file_for_reads.metadata()?.len();
        if offset < len {
            let n = ((len - offset) as usize).min(buf.len());
            self.file_for_reads.read_exact_at(&mut old[..n], offset)?;
        }
        state.unsynced.entry(self.id).or_default().push(Undo::Write { offset, old, new_len: buf.len() });
        self.inner.write_all_at(buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.state.lock().crashed {
            return Err(io::Error::other("simulated power loss: the machine is off"));
        }
        self.inner.read_exact_at(buf, offset)
    }

    fn preallocate(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.admit(Op::Preallocate)?;
        let old_len = self.file_for_reads.metadata()?.len();
        state.unsynced.entry(self.id).or_default().push(Undo::Extend { old_len });
        self.inner.preallocate(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        state.admit(Op::Sync)?;
        state.unsynced.remove(&self.id);
        // The real file needs no fdatasync: the simulation decides what survives.
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn as_file(&self) -> &File {
        self.inner.as_file()
    }
}

impl FileSystem for FaultFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.state.lock().admit(Op::Create)?;
        let file = OsFs.create(path)?;
        drop(file);
        self.state.lock().dir_ops.push(DirOp::Create(path.to_path_buf()));
        self.open_unchecked(path)
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        if self.state.lock().crashed {
            return Err(io::Error::other("simulated power loss: the machine is off"));
        }
        self.open_unchecked(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.admit(Op::Rename)?;
        std::fs::rename(from, to)?;
        for p in state.paths.values_mut() {
            if p == from {
                *p = to.to_path_buf();
            }
        }
        state.dir_ops.push(DirOp::Rename { from: from.to_path_buf(), to: to.to_path_buf() });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        if self.state.lock().crashed {
            return Err(io::Error::other("simulated power loss: the machine is off"));
        }
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.admit(Op::SyncDir)?;
        state.dir_ops.retain(|op| {
            let p = match op {
                DirOp::Create(p) => p,
                DirOp::Rename { to, .. } => to,
            };
            p.parent() != Some(path)
        });
        Ok(())
    }

    fn list(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        OsFs.list(path)
    }
}

impl FaultFs {
    fn open_unchecked(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let file_for_reads = file.try_clone()?;
        let id = self.register(path);
        Ok(Box::new(FaultFile { id, inner: OsFile::new(file), file_for_reads, state: self.state.clone() }))
    }
}

/// A small seeded generator (SplitMix64): deterministic across platforms and runs.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
