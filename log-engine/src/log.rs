//! The [`Log`] handle: open (with recovery), append, read.
//!
//! Calling order: `Log::open` → any number of appends, reads and subscriptions from any thread →
//! `Log::close` (or drop the last handle). Appends go to the writer thread (writer.rs); reads go
//! straight to the mapped segments through the index (index.rs).
//!
//! A log opened with [`Log::open_read_only`] is a *reader*: it takes no lock, creates, removes
//! and writes nothing (it works on read-only files), never cuts a torn tail, and shows the newest
//! segment only up to its last complete batch (and, while another process holds the writer's
//! lock, only up to the offset that writer has made durable: see extent.rs). It sees the
//! writer's later appends when [`Log::refresh`] is called. Damage in the newest segment does not
//! fail a reader's open: the reader stops before it and says where ([`Log::read_stop`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::dir::{self, DirLock};
use crate::error::{CorruptionKind, Error, LimitKind, Result};
use crate::extent::{self, LiveMark};
use crate::fs::{FileSystem, OsFs, StorageFile};
use crate::idwindow::{IdWindow, IDEMPOTENCY_WINDOW};
use crate::index::{Index, SegmentState, StreamIndex};
use crate::mmap::Mapping;
use crate::record::{self, Frame, FrameError, FLAG_BATCH_END, KIND_EVENT};
use crate::segment::{self, Footer, SegmentHeader, HEADER_LEN, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN};
use crate::types::*;
use crate::writer::{self, Active, Command, FooterBuilder, MetricsInner, PreparedAppend, Reply, Writer, WriterState};

pub(crate) const SPARE_FILE: &str = "spare.tmp";

/// How to open a log.
#[derive(Debug, Clone)]
pub struct Options {
    pub durability: Durability,
    pub recovery: Recovery,
    /// Capacity of each segment file, in bytes.
    pub segment_size: u64,
    /// Most bytes of prepared events queued for the writer ([`WRITER_QUEUE_BYTES_MAX`] by
    /// default); beyond it appends fail fast with [`Error::Overloaded`].
    pub writer_queue_bytes: usize,
    /// File access; [`OsFs`] unless a test injects faults.
    pub fs: Arc<dyn FileSystem>,
    /// Deliberate faults, for proving the reliability suites catch a broken build.
    #[cfg(feature = "faults")]
    pub sabotage: writer::Sabotage,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            durability: Durability::Sync,
            recovery: Recovery::TruncateTornTail,
            segment_size: segment::SEGMENT_SIZE_DEFAULT,
            writer_queue_bytes: WRITER_QUEUE_BYTES_MAX,
            fs: Arc::new(OsFs),
            #[cfg(feature = "faults")]
            sabotage: writer::Sabotage::Off,
        }
    }
}

/// Whether this handle writes the log or only reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Holds the lock; recovers (cuts a torn tail); appends.
    Write,
    /// No lock, no writes of any kind; shows the durable, complete prefix.
    ReadOnly,
}

/// Where a reader stopped short of the newest segment's end: damage, or a torn or unfinished
/// batch. A writer's open would cut a torn tail there (or, for `corrupt`, refuse to open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadStop {
    pub segment: SegmentId,
    /// Byte offset of the first byte not shown.
    pub offset: u64,
    /// The position the first record not shown would have had.
    pub position: Option<Position>,
    /// True when later records prove the damaged bytes had been acknowledged (corruption);
    /// false for a torn tail, which a writer's open cuts.
    pub corrupt: bool,
    /// What was found there, as a sentence fragment.
    pub detail: String,
}

/// A reader's view of the files, to tell whether [`Log::refresh`] has anything to re-read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Fingerprint {
    segments: Vec<SegmentId>,
    writer_active: bool,
    live: Option<(SegmentId, u64)>,
    /// The newest segment's length and modification time, which change with every write.
    newest: Option<(u64, Option<std::time::SystemTime>)>,
}

/// State shared by the handle, the writer and readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub options: Options,
    pub access: Access,
    /// The writer's `live` file (extent.rs); `None` for a reader.
    pub live: Option<LiveMark>,
    /// A reader's last stop and fingerprint.
    read_state: Mutex<(Option<ReadStop>, Fingerprint)>,
    pub index: RwLock<Index>,
    pub poison: Mutex<Option<String>>,
    /// Committed event count, for subscribers to wait on.
    pub head_tx: watch::Sender<u64>,
    pub closed: AtomicBool,
    /// Bytes of prepared events queued for the writer, not yet taken up by it.
    pub queued_bytes: AtomicUsize,
    pub metrics: MetricsInner,
}

impl Shared {
    pub(crate) fn log_dir(&self) -> PathBuf {
        dir::log_dir(&self.dir)
    }
}

/// An open log. Cheap to clone; all clones share one writer. The log closes when the last
/// clone is dropped (or on [`Log::close`]).
#[derive(Clone, Debug)]
pub struct Log {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held by a writer for as long as the log is open; a reader takes none.
    _lock: Option<DirLock>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Handle {
    fn shutdown(&self) {
        if let Some(tx) = self.tx.lock().take() {
            let _ = tx.send(Command::Shutdown);
        }
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
        self.shared.closed.store(true, Ordering::Release);
        // Wake subscribers so they notice the close.
        self.shared.head_tx.send_modify(|_| {});
    }
}

/// A point-in-time summary of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub streams: u64,
    pub segments: u64,
    /// Bytes of records (headers, footers and preallocated space excluded).
    pub record_bytes: u64,
    pub head: Option<Head>,
}

/// Counters for metrics export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub commits: u64,
    pub events: u64,
    pub bytes: u64,
    pub fsyncs: u64,
    pub fsync_seconds_total: f64_bits::F64,
    /// Counts per bucket; bounds in [`crate::FSYNC_BUCKETS_US`], the last bucket is +Inf.
    pub fsync_buckets: Vec<u64>,
    /// Events made durable by fdatasyncs since open.
    pub events_synced: u64,
    /// Events made durable per fdatasync: counts per bucket, bounds in
    /// [`crate::SYNC_BATCH_BUCKETS`], the last bucket is +Inf.
    pub sync_batch_buckets: Vec<u64>,
}

/// `f64` wrapper so that [`Metrics`] can be `Eq`.
pub mod f64_bits {
    /// A float compared by bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct F64(pub u64);
    impl F64 {
        pub fn get(self) -> f64 {
            f64::from_bits(self.0)
        }
    }
}

/// A segment file as a copy of the log should take it: the path, how many bytes of it are
/// final (the whole file for a sealed segment, the durable prefix for the active one), and its
/// capacity. A copy is a file of `capacity` bytes: the first `bytes` bytes, then zeros. The log
/// requires a segment file to be exactly its header's capacity, and zero-filled space is where
/// recovery's scan stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub capacity: u64,
    pub sealed: bool,
}

impl SegmentFile {
    fn of(s: &SegmentState) -> SegmentFile {
        SegmentFile {
            path: s.path.clone(),
            bytes: if s.sealed { s.map.mapped_len() } else { s.map.published_len() },
            capacity: s.map.mapped_len(),
            sealed: s.sealed,
        }
    }
}

/// The machine's cores, asked once.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

/// Events from which [`prepare`] splits the work over two threads.
const PARALLEL_PREPARE_MIN: usize = 256;

