//! The snapshotter's one error type. Every variant says what failed and where: checkpoint
//! problems name the file, the sequence number and the check that failed; I/O errors name the
//! operation and the path.

use std::io;
use std::path::PathBuf;

use projections::LoadError;

use crate::format::FormatError;
use crate::types::{Digest, Warning};

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

    #[error("checkpoint {sequence} ({}) is damaged: {check}", file.display())]
    Corrupt { file: PathBuf, sequence: u64, check: FormatError },

    #[error("checkpoint {sequence} ({}) does not match the log: {detail}", file.display())]
    LogMismatch { file: PathBuf, sequence: u64, detail: String },

    #[error("checkpoint {sequence} ({}) is not part of a valid chain: {detail}", file.display())]
    BrokenChain { file: PathBuf, sequence: u64, detail: String },

    #[error(
        "checkpoint {sequence} ({}): projection {projection} has digest {found} after loading, the manifest says {expected}",
        file.display()
    )]
    DigestMismatch { file: PathBuf, sequence: u64, projection: String, expected: Digest, found: Digest },

    #[error("checkpoint {sequence} ({}) does not fit the projections being restored: {detail}", file.display())]
    ProjectionSet { file: PathBuf, sequence: u64, detail: String },

    #[error("checkpoint {sequence} ({}) could not be applied: {source}", file.display())]
    Load {
        file: PathBuf,
        sequence: u64,
        #[source]
        source: LoadError,
    },

    #[error("cannot write checkpoint {sequence}: {check}")]
    Encode { sequence: u64, check: FormatError },

    #[error("projection {projection} broke the Projection contract: {detail}")]
    Projection { projection: String, detail: String },

    #[error("cannot take an incremental checkpoint: {reason}")]
    NoParent { reason: String },

    #[error("restore target {} is not empty; pass force to overwrite it", dir.display())]
    TargetNotEmpty { dir: PathBuf },

    #[error("restore target {} is in use by another process (its lock file is held)", dir.display())]
    TargetLocked { dir: PathBuf },

    #[error("restore target {} is not a cairn data directory ({reason}); force replaces only a data directory, so nothing was changed", dir.display())]
    TargetNotDataDir { dir: PathBuf, reason: String },

    #[error(
        "the copy was interrupted before it was complete; the partial copy was removed and the target left as it was"
    )]
    Interrupted,

    #[error("invalid input: {what}")]
    Invalid { what: String },

    #[error("log: {0}")]
    Log(#[from] log_engine::Error),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }

    /// The checkpoint this error is about, if any.
    pub fn sequence(&self) -> Option<u64> {
        match self {
            Error::Corrupt { sequence, .. }
            | Error::LogMismatch { sequence, .. }
            | Error::BrokenChain { sequence, .. }
            | Error::DigestMismatch { sequence, .. }
            | Error::ProjectionSet { sequence, .. }
            | Error::Load { sequence, .. }
            | Error::Encode { sequence, .. } => Some(*sequence),
            _ => None,
        }
    }

    /// The checkpoint file this error is about, if any.
    pub fn file(&self) -> Option<&PathBuf> {
        match self {
            Error::Corrupt { file, .. }
            | Error::LogMismatch { file, .. }
            | Error::BrokenChain { file, .. }
            | Error::DigestMismatch { file, .. }
            | Error::ProjectionSet { file, .. }
            | Error::Load { file, .. } => Some(file),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller that works around this error tells the operator (a skipped checkpoint).
impl From<&Error> for Warning {
    fn from(e: &Error) -> Warning {
        Warning { sequence: e.sequence(), file: e.file().cloned(), message: e.to_string() }
    }
}
