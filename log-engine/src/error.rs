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

    /// An append prepared with an encrypted stream's key that an erasure of the whole stream
    /// destroyed before the append was staged: nothing was written; appending again gets a
    /// new key.
    #[error(
        "stream {stream} was erased while this append was in flight, and its key destroyed: nothing was written; \
         append again (the stream gets a new key)"
    )]
    StreamShredded { stream: String },

    #[error("cannot fork stream {stream} at version {at_version}: its last version is {last_version}")]
    ForkPastEnd { stream: String, at_version: StreamVersion, last_version: StreamVersion },

    /// An erasure of versions the stream does not have.
    #[error(
        "cannot erase versions {from_version} to {to_version} of stream {stream}: its last version is {last_version}"
    )]
    EraseOutOfRange {
        stream: String,
        from_version: StreamVersion,
        to_version: StreamVersion,
        last_version: StreamVersion,
    },

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

    /// An encrypted record read by a log opened without its key.
    #[error(
        "the event at position {position} is encrypted: reading its payload needs the log's key (--key-file, \
         CAIRN_KEY_FILE or CAIRN_KEY); verify and the drill's chain check work without it"
    )]
    KeyRequired { position: Position },

    /// An append to an encrypted log (its newest segment says so) by a writer opened without
    /// its key: the events would be written in the clear.
    #[error(
        "the log in {} is encrypted: appending needs its key (--key-file FILE, CAIRN_KEY_FILE or CAIRN_KEY) and \
         its key store (--key-store FILE when it is not DIR/keys); without them, events would be written in the \
         clear",
        dir.display()
    )]
    AppendNeedsKey { dir: PathBuf },

    /// The key store cannot be read or written, was written with another key, or lacks a key a
    /// record needs.
    #[error("key store {}: {detail}", path.display())]
    KeyStore { path: PathBuf, detail: String },

    /// A read of an evicted segment's events by a log opened without [`crate::Tiering`].
    #[error(
        "segment {segment} is evicted to the archive (its stub is log/{:020}.stub) and this log was opened \
         without the archive to read it from: give the archive (cairn --archive URL, or CAIRN_ARCHIVE), or read \
         through the server that runs with it",
        segment.0
    )]
    Evicted { segment: SegmentId },

    /// An evicted segment could not be fetched back (the cold store unreachable or failing).
    #[error("segment {segment} is evicted and fetching it from {object} failed: {detail}")]
    ColdUnavailable { segment: SegmentId, object: String, detail: String },

    /// A fetched copy of an evicted segment is not the segment its stub describes: it is
    /// refused, never read.
    #[error("segment {segment} is evicted and its archived copy {object} is not the segment evicted ({detail}); it was refused")]
    ColdTampered { segment: SegmentId, object: String, detail: String },
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
    /// A record's frame is not a whole record where one belongs.
    RecordFrame(FrameDamage),
    /// A CRC-valid event record whose body does not decode.
    RecordBody(BodyDamage),
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
    /// A sealed segment's footer (or its trailer or id record) is damaged, or disagrees with
    /// the records it indexes.
    Footer(Box<FooterDamage>),
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
        damage: Box<CorruptionKind>,
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
            CorruptionKind::BelowWatermark { watermark, damage } => {
                write!(f, "{damage}, below the durable watermark {watermark} (acknowledged bytes are damaged)")
            }
        }
    }
}

impl CorruptionKind {
    /// Damage in the footer (boxed: most of its variants name a stream).
    pub(crate) fn footer(damage: FooterDamage) -> CorruptionKind {
        CorruptionKind::Footer(Box::new(damage))
    }
}

