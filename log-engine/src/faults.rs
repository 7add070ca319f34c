//! Fault injection for the reliability suites (cargo feature `faults`; never in a release build).
//!
//! [`FaultFs`] wraps the real file system and keeps a model of what the disk would hold after a
//! power cut. Files stay real files underneath, so the log's read-only maps work unchanged.
//!
//! - **Errno injection** ([`FaultFs::inject`], [`FaultFs::inject_always`],
//!   [`FaultFs::inject_short_write`]): the chosen operation fails with the chosen errno after
//!   letting `skip` of its kind through. A failed write does nothing (or, for a short write,
//!   lands its first half). A failed fdatasync behaves like Linux: the dirty sectors are marked
//!   clean without having been written, so a later successful fdatasync does not make them
//!   durable, and a power loss may still drop them.
//! - **Crash** ([`FaultFs::crash_after`], [`FaultFs::crash_at`], [`FaultFs::crash_now`]):
//!   after N more mutating operations, or at the N-th operation of a kind on a given file, the
//!   machine is off: every later operation fails and does nothing.
//! - **Power loss** ([`FaultFs::power_loss`]): every change not yet made durable is resolved
//!   on the real files, as a seeded generator decides. Data is modelled per 512-byte sector:
//!   each sector written since the file's last successful fdatasync lands as one of its versions
//!   (the durable one, the newest, or one in between), per file either all newest, all durable,
//!   a prefix in file order, or each sector independently; a file grown since its last fdatasync
//!   may shrink back. Directory operations (create, rename, remove) not yet made durable by an
//!   fsync of their directory are undone, either a suffix of them (journal order) or each
//!   independently. A rename over an existing name is one operation, as rename(2) makes it:
//!   undone, the name is the replaced file's again; never neither file's.
//!
//! Invariants of the model: a sector never lands with a version older than its durable one or
//! newer than its newest; an fdatasync that succeeded makes every sector written before it (and
//! not orphaned by an earlier failed fdatasync) durable; a directory fsync makes every earlier
//! operation in that directory durable.
//!
//! What it does not model: the directories created by the log itself (`create_dir_durable`
//! bypasses the file layer and fsyncs for real), metadata other than length and directory
//! entries, and bit rot (the torn-tail and bit-flip suites damage files directly).
//! Operation order between the writer thread and the segment-preparing thread depends on
//! scheduling, so a crash point (`crash_after(n)`) hits the same operation only when the
//! workload is sequential; the power-loss outcome for a given state is fully determined by the
//! seed.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::cast::usize_of;
use crate::fs::{DirHandle, FileSystem, OsFile, OsFs, StorageFile};

/// An operation that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Write,
    Sync,
    Preallocate,
    Rename,
    SyncDir,
    Create,
    Remove,
    /// Opening a file or a directory (not counted toward [`FaultFs::crash_after`]'s budget).
    Open,
}

/// Sector size: the unit in which writes land or not at a power loss.
pub const SECTOR: u64 = 512;
/// Removed files up to this size are kept in memory so that a power loss can undo the removal;
/// larger removals are treated as durable at once.
pub const REMOVE_UNDO_MAX: u64 = 16 * 1024 * 1024;
/// Operations kept in the trace for diagnostics.
pub const TRACE_MAX: usize = 256;

const MACHINE_OFF: &str = "simulated power loss: the machine is off";

fn machine_off() -> io::Error {
    io::Error::other(MACHINE_OFF)
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Fail without doing anything.
    Fail,
    /// Write the first half of the buffer, then fail.
    ShortWrite,
}

#[derive(Debug, Clone)]
struct Injection {
    op: Op,
    /// Only operations on paths containing this string count.
    path_contains: Option<String>,
    /// Operations of this kind to let through before failing.
    skip: u64,
    errno: i32,
    /// Keep failing every later operation of this kind.
    always: bool,
    effect: Effect,
}