/// Encodes, compresses and digests events on the caller's thread, and for a large batch on a
/// second one as well: hashing is most of an append's CPU, and the writer only has to chain.
fn prepare(stream: &StreamName, events: &[NewEvent]) -> Vec<record::PreparedEvent> {
    if events.len() < PARALLEL_PREPARE_MIN || cores() < 2 {
        return events.iter().map(|e| record::PreparedEvent::new(stream, e)).collect();
    }
    let (front, back) = events.split_at(events.len() / 2);
    std::thread::scope(|scope| {
        let back = scope.spawn(|| back.iter().map(|e| record::PreparedEvent::new(stream, e)).collect::<Vec<_>>());
        let mut all: Vec<_> = front.iter().map(|e| record::PreparedEvent::new(stream, e)).collect();
        all.extend(back.join().expect("preparing events does not panic"));
        all
    })
}

impl Log {
    /// Opens (creating if needed) the log in data directory `dir`, recovering it.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Log> {
        let dir = dir.as_ref().to_path_buf();
        if options.segment_size < SEGMENT_SIZE_MIN
            || options.segment_size > SEGMENT_SIZE_MAX
            || !options.segment_size.is_multiple_of(4096)
        {
            return Err(Error::Invalid {
                what: format!(
                    "segment size {} must be a multiple of 4096 between {SEGMENT_SIZE_MIN} and {SEGMENT_SIZE_MAX}",
                    options.segment_size
                ),
            });
        }
        dir::create_dir_durable(&dir)?;
        let lock = DirLock::acquire(&dir)?;
        let log_dir = dir::log_dir(&dir);
        dir::create_dir_durable(&log_dir)?;
        let (index, state, _) = recover(&dir, &options, Access::Write)?;
        let state = state.expect("a writer's recovery yields the writer's state");
        let live = LiveMark::open(&log_dir)?;
        live.note(state.active.id, state.active.write_offset);
        let next = index.next_position;
        let (head_tx, _) = watch::channel(next);
        let shared = Arc::new(Shared {
            dir,
            options,
            access: Access::Write,
            live: Some(live),
            read_state: Mutex::new((None, Fingerprint::default())),
            index: RwLock::new(index),
            poison: Mutex::new(None),
            head_tx,
            closed: AtomicBool::new(false),
            queued_bytes: AtomicUsize::new(0),
            metrics: MetricsInner::default(),
        });
        // Held for the log's lifetime: a roll's directory fsync must not need a new descriptor.
        let log_dir_handle =
            shared.options.fs.open_dir(&log_dir).map_err(|e| Error::io("open directory", &log_dir, e))?;
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(shared.clone(), rx, log_dir, log_dir_handle, state)
            .map_err(|e| Error::io("spawn syncer thread", &shared.dir, e))?;
        let for_writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-log-writer".into())
            .spawn(move || {
                // A panic is an assertion about the log's state failing: nothing more may be
                // acknowledged. Waiters see their reply channel close and report the poison.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.run())).is_err() {
                    for_writer.poison.lock().get_or_insert_with(|| "the writer thread panicked".to_string());
                    for_writer.head_tx.send_modify(|_| {});
                }
            })
            .map_err(|e| Error::io("spawn writer thread", &shared.dir, e))?;
        Ok(Log {
            handle: Arc::new(Handle {
                shared,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(thread)),
                _lock: Some(lock),
            }),
        })
    }

    /// Opens the log in `dir` as a reader: no lock, nothing created or written, so it works
    /// beside a writer in another process and on read-only files. A missing directory, or one
    /// without a `log/` directory, is [`Error::NotAStore`]. Appends fail with
    /// [`Error::ReadOnly`]; [`Log::refresh`] picks up what a writer appended since.
    /// `options.recovery` is ignored: a reader never repairs.
    pub fn open_read_only(dir: impl AsRef<Path>, options: Options) -> Result<Log> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            let reason = if dir.exists() { "it is not a directory" } else { "it does not exist" };
            return Err(Error::NotAStore { dir, reason });
        }
        if !dir::log_dir(&dir).is_dir() {
            return Err(Error::NotAStore { dir, reason: "it has no log/ directory" });
        }
        let fingerprint = fingerprint(&dir, options.fs.as_ref())?;
        let (index, _, stop) = recover(&dir, &options, Access::ReadOnly)?;
        let (head_tx, _) = watch::channel(index.next_position);
        let shared = Arc::new(Shared {
            dir,
            options,
            access: Access::ReadOnly,
            live: None,
            read_state: Mutex::new((stop, fingerprint)),
            index: RwLock::new(index),
            poison: Mutex::new(None),
            head_tx,
            closed: AtomicBool::new(false),
            queued_bytes: AtomicUsize::new(0),
            metrics: MetricsInner::default(),
        });
        Ok(Log { handle: Arc::new(Handle { shared, tx: Mutex::new(None), writer: Mutex::new(None), _lock: None }) })
    }

    /// True for a handle from [`Log::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.shared().access == Access::ReadOnly
    }

    /// For a reader: where it stopped short of the newest segment's end, if it did (damage, a
    /// torn tail, or a batch a writer has not finished). `None` for a writer.
    pub fn read_stop(&self) -> Option<ReadStop> {
        self.shared().read_state.lock().0.clone()
    }

    /// For a reader: re-reads the directory and shows what a writer has made durable since.
    /// Returns whether anything new became visible. Cheap when nothing changed (a directory
    /// listing and two small reads); otherwise it costs an open. A writer's handle returns
    /// `Ok(false)`: it always sees its own appends.
    ///
    /// Fails if the log now ends before what this reader has shown (an operator's repair cut
    /// it): positions already shown are never taken back.
    pub fn refresh(&self) -> Result<bool> {
        let shared = self.shared();
        if shared.access != Access::ReadOnly {
            return Ok(false);
        }
        let mut state = shared.read_state.lock();
        let now = fingerprint(&shared.dir, shared.options.fs.as_ref())?;
        if now == state.1 {
            return Ok(false);
        }
        // The common case, a writer appending to the same segment: only its new records are read.
        // The index is rebuilt aside and swapped in only when it is whole, so a failure changes
        // nothing a reader sees.
        if now.segments == state.1.segments {
            if let Some((next, stop)) = refresh_active(shared, &now)? {
                *state = (stop, now);
                let added = next.is_some();
                if let Some(next) = next {
                    shared.head_tx.send_replace(next);
                }
                return Ok(added);
            }
        }
        let (index, _, stop) = recover(&shared.dir, &shared.options, Access::ReadOnly)?;
        let mut current = shared.index.write();
        if index.next_position < current.next_position {
            return Err(Error::Invalid {
                what: format!(
                    "the log in {} now ends at position {} but this reader has shown positions up to {}: \
                     it was cut by a repair; open it again",
                    shared.dir.display(),
                    index.next_position.cast_signed() - 1,
                    current.next_position - 1
                ),
            });
        }
        *state = (stop, now);
        if index.next_position == current.next_position {
            return Ok(false);
        }
        let next = index.next_position;
        *current = index;
        drop(current);
        shared.head_tx.send_replace(next);
        Ok(true)
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    /// Stops the writer after it has committed what it was given, and syncs. Other clones of
    /// this handle see [`Error::Closed`] afterwards.
    pub fn close(self) {
        self.handle.shutdown();
    }

    /// `Some(cause)` after a failed write or fdatasync.
    pub fn poisoned(&self) -> Option<String> {
        self.shared().poison.lock().clone()
    }

    /// Appends events to one stream, atomically, and waits until they are durable.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use log_engine::{ExpectedVersion, Log, NewEvent, Options};
    /// let log = Log::open(dir.path(), Options::default())?;
    /// let done = log.append("agent-7", ExpectedVersion::NoStream,
    ///     vec![NewEvent::json("ToolCalled", &serde_json::json!({"tool": "search"}))])?;
    /// assert_eq!(done.first_position.0, 0);
    /// assert_eq!(log.read_stream("agent-7", None, 10, log_engine::Direction::Forward)?.len(), 1);
    /// # Ok::<(), log_engine::Error>(())
    /// ```
    pub fn append(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendResult> {
        let stream = StreamName::new(stream)?;
        let mut results = self.append_multi(vec![StreamAppend { stream, expected, events }])?;
        Ok(results.pop().expect("one result per stream"))
    }

    /// Appends to several streams atomically: all of them become visible, or none.
    pub fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(appends, Reply::Blocking(tx))?;
        rx.recv().map_err(|_| self.closed_error())?
    }

    /// [`Log::append`] for async callers.
    pub async fn append_async(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let stream = StreamName::new(stream)?;
        let mut results = self.append_multi_async(vec![StreamAppend { stream, expected, events }]).await?;
        Ok(results.pop().expect("one result per stream"))
    }

    /// [`Log::append_multi`] for async callers.
    pub async fn append_multi_async(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        let (tx, rx) = oneshot::channel();
        self.submit(appends, Reply::Async(tx))?;
        rx.await.map_err(|_| self.closed_error())?
    }

    fn closed_error(&self) -> Error {
        match self.poisoned() {
            Some(cause) => Error::Poisoned { cause },
            None => Error::Closed,
        }
    }

    /// Validates and prepares a request on the caller's thread, then queues it for the writer.
    fn submit(&self, appends: Vec<StreamAppend>, reply: Reply) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly { dir: self.dir().to_path_buf() });
        }
        if let Some(cause) = self.poisoned() {
            return Err(Error::Poisoned { cause });
        }
        if appends.is_empty() {
            return Err(Error::Invalid { what: "an append needs at least one stream".into() });
        }
        if appends.len() > BATCH_STREAMS_MAX {
            return Err(Error::LimitExceeded {
                limit: LimitKind::BatchStreams,
                max: BATCH_STREAMS_MAX,
                actual: appends.len(),
            });
        }
        let count: usize = appends.iter().map(|a| a.events.len()).sum();
        if count > BATCH_EVENTS_MAX {
            return Err(Error::LimitExceeded { limit: LimitKind::BatchEvents, max: BATCH_EVENTS_MAX, actual: count });
        }
        let mut bytes = 0usize;
        for append in &appends {
            if append.events.is_empty() {
                return Err(Error::Invalid { what: format!("the append to stream {} has no events", append.stream) });
            }
            for event in &append.events {
                event.validate(&append.stream)?;
                bytes += event.size(&append.stream);
            }
        }
        if bytes > BATCH_BYTES_MAX {
            return Err(Error::LimitExceeded { limit: LimitKind::BatchBytes, max: BATCH_BYTES_MAX, actual: bytes });
        }
        let prepared: Vec<PreparedAppend> = appends
            .into_iter()
            .map(|a| PreparedAppend { events: prepare(&a.stream, &a.events), stream: a.stream, expected: a.expected })
            .collect();
        // Bounded: a writer that cannot keep up (a slow disk) must not let queued appends grow
        // without limit. Fail fast rather than block: an async caller must not stall its
        // runtime's thread, and a blocking one gets the same answer and may retry.
        let size = writer::queued_size(&prepared);
        let shared = self.shared();
        let max = shared.options.writer_queue_bytes;
        let before = shared.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before > 0 && before + size > max {
            shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return Err(Error::Overloaded { queued: before, max });
        }
        let tx = self.handle.tx.lock();
        let sent = match tx.as_ref() {
            Some(tx) => tx.send(Command::Append { appends: prepared, reply }).map_err(|_| self.closed_error()),
            None => Err(Error::Closed),
        };
        if sent.is_err() {
            shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
        }
        sent
    }

    /// The newest committed event's position and chain hash; `None` for an empty log.
    pub fn head(&self) -> Option<Head> {
        self.shared().index.read().head().map(|(position, hash)| Head { position, hash })
    }

    /// Committed events, `from` onwards, at most `limit`.
    pub fn read_all(&self, from: Position, limit: usize) -> Result<Vec<Event>> {
        let mut out = Vec::with_capacity(limit.min(4096));
        self.for_each(from, limit as u64, |event| {
            out.push(event);
            true
        })?;
        Ok(out)
    }

    /// Calls `f` with each committed event from `from` on, in order, up to `limit` events or
    /// until `f` returns false. The fast path for replays: no intermediate vector.
    pub fn for_each(&self, from: Position, limit: u64, mut f: impl FnMut(Event) -> bool) -> Result<u64> {
        let mut position = from.0;
        let mut left = limit;
        let mut seen = 0;
        // Snapshot the segments covering [from, head) under the lock; decode without it.
        let spans: Vec<(SegmentId, Arc<Mapping>, u64, u64)> = {
            let index = self.shared().index.read();
            let mut spans = Vec::new();
            let mut p = position;
            let end = index.next_position.min(position.saturating_add(limit));
            while p < end {
                let Some(seg) = index.segment_of(p) else { break };
                let count = (seg.next_position().min(end) - p) as usize;
                let offset = u64::from(seg.offsets[(p - seg.id.0) as usize]);
                spans.push((seg.id, seg.map.clone(), offset, count as u64));
                p += count as u64;
            }
            spans
        };
        for (segment, map, mut offset, count) in spans {
            let bytes = map.bytes();
            for _ in 0..count {
                if left == 0 {
                    return Ok(seen);
                }
                let event = decode_committed(bytes, segment, offset, position)?;
                offset += record::frame_len(record::body_len_at(bytes, offset)) as u64;
                position += 1;
                left -= 1;
                seen += 1;
                if !f(event) {
                    return Ok(seen);
                }
            }
        }
        Ok(seen)
    }

    /// The committed event at `position`.
    pub fn read_event(&self, position: Position) -> Result<Event> {
        let location = self.shared().index.read().locate(position.0).ok_or(Error::PositionNotFound { position })?;
        decode_committed(location.map.bytes(), location.segment, location.offset, position.0)
    }

    /// The chain hash at `position`.
    pub fn hash_at(&self, position: Position) -> Result<ChainHash> {
        Ok(self.read_event(position)?.hash)
    }

    /// Events of one stream from version `from` (default: the first, or the last when
    /// reading backward), at most `limit`. Costs in proportion to the events returned.
    pub fn read_stream(
        &self,
        stream: &str,
        from: Option<StreamVersion>,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<Event>> {
        self.read_stream_bounded(stream, from, limit, usize::MAX, direction)
    }

    /// [`Log::read_stream`] bounded by bytes as well: decoding stops at the first event that
    /// would take the page's payload (metadata + data bytes, decompressed) above `bytes_max`,
    /// so a page of large events holds at most `bytes_max` plus one event however large
    /// `limit` is. The first event is always
    /// returned, even alone above the budget, so a reader always makes progress.
    pub fn read_stream_bounded(
        &self,
        stream: &str,
        from: Option<StreamVersion>,
        limit: usize,
        bytes_max: usize,
        direction: Direction,
    ) -> Result<Vec<Event>> {
        let locations: Vec<(u64, u64, crate::index::Location)> = {
            let index = self.shared().index.read();
            let positions =
                index.streams.get(stream).ok_or_else(|| Error::StreamNotFound { stream: stream.to_string() })?;
            // (version, position) pairs.
            let picked: Vec<(u64, u64)> = match direction {
                Direction::Forward => {
                    let start = from.map_or(0, |v| v.0).min(positions.len() as u64) as usize;
                    positions[start..].iter().take(limit).copied().zip(start as u64..).map(|(p, v)| (v, p)).collect()
                }
                Direction::Backward => {
                    let last = positions.len() as u64 - 1;
                    let start = from.map_or(last, |v| v.0.min(last)) as usize;
                    positions[..=start].iter().enumerate().rev().take(limit).map(|(v, p)| (v as u64, *p)).collect()
                }
            };
            picked.into_iter().map(|(v, p)| (v, p, index.locate(p).expect("indexed positions are committed"))).collect()
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (version, p, loc) in locations {
            let event = decode_committed(loc.map.bytes(), loc.segment, loc.offset, p)?;
            // The index comes from footers and recovery; a record that disagrees with it (a
            // CRC-valid but forged or misplaced footer) is reported, never returned.
            if event.stream != stream || event.version.0 != version {
                let kind = CorruptionKind::Footer(format!(
                    "the index puts version {version} of stream {stream} at position {p}, \
                     but the record there is version {} of stream {}",
                    event.version, event.stream
                ));
                return Err(Error::Corrupt {
                    segment: loc.segment,
                    offset: loc.offset,
                    position: Some(Position(p)),
                    kind,
                });
            }
            // Measured decoded (a record may be compressed): at most one event beyond the
            // budget is ever decoded, and it is not returned.
            let size = event.metadata.len() + event.data.as_bytes().len();
            if !out.is_empty() && bytes.saturating_add(size) > bytes_max {
                break;
            }
            bytes += size;
            out.push(event);
        }
        Ok(out)
    }

    /// A stream's last version, or `None` if it has no events.
    pub fn stream_version(&self, stream: &str) -> Option<StreamVersion> {
        let index = self.shared().index.read();
        index.streams.get(stream).map(|p| StreamVersion(p.len() as u64 - 1))
    }

    /// Streams whose name starts with `prefix`, sorted by name.
    pub fn streams(&self, prefix: &str) -> Vec<StreamInfo> {
        let index = self.shared().index.read();
        let mut out: Vec<StreamInfo> = index
            .streams
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, p)| StreamInfo {
                stream: name.clone(),
                last_version: StreamVersion(p.len() as u64 - 1),
                events: p.len() as u64,
            })
            .collect();
        out.sort_by(|a, b| a.stream.cmp(&b.stream));
        out
    }

    pub fn stats(&self) -> Stats {
        let index = self.shared().index.read();
        Stats {
            events: index.next_position,
            streams: index.streams.len() as u64,
            segments: index.segments.len() as u64,
            record_bytes: index.segments.iter().map(|s| s.data_end - HEADER_LEN).sum(),
            head: index.head().map(|(position, hash)| Head { position, hash }),
        }
    }

    pub fn metrics(&self) -> Metrics {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &self.shared().metrics;
        Metrics {
            commits: m.commits.load(Relaxed),
            events: m.events.load(Relaxed),
            bytes: m.bytes.load(Relaxed),
            fsyncs: m.fsyncs.load(Relaxed),
            fsync_seconds_total: f64_bits::F64((m.fsync_nanos.load(Relaxed) as f64 / 1e9).to_bits()),
            fsync_buckets: m.fsync_buckets.iter().map(|b| b.load(Relaxed)).collect(),
            events_synced: m.events_synced.load(Relaxed),
            sync_batch_buckets: m.sync_batch_buckets.iter().map(|b| b.load(Relaxed)).collect(),
        }
    }

    /// The segment files and how much of each is final, for copying the log elsewhere.
    pub fn segment_files(&self) -> Vec<SegmentFile> {
        let index = self.shared().index.read();
        index.segments.iter().map(SegmentFile::of).collect()
    }

    /// The segment files holding positions `0..=through`, for copying a prefix of the log: the
    /// last file is cut after the batch that contains `through` (a cut inside an atomic batch
    /// is not a valid log), and copied as unsealed (`bytes` = end of that batch; zero-fill the
    /// rest of its capacity). Returns the files and the last position the copy will hold.
    pub fn segment_files_through(&self, through: Position) -> Result<(Vec<SegmentFile>, Position)> {
        let index = self.shared().index.read();
        let segment = index.segment_of(through.0).ok_or(Error::PositionNotFound { position: through })?;
        let bytes = segment.map.bytes();
        let mut position = through.0;
        let mut offset = u64::from(segment.offsets[(position - segment.id.0) as usize]);
        let end = loop {
            let (id, at) = (segment.id, Some(Position(position)));
            let corrupt = move |kind| Error::Corrupt { segment: id, offset, position: at, kind };
            let frame = record::decode_frame(&bytes[offset as usize..], record::EVENT_BODY_MAX)
                .map_err(|e| corrupt(CorruptionKind::RecordFrame(e.to_string())))?;
            offset += frame.len as u64;
            if frame.header.flags & FLAG_BATCH_END != 0 {
                break offset;
            }
            position += 1;
            if position >= segment.next_position() {
                return Err(corrupt(CorruptionKind::RecordFrame("the segment ends inside a batch".into())));
            }
        };
        let mut files: Vec<SegmentFile> =
            index.segments.iter().take_while(|s| s.id < segment.id).map(SegmentFile::of).collect();
        files.push(SegmentFile { bytes: end, sealed: false, ..SegmentFile::of(segment) });
        Ok((files, Position(position)))
    }

    pub(crate) fn shared_arc(&self) -> Arc<Shared> {
        self.shared().clone()
    }
}

