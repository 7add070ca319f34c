//! The log's one error type. Every variant says what failed and where; corruption carries the
//! segment, offset and position, and I/O errors carry the operation and the path.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::ids::{ChainHash, ExpectedVersion, Position, SegmentId, StreamVersion};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The disk (or the user's quota) is full. Nothing was written; the append can be retried
    /// once space is freed. The log is not poisoned.
    #[error("no space left on the device: {op} {} failed ({source}); free space, then retry", path.display())]
    NoSpace {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The process (or the system) has no file descriptor to spare. Nothing was written; the
    /// append can be retried once descriptors are released. The log is not poisoned.
    #[error("too many open files: {op} {} failed ({source}); retry once descriptors are released", path.display())]
    TooManyOpenFiles {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The writer's queue is full (see [`crate::WRITER_QUEUE_BYTES_MAX`]): the append was not
    /// queued, nothing was written; retry shortly.
    #[error("the log's write queue is full ({queued} bytes of appends waiting, limit {max}); nothing was written, retry shortly")]
    Overloaded { queued: usize, max: usize },

    #[error("data directory {} is in use by another process (lock file {} is held)", dir.display(), lock.display())]
    Locked { dir: PathBuf, lock: PathBuf },

    #[error("corruption in segment {segment} at byte offset {offset}{}: {kind}", position_suffix(.position))]
    Corrupt { segment: SegmentId, offset: u64, position: Option<Position>, kind: CorruptionKind },

    #[error("torn tail in segment {segment} at byte offset {offset} ({bytes} bytes after the last complete batch) and recovery is strict")]
    TornTail { segment: SegmentId, offset: u64, bytes: u64 },

    #[error("the log is poisoned by an earlier failure ({cause}); no appends are acknowledged until it is reopened")]
    Poisoned { cause: String },

    #[error("wrong expected version for stream {stream}: expected {expected}, the stream is {}", describe_actual(.actual))]
    WrongExpectedVersion { stream: String, expected: ExpectedVersion, actual: Option<StreamVersion> },

    #[error("event id {id} already exists in stream {stream} at position {position}{reason}; an event id is unique within its stream")]
    IdConflict { stream: String, id: uuid::Uuid, position: Position, reason: IdConflictReason },

    #[error("invalid stream name {name:?}: {reason}")]
    InvalidStreamName { name: String, reason: &'static str },

    #[error("invalid input: {what}")]
    Invalid { what: String },

    #[error("{limit} is {actual}, above the limit of {max}")]
    LimitExceeded { limit: LimitKind, max: usize, actual: usize },

    #[error("stream {stream} not found")]
    StreamNotFound { stream: String },

    /// A stream read of a soft-deleted stream (or one whose `ttl_ms` expired) with nothing
    /// written after the delete.
    #[error("stream {stream} is deleted; it reads as deleted until it is written again")]
    StreamDeleted { stream: String },

    /// An append, read or lifecycle change of a tombstoned stream: the tombstone is permanent.
    #[error("stream {stream} is tombstoned: it is deleted for good and takes no more appends or changes")]
    StreamTombstoned { stream: String },

    #[error("stream {stream} is closed: it takes no more appends")]
    StreamClosed { stream: String },

    #[error("cannot fork stream {stream} at version {at_version}: its last version is {last_version}")]
    ForkPastEnd { stream: String, at_version: StreamVersion, last_version: StreamVersion },

    #[error("stream {stream} already exists: a fork needs a stream that has no events yet")]
    StreamExists { stream: String },

    #[error("invalid stream metadata: {field} {reason}")]
    InvalidStreamMetadata { field: &'static str, reason: String },

    #[error("position {position} is beyond the head of the log")]
    PositionNotFound { position: Position },

    #[error("the log is closed")]
    Closed,

    #[error("{} is not a cairn data directory ({reason})", dir.display())]
    NotAStore { dir: PathBuf, reason: &'static str },

    #[error("the log in {} is open read-only: only a writer appends", dir.display())]
    ReadOnly { dir: PathBuf },

    #[error(
        "segment file {} is missing: the log's extent record says segment {segment} (positions from {segment} on) \
         was created, but the surviving log {} ({}); its events are lost. Restore from a backup, \
         or accept the loss with `cairn repair --accept-missing-tail` (Recovery::AcceptMissingTail), \
         which continues the log at position {segment}",
        path.display(),
        describe_end(*.next_position),
        describe_newest(.newest)
    )]
    MissingSegment { path: PathBuf, segment: SegmentId, next_position: u64, newest: Option<SegmentId> },

    #[error(
        "segment files {} are missing: the log's extent record says segment {segment} was created, but the surviving log \
         {} ({}), so positions {} to {segment} were lost as well; restore from a backup \
         (continuing the log would hand out positions that had been used)",
        path.display(),
        describe_end(*.next_position),
        describe_newest(.newest),
        .next_position
    )]
    MissingSegments { path: PathBuf, segment: SegmentId, next_position: u64, newest: Option<SegmentId> },

    #[error("{}: {detail}", path.display())]
    BadSideFile { path: PathBuf, detail: String },
}