/// A file's identity: device and inode, stable across renames.
type FileKey = (u64, u64);

#[derive(Debug)]
struct FileState {
    /// The current name (updated by renames through this layer).
    path: PathBuf,
    /// Kept open so that the inode (and its number) lives as long as this state.
    file: File,
    /// Length that survives a power loss.
    durable_len: u64,
    /// Sectors written since the last successful fdatasync: every version, oldest (durable)
    /// first, newest (what the file holds now) last.
    dirty: BTreeMap<u64, Vec<Box<[u8]>>>,
    /// Sectors whose fdatasync failed: marked clean without being written (Linux), so no later
    /// fdatasync makes them durable unless they are written again.
    orphaned: BTreeMap<u64, Vec<Box<[u8]>>>,
}

#[derive(Debug)]
enum DirOp {
    Create {
        path: PathBuf,
        key: FileKey,
    },
    /// `replaced`: the file `to` named before, if any (its bytes, or `None` when too large to
    /// keep): rename(2) replaces a name atomically, so undoing the rename brings it back.
    Rename {
        from: PathBuf,
        to: PathBuf,
        key: FileKey,
        replaced: Option<Option<Vec<u8>>>,
    },
    Remove {
        path: PathBuf,
        saved: Option<Vec<u8>>,
    },
}

impl DirOp {
    fn dir(&self) -> Option<&Path> {
        match self {
            DirOp::Create { path, .. } | DirOp::Remove { path, .. } => path.parent(),
            DirOp::Rename { to, .. } => to.parent(),
        }
    }
}

/// Counters of what the fault layer did, for the suites' reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Operations admitted (including those failed by an injection).
    pub ops: u64,
    /// Operations failed by an injection.
    pub injected: u64,
    /// Whether the power has been cut.
    pub crashed: bool,
}

/// What one [`FaultFs::power_loss`] did to the files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PowerLossReport {
    /// Non-durable sectors at the time of the power loss.
    pub sectors_pending: u64,
    /// Sectors that landed with an older version than the newest.
    pub sectors_lost: u64,
    /// Files that shrank back to their durable length.
    pub files_shrunk: u64,
    /// Non-durable directory operations at the time of the power loss.
    pub dir_ops_pending: u64,
    /// Directory operations undone.
    pub dir_ops_undone: u64,
}

impl PowerLossReport {
    /// Changes that did not survive.
    pub fn lost(&self) -> u64 {
        self.sectors_lost + self.files_shrunk + self.dir_ops_undone
    }
}

/// Cut the power at the operation matching this.
#[derive(Debug, Clone)]
struct CrashAt {
    op: Op,
    path_contains: String,
    skip: u64,
}

fn matches(op: Op, path: &Path, want: Op, path_contains: Option<&str>) -> bool {
    op == want && path_contains.is_none_or(|p| path.to_string_lossy().contains(p))
}

#[derive(Debug, Default)]
struct State {
    /// Mutating operations allowed before the power is cut.
    budget: Option<u64>,
    crash_at: Option<CrashAt>,
    crashed: bool,
    injections: Vec<Injection>,
    files: BTreeMap<FileKey, FileState>,
    dir_ops: Vec<DirOp>,
    counts: BTreeMap<Op, u64>,
    stats: FaultStats,
    trace: VecDeque<String>,
}

