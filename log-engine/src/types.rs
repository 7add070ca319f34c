//! The log's vocabulary: identifiers as newtypes, the event model, and the named limits.
//!
//! Everything a caller hands to the log is validated here (stream names, event types, sizes)
//! before the writer sees it, so a rejected request never touches the disk.

use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use crate::error::{Error, LimitKind};
pub use crate::ids::{ChainHash, ExpectedVersion, Position, SegmentId, StreamVersion};

/// Longest stream name, in UTF-8 bytes.
pub const STREAM_NAME_LEN_MAX: usize = 256;
/// Longest event type, in UTF-8 bytes.
pub const EVENT_TYPE_LEN_MAX: usize = 256;
/// Largest event: stream name + type + metadata + data, in bytes, before compression.
pub const EVENT_SIZE_MAX: usize = 1024 * 1024;
/// Most events in one append call (across all its streams).
pub const BATCH_EVENTS_MAX: usize = 10_000;
/// Most streams in one atomic multi-stream append.
pub const BATCH_STREAMS_MAX: usize = 1_000;
/// Largest append call, summed over its events' sizes.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Default bound on the bytes of prepared events queued for the writer thread (appends handed
/// over but not yet taken up by it; `Options::writer_queue_bytes`). Beyond it an append fails at
/// once with [`crate::Error::Overloaded`] instead of queueing without limit; an append into an
/// empty queue is always taken, so a largest batch fits.
pub const WRITER_QUEUE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A validated stream name: non-empty UTF-8, at most [`STREAM_NAME_LEN_MAX`] bytes, no control
/// characters, and not starting with `$` (reserved for cairn itself).
///
/// Stream names are data: they never become file names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamName(String);

impl StreamName {
    /// Validates a user-supplied stream name.
    pub fn new(name: impl Into<String>) -> Result<StreamName, Error> {
        let name = name.into();
        if name.starts_with('$') {
            return Err(Error::InvalidStreamName { name, reason: "names starting with '$' are reserved for cairn" });
        }
        StreamName::reserved(name)
    }

    /// Validates a name that may use the reserved `$` prefix. For cairn's own streams.
    pub fn reserved(name: impl Into<String>) -> Result<StreamName, Error> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("a stream name must not be empty")
        } else if name.len() > STREAM_NAME_LEN_MAX {
            Some("a stream name must be at most 256 bytes")
        } else if name.chars().any(char::is_control) {
            Some("a stream name must not contain control characters")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidStreamName { name, reason }),
            None => Ok(StreamName(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for StreamName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// An event's payload: JSON text or opaque bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// UTF-8 JSON text, stored as given.
    Json(Vec<u8>),
    /// Opaque bytes.
    Bytes(Vec<u8>),
}

impl Payload {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Json(b) | Payload::Bytes(b) => b,
        }
    }

    pub fn is_json(&self) -> bool {
        matches!(self, Payload::Json(_))
    }
}

/// An event as the caller hands it to [`crate::Log::append`].
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// Client-supplied id for idempotent retries; generated (v4) when `None`.
    pub id: Option<Uuid>,
    pub event_type: String,
    /// JSON object text. Empty means `{}`.
    pub metadata: Vec<u8>,
    pub data: Payload,
}

impl NewEvent {
    /// An event whose data is the given JSON value.
    pub fn json(event_type: impl Into<String>, data: &serde_json::Value) -> NewEvent {
        NewEvent {
            id: None,
            event_type: event_type.into(),
            metadata: Vec::new(),
            data: Payload::Json(serde_json::to_vec(data).expect("a Value always serializes")),
        }
    }

    /// An event whose data is opaque bytes.
    pub fn bytes(event_type: impl Into<String>, data: Vec<u8>) -> NewEvent {
        NewEvent { id: None, event_type: event_type.into(), metadata: Vec::new(), data: Payload::Bytes(data) }
    }

    pub fn with_id(mut self, id: Uuid) -> NewEvent {
        self.id = Some(id);
        self
    }

    /// Sets the metadata; it must be a JSON object.
    pub fn with_metadata(mut self, metadata: &serde_json::Value) -> NewEvent {
        self.metadata = serde_json::to_vec(metadata).expect("a Value always serializes");
        self
    }

    /// Bytes this event counts against [`EVENT_SIZE_MAX`].
    pub(crate) fn size(&self, stream: &StreamName) -> usize {
        stream.as_str().len() + self.event_type.len() + self.metadata.len() + self.data.as_bytes().len()
    }

    pub(crate) fn validate(&self, stream: &StreamName) -> Result<(), Error> {
        if self.event_type.is_empty() || self.event_type.len() > EVENT_TYPE_LEN_MAX {
            return Err(Error::Invalid {
                what: format!(
                    "event type {:?} in stream {stream}: a type must be 1 to {EVENT_TYPE_LEN_MAX} bytes",
                    truncated(&self.event_type)
                ),
            });
        }
        if self.event_type.chars().any(char::is_control) {
            return Err(Error::Invalid {
                what: format!(
                    "event type {:?} in stream {stream} contains control characters",
                    truncated(&self.event_type)
                ),
            });
        }
        let size = self.size(stream);
        if size > EVENT_SIZE_MAX {
            return Err(Error::LimitExceeded { limit: LimitKind::EventSize, max: EVENT_SIZE_MAX, actual: size });
        }
        if !self.metadata.is_empty() {
            // Valid JSON whose value is an object, checked without building it.
            let object = self.metadata.trim_ascii_start().first() == Some(&b'{');
            match serde_json::from_slice::<serde::de::IgnoredAny>(&self.metadata) {
                Ok(_) if object => {}
                _ => {
                    return Err(Error::Invalid {
                        what: format!(
                            "metadata of a {} event in stream {stream} must be a JSON object",
                            self.event_type
                        ),
                    })
                }
            }
        }
        if let Payload::Json(text) = &self.data {
            if serde_json::from_slice::<serde::de::IgnoredAny>(text).is_err() {
                return Err(Error::Invalid {
                    what: format!("data of a {} event in stream {stream} is not valid JSON", self.event_type),
                });
            }
        }
        Ok(())
    }
}

