//! State shared by a log's handle, its writer and syncer threads, and its readers: the index
//! behind its lock, the poison, the head watch subscribers wait on, the writer queue's count and
//! the metrics; for a reader, where it stopped and what the files looked like when it looked.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::dir;
use crate::extent::LiveMark;
use crate::index::Index;
use crate::metrics::MetricsInner;
use crate::options::Options;
use crate::segment::recover::ReadStop;
use crate::types::SegmentId;

/// Whether this handle writes the log or only reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Holds the lock; recovers (cuts a torn tail); appends.
    Write,
    /// No lock, no writes of any kind; shows the durable, complete prefix.
    ReadOnly,
}

/// A reader's view of the files, to tell whether [`Log::refresh`] has anything to re-read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Fingerprint {
    pub segments: Vec<SegmentId>,
    pub writer_active: bool,
    pub live: Option<(SegmentId, u64)>,
    /// The newest segment's length and modification time, which change with every write.
    pub newest: Option<(u64, Option<std::time::SystemTime>)>,
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
    pub read_state: Mutex<(Option<ReadStop>, Fingerprint)>,
    pub index: RwLock<Index>,
    pub poison: Mutex<Option<String>>,
    /// Committed event count, for subscribers to wait on.
    pub head_tx: watch::Sender<u64>,
    pub closed: AtomicBool,
    /// Bytes of prepared events queued for the writer, not yet taken up by it.
    pub queued_bytes: AtomicUsize,
    pub metrics: MetricsInner,
    /// Held by a running scavenge: one at a time rewrites segments.
    pub scavenging: Mutex<()>,
    /// Whether the log is encrypted: opened with a key store, or its newest segment says so
    /// (then a writer without a key appends nothing). Every segment the writer creates says so.
    pub encrypted: bool,
}

impl Shared {
    pub(crate) fn new(
        dir: PathBuf,
        options: Options,
        access: Access,
        live: Option<LiveMark>,
        read_state: (Option<ReadStop>, Fingerprint),
        index: Index,
    ) -> Shared {
        let (head_tx, _) = watch::channel(index.next_position);
        let encrypted = options.keys.is_some() || index.newest_encrypted;
        Shared {
            encrypted,
            dir,
            options,
            access,
            live,
            read_state: Mutex::new(read_state),
            index: RwLock::new(index),
            poison: Mutex::new(None),
            head_tx,
            closed: AtomicBool::new(false),
            queued_bytes: AtomicUsize::new(0),
            metrics: MetricsInner::default(),
            scavenging: Mutex::new(()),
        }
    }

    pub(crate) fn log_dir(&self) -> PathBuf {
        dir::log_dir(&self.dir)
    }
}

/// The machine's cores, asked once.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}
