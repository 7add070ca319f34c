//! The [`Log`] handle: open, append, read.
//!
//! Calling order: `Log::open` → any number of appends, reads and subscriptions from any thread →
//! `Log::close` (or drop the last handle). Open reads the directory into an index (open.rs) and
//! starts the writer; appends are validated and prepared here, on the caller's thread, and go to
//! the writer thread (writer.rs); reads go straight to the mapped segments through the index
//! (index.rs).
//!
//! A log opened with [`Log::open_read_only`] is a *reader*: it takes no lock, creates, removes
//! and writes nothing (it works on read-only files), never cuts a torn tail, and shows the newest
//! segment only up to its last complete batch (and, while another process holds the writer's
//! lock, only up to the offset that writer has made durable: see extent.rs). It sees the
//! writer's later appends when [`Log::refresh`] is called. Damage in the newest segment does not
//! fail a reader's open: the reader stops before it and says where ([`Log::read_stop`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::cast::usize_of;
use crate::dir::{self, DirLock};
use crate::error::{CorruptionKind, Error, FooterDamage, FrameDamage, IndexMismatch, LimitKind, Result};
pub(crate) use crate::index::committed_frame;
use crate::index::{self as idx, Erasures, Fetched, Held, Index, Location, Resolved, SegmentState, StreamEntry};
use crate::keys::Keyring;
use crate::lifecycle::{
    DeleteMode, LifecycleResult, StreamChange, StreamMetadata, StreamState, LIFECYCLE_METADATA_MAX, LIFECYCLE_STREAM,
};
use crate::metrics::Metrics;
use crate::mmap::Mapping;
use crate::open;
use crate::options::Options;
use crate::record::{self, FLAG_BATCH_END};
use crate::segment::recover::ReadStop;
use crate::segment::HEADER_LEN;
use crate::shared::{cores, Access, Fingerprint, Shared};
use crate::tier::ColdSegment;
use crate::types::*;
use crate::writer::{self, Command, PreparedAppend, Reply, Writer};

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
    /// The writer's state, for a blocking appender's direct commit; `None` for a reader.
    core: Option<Arc<writer::Core>>,
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

/// One segment file's final bytes, held as the log had them mapped when it was listed
/// ([`Log::segment_snapshots`]). A scavenge may rename a rewrite over a sealed segment's path at
/// any time, and the rewrite is smaller with other offsets: a copy that reopened the path would
/// mix the listing's byte counts (or a cut offset) with the other file's bytes. The snapshot
/// keeps the mapping it was listed from, whose bytes never change (the old inode stays valid
/// while mapped), so whatever is copied from it is the file the listing describes, whole.
///
/// An evicted segment's snapshot fetches the segment's bytes when they are first asked for
/// ([`SegmentSnapshot::bytes`]), and then holds them as it holds a local file's.
#[derive(Debug, Clone)]
pub struct SegmentSnapshot {
    id: SegmentId,
    file: SegmentFile,
    map: Arc<Mapping>,
    cold: Option<Arc<ColdSegment>>,
    fetched: std::sync::OnceLock<Arc<Mapping>>,
}

impl SegmentSnapshot {
    /// What the listing says of the file: path, final bytes, capacity, sealed.
    pub fn file(&self) -> &SegmentFile {
        &self.file
    }

    /// The segment's id (its first position).
    pub fn id(&self) -> SegmentId {
        self.id
    }

    /// Whether the segment is evicted to the archive (its file is not on the local disk).
    pub fn is_evicted(&self) -> bool {
        self.cold.is_some()
    }

    /// The file's final bytes: `file().bytes` of them, from the mapping the listing was taken
    /// from, or for an evicted segment from its fetched copy (the first call fetches it:
    /// [`Error::Evicted`], [`Error::ColdUnavailable`] or [`Error::ColdTampered`] when that fails).
    pub fn bytes(&self) -> Result<&[u8]> {
        let map = match &self.cold {
            None => &self.map,
            Some(cold) => match self.fetched.get() {
                Some(map) => map,
                None => {
                    let map = cold.map()?;
                    self.fetched.get_or_init(|| map)
                }
            },
        };
        Ok(&map.bytes()[..usize_of(self.file.bytes)])
    }

    fn of(s: &SegmentState, bytes: u64, sealed: bool) -> SegmentSnapshot {
        assert!(
            bytes <= s.map.published_len(),
            "segment {} snapshot of {bytes} bytes beyond the {} published",
            s.id,
            s.map.published_len()
        );
        SegmentSnapshot {
            file: SegmentFile { bytes, sealed, ..SegmentFile::of(s) },
            map: s.map.clone(),
            cold: s.cold.clone(),
            fetched: std::sync::OnceLock::new(),
            id: s.id,
        }
    }
}