/// Decodes the committed record at `offset`, re-checking its CRC and position.
pub(crate) fn decode_committed(bytes: &[u8], segment: SegmentId, offset: u64, position: u64) -> Result<Event> {
    let frame = committed_frame(bytes, segment, offset, position)?;
    record::decode_event(&frame).map_err(|d| Error::Corrupt {
        segment,
        offset,
        position: Some(Position(position)),
        kind: CorruptionKind::RecordBody(d),
    })
}

/// The event frame the index says is at `offset`: CRC, kind and position checked.
pub(crate) fn committed_frame(bytes: &[u8], segment: SegmentId, offset: u64, position: u64) -> Result<Frame<'_>> {
    let corrupt = |kind| Error::Corrupt { segment, offset, position: Some(Position(position)), kind };
    let frame = record::decode_frame(&bytes[offset as usize..], record::EVENT_BODY_MAX).map_err(|e| match e {
        FrameError::Crc => corrupt(CorruptionKind::RecordCrc),
        other => corrupt(CorruptionKind::RecordFrame(other.to_string())),
    })?;
    if frame.header.kind != KIND_EVENT {
        return Err(corrupt(CorruptionKind::RecordFrame(format!(
            "kind {} where an event was expected",
            frame.header.kind
        ))));
    }
    if frame.header.position != position {
        return Err(corrupt(CorruptionKind::PositionGap {
            expected: Position(position),
            found: Position(frame.header.position),
        }));
    }
    Ok(frame)
}

