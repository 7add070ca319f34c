//! The single writer thread and its group commit.
//!
//! Appenders prepare their events (encode, compress, digest) on their own threads and send them
//! here. The writer takes everything queued, checks expected versions and idempotency against the
//! committed index plus what it has staged or has in flight, assigns positions, versions,
//! timestamps and chain hashes, and writes the whole group with one pwrite. It then hands the
//! group to the syncer thread, which makes it durable with one fdatasync, publishes it to readers,
//! and only then answers every appender in it. While the syncer waits on the disk, the writer
//! stages and writes the next group: the pipeline is two deep, and groups queued behind a sync
//! share the next one.
//!
//! The writer's state sits behind a mutex that the writer thread holds while it works and lets
//! go of while it waits for commands. A blocking appender that finds nothing queued and the
//! writer idle takes the mutex and commits its own request on its own thread ([`try_direct`]):
//! staged, written and, with nothing in flight and nobody queued meanwhile, fdatasynced,
//! published and answered there, as the writer thread would, without the two thread wake-ups
//! of the hand-off (to the writer and back). Anything queued meanwhile still goes through the
//! writer thread and the syncer. Not in `Durability::Interval`: its timed sync is the writer
//! thread's.
//!
//! Invariants:
//! - Only the writer writes segment files, under its mutex (on the writer thread or an
//!   appender's). The index changes only in `publish`, run by the syncer, or by the writer for a
//!   lone commit while nothing is in flight, and in `roll`, run by the writer with the syncer
//!   drained: never by both threads at once.
//! - Groups are synced, published and answered in the order they were written.
//! - A batch (one append call) never spans segments and ends with a record flagged BATCH_END.
//! - Readers see a record only after the fdatasync that made it durable (in `Durability::Sync`).
//! - After a failed write or fdatasync the log is poisoned: nothing more is written or
//!   acknowledged; every waiter gets [`Error::Poisoned`]. Nothing else poisons: a failure to
//!   prepare or install the next segment is an error for the appends that needed it (see
//!   [`Writer::roll`]).

mod life;
mod retry;
mod roll;
mod stage;
mod syncer;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::oneshot;
use uuid::Uuid;

use self::syncer::SyncJob;
use crate::error::{Error, Result};
use crate::fs::{DirHandle, StorageFile};
use crate::idwindow::IdWindow;
use crate::lifecycle::{Change, LifecycleOp, StreamNow};
#[cfg(feature = "faults")]
use crate::options::Sabotage;
use crate::record::PreparedEvent;
use crate::segment::{self, Active};
use crate::shared::Shared;
use crate::types::{AppendResult, ChainHash, Durability, ExpectedVersion, StreamName};

/// Most bytes the writer stages before it commits a group.
const GROUP_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Written groups that may wait for the syncer before the writer blocks.
const SYNC_QUEUE: usize = 4;
/// Streams the writer tracks for groups in flight before it waits for them to be published.
const OVERLAY_MAX: usize = 1 << 16;

/// Where the writer sends an append's outcome: a blocking caller waits on a std channel (which
/// works on any thread, inside an async runtime or not), an async caller awaits a oneshot.
pub(crate) enum Reply {
    Blocking(std::sync::mpsc::SyncSender<Result<Vec<AppendResult>>>),
    Async(oneshot::Sender<Result<Vec<AppendResult>>>),
}

impl Reply {
    fn send(self, result: Result<Vec<AppendResult>>) {
        // A caller that stopped waiting is not an error of the writer's.
        let _ = match self {
            Reply::Blocking(tx) => tx.send(result).map_err(|_| ()),
            Reply::Async(tx) => tx.send(result).map_err(|_| ()),
        };
    }
}

pub(crate) enum Command {
    Append {
        appends: Vec<PreparedAppend>,
        reply: Reply,
    },
    /// A lifecycle change, staged as one event on `$lifecycle` (writer/life.rs); its reply
    /// holds that one append's result.
    Lifecycle {
        op: LifecycleOp,
        /// The event's metadata (JSON object text, or empty).
        metadata: Vec<u8>,
        reply: Reply,
    },
    Shutdown,
}

#[derive(Debug)]
pub(crate) struct PreparedAppend {
    pub stream: StreamName,
    pub expected: ExpectedVersion,
    pub events: Vec<PreparedEvent>,
}