/// Events from which [`prepare`] splits the work over two threads.
const PARALLEL_PREPARE_MIN: usize = 256;

/// Encodes, compresses and digests events on the caller's thread, and for a large batch on a
/// second one as well: hashing is most of an append's CPU, and the writer only has to chain.
/// With a key store, the stream's key is fetched (its secret created, durably, on the stream's
/// first append) and the events are prepared for encryption; the writer seals them.
fn prepare(stream: &StreamName, events: &[NewEvent], keys: Option<&Keyring>) -> Result<Vec<record::PreparedEvent>> {
    let key = keys.map(|k| k.writer_key(stream.as_str())).transpose()?;
    let key = key.as_ref();
    if events.len() < PARALLEL_PREPARE_MIN || cores() < 2 {
        return Ok(events.iter().map(|e| record::PreparedEvent::new(stream, e, key)).collect());
    }
    let (front, back) = events.split_at(events.len() / 2);
    Ok(std::thread::scope(|scope| {
        let back = scope.spawn(|| back.iter().map(|e| record::PreparedEvent::new(stream, e, key)).collect::<Vec<_>>());
        let mut all: Vec<_> = front.iter().map(|e| record::PreparedEvent::new(stream, e, key)).collect();
        all.extend(back.join().expect("preparing events does not panic"));
        all
    }))
}