/// The segment files in `log_dir`, sorted. A writer (`remove_temps`) deletes `.tmp` files: a
/// segment or extent record being prepared when the process stopped, holding no records.
fn list_segments(fs: &dyn FileSystem, log_dir: &Path, remove_temps: bool) -> Result<Vec<SegmentId>> {
    let mut ids = Vec::new();
    for path in fs.list(log_dir).map_err(|e| Error::io("list", log_dir, e))? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.ends_with(".tmp") {
            if remove_temps {
                fs.remove(&path).map_err(|e| Error::io("remove", &path, e))?;
            }
        } else if let Some(id) = segment::parse_file_name(&name) {
            ids.push(id);
        } else if name != extent::EXTENT_FILE && name != extent::LIVE_FILE {
            tracing::warn!(file = %path.display(), "ignoring a file that is not a segment");
        }
    }
    ids.sort();
    Ok(ids)
}

/// What a reader's [`Log::refresh`] compares to know whether anything changed.
fn fingerprint(dir: &Path, fs: &dyn FileSystem) -> Result<Fingerprint> {
    let log_dir = dir::log_dir(dir);
    let segments = list_segments(fs, &log_dir, false)?;
    let newest = segments.last().and_then(|id| {
        let meta = std::fs::metadata(log_dir.join(segment::file_name(*id))).ok()?;
        Some((meta.len(), meta.modified().ok()))
    });
    Ok(Fingerprint { segments, writer_active: dir::writer_active(dir), live: extent::read_live(&log_dir), newest })
}

