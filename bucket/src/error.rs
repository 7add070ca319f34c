//! The crate's one error type: what failed, on which object or file.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text does not name a location (see [`crate::Location::parse`]).
    #[error("{text:?} is not a storage location: {reason}")]
    InvalidLocation { text: String, reason: String },
    /// The object store could not be set up for the location (a bad setting in the
    /// environment, a local directory that cannot be created).
    #[error("cannot use {location}: {detail}")]
    Setup { location: String, detail: String },
    /// The object does not exist.
    #[error("{object} does not exist")]
    NotFound { object: String },
    /// A request to the object store failed after its retries: unreachable, refused, or
    /// answered with an error.
    #[error("could not {op} {object}: {source}")]
    Request {
        op: &'static str,
        object: String,
        #[source]
        source: object_store::Error,
    },
    /// The object is larger than the caller's bound for reading it whole.
    #[error("{object} is {size} bytes, more than the {max} bytes expected of it")]
    TooLarge { object: String, size: u64, max: u64 },
    /// A local file being uploaded or downloaded could not be read or written.
    #[error("could not {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    pub(crate) fn request(op: &'static str, object: String, source: object_store::Error) -> Error {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound { object },
            source => Error::Request { op, object, source },
        }
    }

    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io { op, path: path.to_path_buf(), source }
    }
}
