//! Stream lifecycle: soft delete, tombstone, close, stream metadata (retention), fork and
//! erasure.
//!
//! Every lifecycle change is an ordinary event on the reserved stream [`LIFECYCLE_STREAM`],
//! written by the one writer like any append, so it is durable, chained, replicated, restored
//! and replayed with the log; nothing about it lives beside the log. The index folds these
//! events into each stream's [`Life`] (at open from the `$lifecycle` stream's events, found
//! through the index, and at every commit from what the writer staged), and reads apply it.
//!
//! This module owns the vocabulary (the public types, the events' types and JSON data, and
//! the check of user-supplied metadata). It does not enforce anything: the writer refuses
//! appends and changes at staging time (`writer/life.rs`), and reads apply the state
//! (`log.rs`). Global-log reads hide no event (the log is the history), but an erased event's
//! payload is masked on every read, global ones and subscriptions included: an erasure exists
//! so that the payload is served nowhere.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{ChainHash, Position, StreamVersion};
use crate::types::StreamName;

/// The reserved stream that holds every lifecycle event. Only the log writes it.
pub const LIFECYCLE_STREAM: &str = "$lifecycle";

/// Largest metadata of a lifecycle change's event, in bytes of JSON: room for who asked and
/// why, far inside [`crate::EVENT_SIZE_MAX`] with the change's own data.
pub const LIFECYCLE_METADATA_MAX: usize = 64 * 1024;

/// Event type of a soft delete: `{"stream", "before_version"}`.
pub const EVENT_STREAM_DELETED: &str = "stream-deleted";
/// Event type of a tombstone: `{"stream", "before_version"}`.
pub const EVENT_STREAM_TOMBSTONED: &str = "stream-tombstoned";
/// Event type of a close: `{"stream"}`.
pub const EVENT_STREAM_CLOSED: &str = "stream-closed";
/// Event type of a metadata change: `{"stream", "metadata": StreamMetadata}`.
pub const EVENT_STREAM_METADATA: &str = "stream-metadata";
/// Event type of a fork: `{"stream": to, "source", "at_version"}`.
pub const EVENT_STREAM_FORKED: &str = "stream-forked";
/// Event type of an erasure: `{"stream", "from_version", "to_version", "reason"}`.
pub const EVENT_STREAM_ERASED: &str = "stream-erased";

/// Longest reason an erasure may give, in UTF-8 bytes: a sentence or a ticket reference, kept
/// in the log for good with the erasure.
pub const ERASE_REASON_LEN_MAX: usize = 1024;

/// How [`crate::Log::delete_stream`] deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeleteMode {
    /// The stream's events disappear from stream reads until it is written again; a later
    /// append continues its versions, and reads then show only the events after the delete.
    #[default]
    Soft,
    /// Permanent: the stream reads as tombstoned and takes no more appends or changes.
    Tombstone,
}

/// A stream's retention and state settings. Every limit is optional (absent: no limit) and is
/// applied to reads at once, measured on the log's own clock: the timestamp of the newest
/// event in the log, never the reading process's clock, so replay, restore and point-in-time
/// recovery reproduce it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamMetadata {
    /// Events older than this (by the log's clock) are not readable.
    pub max_age_ms: Option<u64>,
    /// Only the newest this many events are readable.
    pub max_count: Option<u64>,
    /// Versions before this one are not readable (beyond the end: none is).
    pub truncate_before: Option<u64>,
    /// Sliding expiry: after this long without an append (by the log's clock) the stream reads
    /// as deleted until it is written again.
    pub ttl_ms: Option<u64>,
    /// Closed: no more appends. Closing is permanent; `false` on a closed stream changes nothing.
    pub closed: bool,
}

impl StreamMetadata {
    /// Refuses values that cannot mean anything: a zero count, age or time to live (a count of
    /// zero would hide every event; use `truncate_before` or a delete to say so).
    pub fn check(&self) -> Result<(), Error> {
        for (field, value) in [("max_age_ms", self.max_age_ms), ("max_count", self.max_count), ("ttl_ms", self.ttl_ms)]
        {
            if value == Some(0) {
                return Err(Error::InvalidStreamMetadata { field, reason: "must be at least 1".into() });
            }
        }
        Ok(())
    }
}

/// A stream's lifecycle state, as [`crate::Log::stream_state`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamState {
    pub stream: StreamName,
    /// The stream's last version (versions continue across a soft delete); for a fork without
    /// appends of its own, the version it was forked at.
    pub last_version: Option<StreamVersion>,
    /// Reads start at this version: set by a soft delete, a tombstone or an expired `ttl_ms`.
    /// Beyond `last_version`, the stream reads as deleted.
    pub deleted_before: Option<StreamVersion>,
    pub tombstoned: bool,
    pub closed: bool,
    pub metadata: StreamMetadata,
    /// The stream and version this stream was forked from.
    pub forked_from: Option<(StreamName, StreamVersion)>,
}

