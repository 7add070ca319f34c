//! The snapshotter's public vocabulary: digests, checkpoint kinds and descriptions, warnings
//! and progress reports. Plain data; no I/O.

use std::fmt;
use std::path::PathBuf;

use log_engine::{ChainHash, Position};
use serde::{Serialize, Serializer};

use crate::format::{Manifest, KIND_FULL, KIND_INCREMENTAL};

/// A BLAKE3 digest: a checkpoint hash, a content digest or a projection's state digest.
/// Shown (and serialized) as 64 lower-case hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// Whether a checkpoint holds the whole state or the changes since its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// Every entry of every projection; restorable on its own.
    Full,
    /// The upserts and removals since the parent checkpoint.
    Incremental,
}

impl CheckpointKind {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            CheckpointKind::Full => KIND_FULL,
            CheckpointKind::Incremental => KIND_INCREMENTAL,
        }
    }

    /// The kind of a manifest that passed validation (which rejects unknown kind bytes).
    pub(crate) fn of(manifest: &Manifest) -> CheckpointKind {
        match manifest.kind {
            KIND_FULL => CheckpointKind::Full,
            KIND_INCREMENTAL => CheckpointKind::Incremental,
            other => unreachable!("validated manifests have a known kind, not {other}"),
        }
    }
}

impl fmt::Display for CheckpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckpointKind::Full => "full",
            CheckpointKind::Incremental => "incremental",
        })
    }
}

/// One projection as a checkpoint's manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProjectionSummary {
    pub name: String,
    /// State digest at the checkpoint's position.
    pub digest: Digest,
    /// Entries stored in this checkpoint (all of them when full, the changed ones otherwise).
    pub upserts: u64,
    /// Keys removed since the parent (incremental only).
    pub removals: u64,
}

/// A checkpoint's manifest, decoded, with its file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckpointInfo {
    pub sequence: u64,
    pub kind: CheckpointKind,
    /// The last log position the state includes.
    #[serde(serialize_with = "ser_position")]
    pub position: Position,
    /// The log's chain hash at `position`.
    #[serde(serialize_with = "ser_chain_hash")]
    pub log_hash: ChainHash,
    pub parent: Option<u64>,
    pub parent_hash: Digest,
    /// This checkpoint's hash: BLAKE3 of its manifest bytes.
    pub hash: Digest,
    pub created_ms: u64,
    pub projections: Vec<ProjectionSummary>,
    pub content_digest: Digest,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    pub file_bytes: u64,
    pub file: PathBuf,
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's serialize_with passes a reference")]
fn ser_position<S: Serializer>(p: &Position, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(p.0)
}

fn ser_chain_hash<S: Serializer>(h: &ChainHash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&h.to_hex())
}

impl CheckpointInfo {
    pub(crate) fn new(manifest: &Manifest, hash: [u8; 32], file: PathBuf, file_bytes: u64) -> CheckpointInfo {
        CheckpointInfo {
            sequence: manifest.sequence,
            kind: CheckpointKind::of(manifest),
            position: Position(manifest.position),
            log_hash: ChainHash(manifest.log_hash),
            parent: manifest.parent,
            parent_hash: Digest(manifest.parent_hash),
            hash: Digest(hash),
            created_ms: manifest.created_ms,
            projections: manifest
                .projections
                .iter()
                .map(|p| ProjectionSummary {
                    name: p.name.clone(),
                    digest: Digest(p.digest),
                    upserts: p.upserts,
                    removals: p.removals,
                })
                .collect(),
            content_digest: Digest(manifest.content_digest),
            raw_bytes: manifest.raw_len,
            compressed_bytes: manifest.compressed_len,
            file_bytes,
            file,
        }
    }
}

/// A problem found and worked around (a damaged checkpoint skipped, a fallback to full
/// replay). Shown to the operator; never swallowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub sequence: Option<u64>,
    pub file: Option<PathBuf>,
    /// A sentence naming what failed and where.
    pub message: String,
}

impl Warning {
    pub(crate) fn plain(message: impl Into<String>) -> Warning {
        Warning { sequence: None, file: None, message: message.into() }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Which part of a long operation a [`Progress`] report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Loading checkpoint files into views (`done`/`total` in checkpoints).
    LoadCheckpoints,
    /// Applying log events to views (`done`/`total` in events).
    Replay,
    /// Copying segment files (`done`/`total` in bytes).
    CopyLog,
    /// Copying checkpoint files (`done`/`total` in files).
    CopyCheckpoints,
    /// Verifying a log's CRCs and chain (`done`/`total` in events).
    VerifyLog,
    /// Verifying checkpoint files (`done`/`total` in files).
    VerifyCheckpoints,
}

/// Progress of a long operation, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    pub done: u64,
    pub total: u64,
}
