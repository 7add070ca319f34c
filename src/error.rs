//! The command line's error type and its exit code (the contract's exit codes are in
//! [`crate::codes`], which classifies the engine's errors for every surface).
//!
//! Every message is a sentence naming what failed and where (data directory, file, stream,
//! position); none is a `Debug` dump.

use std::path::PathBuf;

pub use crate::codes::Exit;
use crate::wire::InputError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    #[error("{source} (data directory {})", dir.display())]
    Log {
        dir: PathBuf,
        #[source]
        source: log_engine::Error,
    },

    #[error("{0}")]
    Input(#[from] InputError),

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Damage or a mismatch was found; the report has been printed already.
    #[error("{0}")]
    Integrity(String),

    #[error("{0}")]
    NotFound(String),

    #[error("{0}")]
    Server(String),

    /// A running server refused what the command asked of it.
    #[error("{message}")]
    Remote { message: String, exit: Exit },

    #[error("{0}")]
    Serve(#[from] crate::http::ServeError),

    #[error("{0}")]
    Store(#[from] crate::store::StoreError),

    #[error("{0}")]
    Backup(#[from] crate::backup::BackupError),

    /// Standard output was closed by its reader (`cairn read-all | head`): not a failure, the
    /// command stops and exits 0 without a message.
    #[error("standard output was closed")]
    StdoutClosed,
}

impl CliError {
    pub fn log(dir: impl Into<PathBuf>, source: log_engine::Error) -> CliError {
        CliError::Log { dir: dir.into(), source }
    }

    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> CliError {
        CliError::Io { op, path: path.into(), source }
    }

    pub fn exit(&self) -> Exit {
        match self {
            CliError::Log { source, .. } => crate::codes::log(source).exit,
            CliError::Input(_) => Exit::Usage,
            CliError::Integrity(_) => Exit::Integrity,
            CliError::NotFound(_) => Exit::NotFound,
            CliError::Io { .. } | CliError::Server(_) => Exit::Error,
            CliError::Remote { exit, .. } => *exit,
            CliError::Store(e) => e.code().exit,
            CliError::Backup(e) => crate::codes::backup(e).exit,
            CliError::Serve(e) => e.exit(),
            CliError::StdoutClosed => Exit::Ok,
        }
    }
}

impl From<projections::Error> for CliError {
    fn from(e: projections::Error) -> CliError {
        CliError::Store(crate::store::StoreError::Views(e))
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Log damage met by a view command (a `kv history` or `audit proof` reading a damaged
    /// record) exits 3 as the same damage does anywhere else; it exited 1 when the views'
    /// errors were classified apart from the log's.
    #[test]
    fn log_damage_met_through_the_views_is_an_integrity_failure() {
        let torn = log_engine::Error::TornTail { segment: log_engine::SegmentId(2), offset: 4096, bytes: 40 };
        let e = CliError::Store(crate::store::StoreError::Views(projections::Error::Log(torn)));
        assert_eq!(e.exit(), Exit::Integrity);
    }

    #[test]
    fn a_locked_directory_says_what_to_do() {
        let source = log_engine::Error::Locked { dir: "data".into(), lock: "data/LOCK".into() };
        let e = CliError::from(crate::store::StoreError::Open { dir: "data".into(), source });
        let text = e.to_string();
        assert!(text.contains("data directory data"), "{text}");
        assert!(text.contains("HTTP API"), "{text}");
    }
}