/// Where a lifecycle change was written: its event on [`LIFECYCLE_STREAM`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifecycleResult {
    pub position: Position,
    pub hash: ChainHash,
}

/// A lifecycle change, for [`crate::Log::change_stream`] (which can give its event metadata,
/// such as who asked for it); each variant is what one of the single-purpose methods does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamChange {
    Delete {
        stream: String,
        mode: DeleteMode,
    },
    Close {
        stream: String,
    },
    SetMetadata {
        stream: String,
        metadata: StreamMetadata,
    },
    Fork {
        source: String,
        to: String,
        at_version: StreamVersion,
    },
    /// Erases the payloads (data and metadata) of versions `from_version..=to_version` of the
    /// stream (default: its first and last version), for `reason`. A fork's shared prefix
    /// belongs to its source: erasing it through the fork erases it wherever it is read.
    Erase {
        stream: String,
        from_version: Option<StreamVersion>,
        to_version: Option<StreamVersion>,
        reason: String,
    },
}

impl StreamChange {
    /// Checks names and metadata: bad input is refused before anything reaches the writer.
    pub(crate) fn into_op(self) -> Result<LifecycleOp, Error> {
        Ok(match self {
            StreamChange::Delete { stream, mode } => LifecycleOp::Delete { stream: StreamName::new(stream)?, mode },
            StreamChange::Close { stream } => LifecycleOp::Close { stream: StreamName::new(stream)? },
            StreamChange::SetMetadata { stream, metadata } => {
                metadata.check()?;
                LifecycleOp::Metadata { stream: StreamName::new(stream)?, metadata }
            }
            StreamChange::Fork { source, to, at_version } => LifecycleOp::Fork {
                source: StreamName::new(source)?,
                to: StreamName::new(to)?,
                at_version: at_version.0,
            },
            StreamChange::Erase { stream, from_version, to_version, reason } => {
                let stream = StreamName::new(stream)?;
                if reason.trim().is_empty() {
                    return Err(Error::Invalid { what: format!("an erasure of stream {stream} needs a reason") });
                }
                if reason.len() > ERASE_REASON_LEN_MAX || reason.chars().any(char::is_control) {
                    return Err(Error::Invalid {
                        what: format!(
                            "the reason for erasing stream {stream} must be at most {ERASE_REASON_LEN_MAX} bytes \
                             without control characters"
                        ),
                    });
                }
                if let (Some(from), Some(to)) = (from_version, to_version) {
                    if from > to {
                        return Err(Error::Invalid {
                            what: format!(
                                "cannot erase versions {from} to {to} of stream {stream}: from_version is after \
                                 to_version"
                            ),
                        });
                    }
                }
                LifecycleOp::Erase { stream, from: from_version.map(|v| v.0), to: to_version.map(|v| v.0), reason }
            }
        })
    }
}

/// A lifecycle request, as the handle hands it to the writer (names and metadata checked).
#[derive(Debug)]
pub(crate) enum LifecycleOp {
    Delete { stream: StreamName, mode: DeleteMode },
    Close { stream: StreamName },
    Metadata { stream: StreamName, metadata: StreamMetadata },
    Fork { source: StreamName, to: StreamName, at_version: u64 },
    Erase { stream: StreamName, from: Option<u64>, to: Option<u64>, reason: String },
}

/// A lifecycle event's meaning: what the writer stages and the index folds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Deleted {
        stream: String,
        before_version: u64,
    },
    Tombstoned {
        stream: String,
        before_version: u64,
    },
    Closed {
        stream: String,
    },
    Metadata {
        stream: String,
        metadata: StreamMetadata,
    },
    /// `first_version`: the source's first version a stream read could return when the fork
    /// was made (its delete point, `truncate_before`, `max_count`, `max_age_ms`); the fork reads
    /// no shared version below it, so nothing the source had hidden comes back through a fork.
    Forked {
        stream: String,
        source: String,
        at_version: u64,
        first_version: u64,
    },
    /// `shred_through`: on an encrypted log, an erasure of every version the stream had
    /// destroys its secrets numbered up to this one (those its erased records were sealed with),
    /// once the erasure is durable; an open finishes a destruction a crash cut short.
    Erased {
        stream: String,
        from_version: u64,
        to_version: u64,
        reason: String,
        shred_through: Option<u32>,
    },
}

