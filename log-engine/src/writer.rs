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
//! Invariants:
//! - Only the writer writes segment files. The index changes only in `publish`, run by the
//!   syncer, or by the writer for a lone commit while nothing is in flight, and in `roll`, run by
//!   the writer with the syncer drained: never by both threads at once.
//! - Groups are synced, published and answered in the order they were written.
//! - A batch (one append call) never spans segments and ends with a record flagged BATCH_END.
//! - Readers see a record only after the fdatasync that made it durable (in `Durability::Sync`).
//! - After a failed write or fdatasync the log is poisoned: nothing more is written or
//!   acknowledged; every waiter gets [`Error::Poisoned`]. Nothing else poisons: a failure to
//!   prepare or install the next segment is an error for the appends that needed it (see
//!   [`Writer::roll`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::{Error, IdConflictReason, LimitKind, Result};
use crate::fs::{DirHandle, FileSystem, StorageFile};
use crate::idwindow::{IdWindow, IDEMPOTENCY_WINDOW};
use crate::log::Shared;
use crate::mmap::Mapping;
use crate::record::{self, ChainInput, FrameHeader, PreparedEvent, FLAG_BATCH_END, KIND_EVENT, KIND_SEAL};
use crate::segment::{self, Footer, SegmentHeader, Trailer, HEADER_LEN, TRAILER_LEN};
use crate::types::{
    AppendResult, ChainHash, Durability, ExpectedVersion, Position, SegmentId, StreamName, StreamVersion,
};

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
    Append { appends: Vec<PreparedAppend>, reply: Reply },
    Shutdown,
}

#[derive(Debug)]
pub(crate) struct PreparedAppend {
    pub stream: StreamName,
    pub expected: ExpectedVersion,
    pub events: Vec<PreparedEvent>,
}

/// Deliberate faults for proving that the reliability suites catch a broken build.
#[cfg(feature = "faults")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sabotage {
    #[default]
    Off,
    /// Acknowledge without fdatasync.
    SkipSync,
    /// Acknowledge before writing.
    AckBeforeWrite,
}

/// What the writer tracks of the active segment for its footer.
#[derive(Debug, Default)]
pub(crate) struct FooterBuilder {
    pub offsets: Vec<u32>,
    /// Hashed, not ordered: a segment may hold 100,000 streams, and every run staged (or found by
    /// open in the active segment) looks its stream up. Sorted once, at seal.
    pub streams: HashMap<String, SegmentStream, foldhash::fast::RandomState>,
    pub name_bytes: usize,
}

/// One stream's events in the active segment so far.
#[derive(Debug, Default)]
pub(crate) struct SegmentStream {
    first_version: u64,
    positions: Vec<u64>,
    ids: Vec<[u8; 16]>,
}

impl FooterBuilder {
    /// Bytes the seal (footer and id records) will take with this many more records and streams.
    fn seal_len_with(&self, records: usize, new_streams: usize, new_name_bytes: usize) -> u64 {
        Footer::seal_len(
            self.offsets.len() + records,
            self.name_bytes + new_name_bytes,
            self.streams.len() + new_streams,
        ) as u64
    }

    /// Records consecutive events of one stream: (offset, position, id) from `first_version` on.
    pub(crate) fn push_run(&mut self, stream: &str, first_version: u64, run: &[(u64, u64, Uuid)]) {
        self.offsets.extend(run.iter().map(|r| u32::try_from(r.0).expect("segment offsets fit in u32")));
        let s = match self.streams.get_mut(stream) {
            Some(s) => s,
            None => {
                self.name_bytes += stream.len();
                self.streams.entry(stream.to_string()).or_insert(SegmentStream { first_version, ..Default::default() })
            }
        };
        assert_eq!(s.first_version + s.positions.len() as u64, first_version, "stream {stream} version gap in segment");
        s.positions.extend(run.iter().map(|r| r.1));
        s.ids.extend(run.iter().map(|r| *r.2.as_bytes()));
    }

    fn footer(&self, first_position: u64) -> Footer {
        let mut footer = Footer::new(first_position, self.offsets.clone());
        let mut streams: Vec<_> = self.streams.iter().collect();
        streams.sort_unstable_by_key(|(name, _)| *name);
        for (name, s) in streams {
            footer.push_stream(name, s.first_version, &s.positions, &s.ids);
        }
        footer
    }
}

/// The segment the writer appends to.
pub(crate) struct Active {
    pub id: SegmentId,
    pub file: Arc<dyn StorageFile>,
    pub map: Arc<Mapping>,
    pub capacity: u64,
    /// Next byte to write.
    pub write_offset: u64,
    /// Bytes known durable (the watermark stamped into new records); the syncer raises it.
    pub durable: Arc<AtomicU64>,
    pub footer: FooterBuilder,
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
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Command>,
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
    /// Last version (or none) of streams touched by groups staged or in flight; overlays the
    /// index, which only has what the syncer has published.
    overlay: HashMap<String, Option<u64>, foldhash::fast::RandomState>,
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
}