fn truncated(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The events for one stream in an append call.
#[derive(Clone, Debug)]
pub struct StreamAppend {
    pub stream: StreamName,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// What an append wrote (or, for an idempotent retry, what it had written before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResult {
    pub stream: StreamName,
    pub first_position: Position,
    pub last_position: Position,
    pub first_version: StreamVersion,
    pub last_version: StreamVersion,
    /// Chain hash at `last_position`.
    pub hash: ChainHash,
}

/// A committed event, as read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub position: Position,
    pub stream: String,
    pub version: StreamVersion,
    pub id: Uuid,
    pub event_type: String,
    /// Server time at append, unix milliseconds; non-decreasing in log order.
    pub timestamp_ms: u64,
    /// JSON object text (`{}` when the appender gave none).
    pub metadata: Vec<u8>,
    pub data: Payload,
    /// Chain hash at this position.
    pub hash: ChainHash,
    /// The payload was erased (logically, by a `stream-erased` lifecycle event, or physically,
    /// as a husk left by the scavenger): `metadata` and `data` are empty and the header above
    /// is all that remains readable.
    pub erased: bool,
}

impl Event {
    /// The data parsed as JSON (`None` for a binary payload or invalid text).
    pub fn data_json(&self) -> Option<serde_json::Value> {
        match &self.data {
            Payload::Json(text) => serde_json::from_slice(text).ok(),
            Payload::Bytes(_) => None,
        }
    }

    /// The metadata parsed as a JSON object (`{}` when empty).
    pub fn metadata_json(&self) -> serde_json::Value {
        if self.metadata.is_empty() {
            return serde_json::Value::Object(Default::default());
        }
        serde_json::from_slice(&self.metadata).unwrap_or_else(|_| serde_json::Value::Object(Default::default()))
    }
}

/// A committed event borrowed from the log's mapped bytes, as [`crate::Log::scan`] hands it
/// to its callback: the same fields as [`Event`], without copying the names and the payload
/// out. [`EventRef::to_event`] makes the owned [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub position: Position,
    pub stream: &'a str,
    pub version: StreamVersion,
    pub id: Uuid,
    pub event_type: &'a str,
    pub timestamp_ms: u64,
    /// JSON object text (`{}` when the appender gave none); empty when erased.
    pub metadata: &'a [u8],
    /// The data, as stored; empty when erased.
    pub data: &'a [u8],
    /// Whether `data` is UTF-8 JSON text ([`Payload::Json`]) or opaque bytes.
    pub data_is_json: bool,
    /// Chain hash at this position.
    pub hash: ChainHash,
    /// As [`Event::erased`].
    pub erased: bool,
}

impl EventRef<'_> {
    /// The owned event, as [`crate::Log::for_each`] and every other read return it.
    pub fn to_event(&self) -> Event {
        let data = self.data.to_vec();
        Event {
            position: self.position,
            stream: self.stream.to_string(),
            version: self.version,
            id: self.id,
            event_type: self.event_type.to_string(),
            timestamp_ms: self.timestamp_ms,
            metadata: self.metadata.to_vec(),
            data: if self.data_is_json { Payload::Json(data) } else { Payload::Bytes(data) },
            hash: self.hash,
            erased: self.erased,
        }
    }
}

/// When an acknowledged append is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// fdatasync before every acknowledgement (shared by a group commit). The default and the
    /// only mode in which an acknowledgement means "survives power loss".
    #[default]
    Sync,
    /// Acknowledge after the write; fdatasync at most this often. For benchmarks and tests:
    /// a crash can lose up to one interval of acknowledged events.
    Interval(Duration),
    /// Never fdatasync (the OS writes back when it likes). Tests and benchmarks only.
    None,
}

/// What open does with a damaged newest segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Recovery {
    /// Cut a torn tail (damage above the durable watermark) to the last complete batch, keeping
    /// the cut bytes in `torn/`. Damage below the watermark fails the open. The default.
    #[default]
    TruncateTornTail,
    /// Any damage, torn tail included, fails the open.
    Strict,
    /// Operator repair: also cut the newest segment at corruption below the watermark, keeping
    /// the cut bytes in `torn/`. Acknowledged events after the damage are lost; the open logs
    /// how many bytes were cut. Corruption in a sealed segment still fails the open.
    SalvageNewestSegment,
    /// Operator repair of a lost newest segment: when the log's extent record names a segment
    /// that no longer exists, and the surviving log ends exactly where that segment began, open
    /// continues the log there instead of refusing. The lost segment's events are gone and its
    /// positions are handed out again: nothing left on disk proves they were used, and the
    /// caller must check any other evidence first (the CLI refuses when a checkpoint lies beyond
    /// the surviving log). When more than one segment is missing, open refuses even so. Torn
    /// tails are cut as with [`Recovery::TruncateTornTail`].
    AcceptMissingTail,
}

/// Where a read or subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// One row of [`crate::Log::streams`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    pub stream: String,
    pub last_version: StreamVersion,
    pub events: u64,
}

/// The log's newest committed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub position: Position,
    pub hash: ChainHash,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_is_the_documented_value() {
        // docs/format.md states this value; a change here is a format change.
        assert_eq!(ChainHash::genesis().to_hex(), "2a26968cb27acec89315331ed0499194fa45374bf57222e3d5f4a4cc0d6323aa");
    }
}