impl State {
    /// Decides whether an operation goes ahead: `Err` for a crash or an injected failure, with
    /// the effect the failure has.
    fn admit(&mut self, op: Op, path: &Path, what: &dyn Fn() -> String) -> Result<(), (io::Error, Effect)> {
        if self.crashed {
            return Err((machine_off(), Effect::Fail));
        }
        if let Some(at) = self.crash_at.as_mut() {
            if matches(op, path, at.op, Some(&at.path_contains)) {
                if at.skip == 0 {
                    self.crash_at = None;
                    self.crashed = true;
                    self.stats.crashed = true;
                    self.note(format!("power cut at {op:?} {}", what()));
                    return Err((machine_off(), Effect::Fail));
                }
                at.skip -= 1;
            }
        }
        if let Some(budget) = self.budget.as_mut() {
            if *budget == 0 {
                self.crashed = true;
                self.stats.crashed = true;
                self.note(format!("power cut before {op:?} {}", what()));
                return Err((machine_off(), Effect::Fail));
            }
            *budget -= 1;
        }
        *self.counts.entry(op).or_default() += 1;
        self.stats.ops += 1;
        if let Some(i) = self.injections.iter().position(|inj| matches(op, path, inj.op, inj.path_contains.as_deref()))
        {
            if self.injections[i].skip == 0 {
                let inj =
                    if self.injections[i].always { self.injections[i].clone() } else { self.injections.remove(i) };
                self.stats.injected += 1;
                self.note(format!("{op:?} {} failed with errno {} ({:?})", what(), inj.errno, inj.effect));
                return Err((io::Error::from_raw_os_error(inj.errno), inj.effect));
            }
            self.injections[i].skip -= 1;
        }
        self.note(format!("{op:?} {}", what()));
        Ok(())
    }

    /// Whether an open may go ahead: opens mutate nothing, so only a crash or an injection
    /// ([`Op::Open`]) stops them, and they do not spend the crash budget.
    fn admit_open(&mut self, path: &Path) -> io::Result<()> {
        if self.crashed {
            return Err(machine_off());
        }
        let matching = |inj: &Injection| matches(Op::Open, path, inj.op, inj.path_contains.as_deref());
        if let Some(i) = self.injections.iter().position(matching) {
            if self.injections[i].skip == 0 {
                let inj =
                    if self.injections[i].always { self.injections[i].clone() } else { self.injections.remove(i) };
                self.stats.injected += 1;
                self.note(format!("Open {} failed with errno {}", path.display(), inj.errno));
                return Err(io::Error::from_raw_os_error(inj.errno));
            }
            self.injections[i].skip -= 1;
        }
        Ok(())
    }