/// The state the writer starts from, produced by recovery.
pub(crate) struct WriterState {
    pub active: Active,
    pub next_position: u64,
    pub last_hash: ChainHash,
    pub last_timestamp_ms: u64,
    pub ids: IdWindow,
}

/// What an append counts against the writer's queue bound: its prepared events' bytes.
pub(crate) fn queued_size(appends: &[PreparedAppend]) -> usize {
    appends.iter().flat_map(|a| &a.events).map(|e| e.body.len()).sum::<usize>().max(1)
}

/// The thread preparing the next segment's file.
type Preparing = JoinHandle<std::io::Result<Box<dyn StorageFile>>>;

/// One record staged in the current group, not yet written.
struct Staged {
    offset: u64,
    position: u64,
    /// Shared by the records of one stream-append, so runs are found by pointer.
    stream: Arc<str>,
    version: u64,
    id: Uuid,
    body_range: (usize, usize),
    /// For a `$lifecycle` record, the change it makes: `publish` applies it to the index.
    life: Option<Arc<Change>>,
}

impl Staged {
    /// Whether this is an erasure that destroys secrets once it is durable.
    fn shreds(&self) -> bool {
        matches!(self.life.as_deref(), Some(Change::Erased { shred_through: Some(_), .. }))
    }
}

/// The writer's state, shared by the writer thread and blocking appenders committing directly;
/// `None` once a panic while committing took it down (the log is poisoned then).
pub(crate) type Core = Mutex<Option<Writer>>;