/// How far a reader may look into the newest segment `id`: while a writer holds the lock, only
/// up to the offset that writer has published as durable (a batch whose fdatasync has not
/// returned must not be shown, and bytes being written must not be read); with no writer,
/// everything (what is complete then is what the next writer's open keeps).
fn reader_limit(dir: &Path, id: SegmentId) -> Option<u64> {
    if !dir::writer_active(dir) {
        return None;
    }
    match extent::read_live(&dir::log_dir(dir)) {
        Some((live, offset)) if live == id => Some(offset),
        // The writer has moved on to a newer segment: this one's records are all durable (the
        // scan stops at the seal record).
        Some((live, _)) if live > id => None,
        // A writer that has not published anything here yet, or one too old to keep the file.
        _ => Some(HEADER_LEN),
    }
}

/// A reader's scan of the newest segment from `start`, as far as [`reader_limit`] allows.
fn scan_for_reader(
    dir: &Path,
    file: &dyn StorageFile,
    header: &SegmentHeader,
    start: (u64, u64),
    path: &Path,
) -> Result<(crate::recovery::Scan, Option<ReadStop>)> {
    let limit = reader_limit(dir, header.id);
    let scanned = crate::recovery::scan_readable(file, header, start, limit, path)?;
    if limit.is_none() && dir::writer_active(dir) {
        // A writer started during the scan: what it wrote may not be durable yet, so look
        // again, only as far as it has published.
        return crate::recovery::scan_readable(file, header, start, reader_limit(dir, header.id), path);
    }
    Ok(scanned)
}

/// A reader's refresh when only the newest segment, still unsealed, can have grown: scans it
/// from where the index ends and appends what is new to the index. Returns the new next
/// position (`None`: nothing new) and where the scan stopped short; `Ok(None)` when something
/// else changed (a roll, a seal), which needs a full open. Only [`Log::refresh`], serialised by
/// the read state's lock, changes a reader's index, so what is read under the read lock still
/// holds when the write lock is taken; everything is checked before anything changes.
fn refresh_active(shared: &Shared, now: &Fingerprint) -> Result<Option<(Option<u64>, Option<ReadStop>)>> {
    let (id, path, data_end, next_position) = {
        let index = shared.index.read();
        let Some(active) = index.segments.last() else { return Ok(None) };
        if active.sealed || now.segments.last() != Some(&active.id) {
            return Ok(None);
        }
        (active.id, active.path.clone(), active.data_end, active.next_position())
    };
    let fs = shared.options.fs.as_ref();
    let file = fs.open_read_only(&path).map_err(|e| Error::io("open segment", &path, e))?;
    let len = file.len().map_err(|e| Error::io("stat segment", &path, e))?;
    let mut b = [0u8; segment::HEADER_USED];
    file.read_exact_at(&mut b, 0).map_err(|e| Error::io("read segment header", &path, e))?;
    let header =
        SegmentHeader::decode(&b).map_err(|kind| Error::Corrupt { segment: id, offset: 0, position: None, kind })?;
    if header.id != id || header.capacity != len {
        return Ok(None);
    }
    let mut trailer = [0u8; segment::TRAILER_LEN as usize];
    file.read_exact_at(&mut trailer, len - segment::TRAILER_LEN).map_err(|e| Error::io("read trailer", &path, e))?;
    if segment::Trailer::decode(&trailer).is_some() {
        return Ok(None);
    }
    let (scan, stop) = scan_for_reader(&shared.dir, &*file, &header, (data_end, next_position), &path)?;
    if scan.records.is_empty() {
        return Ok(Some((None, stop)));
    }
    {
        // Every new record must continue its stream.
        let index = shared.index.read();
        let mut added: HashMap<&str, u64> = HashMap::new();
        for r in &scan.records {
            let earlier = added.entry(r.stream.as_str()).or_default();
            let have = index.streams.get(r.stream.as_str()).map_or(0, |p| p.len() as u64) + *earlier;
            if have != r.version {
                return Err(Error::Corrupt {
                    segment: id,
                    offset: r.offset,
                    position: Some(Position(r.position)),
                    kind: CorruptionKind::RecordBody(format!(
                        "stream {} version {} follows version {}",
                        r.stream,
                        r.version,
                        have.cast_signed() - 1
                    )),
                });
            }
            *earlier += 1;
        }
    }
    let map = Arc::new(Mapping::new(file.as_file(), scan.end).map_err(|e| Error::io("map segment", &path, e))?);
    let mut index = shared.index.write();
    for r in &scan.records {
        match index.streams.get_mut(r.stream.as_str()) {
            Some(positions) => positions.push(r.position),
            None => {
                index.streams.insert(r.stream.clone(), vec![r.position]);
            }
        }
    }
    let last = scan.records.last().expect("not empty");
    let (next, hash) = (last.position + 1, last.hash);
    let active = index.active_mut();
    active.map = map;
    active.offsets.extend(scan.records.iter().map(|r| u32::try_from(r.offset).expect("offsets fit in u32")));
    active.data_end = scan.end;
    index.next_position = next;
    index.head_hash = hash;
    Ok(Some((Some(next), stop)))
}