    fn note(&mut self, line: String) {
        if self.trace.len() == TRACE_MAX {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn file_mut(&mut self, key: FileKey) -> &mut FileState {
        self.files.get_mut(&key).expect("every open file is registered")
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

    /// Fails the next operation `op` after letting `skip` more of them through, with `errno`
    /// (for example EIO = 5, ENOSPC = 28). Injections for the same operation queue up.
    pub fn inject(&self, op: Op, skip: u64, errno: i32) {
        self.push(Injection { op, path_contains: None, skip, errno, always: false, effect: Effect::Fail });
    }

    /// Like [`FaultFs::inject`], counting and failing only operations on paths that contain
    /// `path_contains` (a file name, say).
    pub fn inject_at(&self, op: Op, path_contains: &str, skip: u64, errno: i32) {
        let path_contains = Some(path_contains.to_string());
        self.push(Injection { op, path_contains, skip, errno, always: false, effect: Effect::Fail });
    }

    /// Like [`FaultFs::inject`], but every later operation `op` fails too, until
    /// [`FaultFs::clear_injections`].
    pub fn inject_always(&self, op: Op, skip: u64, errno: i32) {
        self.push(Injection { op, path_contains: None, skip, errno, always: true, effect: Effect::Fail });
    }

    /// Makes the write after `skip` more writes land only its first half, then fail.
    pub fn inject_short_write(&self, skip: u64, errno: i32) {
        let effect = Effect::ShortWrite;
        self.push(Injection { op: Op::Write, path_contains: None, skip, errno, always: false, effect });
    }

    /// Removes every pending injection.
    pub fn clear_injections(&self) {
        self.state.lock().injections.clear();
    }

    fn push(&self, injection: Injection) {
        self.state.lock().injections.push(injection);
    }

    /// Cuts the power after `ops` more mutating operations.
    pub fn crash_after(&self, ops: u64) {
        self.state.lock().budget = Some(ops);
    }

    /// Cuts the power when the operation `op` on a path containing `path_contains` is
    /// attempted for the `skip + 1`-th time from now (that operation does not happen). Counting
    /// one kind of operation on one file is immune to the scheduling of other threads.
    pub fn crash_at(&self, op: Op, path_contains: &str, skip: u64) {
        self.state.lock().crash_at = Some(CrashAt { op, path_contains: path_contains.to_string(), skip });
    }

    /// Cuts the power now.
    pub fn crash_now(&self) {
        let mut state = self.state.lock();
        state.crashed = true;
        state.stats.crashed = true;
        state.note("power cut".to_string());
    }

    pub fn crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// How many operations of a kind were admitted (injected failures included).
    pub fn count(&self, op: Op) -> u64 {
        self.state.lock().counts.get(&op).copied().unwrap_or(0)
    }

    pub fn stats(&self) -> FaultStats {
        self.state.lock().stats
    }

    /// The most recent operations (at most [`TRACE_MAX`]), oldest first, for failure messages.
    pub fn trace(&self) -> Vec<String> {
        self.state.lock().trace.iter().cloned().collect()
    }

    /// Applies a simulated power loss to the files on disk: every change not yet made durable
    /// is kept, dropped or torn, as a generator seeded with `seed` decides. Call it after the
    /// log using this file system has been dropped; the machine stays off afterwards. Returns
    /// how many changes were lost (see [`FaultFs::power_loss_report`]).
    pub fn power_loss(&self, seed: u64) -> io::Result<u64> {
        Ok(self.power_loss_report(seed)?.lost())
    }

    /// [`FaultFs::power_loss`], with the details.
    pub fn power_loss_report(&self, seed: u64) -> io::Result<PowerLossReport> {
        let mut state = self.state.lock();
        state.crashed = true;
        state.stats.crashed = true;
        let mut rng = SplitMix(seed);
        let mut report = PowerLossReport::default();
        let files = std::mem::take(&mut state.files);
        for (_, mut file) in files {
            let mut sectors = std::mem::take(&mut file.dirty);
            sectors.append(&mut file.orphaned);
            report.sectors_pending += sectors.len() as u64;
            let mode = rng.next() % 4;
            let prefix = if sectors.is_empty() { 0 } else { rng.next() % (sectors.len() as u64 + 1) };
            for (i, (sector, versions)) in sectors.iter().enumerate() {
                let newest = versions.len() - 1;
                let pick = match mode {
                    0 => newest,
                    1 => 0,
                    2 if (i as u64) < prefix => newest,
                    2 => 0,
                    _ => usize_of(rng.next() % versions.len() as u64),
                };
                if pick != newest {
                    file.file.write_all_at(&versions[pick], sector * SECTOR)?;
                    report.sectors_lost += 1;
                }
            }
            let len = file.file.metadata()?.len();
            let shrink = match mode {
                0 => false,
                1 => true,
                _ => rng.next().is_multiple_of(2),
            };
            if len > file.durable_len && shrink {
                file.file.set_len(file.durable_len)?;
                report.files_shrunk += 1;
            }
        }
        let dir_ops = std::mem::take(&mut state.dir_ops);
        report.dir_ops_pending = dir_ops.len() as u64;
        // Journal order: a suffix of the operations is lost. Or any subset, which POSIX allows.
        let journal = !rng.next().is_multiple_of(4);
        let keep = if dir_ops.is_empty() { 0 } else { usize_of(rng.next() % (dir_ops.len() as u64 + 1)) };
        for (i, op) in dir_ops.into_iter().enumerate().rev() {
            let undo = if journal { i >= keep } else { rng.next().is_multiple_of(2) };
            if undo && undo_dir_op(op)? {
                report.dir_ops_undone += 1;
            }
        }
        state.note(format!("power loss with seed {seed}: {report:?}"));
        Ok(report)
    }

    fn open_registered(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let meta = file.metadata()?;
        let key = (meta.dev(), meta.ino());
        let mut state = self.state.lock();
        if let std::collections::btree_map::Entry::Vacant(slot) = state.files.entry(key) {
            slot.insert(FileState {
                path: path.to_path_buf(),
                file: file.try_clone()?,
                durable_len: meta.len(),
                dirty: BTreeMap::new(),
                orphaned: BTreeMap::new(),
            });
        }
        Ok(Box::new(FaultFile { key, inner: OsFile::new(file), state: self.state.clone() }))
    }
}

fn key_of(path: &Path) -> io::Result<FileKey> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Undoes one directory operation on the real files; false if there was nothing to undo.
fn undo_dir_op(op: DirOp) -> io::Result<bool> {
    match op {
        DirOp::Create { path, key } => {
            if key_of(&path).ok() == Some(key) {
                std::fs::remove_file(&path)?;
                return Ok(true);
            }
            Ok(false)
        }
        DirOp::Rename { from, to, key, replaced } => {
            // A replaced file too large to have been kept: the rename counts as durable.
            if key_of(&to).ok() != Some(key) || from.exists() || replaced == Some(None) {
                return Ok(false);
            }
            std::fs::rename(&to, &from)?;
            if let Some(Some(bytes)) = replaced {
                std::fs::write(&to, bytes)?;
            }
            Ok(true)
        }
        DirOp::Remove { path, saved: Some(bytes) } => {
            if path.exists() {
                return Ok(false);
            }
            std::fs::write(&path, bytes)?;
            Ok(true)
        }
        DirOp::Remove { saved: None, .. } => Ok(false),
    }
}

/// Reads `len` bytes at `offset`, zero-filling past the end of the file.
fn read_padded(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut at = 0;
    while at < len {
        let n = file.read_at(&mut buf[at..], offset + at as u64)?;
        if n == 0 {
            break;
        }
        at += n;
    }
    Ok(buf)
}

/// A file opened through [`FaultFs`].
#[derive(Debug)]
pub struct FaultFile {
    key: FileKey,
    inner: OsFile,
    state: Arc<Mutex<State>>,
}

impl FaultFile {
    /// Writes `buf` at `offset`, recording every touched sector's versions.
    fn tracked_write(&self, state: &mut State, buf: &[u8], offset: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let first = offset / SECTOR;
        let last = (offset + buf.len() as u64 - 1) / SECTOR;
        let file = state.file_mut(self.key);
        for sector in first..=last {
            if !file.dirty.contains_key(&sector) {
                let versions = match file.orphaned.remove(&sector) {
                    Some(versions) => versions,
                    None => vec![read_padded(&file.file, sector * SECTOR, usize_of(SECTOR))?.into_boxed_slice()],
                };
                file.dirty.insert(sector, versions);
            }
        }
        self.inner.write_all_at(buf, offset)?;
        for sector in first..=last {
            let now = read_padded(&file.file, sector * SECTOR, usize_of(SECTOR))?.into_boxed_slice();
            file.dirty.get_mut(&sector).expect("inserted above").push(now);
        }
        Ok(())
    }
}

impl StorageFile for FaultFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        let path = state.files.get(&self.key).map(|f| f.path.clone()).unwrap_or_default();
        match state.admit(Op::Write, &path, &|| format!("{} bytes at {offset} of {}", buf.len(), path.display())) {
            Ok(()) => self.tracked_write(&mut state, buf, offset),
            Err((e, Effect::ShortWrite)) => {
                self.tracked_write(&mut state, &buf[..buf.len() / 2], offset)?;
                Err(e)
            }
            Err((e, Effect::Fail)) => Err(e),
        }
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.state.lock().crashed {
            return Err(machine_off());
        }
        self.inner.read_exact_at(buf, offset)
    }

    fn preallocate(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        let path = state.files.get(&self.key).map(|f| f.path.clone()).unwrap_or_default();
        state.admit(Op::Preallocate, &path, &|| format!("{len} bytes for {}", path.display())).map_err(|(e, _)| e)?;
        // The zeros land over space that reads as zeros anyway (a new file); only the length
        // is at stake, and it stays non-durable until an fdatasync.
        self.inner.preallocate(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        let path = state.files.get(&self.key).map(|f| f.path.clone()).unwrap_or_default();
        match state.admit(Op::Sync, &path, &|| format!("{}", path.display())) {
            Ok(()) => {
                let file = state.file_mut(self.key);
                file.dirty.clear();
                file.durable_len = file.file.metadata()?.len();
                // The real file needs no fdatasync: the simulation decides what survives.
                Ok(())
            }
            Err((e, _)) => {
                if !state.crashed {
                    // Linux marks the pages clean: they are neither durable nor written again.
                    let file = state.file_mut(self.key);
                    let dirty = std::mem::take(&mut file.dirty);
                    file.orphaned.extend(dirty);
                }
                Err(e)
            }
        }
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
        self.state.lock().admit(Op::Create, path, &|| format!("{}", path.display())).map_err(|(e, _)| e)?;
        drop(OsFs.create(path)?);
        let key = key_of(path)?;
        self.state.lock().dir_ops.push(DirOp::Create { path: path.to_path_buf(), key });
        let file = self.open_registered(path)?;
        // A new file's length is durable only once written and synced.
        self.state.lock().file_mut(key).durable_len = 0;
        Ok(file)
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.state.lock().admit_open(path)?;
        self.open_registered(path)
    }

    fn open_dir(&self, path: &Path) -> io::Result<Box<dyn DirHandle>> {
        self.state.lock().admit_open(path)?;
        Ok(Box::new(FaultDir { path: path.to_path_buf(), _dir: File::open(path)?, fs: self.clone() }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.admit(Op::Rename, to, &|| format!("{} to {}", from.display(), to.display())).map_err(|(e, _)| e)?;
        let key = key_of(from)?;
        let replaced = if to.exists() { Some(saved_copy(to)?) } else { None };
        std::fs::rename(from, to)?;
        if let Some(file) = state.files.get_mut(&key) {
            file.path = to.to_path_buf();
        }
        state.dir_ops.push(DirOp::Rename { from: from.to_path_buf(), to: to.to_path_buf(), key, replaced });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.admit(Op::Remove, path, &|| format!("{}", path.display())).map_err(|(e, _)| e)?;
        let saved = saved_copy(path)?;
        std::fs::remove_file(path)?;
        state.dir_ops.push(DirOp::Remove { path: path.to_path_buf(), saved });
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.admit(Op::SyncDir, path, &|| format!("{}", path.display())).map_err(|(e, _)| e)?;
        state.dir_ops.retain(|op| op.dir() != Some(path));
        Ok(())
    }

    fn list(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        OsFs.list(path)
    }
}

/// A directory opened through [`FaultFs`]: its fsync is [`FileSystem::sync_dir`]'s, with the
/// same injections and the same model.
#[derive(Debug)]
pub struct FaultDir {
    path: PathBuf,
    /// Held like the real one, so that a test counting descriptors sees it.
    _dir: File,
    fs: FaultFs,
}

impl DirHandle for FaultDir {
    fn sync(&self) -> io::Result<()> {
        self.fs.sync_dir(&self.path)
    }
}

/// The content of a file about to be removed, if small enough to restore after a power loss.
fn saved_copy(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let len = std::fs::metadata(path)?.len();
    if len > REMOVE_UNDO_MAX {
        return Ok(None);
    }
    std::fs::read(path).map(Some)
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

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EIO: i32 = 5;

    fn setup() -> (tempfile::TempDir, FaultFs, Box<dyn StorageFile>, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new();
        let path = dir.path().join("f");
        let file = fs.create(&path).unwrap();
        file.preallocate(4 * SECTOR).unwrap();
        file.sync_data().unwrap();
        fs.sync_dir(dir.path()).unwrap();
        (dir, fs, file, path)
    }

    /// Every outcome a seed range produces for one sector written twice after a sync.
    fn outcomes(write: impl Fn(&FaultFs, &dyn StorageFile)) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        for seed in 0..64 {
            let (_dir, fs, file, path) = setup();
            write(&fs, &*file);
            drop(file);
            fs.power_loss(seed).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            if !seen.contains(&bytes) {
                seen.push(bytes);
            }
        }
        seen.sort();
        seen
    }

    #[test]
    fn synced_writes_survive_and_unsynced_ones_land_as_some_version() {
        let seen = outcomes(|_, file| {
            file.write_all_at(&[1; 8], 0).unwrap();
            file.sync_data().unwrap();
            file.write_all_at(&[2; 8], 0).unwrap();
            file.write_all_at(&[3; 8], 0).unwrap();
        });
        let first_bytes: Vec<u8> = seen.iter().map(|b| b[0]).collect();
        assert_eq!(first_bytes, vec![1, 2, 3], "each version of the sector, never older than the synced one");
    }

    #[test]
    fn a_failed_fdatasync_does_not_make_earlier_writes_durable_later() {
        let seen = outcomes(|fs, file| {
            file.write_all_at(&[7; 8], 0).unwrap();
            fs.inject(Op::Sync, 0, EIO);
            assert!(file.sync_data().is_err());
            // A later write elsewhere and a successful sync leave sector 0 at risk.
            file.write_all_at(&[9; 8], 3 * SECTOR).unwrap();
            file.sync_data().unwrap();
        });
        assert!(seen.iter().any(|b| b[0] == 0), "the orphaned write must be losable");
        assert!(seen.iter().all(|b| b[3 * usize_of(SECTOR)] == 9), "the synced write is durable");
    }

    #[test]
    fn unsynced_creation_and_rename_can_be_undone_and_synced_ones_cannot() {
        let mut undone = 0;
        for seed in 0..32 {
            let dir = tempfile::tempdir().unwrap();
            let fs = FaultFs::new();
            let a = dir.path().join("a");
            let b = dir.path().join("b");
            let file = fs.create(&a).unwrap();
            file.write_all_at(b"x", 0).unwrap();
            file.sync_data().unwrap();
            fs.rename(&a, &b).unwrap();
            drop(file);
            fs.power_loss(seed).unwrap();
            let names: Vec<bool> = [&a, &b].iter().map(|p| p.exists()).collect();
            assert_ne!(names, vec![true, true], "seed {seed}: one file, one name");
            if names != vec![false, true] {
                undone += 1;
            }

            let fs = FaultFs::new();
            let c = dir.path().join("c");
            drop(fs.create(&c).unwrap());
            fs.sync_dir(dir.path()).unwrap();
            fs.power_loss(seed).unwrap();
            assert!(c.exists(), "seed {seed}: a creation made durable by fsync of its directory");
        }
        assert!(undone > 0);
    }

    #[test]
    fn crash_after_stops_every_later_operation() {
        let (_dir, fs, file, _path) = setup();
        fs.crash_after(1);
        file.write_all_at(b"a", 0).unwrap();
        assert!(file.sync_data().is_err());
        assert!(fs.crashed());
        assert!(file.write_all_at(b"b", 0).is_err());
        assert_eq!(fs.count(Op::Sync), 1, "only the setup's fdatasync was admitted");
    }

    #[test]
    fn short_write_lands_half_and_fails() {
        let (_dir, fs, file, path) = setup();
        fs.inject_short_write(0, EIO);
        assert!(file.write_all_at(&[5; 100], 0).is_err());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..50], &[5; 50]);
        assert_eq!(&bytes[50..100], &[0; 50]);
        assert_eq!(fs.stats().injected, 1);
    }
}