pub(crate) struct Writer {
    shared: Arc<Shared>,
    /// The command queue, lent by the writer thread while it holds the mutex (it waits on the
    /// queue without it); `None` during a direct commit, which never reads the queue.
    rx: Option<Receiver<Command>>,
    log_dir: PathBuf,
    /// The segment directory, held open so that fsyncing it never needs a new descriptor.
    dir: Box<dyn DirHandle>,
    state: WriterState,
    /// The active segment's seal is written: it takes no more records, and the next append that
    /// needs room retries installing the next segment (see [`Writer::roll`]).
    sealed: bool,
    /// The next segment being prepared in the background, and its capacity.
    spare: Option<(u64, Preparing)>,
    buf: Vec<u8>,
    staged: Vec<Staged>,
    /// Last version and lifecycle state of streams touched by groups staged or in flight;
    /// overlays the index, which only has what the syncer has published.
    overlay: HashMap<String, StreamNow, foldhash::fast::RandomState>,
    replies: Vec<(Reply, Result<Vec<AppendResult>>)>,
    /// Groups written and handed to the syncer; `None` once it has been joined.
    syncer: Option<(SyncSender<SyncJob>, JoinHandle<()>)>,
    /// The syncer reports the next position after each group it is done with.
    done: Receiver<u64>,
    /// Next position after the last group handed to the syncer, and after the last it finished.
    sent_through: u64,
    finished_through: u64,
    /// A command taken off the queue early, to see whether anyone is waiting.
    early: Option<Command>,
    last_sync: Instant,
    unsynced: bool,
    poisoned: Option<String>,
    /// Streams whose whole erasure is staged or in flight, with the newest secret it destroys
    /// once durable and the erasure's position: appends sealed with those secrets are refused
    /// meanwhile (stage.rs `check_secret_live`).
    shredding: HashMap<String, (u32, u64), foldhash::fast::RandomState>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("segment", &self.state.active.id)
            .field("next_position", &self.state.next_position)
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        log_dir: PathBuf,
        dir: Box<dyn DirHandle>,
        state: WriterState,
    ) -> std::io::Result<Writer> {
        let (job_tx, handle, done_rx) = syncer::spawn(&shared, SYNC_QUEUE)?;
        let next = state.next_position;
        let mut writer = Writer {
            shared,
            rx: None,
            log_dir,
            dir,
            state,
            sealed: false,
            spare: None,
            buf: Vec::with_capacity(GROUP_BYTES_MAX + 1024 * 1024),
            staged: Vec::new(),
            overlay: HashMap::default(),
            replies: Vec::new(),
            syncer: Some((job_tx, handle)),
            done: done_rx,
            sent_through: next,
            finished_through: next,
            early: None,
            last_sync: Instant::now(),
            unsynced: false,
            poisoned: None,
            shredding: HashMap::default(),
        };
        writer.maybe_start_spare();
        Ok(writer)
    }

    /// The writer thread: waits for commands with the mutex let go, then takes everything
    /// queued and commits it as one group, until told to shut down or the queue closes.
    pub(crate) fn run(core: &Core, rx: Receiver<Command>) {
        let mut rx = Some(rx);
        let mut pending: Vec<Command> = Vec::new();
        let mut guard = core.lock();
        loop {
            let Some(writer) = guard.as_mut() else { return };
            let first = match writer.early.take() {
                Some(cmd) => cmd,
                None => {
                    let interval = match writer.shared.options.durability {
                        Durability::Interval(every) if writer.unsynced => Some(every),
                        _ => None,
                    };
                    let queue = rx.as_ref().expect("the writer thread holds the queue between turns");
                    let got = MutexGuard::unlocked(&mut guard, || match interval {
                        Some(every) => queue.recv_timeout(every),
                        None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    });
                    // A direct commit that panicked meanwhile took the writer down.
                    let Some(writer) = guard.as_mut() else { return };
                    match got {
                        Ok(cmd) => cmd,
                        Err(RecvTimeoutError::Timeout) => {
                            writer.interval_sync();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let writer = guard.as_mut().expect("checked above, under the same lock");
            writer.rx = rx.take();
            let shutdown = writer.turn(first, &mut pending);
            rx = writer.rx.take();
            if shutdown {
                break;
            }
        }
        if let Some(writer) = guard.as_mut() {
            writer.rx = rx.take();
            writer.finish();
        }
        // Dropped here, as the thread's own writer was: its files close, and a direct commit
        // finds none (and queues, to be answered as closed).
        drop(guard.take());
    }

    /// One turn of the writer thread: `first` and everything queued behind it (up to
    /// `GROUP_BYTES_MAX`), staged and committed as one group. Returns whether it was told to
    /// shut down.
    fn turn(&mut self, first: Command, pending: &mut Vec<Command>) -> bool {
        pending.push(first);
        self.catch_up();
        let mut bytes = 0usize;
        while bytes < GROUP_BYTES_MAX {
            match self.next_queued() {
                Some(cmd) => {
                    if let Command::Append { appends, .. } = &cmd {
                        bytes += appends.iter().flat_map(|a| &a.events).map(|e| e.body.len()).sum::<usize>();
                    }
                    pending.push(cmd);
                }
                None => break,
            }
        }
        let mut shutdown = false;
        for cmd in pending.drain(..) {
            match cmd {
                Command::Append { appends, reply } => self.handle_append(&appends, reply),
                Command::Lifecycle { op, metadata, reply } => self.handle_lifecycle(&op, metadata, reply),
                Command::Shutdown => shutdown = true,
            }
        }
        self.commit();
        shutdown
    }

    /// The next queued command, if the writer thread has lent the queue and one is waiting.
    fn next_queued(&self) -> Option<Command> {
        self.rx.as_ref()?.try_recv().ok()
    }

    /// The writer thread's last turn: commits what is staged, waits for the syncer, and syncs
    /// what an interval left unsynced.
    fn finish(&mut self) {
        self.commit();
        self.drain();
        if let Some((tx, handle)) = self.syncer.take() {
            drop(tx);
            let _ = handle.join();
        }
        self.catch_up();
        if self.poisoned.is_none() && self.unsynced {
            // A clean close leaves nothing unsynced, whatever the durability mode.
            if let Err(e) = self.state.active.file.sync_data() {
                tracing::error!(error = %e, "fdatasync at close failed");
            }
        }
        if let Some((_, spare)) = self.spare.take() {
            let _ = spare.join();
        }
    }

    /// Takes in what the syncer has finished (and a poisoning it found); forgets the overlay once
    /// nothing is in flight, since the index then has everything.
    fn catch_up(&mut self) {
        self.take_finished();
        self.note_poison();
        if self.overlay.len() > OVERLAY_MAX {
            self.drain();
        }
        if self.finished_through == self.sent_through && self.staged.is_empty() {
            self.overlay.clear();
        }
        // A finished erasure has destroyed its secrets (or poisoned the log): the key store
        // itself refuses them now.
        let finished = self.finished_through;
        self.shredding.retain(|_, (_, position)| *position >= finished);
    }

    /// Takes in a poisoning found by the syncer (or a panicking thread) since the last look.
    fn note_poison(&mut self) {
        if self.poisoned.is_none() {
            self.poisoned.clone_from(&self.shared.poison.lock());
        }
    }

    /// Notes the groups the syncer has finished since the last look, without waiting.
    fn take_finished(&mut self) {
        while let Ok(through) = self.done.try_recv() {
            self.finished_through = through;
        }
    }

    /// Waits until the syncer has finished every group handed to it: then the index holds
    /// everything written, and the segment can be sealed.
    fn drain(&mut self) {
        while self.finished_through < self.sent_through {
            match self.done.recv() {
                Ok(through) => self.finished_through = through,
                // The syncer is gone (it only stops when told to, so it panicked): nothing
                // more will finish, and what was in flight is lost. Poison now; its own handler
                // may not have run yet.
                Err(_) => {
                    let mut poison = self.shared.poison.lock();
                    poison.get_or_insert_with(|| "the log's syncer thread stopped".to_string());
                    break;
                }
            }
        }
        self.note_poison();
    }

    fn handle_append(&mut self, appends: &[PreparedAppend], reply: Reply) {
        // Taken up: no longer counted against the queue's bound.
        self.shared.queued_bytes.fetch_sub(queued_size(appends), Ordering::AcqRel);
        if let Some(cause) = &self.poisoned {
            reply.send(Err(Error::Poisoned { cause: cause.clone() }));
            return;
        }
        match self.stage(appends) {
            Ok(results) => self.replies.push((reply, Ok(results))),
            Err(e) => {
                // Nothing of this request was staged; answer at once.
                reply.send(Err(e));
            }
        }
    }

    /// Writes everything staged with one pwrite and hands it to the syncer, which makes it
    /// durable, publishes it and answers the group.
    fn commit(&mut self) {
        if self.buf.is_empty() {
            // Only idempotent retries of published events (or nothing): answer at once.
            self.answer();
            return;
        }
        // The syncer may have poisoned the log since this group was staged: write nothing more.
        self.note_poison();
        if let Some(cause) = &self.poisoned {
            let cause = cause.clone();
            self.fail_group(&cause);
            return;
        }
        #[cfg(feature = "faults")]
        if self.shared.options.sabotage == Sabotage::AckBeforeWrite {
            self.answer();
        }
        let offset = self.state.active.write_offset;
        if let Err(e) = self.state.active.file.write_all_at(&self.buf, offset) {
            let path = self.shared.log_dir().join(segment::file_name(self.state.active.id));
            self.poison(format!(
                "write of {} bytes at offset {offset} of {} failed: {e}",
                self.buf.len(),
                path.display()
            ));
            return;
        }
        // A group that destroys a key is made durable whatever the mode: the key goes only
        // once the erasure can no longer be lost.
        let shreds = self.staged.iter().any(Staged::shreds);
        let sync = shreds
            || match self.shared.options.durability {
                Durability::Sync => true,
                Durability::Interval(every) => self.last_sync.elapsed() >= every,
                Durability::None => false,
            };
        #[cfg(feature = "faults")]
        let sync = sync && self.shared.options.sabotage != Sabotage::SkipSync;
        if sync {
            self.last_sync = Instant::now();
        }
        self.unsynced = !sync;
        let end = offset + self.buf.len() as u64;
        self.state.active.write_offset = end;
        let active = &self.state.active;
        let job = SyncJob {
            segment: active.id,
            file: active.file.clone(),
            map: active.map.clone(),
            durable: active.durable.clone(),
            end,
            sync,
            staged: std::mem::take(&mut self.staged),
            replies: std::mem::take(&mut self.replies),
            next_position: self.state.next_position,
            head_hash: self.state.last_hash,
            clock_ms: self.state.last_timestamp_ms,
            bytes: self.buf.len() as u64,
        };
        self.buf.clear();
        self.maybe_start_spare();
        // With nothing in flight and nobody queued, handing the group to the syncer would only add
        // a thread wake-up to the commit's latency: sync it here. Otherwise the syncer takes it
        // and the writer goes on to stage what is queued while the disk works.
        self.take_finished();
        if self.early.is_none() {
            self.early = self.next_queued();
        }
        // Appends sent but not yet taken up count in `queued_bytes`: a direct commit (which does
        // not read the queue) sees its waiting neighbours there.
        let queued = self.shared.queued_bytes.load(Ordering::Acquire) != 0;
        if self.finished_through == self.sent_through && self.early.is_none() && !queued {
            // The syncer poisons the log before it reports a group done: a poisoning in the
            // groups just finished is visible here, and this group must not be published.
            let mut poisoned = self.shared.poison.lock().clone();
            let finished = syncer::complete(&self.shared, vec![job], &mut poisoned);
            self.sent_through = self.state.next_position;
            self.finished_through = *finished.last().expect("one group");
            if poisoned.is_some() {
                self.poisoned = poisoned;
            }
            return;
        }
        self.sent_through = self.state.next_position;
        let (tx, _) = self.syncer.as_ref().expect("the syncer runs until the writer stops");
        if let Err(std::sync::mpsc::SendError(job)) = tx.send(job) {
            // Only if the syncer thread died: nothing of this group can be acknowledged.
            for (reply, _) in job.replies {
                reply.send(Err(Error::Poisoned { cause: "the log's syncer thread stopped".into() }));
            }
            self.poison("the log's syncer thread stopped".into());
        }
    }

    fn answer(&mut self) {
        for (reply, result) in self.replies.drain(..) {
            reply.send(result);
        }
    }

    fn fail_group(&mut self, cause: &str) {
        for (reply, _) in self.replies.drain(..) {
            reply.send(Err(Error::Poisoned { cause: cause.to_string() }));
        }
        self.buf.clear();
        self.staged.clear();
    }

    fn poison(&mut self, cause: String) {
        tracing::error!(%cause, "log poisoned");
        *self.shared.poison.lock() = Some(cause.clone());
        self.fail_group(&cause);
        self.poisoned = Some(cause);
    }

    fn interval_sync(&mut self) {
        if self.poisoned.is_some() || !self.unsynced {
            return;
        }
        if let Err(e) = self.state.active.file.sync_data() {
            self.poison(format!("fdatasync of segment {} failed: {e}", self.state.active.id));
            return;
        }
        self.state.active.durable.fetch_max(self.state.active.write_offset, Ordering::AcqRel);
        self.last_sync = Instant::now();
        self.unsynced = false;
    }
}

/// Commits a blocking appender's request on its own thread if the writer is idle: the mutex is
/// free, nothing is queued (`queued_before` is what `queued_bytes` held before this request was
/// counted in it) and the writer thread has nothing taken up early. The reply goes to `reply` as
/// from the writer thread. Otherwise hands the request back, to be queued.
pub(crate) fn try_direct(
    core: &Core,
    queued_before: usize,
    appends: Vec<PreparedAppend>,
    reply: Reply,
) -> Option<(Vec<PreparedAppend>, Reply)> {
    if queued_before != 0 {
        return Some((appends, reply));
    }
    let Some(mut guard) = core.try_lock() else { return Some((appends, reply)) };
    // An interval's timed fdatasync is the writer thread's (it waits for commands with a timeout
    // only while it knows of unsynced bytes): a direct commit must not leave some it missed.
    let idle = guard
        .as_ref()
        .is_some_and(|w| w.early.is_none() && !matches!(w.shared.options.durability, Durability::Interval(_)));
    if !idle {
        return Some((appends, reply));
    }
    let writer = guard.as_mut().expect("checked above, under the same lock");
    let shared = writer.shared.clone();
    let done = std::panic::catch_unwind(AssertUnwindSafe(|| {
        writer.catch_up();
        writer.handle_append(&appends, reply);
        writer.commit();
    }));
    if done.is_err() {
        // As when the writer thread panics (log.rs): nothing more may be acknowledged. Dropping
        // the writer closes the replies it held and the syncer's queue; the writer thread finds
        // it gone and stops, closing the command queue.
        shared.poison.lock().get_or_insert_with(|| "a commit on an appender's thread panicked".to_string());
        drop(guard.take());
        shared.head_tx.send_modify(|_| {});
    }
    None
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