/// Opens every segment, checks how they join, recovers the newest, and builds the index. A
/// reader (`Access::ReadOnly`) changes nothing on disk, gets no writer state, and gets where it
/// stopped short of the newest segment's end instead of a repair.
fn recover(dir: &Path, options: &Options, access: Access) -> Result<(Index, Option<WriterState>, Option<ReadStop>)> {
    let fs = &options.fs;
    let log_dir = dir::log_dir(dir);
    let writer = access == Access::Write;
    let ids = list_segments(fs.as_ref(), &log_dir, writer)?;
    let recorded = extent::read_extent(&log_dir)?;
    let mut stop = None;

    let mut index =
        Index { segments: Vec::new(), streams: HashMap::default(), next_position: 0, head_hash: ChainHash::genesis() };
    let mut recent_ids: Vec<(u64, Uuid)> = Vec::new();
    let mut last_ts = 0u64;
    let mut active = None;
    // Sealed segments' footers, indexed together once all are read (see `index_streams`).
    let mut footers: Vec<(SegmentId, u64, Footer)> = Vec::new();
    // The idempotency window is the last IDEMPOTENCY_WINDOW positions: a sealed segment whose last
    // position lies that far before the newest segment's first cannot hold any of them.
    let window_from = ids.last().map_or(0, |newest| newest.0.saturating_sub(IDEMPOTENCY_WINDOW as u64));
    let probes = probe_segments(&log_dir, fs.as_ref(), &ids, access);
    // In a closure so that, whatever fails, the footers read before it are checked first: the
    // earliest damage is the one reported.
    let read_segments = || -> Result<()> {
        for (i, probe) in probes.into_iter().enumerate() {
            let newest = i + 1 == ids.len();
            let Probe { id, path, file, len, header, sealed } = probe?;
            let corrupt = |offset, kind| Error::Corrupt { segment: id, offset, position: None, kind };
            if id.0 != index.next_position || header.prev_hash != index.head_hash {
                let detail = format!(
                    "segment starts at position {} with previous hash {}, \
                     the log before it ends at position {} with hash {}",
                    id.0, header.prev_hash, index.next_position, index.head_hash
                );
                return Err(corrupt(0, CorruptionKind::SegmentGap(detail)));
            }
            match sealed? {
                Some((map, sealed)) => {
                    let mut sealed = sealed;
                    let footer_offset = sealed.footer_offset;
                    if sealed.footer.first_position != id.0 {
                        return Err(corrupt(
                            footer_offset,
                            CorruptionKind::Footer(format!(
                                "footer starts at position {}",
                                sealed.footer.first_position
                            )),
                        ));
                    }
                    if sealed.seal.position >= window_from {
                        // Read here, in segment order, so that damage in the id record is reported
                        // before anything is done to the newest segment.
                        sealed.read_ids(map.bytes()).map_err(|(offset, kind)| corrupt(offset, kind))?;
                        for s in sealed.footer.streams() {
                            recent_ids
                                .extend(s.positions.iter().zip(s.ids).map(|(p, raw)| (*p, Uuid::from_bytes(*raw))));
                        }
                    }
                    let segment::Sealed { seal, mut footer, .. } = sealed;
                    let offsets = std::mem::take(&mut footer.offsets);
                    footers.push((id, footer_offset, footer));
                    index.next_position = seal.position + 1;
                    index.head_hash = seal.hash;
                    last_ts = last_ts.max(seal.timestamp_ms);
                    index.segments.push(SegmentState {
                        id,
                        path,
                        map: Arc::new(map),
                        offsets,
                        data_end: footer_offset,
                        sealed: true,
                    });
                }
                None if !newest => {
                    return Err(corrupt(
                        len - segment::TRAILER_LEN,
                        CorruptionKind::Footer("segment is not sealed, yet a newer segment follows it".into()),
                    ));
                }
                None => {
                    // Damage in a footer is reported before anything is done to the newest segment.
                    index.streams = index_streams(&footers)?;
                    footers.clear();
                    let file = file.expect("an unsealed segment's probe keeps its file");
                    let scan = if writer {
                        crate::recovery::scan_newest(dir, fs.as_ref(), &*file, &header, options.recovery)?
                    } else {
                        let scanned = scan_for_reader(dir, &*file, &header, (HEADER_LEN, id.0), &path)?;
                        stop = scanned.1;
                        scanned.0
                    };
                    let mut footer = FooterBuilder::default();
                    let mut entries = Vec::new();
                    for run in scan.records.chunk_by(|a, b| a.stream == b.stream) {
                        let stream = &run[0].stream;
                        let positions = match index.streams.get_mut(stream) {
                            Some(positions) => positions,
                            None => index.streams.entry(stream.clone()).or_default(),
                        };
                        for r in run {
                            if positions.len() as u64 != r.version {
                                return Err(Error::Corrupt {
                                    segment: id,
                                    offset: r.offset,
                                    position: Some(Position(r.position)),
                                    kind: CorruptionKind::RecordBody(format!(
                                        "stream {} version {} follows version {}",
                                        r.stream,
                                        r.version,
                                        (positions.len() as u64).cast_signed() - 1
                                    )),
                                });
                            }
                            positions.push(r.position);
                            recent_ids.push((r.position, r.id));
                        }
                        entries.clear();
                        entries.extend(run.iter().map(|r| (r.offset, r.position, r.id)));
                        footer.push_run(stream, run[0].version, &entries);
                    }
                    let map = Arc::new(
                        Mapping::new(file.as_file(), scan.end).map_err(|e| Error::io("map segment", &path, e))?,
                    );
                    index.next_position = id.0 + scan.records.len() as u64;
                    if let Some(last) = scan.records.last() {
                        index.head_hash = last.hash;
                        last_ts = last_ts.max(scan.last_timestamp_ms);
                    }
                    index.segments.push(SegmentState {
                        id,
                        path,
                        map: map.clone(),
                        offsets: footer.offsets.clone(),
                        data_end: scan.end,
                        sealed: false,
                    });
                    active = Some(Active {
                        id,
                        file: Arc::from(file),
                        map,
                        capacity: len,
                        write_offset: scan.end,
                        durable: Arc::new(std::sync::atomic::AtomicU64::new(scan.end)),
                        footer,
                    });
                }
            }
        }
        Ok(())
    };
    if let Err(later) = read_segments() {
        return Err(index_streams(&footers).err().unwrap_or(later));
    }

    if !footers.is_empty() {
        // Every segment is sealed.
        index.streams = index_streams(&footers)?;
    }
    check_extent(&log_dir, options, access, recorded, ids.last().copied(), index.next_position)?;
    if !writer {
        tracing::debug!(dir = %dir.display(), events = index.next_position, "log opened read-only");
        return Ok((index, None, stop));
    }
    let (active, created) = match active {
        Some(active) => (active, false),
        None => (create_first_active(dir, options, &mut index)?, true),
    };
    // An older directory has no extent record yet; a crash between installing a segment and
    // recording it leaves the record one segment behind; an accepted missing tail leaves it ahead.
    if !created && recorded != Some(active.id) {
        extent::write_extent(fs.as_ref(), &log_dir, active.id, &|| fs.sync_dir(&log_dir))?;
    }
    recent_ids.sort_unstable_by_key(|(p, _)| *p);
    let skip = recent_ids.len().saturating_sub(IDEMPOTENCY_WINDOW);
    recent_ids.drain(..skip);
    let mut window = IdWindow::default();
    window.insert_all(recent_ids.iter().map(|&(p, id)| (id, p)));
    let state = WriterState {
        active,
        next_position: index.next_position,
        last_hash: index.head_hash,
        last_timestamp_ms: last_ts,
        ids: window,
    };
    tracing::info!(dir = %dir.display(), events = index.next_position, segments = index.segments.len(), "log opened");
    Ok((index, Some(state), None))
}

/// Refuses to open a log whose newest segment file is older than the newest segment the extent
/// record says was created: that segment (and perhaps more) is missing, and continuing would
/// hand out its positions again. With [`Recovery::AcceptMissingTail`] a writer continues when
/// exactly the newest segment is lost and the surviving log ends where it began.
fn check_extent(
    log_dir: &Path,
    options: &Options,
    access: Access,
    recorded: Option<SegmentId>,
    newest: Option<SegmentId>,
    next_position: u64,
) -> Result<()> {
    let Some(recorded) = recorded else { return Ok(()) };
    if newest.is_some_and(|newest| newest >= recorded) {
        return Ok(());
    }
    let path = log_dir.join(segment::file_name(recorded));
    if next_position < recorded.0 {
        return Err(Error::MissingSegments { path, segment: recorded, next_position, newest });
    }
    if access == Access::Write && options.recovery == Recovery::AcceptMissingTail {
        tracing::error!(segment = %recorded, file = %path.display(),
            "accepting a missing newest segment: its events are lost; the log continues at position {next_position}");
        return Ok(());
    }
    Err(Error::MissingSegment { path, segment: recorded, next_position, newest })
}