fn describe_end(next_position: u64) -> String {
    match next_position.checked_sub(1) {
        Some(last) => format!("ends at position {last}"),
        None => "is empty".to_string(),
    }
}

fn describe_newest(newest: &Option<SegmentId>) -> String {
    match newest {
        Some(id) => format!("newest segment file {id}.seg"),
        None => "no segment file is left".to_string(),
    }
}

fn position_suffix(position: &Option<Position>) -> String {
    match position {
        Some(p) => format!(" (position {p})"),
        None => String::new(),
    }
}

fn describe_actual(actual: &Option<StreamVersion>) -> String {
    match actual {
        Some(v) => format!("at version {v}"),
        None => "absent".to_string(),
    }
}

/// Which check found the damage, with what it expected and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    SegmentHeader(Box<HeaderDamage>),
    /// The CRC stored in a record differs from the one computed over its bytes.
    RecordCrc {
        stored: u32,
        computed: u32,
    },
    RecordFrame(String),
    RecordBody(String),
    PositionGap {
        expected: Position,
        found: Position,
    },
    /// A stream's versions do not continue.
    VersionGap(Box<VersionGap>),
    /// The chain hash stored in a record differs from the one recomputed from its predecessor.
    ChainMismatch {
        stored: Box<ChainHash>,
        computed: Box<ChainHash>,
    },
    Footer(String),
    /// A segment does not continue the log before it: it starts at `first_position` after
    /// `prev_hash`, where the log before it ends before `log_next` with `log_hash`.
    SegmentGap {
        first_position: Position,
        prev_hash: Box<ChainHash>,
        log_next: Position,
        log_hash: Box<ChainHash>,
    },
    /// Damage below the durable watermark: these bytes had been acknowledged.
    BelowWatermark {
        watermark: u64,
        detail: String,
    },
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::SegmentHeader(d) => write!(f, "bad segment header: {d}"),
            CorruptionKind::RecordCrc { stored, computed } => {
                write!(f, "record CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            CorruptionKind::RecordFrame(d) => write!(f, "bad record frame: {d}"),
            CorruptionKind::RecordBody(d) => write!(f, "bad record body: {d}"),
            CorruptionKind::PositionGap { expected, found } => {
                write!(f, "position gap: expected position {expected}, found {found}")
            }
            CorruptionKind::VersionGap(gap) => write!(f, "version gap: {gap}"),
            CorruptionKind::ChainMismatch { stored, computed } => {
                write!(f, "chain hash mismatch (stored {stored}, computed {computed})")
            }
            CorruptionKind::Footer(d) => write!(f, "bad segment footer: {d}"),
            CorruptionKind::SegmentGap { first_position, prev_hash, log_next, log_hash } => write!(
                f,
                "segments do not join: the segment starts at position {first_position} after hash {prev_hash}, \
                 the log before it ends before position {log_next} with hash {log_hash}"
            ),
            CorruptionKind::BelowWatermark { watermark, detail } => {
                write!(f, "{detail}, below the durable watermark {watermark} (acknowledged bytes are damaged)")
            }
        }
    }
}

/// A stream's versions that do not continue, for [`CorruptionKind::VersionGap`]: `version`
/// comes after `after`, the stream's last version before it (`None`: the stream had no event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionGap {
    pub stream: String,
    pub version: u64,
    pub after: Option<u64>,
}

impl fmt::Display for VersionGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let VersionGap { stream, version, after } = self;
        match after {
            Some(after) => write!(f, "stream {stream} has version {version} after version {after}"),
            None => write!(f, "stream {stream} has version {version} as its first event"),
        }
    }
}

