//! The log's identifiers as newtypes (never bare `u64`s): positions, stream versions, segment
//! ids, chain hashes, and the expected version an append states. They depend on nothing in the
//! crate, so the error type can name them without an import cycle.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A global, gapless log position. The first event is at position 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub u64);

/// A per-stream version. The first event of a stream has version 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamVersion(pub u64);

/// A segment's identity: the position of its first record. Also its file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

/// A BLAKE3 chain hash: `h(p) = BLAKE3(h(p-1) || header(p) || BLAKE3(metadata) || BLAKE3(data))`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash(pub [u8; 32]);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for StreamVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}", self.0)
    }
}

impl ChainHash {
    /// The hash "before" position 0: BLAKE3 of the ASCII bytes `cairn/log/genesis/v1`.
    pub fn genesis() -> ChainHash {
        ChainHash(*blake3::hash(b"cairn/log/genesis/v1").as_bytes())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses 64 hex characters.
    pub fn from_hex(hex: &str) -> Option<ChainHash> {
        blake3::Hash::from_hex(hex).ok().map(|h| ChainHash(*h.as_bytes()))
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

/// What the stream must look like for an append to succeed. Checked atomically by the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExpectedVersion {
    /// No check.
    #[default]
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must have at least one event.
    Exists,
    /// The stream's last version must be exactly this.
    Exact(StreamVersion),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no_stream"),
            ExpectedVersion::Exists => f.write_str("exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}