/// Each stream's positions, from the sealed segments' footers in segment order. At 100,000
/// streams this is millions of lookups in a map far larger than the caches, so the streams are
/// split by a hash of their name over one thread per core (fewer for a small log, see
/// [`INDEX_ENTRIES_PER_THREAD`]), each building its own map.
fn index_streams(footers: &[(SegmentId, u64, Footer)]) -> Result<StreamIndex> {
    let entries: usize = footers.iter().map(|(_, _, f)| f.streams().len()).sum();
    index_streams_on(footers, cores().min(entries.div_ceil(INDEX_ENTRIES_PER_THREAD)))
}

/// [`index_streams`] on `threads` threads. A stream whose versions do not continue from one
/// footer to the next is corruption of the later footer; of several, the one a single pass would
/// meet first is reported.
fn index_streams_on(footers: &[(SegmentId, u64, Footer)], threads: usize) -> Result<StreamIndex> {
    use std::hash::BuildHasher;
    if footers.is_empty() {
        return Ok(StreamIndex::default());
    }
    let workers = threads.max(1);
    let shard = foldhash::fast::FixedState::default();
    let built: Vec<std::result::Result<StreamIndex, (usize, String, Error)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers)
            .map(|worker| {
                let shard = &shard;
                scope.spawn(move || {
                    let mut streams = StreamIndex::default();
                    for (i, (id, footer_offset, footer)) in footers.iter().enumerate() {
                        let mine = footer.streams().filter(|s| shard.hash_one(s.name) as usize % workers == worker);
                        for s in mine {
                            // One lookup for a known stream; the name is copied only for a new one.
                            let positions = match streams.get_mut(s.name) {
                                Some(positions) => positions,
                                None => streams.entry(s.name.to_string()).or_default(),
                            };
                            if positions.len() as u64 != s.first_version {
                                let detail = format!(
                                    "stream {} resumes at version {} after version {}",
                                    s.name,
                                    s.first_version,
                                    (positions.len() as u64).cast_signed() - 1
                                );
                                let error = Error::Corrupt {
                                    segment: *id,
                                    offset: *footer_offset,
                                    position: None,
                                    kind: CorruptionKind::Footer(detail),
                                };
                                return Err((i, s.name.to_string(), error));
                            }
                            positions.extend_from_slice(s.positions);
                        }
                    }
                    Ok(streams)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("indexing footers does not panic")).collect()
    });
    let mut maps = Vec::with_capacity(built.len());
    let mut first_error: Option<(usize, String, Error)> = None;
    for result in built {
        match result {
            Ok(map) => maps.push(map),
            Err(e) => {
                if first_error.as_ref().is_none_or(|f| (e.0, &e.1) < (f.0, &f.1)) {
                    first_error = Some(e);
                }
            }
        }
    }
    if let Some((_, _, error)) = first_error {
        return Err(error);
    }
    let mut streams = maps.pop().unwrap_or_default();
    streams.reserve(maps.iter().map(std::collections::HashMap::len).sum());
    for map in maps {
        streams.extend(map);
    }
    Ok(streams)
}

/// Stream entries of sealed footers per thread that indexes them at open: each thread hashes
/// every entry to find its own, so a small log is indexed on one.
const INDEX_ENTRIES_PER_THREAD: usize = 10_000;

/// What open learns of one segment file before it checks how the segments join.
struct Probe {
    id: SegmentId,
    path: PathBuf,
    /// The open file of an unsealed segment, for recovery; a sealed one is closed once mapped, so
    /// open holds one descriptor per segment only as long as it takes to map it.
    file: Option<Box<dyn StorageFile>>,
    len: u64,
    header: SegmentHeader,
    /// The segment's footer (without ids) and its mapping if it is sealed; damage found there is
    /// reported only after the segment's header has been found to join its predecessor.
    sealed: Result<Option<(Mapping, segment::Sealed)>>,
}

/// Opens every segment, checks its header and reads its footer if it is sealed, on as many
/// threads as there are cores: decoding footers is most of the time open spends on a large log.
/// Results are in `ids` order, so the caller reports the earliest damage first.
fn probe_segments(log_dir: &Path, fs: &dyn FileSystem, ids: &[SegmentId], access: Access) -> Vec<Result<Probe>> {
    let workers = cores().min(ids.len()).max(1);
    let mut results: Vec<(usize, Result<Probe>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    (w..ids.len())
                        .step_by(workers)
                        .map(|i| (i, probe_segment(log_dir, fs, ids[i], access)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("probing a segment does not panic")).collect()
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, probe)| probe).collect()
}

fn probe_segment(log_dir: &Path, fs: &dyn FileSystem, id: SegmentId, access: Access) -> Result<Probe> {
    let path = log_dir.join(segment::file_name(id));
    let file = match access {
        Access::Write => fs.open(&path),
        Access::ReadOnly => fs.open_read_only(&path),
    };
    let file = file.map_err(|e| Error::io("open segment", &path, e))?;
    let len = file.len().map_err(|e| Error::io("stat segment", &path, e))?;
    let corrupt = |offset, kind| Error::Corrupt { segment: id, offset, position: None, kind };
    if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&len) {
        return Err(corrupt(0, CorruptionKind::SegmentHeader(format!("file is {len} bytes"))));
    }
    let header = {
        let mut b = [0u8; segment::HEADER_USED];
        file.read_exact_at(&mut b, 0).map_err(|e| Error::io("read segment header", &path, e))?;
        SegmentHeader::decode(&b).map_err(|k| corrupt(0, k))?
    };
    if header.id != id || header.capacity != len {
        return Err(corrupt(
            0,
            CorruptionKind::SegmentHeader(format!(
                "header says segment {} of {} bytes; the file is {} of {len} bytes",
                header.id, header.capacity, id
            )),
        ));
    }
    // A sealed segment keeps this mapping; an unsealed one is dropped again before recovery
    // (which may repair the file) maps it afresh.
    let sealed = Mapping::new(file.as_file(), len).map_err(|e| Error::io("map segment", &path, e)).and_then(|map| {
        // With a cold page cache, faulting a footer in a page at a time is most of open's time.
        let trailer_at = (len - segment::TRAILER_LEN) as usize;
        if let Some(trailer) = segment::Trailer::decode(&map.bytes()[trailer_at..]) {
            map.will_need(trailer.footer_offset, trailer.footer_len);
        }
        match segment::read_sealed(map.bytes(), false) {
            Ok(Some(sealed)) => Ok(Some((map, sealed))),
            Ok(None) => Ok(None),
            Err((offset, kind)) => Err(corrupt(offset, kind)),
        }
    });
    let file = match sealed {
        Ok(Some(_)) => None,
        _ => Some(file),
    };
    Ok(Probe { id, path, file, len, header, sealed })
}