/// The JSON data of a delete or tombstone.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeletedData {
    stream: String,
    before_version: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClosedData {
    stream: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataData {
    stream: String,
    metadata: StreamMetadata,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkedData {
    stream: String,
    source: String,
    at_version: u64,
    /// Absent when 0 (and in forks written before it existed, which read from version 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    first_version: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasedData {
    stream: String,
    from_version: u64,
    to_version: u64,
    reason: String,
    /// Absent when nothing is shredded (and in erasures written before it existed, which
    /// destroyed their keys when they were staged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shred_through: Option<u32>,
}

impl Change {
    /// The stream the change is about (a fork's new stream).
    pub(crate) fn stream(&self) -> &str {
        match self {
            Change::Deleted { stream, .. }
            | Change::Tombstoned { stream, .. }
            | Change::Closed { stream }
            | Change::Metadata { stream, .. }
            | Change::Forked { stream, .. }
            | Change::Erased { stream, .. } => stream,
        }
    }

    pub(crate) fn event_type(&self) -> &'static str {
        match self {
            Change::Deleted { .. } => EVENT_STREAM_DELETED,
            Change::Tombstoned { .. } => EVENT_STREAM_TOMBSTONED,
            Change::Closed { .. } => EVENT_STREAM_CLOSED,
            Change::Metadata { .. } => EVENT_STREAM_METADATA,
            Change::Forked { .. } => EVENT_STREAM_FORKED,
            Change::Erased { .. } => EVENT_STREAM_ERASED,
        }
    }

    /// The event's JSON data (docs/format.md, "Lifecycle events").
    pub(crate) fn data(&self) -> Vec<u8> {
        let json = match self.clone() {
            Change::Deleted { stream, before_version } | Change::Tombstoned { stream, before_version } => {
                serde_json::to_vec(&DeletedData { stream, before_version })
            }
            Change::Closed { stream } => serde_json::to_vec(&ClosedData { stream }),
            Change::Metadata { stream, metadata } => serde_json::to_vec(&MetadataData { stream, metadata }),
            Change::Forked { stream, source, at_version, first_version } => {
                serde_json::to_vec(&ForkedData { stream, source, at_version, first_version })
            }
            Change::Erased { stream, from_version, to_version, reason, shred_through } => {
                serde_json::to_vec(&ErasedData { stream, from_version, to_version, reason, shred_through })
            }
        };
        json.expect("lifecycle data always serializes")
    }

    /// Reads a `$lifecycle` event back. Anything else there is damage: only the log writes it.
    pub(crate) fn parse(event_type: &str, data: &[u8]) -> Result<Change, String> {
        let bad = |e: serde_json::Error| format!("a {event_type} event on {LIFECYCLE_STREAM} has bad data: {e}");
        Ok(match event_type {
            EVENT_STREAM_DELETED | EVENT_STREAM_TOMBSTONED => {
                let DeletedData { stream, before_version } = serde_json::from_slice(data).map_err(bad)?;
                if event_type == EVENT_STREAM_DELETED {
                    Change::Deleted { stream, before_version }
                } else {
                    Change::Tombstoned { stream, before_version }
                }
            }
            EVENT_STREAM_CLOSED => {
                let ClosedData { stream } = serde_json::from_slice(data).map_err(bad)?;
                Change::Closed { stream }
            }
            EVENT_STREAM_METADATA => {
                let MetadataData { stream, metadata } = serde_json::from_slice(data).map_err(bad)?;
                Change::Metadata { stream, metadata }
            }
            EVENT_STREAM_FORKED => {
                let ForkedData { stream, source, at_version, first_version } =
                    serde_json::from_slice(data).map_err(bad)?;
                Change::Forked { stream, source, at_version, first_version }
            }
            EVENT_STREAM_ERASED => {
                let ErasedData { stream, from_version, to_version, reason, shred_through } =
                    serde_json::from_slice(data).map_err(bad)?;
                if from_version > to_version {
                    return Err(format!(
                        "a {event_type} event on {LIFECYCLE_STREAM} erases versions {from_version} to {to_version}"
                    ));
                }
                Change::Erased { stream, from_version, to_version, reason, shred_through }
            }
            other => return Err(format!("an event of unknown type {other:?} on {LIFECYCLE_STREAM}")),
        })
    }
}

/// One stream's lifecycle state in the index (absent: nothing ever happened to it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Life {
    pub deleted_before: Option<u64>,
    pub tombstoned: bool,
    pub closed: bool,
    pub metadata: StreamMetadata,
    pub forked_from: Option<(String, u64)>,
    /// A fork's first readable shared version (`Change::Forked`'s `first_version`; 0 otherwise).
    pub fork_floor: u64,
}