impl Log {
    /// Opens (creating if needed) the log in data directory `dir`, recovering it.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Log> {
        let dir = dir.as_ref().to_path_buf();
        let opened = open::open_writer(&dir, &options)?;
        let (lock, index, state, live) = (opened.lock, opened.index, opened.state, opened.live);
        if let (Some(keys), false) = (options.keys.as_deref(), index.shreds.is_empty()) {
            // An erasure made durable before a crash cut short the destruction of its key:
            // finish it before anything is read or written. Recovery found the erasure in the
            // segment's bytes, which a kill -9 leaves in the page cache only: make them durable
            // first, so that a power cut now cannot take the erasure and leave the key gone.
            let active = &state.active;
            let path = dir::log_dir(&dir).join(crate::segment::file_name(active.id));
            active.file.sync_data().map_err(|e| Error::io("fdatasync", &path, e))?;
            for (stream, &through) in &index.shreds {
                let destroyed = keys.shred_through(stream, through)?;
                if destroyed > 0 {
                    tracing::warn!(stream = %stream, secrets = destroyed, "destroyed the key of a stream erased before the last stop");
                }
            }
        }
        let log_dir = dir::log_dir(&dir);
        let shared =
            Arc::new(Shared::new(dir, options, Access::Write, Some(live), (None, Fingerprint::default()), index));
        // Held for the log's lifetime: a roll's directory fsync must not need a new descriptor.
        let log_dir_handle =
            shared.options.fs.open_dir(&log_dir).map_err(|e| Error::io("open directory", &log_dir, e))?;
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(shared.clone(), log_dir, log_dir_handle, state)
            .map_err(|e| Error::io("spawn syncer thread", &shared.dir, e))?;
        let core = Arc::new(Mutex::new(Some(writer)));
        let (for_writer, for_thread) = (shared.clone(), core.clone());
        let thread = std::thread::Builder::new()
            .name("cairn-log-writer".into())
            .spawn(move || {
                // A panic is an assertion about the log's state failing: nothing more may be
                // acknowledged. The writer is dropped, so waiters see their reply channel close
                // and report the poison.
                let run = std::panic::AssertUnwindSafe(|| Writer::run(&for_thread, rx));
                if std::panic::catch_unwind(run).is_err() {
                    for_writer.poison.lock().get_or_insert_with(|| "the writer thread panicked".to_string());
                    drop(for_thread.lock().take());
                    for_writer.head_tx.send_modify(|_| {});
                }
            })
            .map_err(|e| Error::io("spawn writer thread", &shared.dir, e))?;
        Ok(Log {
            handle: Arc::new(Handle {
                shared,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(thread)),
                core: Some(core),
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
        let (index, stop, fingerprint) = open::open_reader(&dir, &options)?;
        let shared = Arc::new(Shared::new(dir, options, Access::ReadOnly, None, (stop, fingerprint), index));
        Ok(Log {
            handle: Arc::new(Handle {
                shared,
                tx: Mutex::new(None),
                writer: Mutex::new(None),
                core: None,
                _lock: None,
            }),
        })
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
        open::refresh(self.shared())
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

    /// [`Log::append_multi`] for async callers. A stream's first encrypted append creates its
    /// secret (an fdatasync of the key store) on a thread of its own, never on the runtime's.
    pub async fn append_multi_async(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        self.create_stream_keys_off_thread(&appends).await?;
        let (tx, rx) = oneshot::channel();
        self.submit(appends, Reply::Async(tx))?;
        rx.await.map_err(|_| self.closed_error())?
    }

    /// Creates the secrets `appends`' streams lack, on a short-lived thread, and waits for
    /// them: each is durable before any record is sealed with it ([`prepare`] then finds it).
    async fn create_stream_keys_off_thread(&self, appends: &[StreamAppend]) -> Result<()> {
        let Some(keys) = self.shared().options.keys.clone() else { return Ok(()) };
        let missing: Vec<String> = appends
            .iter()
            .filter(|a| !keys.has_writer_key(a.stream.as_str()))
            .map(|a| a.stream.as_str().to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.writable()?;
        let (tx, rx) = oneshot::channel();
        let ring = keys.clone();
        std::thread::Builder::new()
            .name("cairn-key-store".into())
            .spawn(move || {
                let _ = tx.send(missing.iter().try_for_each(|stream| ring.writer_key(stream).map(drop)));
            })
            .map_err(|e| Error::io("spawn key store thread", keys.path(), e))?;
        rx.await.map_err(|_| self.closed_error())?
    }

    fn closed_error(&self) -> Error {
        match self.poisoned() {
            Some(cause) => Error::Poisoned { cause },
            None => Error::Closed,
        }
    }

    /// Validates and prepares a request on the caller's thread, then queues it for the writer.
    pub(crate) fn submit(&self, appends: Vec<StreamAppend>, reply: Reply) -> Result<()> {
        self.writable()?;
        if self.append_needs_key() {
            return Err(Error::AppendNeedsKey { dir: self.dir().to_path_buf() });
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
            if append.stream.as_str() == LIFECYCLE_STREAM {
                return Err(Error::InvalidStreamName {
                    name: LIFECYCLE_STREAM.into(),
                    reason: "the lifecycle stream is written only by the log's lifecycle operations",
                });
            }
            for event in &append.events {
                event.validate(&append.stream)?;
                bytes += event.size(&append.stream);
            }
        }
        if bytes > BATCH_BYTES_MAX {
            return Err(Error::LimitExceeded { limit: LimitKind::BatchBytes, max: BATCH_BYTES_MAX, actual: bytes });
        }
        let keys = self.shared().options.keys.clone();
        let prepared: Vec<PreparedAppend> = appends
            .into_iter()
            .map(|a| {
                Ok(PreparedAppend {
                    events: prepare(&a.stream, &a.events, keys.as_deref())?,
                    stream: a.stream,
                    expected: a.expected,
                })
            })
            .collect::<Result<_>>()?;
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
        // A blocking appender that finds the writer idle commits on its own thread, saving the
        // two thread wake-ups of the hand-off (writer/mod.rs).
        let (prepared, reply) = match (&self.handle.core, &reply) {
            (Some(core), Reply::Blocking(_)) => match writer::try_direct(core, before, prepared, reply) {
                None => return Ok(()),
                Some(back) => back,
            },
            _ => (prepared, reply),
        };
        let sent = self.send(Command::Append { appends: prepared, reply });
        if sent.is_err() {
            shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
        }
        sent
    }

    /// Refuses to write through a reader or a poisoned log.
    pub(crate) fn writable(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly { dir: self.dir().to_path_buf() });
        }
        match self.poisoned() {
            Some(cause) => Err(Error::Poisoned { cause }),
            None => Ok(()),
        }
    }

    /// Hands a command to the writer thread.
    pub(crate) fn send(&self, command: Command) -> Result<()> {
        self.writable()?;
        match self.handle.tx.lock().as_ref() {
            Some(tx) => tx.send(command).map_err(|_| self.closed_error()),
            None => Err(Error::Closed),
        }
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
        self.scan(from, limit, |event| f(event.to_event()))
    }

    /// [`Log::for_each`] with each event borrowed from the log's mapped bytes instead of copied
    /// out: the cheapest way to read the log in order (a replay that only looks at some fields,
    /// or copies what it keeps). Every record is CRC-checked as in every read; erased payloads
    /// read empty, as everywhere.
    pub fn scan(&self, from: Position, limit: u64, mut f: impl FnMut(&EventRef<'_>) -> bool) -> Result<u64> {
        let mut position = from.0;
        let mut left = limit;
        let mut seen = 0;
        // Snapshot the segments covering [from, head) under the lock; decode without it.
        let keys = self.shared().options.keys.clone();
        let (erasures, spans) = {
            let index = self.shared().index.read();
            let mut spans: Vec<(SegmentId, Held, u64, u64)> = Vec::new();
            let mut p = position;
            let end = index.next_position.min(position.saturating_add(limit));
            while p < end {
                let Some(seg) = index.segment_of(p) else { break };
                let count = usize_of(seg.next_position().min(end) - p);
                let offset = u64::from(seg.offsets[usize_of(p - seg.id.0)]);
                spans.push((seg.id, seg.held(), offset, count as u64));
                p += count as u64;
            }
            (index.erasures.clone(), spans)
        };
        for (segment, held, mut offset, count) in spans {
            // An evicted segment is fetched here, with no lock held, when the scan reaches it.
            let map = held.readable()?;
            let bytes = map.bytes();
            for _ in 0..count {
                if left == 0 {
                    return Ok(seen);
                }
                let go_on = with_committed(bytes, segment, offset, position, keys.as_deref(), |mut event| {
                    erasures.mask_ref(&mut event);
                    f(&event)
                })?;
                offset += record::frame_len(record::body_len_at(bytes, offset)) as u64;
                position += 1;
                left -= 1;
                seen += 1;
                if !go_on {
                    return Ok(seen);
                }
            }
        }
        Ok(seen)
    }

    /// The committed event at `position`.
    pub fn read_event(&self, position: Position) -> Result<Event> {
        let (location, erasures) = {
            let index = self.shared().index.read();
            (index.locate(position.0).ok_or(Error::PositionNotFound { position })?, index.erasures.clone())
        };
        let keys = self.shared().options.keys.as_deref();
        let map = location.map()?;
        let mut event = decode_committed(map.bytes(), location.segment, location.offset, position.0, keys)?;
        erasures.mask(&mut event);
        Ok(event)
    }

    /// The chain hash at `position`, from the record's header: no payload is decoded (an
    /// encrypted log's needs no key).
    pub fn hash_at(&self, position: Position) -> Result<ChainHash> {
        Ok(self.frame_header_at(position)?.hash)
    }

    /// The writer's clock (unix milliseconds) when the event at `position` was committed, from
    /// the record's header: no payload is decoded, so a copy of an encrypted log answers it
    /// without the key (a point-in-time restore's search needs nothing else).
    pub fn timestamp_at(&self, position: Position) -> Result<u64> {
        Ok(self.frame_header_at(position)?.timestamp_ms)
    }

    fn frame_header_at(&self, position: Position) -> Result<record::FrameHeader> {
        let location = self.shared().index.read().locate(position.0).ok_or(Error::PositionNotFound { position })?;
        let map = location.map()?;
        let frame = committed_frame(map.bytes(), location.segment, location.offset, position.0)?;
        Ok(frame.header)
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
        // The window's edge may need an evicted segment's timestamps: fetched outside the lock.
        let picked = idx::with_fetched(&self.shared().index, |index, fetched| {
            let Some((first, last)) = index.readable(stream, fetched)? else { return Ok(None) };
            let span = (limit as u64).saturating_sub(1);
            let (lo, hi) = match direction {
                Direction::Forward => {
                    let lo = from.map_or(first, |v| v.0.max(first));
                    (lo, last.min(lo.saturating_add(span)))
                }
                Direction::Backward => {
                    let hi = from.map_or(last, |v| v.0.min(last));
                    (first.max(hi.saturating_sub(span)), hi)
                }
            };
            if limit == 0 || lo > hi {
                return Ok(None);
            }
            let mut picked = index.resolve(stream, lo, hi);
            if direction == Direction::Backward {
                picked.reverse();
            }
            Ok(Some(locate_all(index, picked)))
        })?;
        let Some(picked) = picked else { return Ok(Vec::new()) };
        decode_stream(picked, bytes_max, self.shared().options.keys.as_deref())
    }

    /// A stream's events at positions from `position` on, at most `limit`, bounded by
    /// `bytes_max` as [`Log::read_stream_bounded`] is: its own, and for a fork the shared prefix
    /// it reads (from its first readable shared version; those events keep their source's
    /// name, as a stream read returns them). For a subscription, which follows the global log:
    /// lifecycle state hides nothing else from it. In position order: a fork's shared versions
    /// were all written before the fork, its own after.
    pub(crate) fn read_subscribed_from(
        &self,
        stream: &str,
        position: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<Event>> {
        let picked = {
            let index = self.shared().index.read();
            let Some(entry) = index.streams.get(stream) else { return Ok(Vec::new()) };
            let Some(last) = entry.last_version() else { return Ok(Vec::new()) };
            let first = entry.life().map_or(0, |l| l.fork_floor.min(entry.base));
            let mut picked = Vec::new();
            for (owner, lo, hi) in index.owners(stream, first, last).into_iter().rev() {
                let owned = &index.streams[owner];
                let (from, to) = (usize_of(lo - owned.base), usize_of(hi - owned.base));
                let span = owned.positions.get(from..=to).unwrap_or(&[]);
                let start = span.partition_point(|&p| p < position);
                picked.extend(
                    span[start..]
                        .iter()
                        .zip(lo + start as u64..)
                        .take(limit - picked.len())
                        .map(|(&p, v)| (owner.to_string(), v, p)),
                );
                if picked.len() == limit {
                    break;
                }
            }
            locate_all(&index, picked)
        };
        decode_stream(picked, bytes_max, self.shared().options.keys.as_deref())
    }

    /// The lifecycle state of `stream`: its last version, delete point, tombstone, close,
    /// metadata and fork source. [`Error::StreamNotFound`] for a stream the log has never seen
    /// (no event, no fork, no lifecycle change).
    pub fn stream_state(&self, stream: &str) -> Result<StreamState> {
        let name = StreamName::reserved(stream)?;
        let (last, life, expired) = idx::with_fetched(&self.shared().index, |index, fetched| {
            let not_found = || Error::StreamNotFound { stream: stream.to_string() };
            let entry = index.streams.get(stream).ok_or_else(not_found)?;
            let last = entry.last_version();
            let life = entry.life().cloned().unwrap_or_default();
            let expired = match last {
                Some(last) if !life.tombstoned => index.expired(stream, &life, last, fetched)?,
                _ => false,
            };
            Ok((last, life, expired))
        })?;
        let mut deleted_before = life.deleted_before;
        if let (Some(last), true) = (last, expired) {
            deleted_before = Some(last + 1);
        }
        let forked_from = match life.forked_from {
            Some((source, at)) => Some((StreamName::reserved(source)?, StreamVersion(at))),
            None => None,
        };
        Ok(StreamState {
            stream: name,
            last_version: last.map(StreamVersion),
            deleted_before: deleted_before.map(StreamVersion),
            tombstoned: life.tombstoned,
            closed: life.closed,
            metadata: life.metadata,
            forked_from,
        })
    }

    /// Deletes a stream: [`DeleteMode::Soft`] hides its events from stream reads until it is
    /// written again (versions continue); [`DeleteMode::Tombstone`] for good. Global-log reads
    /// still return every event. A stream with no events is [`Error::StreamNotFound`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use log_engine::{DeleteMode, Direction, Error, ExpectedVersion, Log, NewEvent, Options};
    /// let log = Log::open(dir.path(), Options::default())?;
    /// log.append("thread-1", ExpectedVersion::Any, vec![NewEvent::json("Said", &serde_json::json!({}))])?;
    /// log.delete_stream("thread-1", DeleteMode::Soft)?;
    /// let read = log.read_stream("thread-1", None, 10, Direction::Forward);
    /// assert!(matches!(read, Err(Error::StreamDeleted { .. })));
    /// let again = log.append("thread-1", ExpectedVersion::Any, vec![NewEvent::json("Said", &serde_json::json!({}))])?;
    /// assert_eq!(again.first_version.0, 1);
    /// # Ok::<(), log_engine::Error>(())
    /// ```
    pub fn delete_stream(&self, stream: &str, mode: DeleteMode) -> Result<LifecycleResult> {
        self.change_stream(StreamChange::Delete { stream: stream.into(), mode }, None)
    }

    /// Closes a stream: later appends fail with [`Error::StreamClosed`]. Permanent.
    pub fn close_stream(&self, stream: &str) -> Result<LifecycleResult> {
        self.change_stream(StreamChange::Close { stream: stream.into() }, None)
    }

    /// Sets a stream's metadata (the whole of it); reads apply its limits at once.
    pub fn set_stream_metadata(&self, stream: &str, metadata: StreamMetadata) -> Result<LifecycleResult> {
        self.change_stream(StreamChange::SetMetadata { stream: stream.into(), metadata }, None)
    }

    /// Creates stream `to` whose versions `0..=at_version` are `source`'s, without copying
    /// them; its own appends continue at `at_version + 1`. Deleting or tombstoning the source
    /// later does not change the fork.
    pub fn fork_stream(&self, source: &str, to: &str, at_version: StreamVersion) -> Result<LifecycleResult> {
        self.change_stream(StreamChange::Fork { source: source.into(), to: to.into(), at_version }, None)
    }

    /// Erases the payloads (data and metadata) of versions `from..=to` of `stream` (default:
    /// its first and last version) for `reason`, at once and on every read: stream reads,
    /// global reads and subscriptions return those events with their header only and
    /// [`Event::erased`] set. The erasure is a `stream-erased` event on `$lifecycle`; the
    /// records' bytes stay until the scavenger rewrites their segment, and the chain still
    /// verifies (it covers the payloads' digests, not the payloads). Versions a fork shares with
    /// its source belong to the source: erasing them through either erases them for both.
    /// A range the stream does not have is [`Error::EraseOutOfRange`]; a tombstoned or unknown
    /// stream, an empty reason or `from > to` is refused too, and nothing is written.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use log_engine::{Direction, ExpectedVersion, Log, NewEvent, Options, StreamVersion};
    /// let log = Log::open(dir.path(), Options::default())?;
    /// let said = |text| NewEvent::json("Said", &serde_json::json!({ "text": text }));
    /// log.append("thread-1", ExpectedVersion::Any, vec![said("hello"), said("my card is 4111..."), said("bye")])?;
    /// log.erase("thread-1", Some(StreamVersion(1)), Some(StreamVersion(1)), "the user asked for it (ticket 42)")?;
    /// let events = log.read_stream("thread-1", None, 10, Direction::Forward)?;
    /// assert!(events[1].erased && events[1].data.as_bytes().is_empty());
    /// assert!(!events[0].erased && !events[2].erased);
    /// # Ok::<(), log_engine::Error>(())
    /// ```
    pub fn erase(
        &self,
        stream: &str,
        from: Option<StreamVersion>,
        to: Option<StreamVersion>,
        reason: &str,
    ) -> Result<LifecycleResult> {
        let change =
            StreamChange::Erase { stream: stream.into(), from_version: from, to_version: to, reason: reason.into() };
        self.change_stream(change, None)
    }

    /// Makes a lifecycle change, as the single-purpose methods above do, with `metadata` (a
    /// JSON object: who asked, why) as its `$lifecycle` event's metadata.
    pub fn change_stream(&self, change: StreamChange, metadata: Option<&serde_json::Value>) -> Result<LifecycleResult> {
        let op = change.into_op()?;
        let metadata = match metadata {
            None => Vec::new(),
            Some(value @ serde_json::Value::Object(_)) => serde_json::to_vec(value).expect("a Value always serializes"),
            Some(_) => {
                return Err(Error::Invalid { what: "the metadata of a lifecycle change must be a JSON object".into() })
            }
        };
        if metadata.len() > LIFECYCLE_METADATA_MAX {
            return Err(Error::LimitExceeded {
                limit: LimitKind::EventSize,
                max: LIFECYCLE_METADATA_MAX,
                actual: metadata.len(),
            });
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Command::Lifecycle { op, metadata, reply: Reply::Blocking(tx) })?;
        let result = rx.recv().map_err(|_| self.closed_error())??;
        let written = result.first().expect("a lifecycle change writes one event");
        Ok(LifecycleResult { position: written.first_position, hash: written.hash })
    }

    /// A stream's last version, or `None` if it has no events. Versions continue across a
    /// soft delete, so this is the version an append's expected version is checked against.
    pub fn stream_version(&self, stream: &str) -> Option<StreamVersion> {
        let index = self.shared().index.read();
        index.streams.get(stream).and_then(StreamEntry::last_version).map(StreamVersion)
    }

    /// Streams whose name starts with `prefix`, sorted by name: those a stream read finds
    /// (deleted, expired and tombstoned streams are left out). `events` counts versions.
    pub fn streams(&self, prefix: &str) -> Vec<StreamInfo> {
        self.list_streams(prefix, false)
    }

    /// As [`Log::streams`], with the deleted, expired and tombstoned streams too (each has
    /// [`Log::stream_state`] to tell which it is).
    pub fn streams_including_deleted(&self, prefix: &str) -> Vec<StreamInfo> {
        self.list_streams(prefix, true)
    }

    fn list_streams(&self, prefix: &str, deleted: bool) -> Vec<StreamInfo> {
        let listed = |index: &Index, fetched: &Fetched| -> std::result::Result<Vec<StreamInfo>, idx::Stop> {
            let mut out = Vec::new();
            for (name, entry) in index.streams.iter().filter(|(name, _)| name.starts_with(prefix)) {
                let Some(last) = entry.last_version() else { continue };
                let shown = deleted
                    || entry.life.is_none()
                    || match index.readable(name, fetched) {
                        Ok(_) => true,
                        Err(idx::Stop::Failed(_)) => false,
                        Err(cold @ idx::Stop::Cold(_)) => return Err(cold),
                    };
                if shown {
                    out.push(StreamInfo { stream: name.clone(), last_version: StreamVersion(last), events: last + 1 });
                }
            }
            Ok(out)
        };
        // A stream whose expiry the archive must answer, and cannot, is left out (as one that
        // cannot be read).
        let mut out = idx::with_fetched(&self.shared().index, listed).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "listing streams without the archive: streams it must judge are left out");
            listed(&self.shared().index.read(), &Fetched::offline()).unwrap_or_default()
        });
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

    /// Whether the log was opened with a key store: new events are written encrypted.
    pub fn encrypted(&self) -> bool {
        self.shared().options.keys.is_some()
    }

    /// Whether the log is encrypted (its newest segment said so at open) but was opened
    /// without a key store: it refuses appends ([`Error::AppendNeedsKey`]); lifecycle changes,
    /// which are never encrypted, and reads of clear fields work.
    pub fn append_needs_key(&self) -> bool {
        self.shared().encrypted && self.shared().options.keys.is_none()
    }

    /// The key store the log was opened with.
    pub fn keys(&self) -> Option<&Arc<Keyring>> {
        self.shared().options.keys.as_ref()
    }

    pub fn metrics(&self) -> Metrics {
        self.shared().metrics.snapshot()
    }

    /// The segment files and how much of each is final, for copying the log elsewhere.
    pub fn segment_files(&self) -> Vec<SegmentFile> {
        let index = self.shared().index.read();
        index.segments.iter().map(SegmentFile::of).collect()
    }

    /// [`Log::segment_files`] with each file's bytes held as listed ([`SegmentSnapshot`]): what a
    /// copy or a shipment reads while a scavenge may rewrite sealed segments.
    pub fn segment_snapshots(&self) -> Vec<SegmentSnapshot> {
        let index = self.shared().index.read();
        index.segments.iter().map(|s| SegmentSnapshot::of(s, SegmentFile::of(s).bytes, s.sealed)).collect()
    }

    /// The snapshot of the one segment starting at position `id`, if the log has it.
    pub fn segment_snapshot(&self, id: SegmentId) -> Option<SegmentSnapshot> {
        let index = self.shared().index.read();
        let s = index.segments.iter().find(|s| s.id == id)?;
        Some(SegmentSnapshot::of(s, SegmentFile::of(s).bytes, s.sealed))
    }

    /// The segment files holding positions `0..=through`, for copying a prefix of the log: the
    /// last file is cut after the batch that contains `through` (a cut inside an atomic batch
    /// is not a valid log), and copied as unsealed (`bytes` = end of that batch; zero-fill the
    /// rest of its capacity). Returns the files and the last position the copy will hold.
    pub fn segment_files_through(&self, through: Position) -> Result<(Vec<SegmentFile>, Position)> {
        let (snapshots, last) = self.segment_snapshots_through(through)?;
        Ok((snapshots.into_iter().map(|s| s.file).collect(), last))
    }

    /// [`Log::segment_files_through`] with each file's bytes held as listed: the cut offset in
    /// the last one is an offset of the mapping it was computed from ([`SegmentSnapshot`]).
    pub fn segment_snapshots_through(&self, through: Position) -> Result<(Vec<SegmentSnapshot>, Position)> {
        idx::with_fetched(&self.shared().index, |index, fetched| self.snapshots_through(index, fetched, through))
    }

    fn snapshots_through(
        &self,
        index: &Index,
        fetched: &Fetched,
        through: Position,
    ) -> std::result::Result<(Vec<SegmentSnapshot>, Position), idx::Stop> {
        let segment = index.segment_of(through.0).ok_or(Error::PositionNotFound { position: through })?;
        // The cut's segment is the newest for a writer, which never evicts a segment the
        // idempotency window reaches; a reader of an older copy may need it fetched.
        let map = segment.map_held(fetched)?;
        let bytes = map.bytes();
        let mut position = through.0;
        let mut offset = u64::from(segment.offsets[usize_of(position - segment.id.0)]);
        let end = loop {
            let (id, at) = (segment.id, Some(Position(position)));
            let corrupt = move |kind| Error::Corrupt { segment: id, offset, position: at, kind };
            let frame = record::decode_frame(&bytes[usize_of(offset)..], record::EVENT_BODY_MAX)
                .map_err(|e| corrupt(e.into()))?;
            offset += frame.len as u64;
            if frame.header.flags & FLAG_BATCH_END != 0 {
                break offset;
            }
            position += 1;
            if position >= segment.next_position() {
                return Err(corrupt(CorruptionKind::RecordFrame(FrameDamage::SegmentEndsInBatch)).into());
            }
        };
        let mut files: Vec<SegmentSnapshot> = index
            .segments
            .iter()
            .take_while(|s| s.id < segment.id)
            .map(|s| SegmentSnapshot::of(s, SegmentFile::of(s).bytes, s.sealed))
            .collect();
        files.push(SegmentSnapshot::of(segment, end, false));
        Ok((files, Position(position)))
    }

    pub(crate) fn shared_arc(&self) -> Arc<Shared> {
        self.shared().clone()
    }
}

/// Resolved versions with their locations, and the erasures to mask them with, copied out
/// under the index's lock.
struct Located {
    picked: Vec<(String, u64, u64, Location)>,
    erasures: Arc<Erasures>,
}

fn locate_all(index: &Index, picked: Resolved) -> Located {
    let picked = picked
        .into_iter()
        .map(|(owner, v, p)| {
            let location = index.locate(p).expect("indexed positions are committed");
            (owner, v, p, location)
        })
        .collect();
    Located { picked, erasures: index.erasures.clone() }
}

/// Decodes a stream read's records, checking each against the index: a record that disagrees
/// with it (a CRC-valid but forged or misplaced footer) is reported, never returned. Decoding
/// stops at the first event that would take the payload above `bytes_max` (the first event is
/// always returned). Erased events come back masked.
fn decode_stream(located: Located, bytes_max: usize, keys: Option<&Keyring>) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for (owner, version, p, loc) in located.picked {
        let map = loc.map()?;
        let mut event = decode_committed(map.bytes(), loc.segment, loc.offset, p, keys)?;
        if event.stream != owner || event.version.0 != version {
            let kind = CorruptionKind::footer(FooterDamage::IndexMismatch(Box::new(IndexMismatch {
                position: p,
                stream: owner,
                version,
                record_stream: event.stream,
                record_version: event.version.0,
            })));
            return Err(Error::Corrupt { segment: loc.segment, offset: loc.offset, position: Some(Position(p)), kind });
        }
        located.erasures.mask(&mut event);
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

/// Decodes the committed record at `offset`, re-checking its CRC and position (and, for an
/// encrypted event, opening it with `keys`).
pub(crate) fn decode_committed(
    bytes: &[u8],
    segment: SegmentId,
    offset: u64,
    position: u64,
    keys: Option<&Keyring>,
) -> Result<Event> {
    with_committed(bytes, segment, offset, position, keys, |event| event.to_event())
}

/// [`decode_committed`] borrowing the event for `f` instead of copying it out.
fn with_committed<R>(
    bytes: &[u8],
    segment: SegmentId,
    offset: u64,
    position: u64,
    keys: Option<&Keyring>,
    f: impl FnOnce(EventRef<'_>) -> R,
) -> Result<R> {
    let frame = committed_frame(bytes, segment, offset, position)?;
    record::with_event(&frame, keys, f).map_err(|d| d.at(segment, offset, position))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let events = vec![NewEvent::bytes("t", (0..1000u32).map(|i| i.to_le_bytes()[0] ^ n).collect())];
            vec![StreamAppend { stream: stream.clone(), expected: ExpectedVersion::Any, events }]
        };
        // The writer stops at its first look-up in the index, as behind a very slow disk.
        let stall = log.shared().index.write();
        let mut waiting = Vec::new();
        let mut refused = None;
        for n in 0..1000u32 {
            let (tx, rx) = oneshot::channel();
            match log.submit(request(n.to_le_bytes()[0]), Reply::Async(tx)) {
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
                Error::Corrupt { position, kind: CorruptionKind::Footer(damage), .. } => {
                    assert_eq!(position, Some(Position(1)));
                    let FooterDamage::IndexMismatch(m) = *damage else {
                        panic!("expected an index mismatch: {damage}")
                    };
                    assert_eq!((m.stream.as_str(), m.version), ("agent-a", 0));
                    assert_eq!((m.record_stream.as_str(), m.record_version), ("agent-b", 0));
                }
                other => panic!("expected corruption, got {other}"),
            }
        }
    }
}