/// A written group on its way to disk: the syncer makes it durable, publishes it, answers it.
struct SyncJob {
    segment: SegmentId,
    file: Arc<dyn StorageFile>,
    map: Arc<Mapping>,
    durable: Arc<AtomicU64>,
    /// End of the group's bytes in the segment.
    end: u64,
    /// Whether this group asks for an fdatasync (always, in `Durability::Sync`).
    sync: bool,
    staged: Vec<Staged>,
    replies: Vec<(Reply, Result<Vec<AppendResult>>)>,
    next_position: u64,
    head_hash: ChainHash,
    bytes: u64,
}

/// The thread that makes written groups durable and visible, in order.
struct Syncer {
    shared: Arc<Shared>,
    rx: Receiver<SyncJob>,
    done: Sender<u64>,
    poisoned: Option<String>,
}

/// What one stream-append of a request will do.
enum Plan {
    Write { first_version: u64 },
    Duplicate(AppendResult),
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: Receiver<Command>,
        log_dir: PathBuf,
        dir: Box<dyn DirHandle>,
        state: WriterState,
    ) -> std::io::Result<Writer> {
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel(SYNC_QUEUE);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let syncer = Syncer { shared: shared.clone(), rx: job_rx, done: done_tx, poisoned: None };
        let for_syncer = shared.clone();
        let handle = std::thread::Builder::new().name("cairn-log-syncer".into()).spawn(move || {
            // As for the writer: a failed assertion here poisons the log; waiters see their reply
            // channel close and report the poison.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| syncer.run())).is_err() {
                for_syncer.poison.lock().get_or_insert_with(|| "the syncer thread panicked".to_string());
                for_syncer.head_tx.send_modify(|_| {});
            }
        })?;
        let next = state.next_position;
        let mut writer = Writer {
            shared,
            rx,
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
        };
        writer.maybe_start_spare();
        Ok(writer)
    }

    pub(crate) fn run(mut self) {
        let mut pending: Vec<Command> = Vec::new();
        loop {
            let first = match self.early.take() {
                Some(cmd) => cmd,
                None => match self.shared.options.durability {
                    Durability::Interval(every) if self.unsynced => match self.rx.recv_timeout(every) {
                        Ok(cmd) => cmd,
                        Err(RecvTimeoutError::Timeout) => {
                            self.interval_sync();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    },
                    _ => match self.rx.recv() {
                        Ok(cmd) => cmd,
                        Err(_) => break,
                    },
                },
            };
            pending.push(first);
            self.catch_up();
            let mut bytes = 0usize;
            while bytes < GROUP_BYTES_MAX {
                match self.rx.try_recv() {
                    Ok(cmd) => {
                        if let Command::Append { appends, .. } = &cmd {
                            bytes += appends.iter().flat_map(|a| &a.events).map(|e| e.body.len()).sum::<usize>();
                        }
                        pending.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            let mut shutdown = false;
            for cmd in pending.drain(..) {
                match cmd {
                    Command::Append { appends, reply } => self.handle_append(&appends, reply),
                    Command::Shutdown => shutdown = true,
                }
            }
            self.commit();
            if shutdown {
                break;
            }
        }
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

    /// Last version of `stream` as of everything staged so far.
    fn current_version(&self, stream: &str) -> Option<u64> {
        if let Some(v) = self.overlay.get(stream) {
            return *v;
        }
        let index = self.shared.index.read();
        index.streams.get(stream).map(|positions| positions.len() as u64 - 1)
    }

    /// Checks and stages one request. On error nothing of it is staged.
    fn stage(&mut self, appends: &[PreparedAppend]) -> Result<Vec<AppendResult>> {
        // Plan every stream-append first: a request is all or nothing.
        let mut plans = Vec::with_capacity(appends.len());
        let mut local: HashMap<&str, Option<u64>, foldhash::fast::RandomState> = HashMap::default();
        // The ids the caller chose, per stream, in this request: an id is unique within its stream.
        let mut request_ids: HashSet<(&str, Uuid), foldhash::fast::RandomState> = HashSet::default();
        for append in appends {
            let name = append.stream.as_str();
            for event in append.events.iter().filter(|e| e.client_id) {
                if !request_ids.insert((name, event.id)) {
                    return Err(Error::Invalid {
                        what: format!(
                            "event id {} appears more than once in the append to stream {name}; an event id is \
                             unique within its stream",
                            event.id
                        ),
                    });
                }
            }
            let current = match local.get(name) {
                Some(v) => *v,
                None => self.current_version(name),
            };
            if let Some(result) = self.find_duplicate(append, current)? {
                plans.push(Plan::Duplicate(result));
                continue;
            }
            let ok = match append.expected {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => current.is_none(),
                ExpectedVersion::Exists => current.is_some(),
                ExpectedVersion::Exact(v) => current == Some(v.0),
            };
            if !ok {
                return Err(Error::WrongExpectedVersion {
                    stream: name.to_string(),
                    expected: append.expected,
                    actual: current.map(StreamVersion),
                });
            }
            let first_version = current.map_or(0, |v| v + 1);
            local.insert(name, Some(first_version + append.events.len() as u64 - 1));
            plans.push(Plan::Write { first_version });
        }

        // Make room: the whole request goes into one segment, with space left for its footer.
        let frames: u64 = appends
            .iter()
            .zip(&plans)
            .filter(|(_, p)| matches!(p, Plan::Write { .. }))
            .flat_map(|(a, _)| &a.events)
            .map(|e| record::frame_len(e.body.len()) as u64)
            .sum();
        if frames > 0 && !self.fits(appends, &plans, frames) {
            self.commit();
            if let Some(cause) = &self.poisoned {
                return Err(Error::Poisoned { cause: cause.clone() });
            }
            self.roll(frames + Self::seal_len_alone(appends, &plans))?;
            if !self.fits(appends, &plans, frames) {
                return Err(Error::LimitExceeded {
                    limit: LimitKind::BatchBytes,
                    max: (self.state.active.capacity - HEADER_LEN - TRAILER_LEN) as usize,
                    actual: frames as usize,
                });
            }
        }

        let mut results = Vec::with_capacity(appends.len());
        let now = now_ms().max(self.state.last_timestamp_ms);
        let mut written = 0usize;
        let total_records: usize = appends
            .iter()
            .zip(&plans)
            .filter(|(_, p)| matches!(p, Plan::Write { .. }))
            .map(|(a, _)| a.events.len())
            .sum();
        for (append, plan) in appends.iter().zip(plans) {
            let first_version = match plan {
                Plan::Duplicate(result) => {
                    results.push(result);
                    continue;
                }
                Plan::Write { first_version } => first_version,
            };
            let name = append.stream.as_str();
            let shared_name: Arc<str> = Arc::from(name);
            let first_position = self.state.next_position;
            let mut run = Vec::with_capacity(append.events.len());
            for (i, event) in append.events.iter().enumerate() {
                written += 1;
                let position = self.state.next_position;
                let version = first_version + i as u64;
                let hash = record::chain_hash(
                    &self.state.last_hash,
                    &ChainInput {
                        position,
                        version,
                        timestamp_ms: now,
                        id: event.id.as_bytes(),
                        stream: name,
                        event_type: &event.event_type,
                        data_binary: event.data_binary,
                        metadata_digest: &event.metadata_digest,
                        data_digest: &event.data_digest,
                    },
                );
                let mut flags = event.flags();
                if written == total_records {
                    flags |= FLAG_BATCH_END;
                }
                let header = FrameHeader {
                    kind: KIND_EVENT,
                    flags,
                    position,
                    version,
                    timestamp_ms: now,
                    watermark: self.state.active.durable.load(Ordering::Acquire),
                    hash,
                };
                let offset = self.state.active.write_offset + self.buf.len() as u64;
                let start = self.buf.len();
                record::encode_frame(&mut self.buf, &header, &event.body);
                let body_start = start + record::FRAME_HEADER_LEN;
                self.staged.push(Staged {
                    offset,
                    position,
                    stream: shared_name.clone(),
                    version,
                    id: event.id,
                    body_range: (body_start, body_start + event.body.len()),
                });
                run.push((offset, position, event.id));
                self.state.next_position += 1;
                self.state.last_hash = hash;
            }
            self.state.active.footer.push_run(name, first_version, &run);
            self.state.ids.insert_all(run.iter().map(|&(_, position, id)| (id, position)));
            self.state.last_timestamp_ms = now;
            self.overlay.insert(name.to_string(), Some(first_version + append.events.len() as u64 - 1));
            results.push(AppendResult {
                stream: append.stream.clone(),
                first_position: Position(first_position),
                last_position: Position(self.state.next_position - 1),
                first_version: StreamVersion(first_version),
                last_version: StreamVersion(first_version + append.events.len() as u64 - 1),
                hash: self.state.last_hash,
            });
        }
        assert!(
            self.state.active.write_offset + self.buf.len() as u64 <= segment::usable_end(self.state.active.capacity),
            "staged bytes overrun the segment"
        );
        Ok(results)
    }

    /// Bytes the seal of a segment holding only this request's records would take.
    fn seal_len_alone(appends: &[PreparedAppend], plans: &[Plan]) -> u64 {
        let mut streams: Vec<&str> = Vec::new();
        let mut records = 0;
        for (append, plan) in appends.iter().zip(plans) {
            if let Plan::Write { .. } = plan {
                records += append.events.len();
                if !streams.contains(&append.stream.as_str()) {
                    streams.push(append.stream.as_str());
                }
            }
        }
        let name_bytes = streams.iter().map(|s| s.len()).sum();
        Footer::seal_len(records, name_bytes, streams.len()) as u64
    }

    fn fits(&self, appends: &[PreparedAppend], plans: &[Plan], frames: u64) -> bool {
        if self.sealed {
            return false;
        }
        let active = &self.state.active;
        let mut new_streams = 0;
        let mut new_name_bytes = 0;
        let mut records = 0;
        let mut seen: Vec<&str> = Vec::new();
        for (append, plan) in appends.iter().zip(plans) {
            if let Plan::Write { .. } = plan {
                records += append.events.len();
                let name = append.stream.as_str();
                if !active.footer.streams.contains_key(name) && !seen.contains(&name) {
                    seen.push(name);
                    new_streams += 1;
                    new_name_bytes += name.len();
                }
            }
        }
        let end = active.write_offset + self.buf.len() as u64 + frames;
        end + active.footer.seal_len_with(records, new_streams, new_name_bytes) <= segment::usable_end(active.capacity)
    }

    /// An idempotent retry: the request's events are already in the stream, where the original
    /// append put them, with the same content. `Ok(None)`: not a retry, and no id of the request
    /// is in the stream yet. An id already in the stream under any other circumstances (other
    /// content, a batch mixing new and written ids, another order) is an [`Error::IdConflict`]
    /// naming that id and the position where it lives.
    fn find_duplicate(&mut self, append: &PreparedAppend, current: Option<u64>) -> Result<Option<AppendResult>> {
        let name = append.stream.as_str();
        // Where would the first event be, if this is a retry? The version after the expected one,
        // or where the first event's id was seen.
        let exact_next = match (append.expected, current) {
            (ExpectedVersion::Exact(v), Some(cur)) if cur > v.0 => Some(v.0 + 1),
            _ => None,
        };
        // Only ids the caller chose can be retried or reused: a generated (v4) one is new.
        let hits: Vec<Option<u64>> =
            append.events.iter().map(|e| if e.client_id { self.state.ids.get(&e.id) } else { None }).collect();
        if exact_next.is_none() && hits.iter().all(Option::is_none) {
            return Ok(None);
        }
        // The original may be in flight: wait until it is in the index and readable.
        self.drain();
        if let Some(cause) = &self.poisoned {
            // What was in flight is not in the index and never will be.
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        // Where each event's id lives in this stream, if it does. The window has an id's newest
        // use in any stream; a hit in another stream sends the search through this stream's own
        // events in the window.
        let mut found: Vec<Option<u64>> = Vec::with_capacity(append.events.len());
        for (event, hit) in append.events.iter().zip(&hits) {
            let at = match *hit {
                Some(p) if self.id_at(p).is_some_and(|(s, id)| &*s == name && id == event.id) => Some(p),
                Some(_) => self.find_in_stream(name, &event.id),
                None => None,
            };
            found.push(at);
        }
        // A retry recognised by its exact expected version, at any age.
        if let (Some(v), None) = (exact_next, found[0]) {
            for (i, event) in append.events.iter().enumerate() {
                let at = self.position_of(name, v + i as u64);
                if let Some(p) = at.filter(|&p| self.id_at(p).is_some_and(|(_, id)| id == event.id)) {
                    found[i] = Some(p);
                } else if i == 0 {
                    break;
                }
            }
        }
        let conflict = |id: Uuid, position: u64, reason| Error::IdConflict {
            stream: name.to_string(),
            id,
            position: Position(position),
            reason,
        };
        let Some(first_position) = found[0] else {
            // Not a retry; any id of it already in the stream is reused, which is refused.
            return match append.events.iter().zip(&found).find_map(|(e, f)| f.map(|p| (e.id, p))) {
                Some((id, p)) => Err(conflict(id, p, IdConflictReason::NotARetry)),
                None => Ok(None),
            };
        };
        // A retry: every event where the original append put it, with the same content.
        let mut versions = None;
        for (i, (event, at)) in append.events.iter().zip(&found).enumerate() {
            let want = first_position + i as u64;
            match *at {
                Some(p) if p == want => {
                    let Some((_, _, body, version, hash)) = self.stored(p) else {
                        return Err(conflict(event.id, p, IdConflictReason::NotARetry));
                    };
                    if body != event.body {
                        return Err(conflict(event.id, p, IdConflictReason::DifferentContent));
                    }
                    let (first, _, _) = *versions.get_or_insert((version, version, hash));
                    versions = Some((first, version, hash));
                }
                Some(p) => return Err(conflict(event.id, p, IdConflictReason::NotARetry)),
                None => return Err(conflict(append.events[0].id, first_position, IdConflictReason::NotARetry)),
            }
        }
        let (first_version, last_version, hash) = versions.expect("at least one event");
        Ok(Some(AppendResult {
            stream: append.stream.clone(),
            first_position: Position(first_position),
            last_position: Position(first_position + append.events.len() as u64 - 1),
            first_version: StreamVersion(first_version),
            last_version: StreamVersion(last_version),
            hash,
        }))
    }

    /// Stream and id of the record at `position`, staged or committed.
    fn id_at(&self, position: u64) -> Option<(Arc<str>, Uuid)> {
        if let Some(s) = self.staged.iter().find(|s| s.position == position) {
            return Some((s.stream.clone(), s.id));
        }
        let location = self.shared.index.read().locate(position)?;
        let bytes = location.map.bytes();
        let frame = record::decode_frame(&bytes[location.offset as usize..], record::EVENT_BODY_MAX).ok()?;
        let (stream, id) = record::decode_index_fields(&frame).ok()?;
        Some((Arc::from(stream), id))
    }

    /// Position of `id` among `stream`'s events in the idempotency window (staged or committed),
    /// newest first. Only for an id whose newest use is in another stream: it reads records.
    fn find_in_stream(&self, stream: &str, id: &Uuid) -> Option<u64> {
        let window_start = self.state.next_position.saturating_sub(IDEMPOTENCY_WINDOW as u64);
        if let Some(s) = self.staged.iter().rev().find(|s| &*s.stream == stream && s.id == *id) {
            return Some(s.position);
        }
        let positions: Vec<u64> = {
            let index = self.shared.index.read();
            let all = index.streams.get(stream)?;
            let from = all.partition_point(|&p| p < window_start);
            all[from..].to_vec()
        };
        positions.into_iter().rev().find(|&p| self.id_at(p).is_some_and(|(_, found)| found == *id))
    }

    /// Position of `version` of `stream`, committed or staged.
    fn position_of(&self, stream: &str, version: u64) -> Option<u64> {
        if let Some(s) = self.staged.iter().find(|s| &*s.stream == stream && s.version == version) {
            return Some(s.position);
        }
        let index = self.shared.index.read();
        index.streams.get(stream)?.get(version as usize).copied()
    }

    /// Stream, id, stored body, version and hash of the record at `position`, staged or committed.
    fn stored(&self, position: u64) -> Option<(String, Uuid, Vec<u8>, u64, ChainHash)> {
        if let Some(s) = self.staged.iter().find(|s| s.position == position) {
            let body = self.buf[s.body_range.0..s.body_range.1].to_vec();
            let hash_at = s.body_range.0 - 32;
            let hash = ChainHash(self.buf[hash_at..s.body_range.0].try_into().expect("32 bytes"));
            return Some((s.stream.to_string(), s.id, body, s.version, hash));
        }
        let location = self.shared.index.read().locate(position)?;
        let bytes = location.map.bytes();
        let frame = record::decode_frame(&bytes[location.offset as usize..], record::EVENT_BODY_MAX).ok()?;
        let event = record::decode_event(&frame).ok()?;
        Some((event.stream, event.id, frame.body.to_vec(), event.version.0, event.hash))
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
        let sync = match self.shared.options.durability {
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
            bytes: self.buf.len() as u64,
        };
        self.buf.clear();
        self.maybe_start_spare();
        // With nothing in flight and nobody queued, handing the group to the syncer would only add
        // a thread wake-up to the commit's latency: sync it here. Otherwise the syncer takes it
        // and the writer goes on to stage what is queued while the disk works.
        self.take_finished();
        if self.early.is_none() {
            self.early = self.rx.try_recv().ok();
        }
        if self.finished_through == self.sent_through && self.early.is_none() {
            // The syncer poisons the log before it reports a group done: a poisoning in the
            // groups just finished is visible here, and this group must not be published.
            let mut poisoned = self.shared.poison.lock().clone();
            let finished = complete(&self.shared, vec![job], &mut poisoned);
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

    /// Prepares the next segment in the background once the active one is half full, so that
    /// rolling over does not stall appenders for the zero-fill, and small logs keep one file.
    fn maybe_start_spare(&mut self) {
        let active = &self.state.active;
        if self.spare.is_none() && active.write_offset > active.capacity / 2 {
            self.start_spare();
        }
    }

    fn start_spare(&mut self) {
        let fs = self.shared.options.fs.clone();
        let path = self.log_dir.join(crate::log::SPARE_FILE);
        let capacity = segment::next_capacity(Some(self.state.active.capacity), self.shared.options.segment_size);
        let spawned = std::thread::Builder::new()
            .name("cairn-log-prepare".into())
            .spawn(move || prepare_spare(fs.as_ref(), &path, capacity));
        match spawned {
            Ok(handle) => self.spare = Some((capacity, handle)),
            // No thread to spare (the process is at a limit): the roll prepares it inline.
            Err(e) => tracing::warn!(error = %e, "could not start the segment preparer thread"),
        }
    }

    /// A prepared next segment file of at least `capacity` bytes, and its capacity: the one
    /// prepared in the background if that worked and is large enough, otherwise one prepared
    /// now. A background failure is not answered as it stands: its cause (a full disk, no free
    /// descriptor) may have passed since, so preparation is tried again.
    fn take_spare(&mut self, capacity: u64) -> Result<(Box<dyn StorageFile>, u64)> {
        let path = self.log_dir.join(crate::log::SPARE_FILE);
        let background = self.spare.take().map(|(prepared, h)| {
            let file = h.join().unwrap_or_else(|_| Err(std::io::Error::other("the segment preparer thread panicked")));
            (prepared, file)
        });
        match background {
            Some((prepared, Ok(file))) if prepared >= capacity => return Ok((file, prepared)),
            // Too small for the request that needs the room: prepared again, larger.
            Some((_, Ok(_))) => {}
            Some((_, Err(e))) => {
                tracing::warn!(error = %e, "preparing the next segment in the background failed; retrying");
            }
            None => {}
        }
        let file = prepare_spare(self.shared.options.fs.as_ref(), &path, capacity)
            .map_err(|e| Error::io("prepare segment", path, e))?;
        Ok((file, capacity))
    }

    /// Seals the active segment and starts the next one, with room for `need` bytes of records
    /// and their seal (the request that did not fit). The next segment doubles the active one's
    /// capacity up to the configured segment size (see [`segment::next_capacity`]), or more if
    /// the request needs it. An empty active segment (a small first segment, say, too small
    /// for the request) is not sealed but replaced by a larger one under the same name.
    ///
    /// Only a failed write or fdatasync of the log's own bytes (the seal) poisons. Everything
    /// else is an error for the request that needed the room, and leaves the log usable:
    /// - preparing the next file comes first; if that fails (ENOSPC, EMFILE) nothing changed,
    ///   and appends that fit the active segment go on;
    /// - once sealed, the active segment takes no more records (`sealed`), and installing the
    ///   new one (header, rename, directory fsync through the handle held since open) is retried
    ///   by the next append that needs room, with a fresh file. Nothing depends on the new file
    ///   until its directory entry is durable; a crash in between leaves every segment sealed,
    ///   and open starts the next one.
    fn roll(&mut self, need: u64) -> Result<()> {
        assert!(self.buf.is_empty(), "roll with {} bytes staged", self.buf.len());
        let max = self.shared.options.segment_size;
        let needed = segment::capacity_for(need);
        if needed > max {
            return Err(Error::LimitExceeded {
                limit: LimitKind::BatchBytes,
                max: (max - HEADER_LEN - TRAILER_LEN) as usize,
                actual: need as usize,
            });
        }
        // Sealing needs every record durable and the index complete.
        self.drain();
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        let replace = !self.sealed && self.state.active.footer.offsets.is_empty();
        let capacity = segment::next_capacity(Some(self.state.active.capacity), max).max(needed);
        let (file, capacity) = self.take_spare(capacity)?;
        if !replace && !self.sealed {
            if let Err(e) = self.seal() {
                self.poison(e.to_string());
                return Err(e);
            }
            self.sealed = true;
        }
        let (file, map, final_path) = self.install(file, capacity)?;
        let id = SegmentId(self.state.next_position);
        {
            let mut index = self.shared.index.write();
            let new = crate::index::SegmentState {
                id,
                path: final_path,
                map: map.clone(),
                offsets: Vec::new(),
                data_end: HEADER_LEN,
                sealed: false,
            };
            if replace {
                // Empty, so no reader has anything of it; its file was renamed over.
                assert_eq!(index.active_mut().id, id, "replacing the empty active segment");
                *index.active_mut() = new;
            } else {
                let old = index.active_mut();
                old.sealed = true;
                old.map.publish(old.map.mapped_len());
                index.segments.push(new);
            }
        }
        self.state.active = Active {
            id,
            file: Arc::from(file),
            map,
            capacity,
            write_offset: HEADER_LEN,
            durable: Arc::new(AtomicU64::new(HEADER_LEN)),
            footer: FooterBuilder::default(),
        };
        self.sealed = false;
        self.unsynced = false;
        if let Some(live) = &self.shared.live {
            live.note(id, HEADER_LEN);
        }
        tracing::debug!(segment = %id, capacity, replaced = replace, "rolled to a new segment");
        Ok(())
    }

    /// Makes a prepared file the next segment: header, fdatasync, map, rename into place,
    /// directory fsync. Mapped before the rename, so that nothing can fail once the new name is
    /// durable. On failure the file is dropped (the next attempt prepares a fresh one, and
    /// renames it over a name left by this one).
    fn install(
        &self,
        file: Box<dyn StorageFile>,
        capacity: u64,
    ) -> Result<(Box<dyn StorageFile>, Arc<Mapping>, PathBuf)> {
        let spare_path = self.log_dir.join(crate::log::SPARE_FILE);
        let id = SegmentId(self.state.next_position);
        let header = SegmentHeader { id, capacity, prev_hash: self.state.last_hash, created_ms: now_ms() };
        let final_path = self.log_dir.join(segment::file_name(id));
        file.write_all_at(&header.encode(), 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io("write segment header", &spare_path, e))?;
        let map = Mapping::new(file.as_file(), HEADER_LEN).map_err(|e| Error::io("map segment", &spare_path, e))?;
        self.shared
            .options
            .fs
            .rename(&spare_path, &final_path)
            .map_err(|e| Error::io("rename segment", &final_path, e))?;
        // The new name is not durable until its directory is fsynced.
        self.dir.sync().map_err(|e| Error::io("fsync directory", &self.log_dir, e))?;
        // Before any record goes into it, the log must know the new segment exists (extent.rs).
        // A failure here is retried like the rest of the install: the segment holds no record.
        crate::extent::write_extent(self.shared.options.fs.as_ref(), &self.log_dir, id, &|| self.dir.sync())?;
        Ok((file, Arc::new(map), final_path))
    }

    /// Writes the footer after the last record, makes it durable, and only then writes the
    /// trailer that points at it: a valid trailer on disk proves its footer durable.
    fn seal(&mut self) -> Result<()> {
        let active = &self.state.active;
        let footer = active.footer.footer(active.id.0);
        let header = FrameHeader {
            kind: KIND_SEAL,
            flags: 0,
            position: self.state.next_position - 1,
            version: footer.offsets.len() as u64,
            timestamp_ms: self.state.last_timestamp_ms,
            watermark: active.durable.load(Ordering::Acquire),
            hash: self.state.last_hash,
        };
        let (frame, footer_len) = segment::encode_seal(&header, &footer);
        let footer_offset = active.write_offset;
        assert!(
            footer_offset + frame.len() as u64 <= segment::usable_end(active.capacity),
            "footer of {} bytes at {footer_offset} overruns segment {}",
            frame.len(),
            active.id
        );
        let trailer = Trailer { footer_offset, footer_len, ids_len: frame.len() as u64 - footer_len };
        let path = self.shared.log_dir().join(segment::file_name(active.id));
        active
            .file
            .write_all_at(&frame, footer_offset)
            .and_then(|()| active.file.sync_data())
            .and_then(|()| active.file.write_all_at(&trailer.encode(), active.capacity - TRAILER_LEN))
            .and_then(|()| active.file.sync_data())
            .map_err(|e| Error::io("seal segment", path, e))
    }
}

/// Creates the next segment's file at `path` (replacing a leftover), reserves and zero-fills
/// `capacity` bytes and makes them durable. On failure the partial file is removed: a
/// half-preallocated file would keep the space it got from everything else (checkpoints, say)
/// while the disk is full.
pub(crate) fn prepare_spare(fs: &dyn FileSystem, path: &Path, capacity: u64) -> std::io::Result<Box<dyn StorageFile>> {
    let _ = fs.remove(path);
    let prepared = fs.create(path).and_then(|file| {
        file.preallocate(capacity)?;
        file.sync_data()?;
        Ok(file)
    });
    if prepared.is_err() {
        // Best effort: a leftover is removed again before the next attempt.
        let _ = fs.remove(path);
    }
    prepared
}

impl Syncer {
    fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            // Everything queued behind the last sync shares the next one.
            let mut jobs = vec![first];
            while let Ok(job) = self.rx.try_recv() {
                jobs.push(job);
            }
            for through in complete(&self.shared, jobs, &mut self.poisoned) {
                // The writer may be gone at close; then nobody needs to know.
                let _ = self.done.send(through);
            }
        }
    }
}

/// Makes written groups durable with one fdatasync, publishes them in order and answers them;
/// on a failed fdatasync, poisons the log and answers them with the error. Returns, per group,
/// the next position after it.
fn complete(shared: &Shared, jobs: Vec<SyncJob>, poisoned: &mut Option<String>) -> Vec<u64> {
    let last = jobs.last().expect("one job at least");
    // The writer drains the syncer before it seals a segment, so a batch is one segment's.
    // One fdatasync of `last.file` covers the jobs only if they are all that file's: a job of
    // another segment would be acknowledged without being durable.
    let stray = jobs.iter().find(|j| j.segment != last.segment).map(|j| j.segment);
    assert!(
        stray.is_none(),
        "a sync group spans segments {} and {}: one fdatasync cannot make both durable",
        stray.map_or(0, |s| s.0),
        last.segment
    );
    if poisoned.is_none() && jobs.iter().any(|j| j.sync) {
        let started = Instant::now();
        match last.file.sync_data() {
            Ok(()) => {
                let events = jobs.iter().map(|j| j.staged.len() as u64).sum();
                shared.metrics.record_fsync(started.elapsed(), events);
                last.durable.fetch_max(last.end, Ordering::AcqRel);
            }
            Err(e) => {
                let path = shared.log_dir().join(segment::file_name(last.segment));
                let cause = format!("fdatasync of {} failed: {e}", path.display());
                tracing::error!(%cause, "log poisoned");
                *shared.poison.lock() = Some(cause.clone());
                *poisoned = Some(cause);
            }
        }
    }
    let mut finished = Vec::with_capacity(jobs.len());
    for job in jobs {
        finished.push(job.next_position);
        match poisoned {
            Some(cause) => {
                for (reply, _) in job.replies {
                    reply.send(Err(Error::Poisoned { cause: cause.clone() }));
                }
            }
            None => {
                publish(shared, &job);
                shared.metrics.record_commit(job.staged.len() as u64, job.bytes);
                for (reply, result) in job.replies {
                    reply.send(result);
                }
            }
        }
    }
    finished
}

/// Makes a group visible: the bytes first, then the index, then wake subscribers. Everything is
/// checked before anything changes, so a failed assertion leaves readers' view as it was.
fn publish(shared: &Shared, job: &SyncJob) {
    let mut index = shared.index.write();
    // A group may hold several runs of one stream (from different requests).
    let mut added: HashMap<&str, u64, foldhash::fast::RandomState> = HashMap::default();
    for run in job.staged.chunk_by(|a, b| Arc::ptr_eq(&a.stream, &b.stream)) {
        let name = &*run[0].stream;
        let earlier = added.entry(name).or_default();
        let have = index.streams.get(name).map_or(0, |p| p.len() as u64) + *earlier;
        assert_eq!(have, run[0].version, "stream {name} would get a version gap");
        *earlier += run.len() as u64;
    }
    let active = index.active_mut();
    assert_eq!(active.id, job.segment, "index and syncer disagree on the active segment");
    for (i, s) in job.staged.iter().enumerate() {
        assert_eq!(active.next_position() + i as u64, s.position, "publishing out of order");
    }
    job.map.publish(job.end);
    for s in &job.staged {
        active.offsets.push(u32::try_from(s.offset).expect("offsets fit in u32"));
    }
    active.data_end = job.end;
    for run in job.staged.chunk_by(|a, b| Arc::ptr_eq(&a.stream, &b.stream)) {
        let name = &*run[0].stream;
        let positions = match index.streams.get_mut(name) {
            Some(positions) => positions,
            None => index.streams.entry(name.to_string()).or_default(),
        };
        positions.extend(run.iter().map(|s| s.position));
    }
    index.next_position = job.next_position;
    index.head_hash = job.head_hash;
    drop(index);
    // Readers in other processes show the active segment only up to here (extent.rs).
    if let Some(live) = &shared.live {
        live.note(job.segment, job.end);
    }
    shared.head_tx.send_replace(job.next_position);
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Counters the server exports as metrics.
#[derive(Debug, Default)]
pub(crate) struct MetricsInner {
    pub commits: std::sync::atomic::AtomicU64,
    pub events: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
    pub fsyncs: std::sync::atomic::AtomicU64,
    pub fsync_nanos: std::sync::atomic::AtomicU64,
    /// fsync latency histogram, bucket upper bounds in [`FSYNC_BUCKETS_US`].
    pub fsync_buckets: [std::sync::atomic::AtomicU64; FSYNC_BUCKETS_US.len() + 1],
    /// Events made durable by fdatasyncs (the histogram's sum).
    pub events_synced: std::sync::atomic::AtomicU64,
    /// Events made durable per fdatasync, bucket upper bounds in [`SYNC_BATCH_BUCKETS`].
    pub sync_batch_buckets: [std::sync::atomic::AtomicU64; SYNC_BATCH_BUCKETS.len() + 1],
}

/// Upper bounds (microseconds) of the fsync latency histogram's buckets.
pub const FSYNC_BUCKETS_US: [u64; 10] = [50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 250_000];

/// Upper bounds (events) of the histogram of events made durable by one fdatasync.
pub const SYNC_BATCH_BUCKETS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1_024, 4_096, 16_384];

impl MetricsInner {
    fn record_fsync(&self, took: Duration, events: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let bucket = SYNC_BATCH_BUCKETS.iter().position(|&b| events <= b).unwrap_or(SYNC_BATCH_BUCKETS.len());
        self.sync_batch_buckets[bucket].fetch_add(1, Relaxed);
        self.events_synced.fetch_add(events, Relaxed);
        self.fsyncs.fetch_add(1, Relaxed);
        self.fsync_nanos.fetch_add(took.as_nanos() as u64, Relaxed);
        let us = took.as_micros() as u64;
        let bucket = FSYNC_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(FSYNC_BUCKETS_US.len());
        self.fsync_buckets[bucket].fetch_add(1, Relaxed);
    }

    fn record_commit(&self, events: u64, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.commits.fetch_add(1, Relaxed);
        self.events.fetch_add(events, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
}