/// Starts a new active segment after the newest sealed one (or the first of an empty log).
fn create_first_active(dir: &Path, options: &Options, index: &mut Index) -> Result<Active> {
    let fs = &options.fs;
    let log_dir = dir::log_dir(dir);
    let id = SegmentId(index.next_position);
    let tmp = log_dir.join(SPARE_FILE);
    let path = log_dir.join(segment::file_name(id));
    // Sized like the one after the newest sealed segment (a new log starts small).
    let capacity = segment::next_capacity(index.segments.last().map(|s| s.map.mapped_len()), options.segment_size);
    let header = SegmentHeader { id, capacity, prev_hash: index.head_hash, created_ms: writer::now_ms() };
    let prepared = (|| {
        let file: Box<dyn StorageFile> = fs.create(&tmp).map_err(|e| Error::io("create segment", &tmp, e))?;
        file.preallocate(capacity).map_err(|e| Error::io("preallocate segment", &tmp, e))?;
        file.write_all_at(&header.encode(), 0).map_err(|e| Error::io("write segment header", &tmp, e))?;
        file.sync_data().map_err(|e| Error::io("fdatasync", &tmp, e))?;
        Ok(file)
    })();
    let file = match prepared {
        Ok(file) => file,
        Err(e) => {
            // A partial file would hold the space it got while the disk is full.
            let _ = fs.remove(&tmp);
            return Err(e);
        }
    };
    fs.rename(&tmp, &path).map_err(|e| Error::io("rename segment", &path, e))?;
    fs.sync_dir(&log_dir).map_err(|e| Error::io("fsync directory", &log_dir, e))?;
    // Before any record goes into the new segment, the log must know it exists (extent.rs).
    extent::write_extent(fs.as_ref(), &log_dir, id, &|| fs.sync_dir(&log_dir))?;
    let map = Arc::new(Mapping::new(file.as_file(), HEADER_LEN).map_err(|e| Error::io("map segment", &path, e))?);
    index.segments.push(SegmentState {
        id,
        path,
        map: map.clone(),
        offsets: Vec::new(),
        data_end: HEADER_LEN,
        sealed: false,
    });
    Ok(Active {
        id,
        file: Arc::from(file),
        map,
        capacity,
        write_offset: HEADER_LEN,
        durable: Arc::new(std::sync::atomic::AtomicU64::new(HEADER_LEN)),
        footer: FooterBuilder::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Footers of `streams` streams over `segments` segments, each stream with two events per
    /// segment; `broken` lists (footer, stream) entries whose first version is off by one.
    fn footers(segments: u64, streams: u64, broken: &[(u64, u64)]) -> Vec<(SegmentId, u64, Footer)> {
        (0..segments)
            .map(|seg| {
                let first = seg * streams * 2;
                let mut footer = Footer::new(first, (0..streams as u32 * 2).map(|i| 4096 + 128 * i).collect());
                for s in 0..streams {
                    let off = u64::from(broken.contains(&(seg, s)));
                    let positions = [first + 2 * s, first + 2 * s + 1];
                    footer.push_stream(&format!("s{s:04}"), seg * 2 + off, &positions, &[[0; 16]; 2]);
                }
                (SegmentId(first), 1_000_000 + seg, footer)
            })
            .collect()
    }

    /// However many threads index the footers, the index is the same, and of several broken
    /// entries the earliest footer's first stream in name order is reported.
    #[test]
    fn index_streams_is_the_same_on_any_number_of_threads() {
        let expected = index_streams_on(&footers(3, 500, &[]), 1).unwrap();
        assert_eq!(expected.len(), 500);
        assert_eq!(expected["s0007"], vec![14, 15, 1014, 1015, 2014, 2015]);
        for threads in [1, 2, 8] {
            assert_eq!(index_streams_on(&footers(3, 500, &[]), threads).unwrap(), expected);
            // Broken: streams 420 and 400 in footer 1, then streams 3 and 250 in footer 2.
            let broken = footers(3, 500, &[(2, 3), (1, 420), (1, 400), (2, 250)]);
            match index_streams_on(&broken, threads).unwrap_err() {
                Error::Corrupt { segment, offset, kind: CorruptionKind::Footer(detail), .. } => {
                    assert_eq!((segment, offset), (SegmentId(1000), 1_000_001), "{threads} threads");
                    assert_eq!(detail, "stream s0400 resumes at version 3 after version 1");
                }
                other => panic!("expected a corrupt footer, got {other}"),
            }
        }
        assert!(index_streams_on(&[], 2).unwrap().is_empty());
    }

    /// Issue 14 item 11: the appender→writer queue was unbounded, so a writer that could not
    /// keep up let queued appends (and their memory) grow without limit. With the writer
    /// stalled, appends beyond `writer_queue_bytes` fail at once with `Overloaded`, nothing of
    /// them is written, everything queued before lands, and the bound frees up again.
    #[test]
    fn a_full_writer_queue_refuses_appends_at_once_and_drains() {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 * 1024;
        let options = Options { durability: Durability::None, writer_queue_bytes: max, ..Default::default() };
        let log = Log::open(dir.path(), options).unwrap();
        let stream = StreamName::new("s").unwrap();
        let request = |n: u8| {
            let events = vec![NewEvent::bytes("t", (0..1000u32).map(|i| (i as u8) ^ n).collect())];
            vec![StreamAppend { stream: stream.clone(), expected: ExpectedVersion::Any, events }]
        };
        // The writer stops at its first look-up in the index, as behind a very slow disk.
        let stall = log.shared().index.write();
        let mut waiting = Vec::new();
        let mut refused = None;
        for n in 0..1000u32 {
            let (tx, rx) = oneshot::channel();
            match log.submit(request(n as u8), Reply::Async(tx)) {
                Ok(()) => waiting.push(rx),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let refused = refused.expect("the queue's bound held");
        assert!(matches!(refused, Error::Overloaded { max: m, .. } if m == max), "{refused}");
        assert!(refused.to_string().contains("write queue is full"), "{refused}");
        assert!(waiting.len() <= max / 1000 + 2, "{} appends queued within {max} bytes", waiting.len());
        drop(stall);
        let queued = waiting.len();
        for rx in waiting {
            rx.blocking_recv().unwrap().unwrap();
        }
        assert_eq!(log.head().unwrap().position, Position(queued as u64 - 1), "the refused append wrote nothing");
        assert_eq!(log.shared().queued_bytes.load(Ordering::Acquire), 0);
        log.append_multi(request(0)).unwrap();
    }

    /// A stream read trusts the index only as far as the records agree with it: an index that
    /// points a stream at another stream's record (as a forged footer would) is corruption.
    #[test]
    fn read_stream_refuses_a_record_the_index_misplaces() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), Options { durability: Durability::None, ..Default::default() }).unwrap();
        for stream in ["agent-a", "agent-b"] {
            log.append(stream, ExpectedVersion::Any, vec![NewEvent::bytes("t", b"x".to_vec())]).unwrap();
        }
        assert_eq!(log.read_stream("agent-a", None, 10, Direction::Forward).unwrap().len(), 1);
        {
            let mut index = log.shared().index.write();
            let b = index.streams["agent-b"].clone();
            index.streams.insert("agent-a".into(), b);
        }
        for direction in [Direction::Forward, Direction::Backward] {
            match log.read_stream("agent-a", None, 10, direction).unwrap_err() {
                Error::Corrupt { position, kind: CorruptionKind::Footer(detail), .. } => {
                    assert_eq!(position, Some(Position(1)));
                    assert!(detail.contains("stream agent-b"), "{detail}");
                }
                other => panic!("expected corruption, got {other}"),
            }
        }
    }
}