/// What is wrong with a record's frame, for [`CorruptionKind::RecordFrame`]. (A CRC mismatch
/// is [`CorruptionKind::RecordCrc`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameDamage {
    /// Zero-filled space where a record was expected.
    Zero,
    /// Fewer bytes remain than the frame claims.
    Truncated,
    /// A record kind this build does not know.
    Kind(u8),
    /// Flag bits (or reserved bytes) this build does not know.
    Flags(u8),
    /// A body length above the bound for its place.
    BodyLength { len: u64, max: u64 },
    /// Zero-filled space with intact data after it: a lost or zeroed sector.
    ZeroBeforeData,
    /// A seal record in a segment without a trailer: a torn seal.
    SealWithoutTrailer,
    /// The last batch stops before its BATCH_END record.
    BatchEndsEarly,
    /// The records the index lists end before the batch's BATCH_END record.
    SegmentEndsInBatch,
    /// A record of `kind` where the index places an event.
    NotAnEvent { kind: u8 },
}

impl fmt::Display for FrameDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameDamage::Zero => f.write_str("zero-filled space"),
            FrameDamage::Truncated => f.write_str("frame runs past the end of the segment"),
            FrameDamage::Kind(k) => write!(f, "unknown record kind {k}"),
            FrameDamage::Flags(x) => write!(f, "unknown flags {x:#04x}"),
            FrameDamage::BodyLength { len, max } => write!(f, "body length {len} out of bounds (at most {max})"),
            FrameDamage::ZeroBeforeData => f.write_str("zero-filled space before later data"),
            FrameDamage::SealWithoutTrailer => f.write_str("seal record without a trailer"),
            FrameDamage::BatchEndsEarly => f.write_str("batch ends early"),
            FrameDamage::SegmentEndsInBatch => f.write_str("the segment ends inside a batch"),
            FrameDamage::NotAnEvent { kind } => write!(f, "kind {kind} where an event was expected"),
        }
    }
}

/// Why a CRC-valid event record's body does not decode, for [`CorruptionKind::RecordBody`].
/// The decoders' own reasons (snappy's, msgpack's) are kept as they said them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyDamage {
    /// The snappy header (the decompressed length) does not decode.
    SnappyHeader { reason: String },
    /// The decompressed length is above the largest event body.
    DecompressedLength { len: usize, max: usize },
    /// The compressed body does not decompress.
    Snappy { reason: String },
    /// The body is not the msgpack array of an event.
    Msgpack { reason: String },
    /// The event id is not 16 bytes.
    IdLength { len: usize },
    /// A husk's metadata or data digest is not 32 bytes.
    DigestLength { len: usize },
    /// An encrypted record that fails authentication with its key: altered, moved from another
    /// position or stream, or sealed with another key.
    Decrypt { generation: u32, secret: u32 },
    /// An encrypted event's clear fields do not parse.
    Cipher { reason: String },
    /// A `$lifecycle` event that does not parse, or does not apply to its stream's state; the
    /// reason names the event and the stream.
    Lifecycle { reason: String },
}

impl fmt::Display for BodyDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyDamage::SnappyHeader { reason } => write!(f, "snappy header: {reason}"),
            BodyDamage::DecompressedLength { len, max } => {
                write!(f, "decompressed length {len} above EVENT_BODY_MAX ({max})")
            }
            BodyDamage::Snappy { reason } => write!(f, "snappy: {reason}"),
            BodyDamage::Msgpack { reason } => write!(f, "msgpack: {reason}"),
            BodyDamage::IdLength { len } => write!(f, "event id has {len} bytes, not 16"),
            BodyDamage::DigestLength { len } => write!(f, "husk payload digest has {len} bytes, not 32"),
            BodyDamage::Lifecycle { reason } => f.write_str(reason),
            BodyDamage::Cipher { reason } => write!(f, "encrypted event: {reason}"),
            BodyDamage::Decrypt { generation, secret } => write!(
                f,
                "does not decrypt with its stream's key (secret {secret}, generation {generation}): the record was \
                 altered, moved from another position or sealed with another key"
            ),
        }
    }
}

/// Which of a sealed segment's two closing records, for [`FooterDamage::Record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealRecord {
    /// The seal record, whose body is the footer.
    Seal,
    /// The id record after it.
    Ids,
}