/// What the writer needs to know of a stream to check an append or a change against it, as of
/// everything it has staged (the index overlaid with what is staged or in flight).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamNow {
    pub last: Option<u64>,
    pub tombstoned: bool,
    pub closed: bool,
    pub forked: bool,
    pub deleted_before: Option<u64>,
    pub ttl_ms: Option<u64>,
    /// The metadata's `truncate_before` and `max_count`, which a fork of the stream is clamped
    /// to (with what the index says of `max_age_ms`).
    pub truncate_before: Option<u64>,
    pub max_count: Option<u64>,
    /// A fork's first readable shared version (a fork of a fork is clamped to it too).
    pub fork_floor: u64,
    /// Timestamp of the last event, when it is staged or in flight (else read from the index).
    pub last_timestamp_ms: Option<u64>,
}

impl StreamNow {
    /// The change a request makes, checked against the streams' state now (`now` gives it).
    /// Refusals name the problem and write nothing.
    pub(crate) fn change_for(op: &LifecycleOp, now: impl Fn(&str) -> StreamNow) -> Result<Change, Error> {
        let tombstoned = |stream: &StreamName| Error::StreamTombstoned { stream: stream.to_string() };
        match op {
            LifecycleOp::Delete { stream, mode } => {
                let state = now(stream.as_str());
                if state.tombstoned {
                    return Err(tombstoned(stream));
                }
                let Some(last) = state.last else {
                    return Err(Error::StreamNotFound { stream: stream.to_string() });
                };
                let (stream, before_version) = (stream.to_string(), last + 1);
                Ok(match mode {
                    DeleteMode::Soft => Change::Deleted { stream, before_version },
                    DeleteMode::Tombstone => Change::Tombstoned { stream, before_version },
                })
            }
            LifecycleOp::Close { stream } => {
                if now(stream.as_str()).tombstoned {
                    return Err(tombstoned(stream));
                }
                Ok(Change::Closed { stream: stream.to_string() })
            }
            LifecycleOp::Metadata { stream, metadata } => {
                if now(stream.as_str()).tombstoned {
                    return Err(tombstoned(stream));
                }
                Ok(Change::Metadata { stream: stream.to_string(), metadata: metadata.clone() })
            }
            LifecycleOp::Fork { source, to, at_version } => {
                let from = now(source.as_str());
                if from.tombstoned {
                    return Err(tombstoned(source));
                }
                let Some(last) = from.last else {
                    return Err(Error::StreamNotFound { stream: source.to_string() });
                };
                if *at_version > last {
                    return Err(Error::ForkPastEnd {
                        stream: source.to_string(),
                        at_version: StreamVersion(*at_version),
                        last_version: StreamVersion(last),
                    });
                }
                // A deleted prefix is not readable through the source; a fork must not bring
                // it back.
                if from.deleted_before.is_some_and(|d| *at_version < d) {
                    return Err(Error::StreamDeleted { stream: source.to_string() });
                }
                let target = now(to.as_str());
                if target.tombstoned {
                    return Err(tombstoned(to));
                }
                if target.last.is_some() || target.forked {
                    return Err(Error::StreamExists { stream: to.to_string() });
                }
                // Clamped further by the writer, which knows the source's `max_age_ms` window.
                let mut first_version =
                    from.deleted_before.unwrap_or(0).max(from.truncate_before.unwrap_or(0)).max(from.fork_floor);
                if let Some(count) = from.max_count {
                    first_version = first_version.max((last + 1).saturating_sub(count));
                }
                Ok(Change::Forked {
                    stream: to.to_string(),
                    source: source.to_string(),
                    at_version: *at_version,
                    first_version,
                })
            }
            LifecycleOp::Erase { stream, from, to, reason } => {
                let state = now(stream.as_str());
                if state.tombstoned {
                    return Err(tombstoned(stream));
                }
                let Some(last) = state.last else {
                    return Err(Error::StreamNotFound { stream: stream.to_string() });
                };
                let (from_version, to_version) = (from.unwrap_or(0), to.unwrap_or(last));
                if to_version > last || from_version > to_version {
                    return Err(Error::EraseOutOfRange {
                        stream: stream.to_string(),
                        from_version: StreamVersion(from_version),
                        to_version: StreamVersion(to_version),
                        last_version: StreamVersion(last),
                    });
                }
                Ok(Change::Erased {
                    stream: stream.to_string(),
                    from_version,
                    to_version,
                    reason: reason.clone(),
                    shred_through: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every change's event reads back as the same change: the writer stages what open folds.
    #[test]
    fn changes_round_trip_through_their_events() {
        let metadata = StreamMetadata {
            max_age_ms: Some(5),
            max_count: None,
            truncate_before: Some(3),
            ttl_ms: None,
            closed: true,
        };
        for change in [
            Change::Deleted { stream: "a".into(), before_version: 4 },
            Change::Tombstoned { stream: "a".into(), before_version: 0 },
            Change::Closed { stream: "a".into() },
            Change::Metadata { stream: "a".into(), metadata },
            Change::Forked { stream: "b".into(), source: "a".into(), at_version: 7, first_version: 0 },
            Change::Forked { stream: "b".into(), source: "a".into(), at_version: 7, first_version: 3 },
            Change::Erased {
                stream: "a".into(),
                from_version: 1,
                to_version: 2,
                reason: "GDPR request 7".into(),
                shred_through: None,
            },
            Change::Erased {
                stream: "a".into(),
                from_version: 0,
                to_version: 2,
                reason: "r".into(),
                shred_through: Some(3),
            },
        ] {
            assert_eq!(Change::parse(change.event_type(), &change.data()).unwrap(), change);
        }
        let data = Change::Deleted { stream: "a".into(), before_version: 4 }.data();
        assert_eq!(std::str::from_utf8(&data).unwrap(), r#"{"stream":"a","before_version":4}"#);
        assert!(Change::parse("stream-purged", b"{}").unwrap_err().contains("unknown type"));
        let backwards = br#"{"stream":"a","from_version":3,"to_version":2,"reason":"r"}"#;
        assert!(Change::parse(EVENT_STREAM_ERASED, backwards).is_err());
        assert!(Change::parse(EVENT_STREAM_CLOSED, br#"{"stream":"a","x":1}"#).is_err());
    }

    /// A fork's read checks each record against the stream that owns it: the source's for the
    /// shared prefix, its own after it. An index that misplaces either part is corruption.
    #[test]
    fn a_forks_read_checks_both_parts_against_the_index() {
        use crate::{Direction, Durability, ExpectedVersion, Log, NewEvent, Options};
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), Options { durability: Durability::None, ..Default::default() }).unwrap();
        let one = || vec![NewEvent::bytes("t", b"x".to_vec())];
        for stream in ["source", "source", "other", "other"] {
            log.append(stream, ExpectedVersion::Any, one()).unwrap();
        }
        log.fork_stream("source", "fork", StreamVersion(1)).unwrap();
        log.append("fork", ExpectedVersion::Any, one()).unwrap();
        assert_eq!(log.read_stream("fork", None, 10, Direction::Forward).unwrap().len(), 3);
        let shared = log.shared_arc();
        for forged in ["source", "fork"] {
            let saved = shared.index.read().streams[forged].clone();
            {
                let mut index = shared.index.write();
                let other = index.streams["other"].positions.clone();
                let entry = index.streams.get_mut(forged).unwrap();
                entry.positions = other[..entry.positions.len().min(2)].to_vec();
            }
            match log.read_stream("fork", None, 10, Direction::Forward).unwrap_err() {
                Error::Corrupt { kind: crate::CorruptionKind::Footer(damage), .. } => {
                    let crate::FooterDamage::IndexMismatch(m) = *damage else {
                        panic!("not an index mismatch: {damage}")
                    };
                    assert_eq!((m.stream.as_str(), m.record_stream.as_str()), (forged, "other"), "{m}");
                }
                other => panic!("expected corruption, got {other}"),
            }
            shared.index.write().streams.insert(forged.to_string(), saved);
        }
    }

    /// Bad metadata is refused naming the field; negative values cannot even parse.
    #[test]
    fn metadata_is_checked_field_by_field() {
        assert!(StreamMetadata::default().check().is_ok());
        for field in ["max_age_ms", "max_count", "ttl_ms"] {
            let metadata: StreamMetadata = serde_json::from_str(&format!(r#"{{"{field}": 0}}"#)).unwrap();
            match metadata.check().unwrap_err() {
                Error::InvalidStreamMetadata { field: named, .. } => assert_eq!(named, field),
                other => panic!("{other}"),
            }
            assert!(serde_json::from_str::<StreamMetadata>(&format!(r#"{{"{field}": -1}}"#)).is_err());
        }
        let metadata: StreamMetadata = serde_json::from_str(r#"{"truncate_before": 0}"#).unwrap();
        assert!(metadata.check().is_ok());
        assert!(serde_json::from_str::<StreamMetadata>(r#"{"max_agee_ms": 1}"#).is_err());
    }
}