/// What is wrong with a segment header, for [`CorruptionKind::SegmentHeader`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderDamage {
    /// The file is shorter than a header.
    Short { len: usize },
    /// The file does not start with the segment magic.
    Magic,
    /// The CRC stored in the header differs from the one computed over it.
    Crc { stored: u32, computed: u32 },
    /// A format version this build does not read.
    Version { found: u32, supported: u32 },
    /// The file's size is outside the segment sizes a log accepts.
    FileSize { len: u64, min: u64, max: u64 },
    /// The header names another segment or capacity than the file's name and size.
    Mismatch { id: SegmentId, capacity: u64, file_id: SegmentId, file_len: u64 },
    /// The header's previous-segment hash is not the chain hash before its first record.
    PrevHash { stored: Box<ChainHash>, chain: Box<ChainHash> },
}

impl fmt::Display for HeaderDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderDamage::Short { len } => write!(f, "file shorter than a header ({len} bytes)"),
            HeaderDamage::Magic => f.write_str("bad magic (not a cairn segment)"),
            HeaderDamage::Crc { stored, computed } => {
                write!(f, "header CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            HeaderDamage::Version { found, supported } => {
                write!(f, "format version {found}; this build reads version {supported}")
            }
            HeaderDamage::FileSize { len, min, max } => {
                write!(f, "file is {len} bytes, outside the segment sizes {min} to {max}")
            }
            HeaderDamage::Mismatch { id, capacity, file_id, file_len } => {
                write!(f, "header says segment {id} of {capacity} bytes; the file is {file_id} of {file_len} bytes")
            }
            HeaderDamage::PrevHash { stored, chain } => {
                write!(f, "its previous-segment hash {stored} is not the chain hash before its first record ({chain})")
            }
        }
    }
}

/// Why an append that reuses an event id is refused, for [`Error::IdConflict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdConflictReason {
    /// The stored event with that id has different content.
    DifferentContent,
    /// The append is not an exact retry of the one that wrote the id: it mixes new and
    /// already-written ids, or holds them in another order or grouping.
    NotARetry,
}

impl fmt::Display for IdConflictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdConflictReason::DifferentContent => " with different content",
            IdConflictReason::NotARetry => {
                ", and this append is not an exact retry of the append that wrote it (it mixes new and \
                 already-written ids, or orders them differently)"
            }
        })
    }
}

/// A named limit, for [`Error::LimitExceeded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitKind {
    EventSize,
    BatchEvents,
    BatchStreams,
    BatchBytes,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::EventSize => "the event size (EVENT_SIZE_MAX) in bytes",
            LimitKind::BatchEvents => "the number of events in one append (BATCH_EVENTS_MAX)",
            LimitKind::BatchStreams => "the number of streams in one append (BATCH_STREAMS_MAX)",
            LimitKind::BatchBytes => "the size of one append (BATCH_BYTES_MAX) in bytes",
        })
    }
}

/// errno values that name a resource, not a fault: they get their own variants.
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

impl Error {
    /// An I/O error of `op` on `path`; a full disk and exhausted file descriptors get their own
    /// variants ([`Error::NoSpace`], [`Error::TooManyOpenFiles`]) so callers can tell them apart.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        match source.raw_os_error() {
            Some(ENOSPC | EDQUOT) => Error::NoSpace { op, path, source },
            Some(EMFILE | ENFILE) => Error::TooManyOpenFiles { op, path, source },
            _ => Error::Io { op, path, source },
        }
    }

    /// True for an error that leaves the log as it was and may pass once a resource (disk space,
    /// file descriptors) is available again.
    pub fn is_resource_exhaustion(&self) -> bool {
        matches!(self, Error::NoSpace { .. } | Error::TooManyOpenFiles { .. })
    }

    /// True for damage found by a check (as opposed to I/O failure or bad input).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. }
                | Error::TornTail { .. }
                | Error::MissingSegment { .. }
                | Error::MissingSegments { .. }
                | Error::BadSideFile { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// Typed corruption details are boxed where large: every `Result` of the crate (and of its
// callers, which wrap `Error`) carries an `Error`, and a larger one costs every return.
const _: () = assert!(std::mem::size_of::<CorruptionKind>() <= 40);
const _: () = assert!(std::mem::size_of::<Error>() <= 72);