/// What is wrong with a sealed segment's footer, trailer or id record, or how the footer (or the
/// index built from it) disagrees with the records, for [`CorruptionKind::Footer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FooterDamage {
    /// The trailer points at a footer and id record that do not fit before it.
    TrailerOutside { footer_offset: u64, footer_len: u64, ids_len: u64 },
    /// The seal or id record's frame is damaged (`damage` is a
    /// [`CorruptionKind::RecordFrame`] or [`CorruptionKind::RecordCrc`]).
    Record { record: SealRecord, damage: CorruptionKind },
    /// The trailer points at a record that is not a seal record of its length.
    NotASeal,
    /// The seal record's count or last position is not the footer's, or the trailer's id
    /// record length does not fit the count.
    SealDisagrees,
    /// The id record's header is not the seal record's, or its length is not the trailer's.
    IdsDisagree,
    /// The id record's body does not hold one id per event.
    IdsLength { bytes: usize, events: usize },
    /// The footer body stops before its last field.
    EndsEarly,
    /// The footer claims more records or streams than its bytes can hold.
    Counts { records: u64, streams: usize, bytes: usize },
    /// The footer's positions would run past `u64::MAX`.
    PositionsOverflow { first_position: u64, records: u64 },
    /// A record offset is not above the one before it, or lies outside the records' space.
    RecordOffset { record: usize, offset: u32 },
    /// A stream name is not UTF-8.
    StreamNameUtf8,
    /// A stream is out of name order, or listed twice.
    StreamOrder { stream: String },
    /// A stream claims no events, or more than remain unlisted.
    StreamEvents { stream: String, events: usize },
    /// A stream lists a position outside the segment.
    PositionOutside { stream: String, position: u64 },
    /// A position is listed by two streams (or twice by one).
    PositionTwice { position: u64 },
    /// The stream entries list `listed` events; the segment holds `records`.
    EventCount { listed: u64, records: u64 },
    /// Bytes after the last stream entry.
    TrailingBytes { bytes: usize },
    /// The footer's first position is not the segment's.
    FirstPosition { footer: u64, segment: u64 },
    /// A segment without a valid trailer has a newer segment after it.
    NotSealed,
    /// The index places a record at another offset than the records before it end.
    Offset { index: u64, records: u64 },
    /// The footer puts an event at another position than the record holding it.
    Misplaced { stream: String, version: u64, listed: u64, position: u64 },
    /// The footer lists another id for an event than its record holds.
    OtherId { stream: String, version: u64 },
    /// The footer does not list an event that the segment holds.
    Unlisted { stream: String, version: u64 },
    /// The seal record does not follow the segment's last record, or does not carry its hash.
    SealNotLast,
    /// A segment the index knows as sealed has no valid trailer.
    LostTrailer,
    /// The index (built from footers and recovery) places an event of one stream and version
    /// at a position whose record is another's.
    IndexMismatch(Box<IndexMismatch>),
}

impl fmt::Display for FooterDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FooterDamage::TrailerOutside { footer_offset, footer_len, ids_len } => {
                write!(f, "trailer points at {footer_offset}+{footer_len}+{ids_len}, outside the segment")
            }
            FooterDamage::Record { record: SealRecord::Seal, damage } => write!(f, "seal record: {damage}"),
            FooterDamage::Record { record: SealRecord::Ids, damage } => write!(f, "id record: {damage}"),
            FooterDamage::NotASeal => f.write_str("trailer does not point at a seal record"),
            FooterDamage::SealDisagrees => f.write_str("seal record disagrees with its footer"),
            FooterDamage::IdsDisagree => f.write_str("id record: does not match the seal record"),
            FooterDamage::IdsLength { bytes, events } => {
                write!(f, "id record: id record holds {bytes} bytes for {events} events")
            }
            FooterDamage::EndsEarly => f.write_str("footer ends early"),
            FooterDamage::Counts { records, streams, bytes } => {
                write!(f, "counts ({records} records, {streams} streams) exceed the footer's {bytes} bytes")
            }
            FooterDamage::PositionsOverflow { first_position, records } => {
                write!(f, "{records} records from position {first_position} overflow")
            }
            FooterDamage::RecordOffset { record, offset } => {
                write!(f, "record offset {offset} of record {record} out of order or out of bounds")
            }
            FooterDamage::StreamNameUtf8 => f.write_str("stream name is not UTF-8"),
            FooterDamage::StreamOrder { stream } => write!(f, "stream {stream:?} is out of order or listed twice"),
            FooterDamage::StreamEvents { stream, events } => write!(f, "stream {stream:?} claims {events} events"),
            FooterDamage::PositionOutside { stream, position } => {
                write!(f, "stream {stream:?} lists position {position} outside the segment")
            }
            FooterDamage::PositionTwice { position } => write!(f, "position {position} is listed twice"),
            FooterDamage::EventCount { listed, records } => {
                write!(f, "the footer lists {listed} events, the segment holds {records}")
            }
            FooterDamage::TrailingBytes { bytes } => write!(f, "{bytes} trailing bytes"),
            FooterDamage::FirstPosition { footer, segment } => {
                write!(f, "footer starts at position {footer}, the segment at position {segment}")
            }
            FooterDamage::NotSealed => f.write_str("segment is not sealed, yet a newer segment follows it"),
            FooterDamage::Offset { index, records } => write!(f, "index says offset {index}, records say {records}"),
            FooterDamage::Misplaced { stream, version, listed, position } => {
                write!(f, "the footer puts version {version} of stream {stream} at position {listed}, not {position}")
            }
            FooterDamage::OtherId { stream, version } => {
                write!(f, "the footer lists another id for version {version} of stream {stream}")
            }
            FooterDamage::Unlisted { stream, version } => {
                write!(f, "the footer does not list version {version} of stream {stream}")
            }
            FooterDamage::SealNotLast => f.write_str("seal record does not match the segment's records"),
            FooterDamage::LostTrailer => f.write_str("sealed segment lost its trailer"),
            FooterDamage::IndexMismatch(m) => write!(f, "{m}"),
        }
    }
}

/// An index entry and the record it points at, for [`FooterDamage::IndexMismatch`]: the index
/// puts `version` of `stream` at `position`; the record there is `record_version` of
/// `record_stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexMismatch {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub record_stream: String,
    pub record_version: u64,
}

impl fmt::Display for IndexMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let IndexMismatch { position, stream, version, record_stream, record_version } = self;
        write!(
            f,
            "the index puts version {version} of stream {stream} at position {position}, \
             but the record there is version {record_version} of stream {record_stream}"
        )
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
    /// A format version this build does not read (it reads `oldest..=supported`).
    Version { found: u32, oldest: u32, supported: u32 },
    /// The file's size is outside the segment sizes a log accepts.
    FileSize { len: u64, min: u64, max: u64 },
    /// The header names another segment or capacity than the file's name and size.
    Mismatch { id: SegmentId, capacity: u64, file_id: SegmentId, file_len: u64 },
    /// The header's previous-segment hash is not the chain hash before its first record.
    PrevHash { stored: Box<ChainHash>, chain: Box<ChainHash> },
    /// The header sets a flag this build does not know.
    Flags { flags: u32 },
}

impl fmt::Display for HeaderDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderDamage::Short { len } => write!(f, "file shorter than a header ({len} bytes)"),
            HeaderDamage::Magic => f.write_str("bad magic (not a cairn segment)"),
            HeaderDamage::Crc { stored, computed } => {
                write!(f, "header CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            HeaderDamage::Version { found, oldest, supported } => {
                write!(f, "format version {found}; this build reads versions {oldest} to {supported}")
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
            HeaderDamage::Flags { flags } => write!(f, "header flags {flags:#x} set a flag this build does not know"),
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
                | Error::ColdTampered { .. }
        )
    }

    /// Whether this is an evicted segment that could not be read back (no archive, or the
    /// archive unreachable): no verdict on the log's integrity.
    pub fn is_cold_unavailable(&self) -> bool {
        matches!(self, Error::Evicted { .. } | Error::ColdUnavailable { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// Typed corruption details are boxed where large: every `Result` of the crate (and of its
// callers, which wrap `Error`) carries an `Error`, and a larger one costs every return.
const _: () = assert!(std::mem::size_of::<CorruptionKind>() <= 40);
const _: () = assert!(std::mem::size_of::<Error>() <= 72);
