//! The binary's error type and the contract's exit codes.
//!
//! Exit codes: 0 ok; 1 error; 2 usage (bad arguments or input); 3 integrity failure (verify or
//! drill found damage or a mismatch); 4 wrong expected version; 5 not found; 130 interrupted
//! (Ctrl-C during `restore` or `drill`, which leave nothing partial behind). Every message is a
//! sentence naming what failed and where (data directory, file, stream, position); none is a
//! `Debug` dump.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::wire::InputError;

/// An exit code of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Error = 1,
    Usage = 2,
    Integrity = 3,
    WrongExpectedVersion = 4,
    NotFound = 5,
    /// Stopped by SIGINT or SIGTERM (128 + the signal number of SIGINT, as shells report it).
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    #[error("cannot open the data directory {}: {source}{}", dir.display(), open_hint(.source))]
    Open {
        dir: PathBuf,
        #[source]
        source: log_engine::Error,
    },

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

    #[error("{0}")]
    Store(#[from] crate::store::StoreError),

    /// Standard output was closed by its reader (`cairn read-all | head`): not a failure, the
    /// command stops and exits 0 without a message.
    #[error("standard output was closed")]
    StdoutClosed,
}

fn open_hint(e: &log_engine::Error) -> &'static str {
    match e {
        log_engine::Error::Locked { .. } => {
            "; stop the other cairn process (a running `cairn serve` owns its directory: use its HTTP API instead)"
        }
        log_engine::Error::NotAStore { .. } => {
            ". Check --data (or CAIRN_DATA): only commands that write (append, serve, demo, checkpoint, \
             restore's target) create a data directory"
        }
        _ => "",
    }
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
            CliError::Open { source, .. } | CliError::Log { source, .. } => log_exit(source),
            CliError::Input(_) => Exit::Usage,
            CliError::Integrity(_) => Exit::Integrity,
            CliError::NotFound(_) => Exit::NotFound,
            CliError::Io { .. } | CliError::Server(_) => Exit::Error,
            CliError::Store(e) => e.exit(),
            CliError::StdoutClosed => Exit::Ok,
        }
    }
}

/// The exit code for a log error.
pub fn log_exit(e: &log_engine::Error) -> Exit {
    use log_engine::Error as E;
    match e {
        E::WrongExpectedVersion { .. } => Exit::WrongExpectedVersion,
        E::StreamNotFound { .. } | E::PositionNotFound { .. } | E::NotAStore { .. } => Exit::NotFound,
        e if e.is_corruption() => Exit::Integrity,
        E::InvalidStreamName { .. } | E::Invalid { .. } | E::LimitExceeded { .. } => Exit::Usage,
        _ => Exit::Error,
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;
    use log_engine::{ExpectedVersion, StreamVersion};

    #[test]
    fn log_errors_map_to_the_contract_exit_codes() {
        let wrong = log_engine::Error::WrongExpectedVersion {
            stream: "s".into(),
            expected: ExpectedVersion::NoStream,
            actual: Some(StreamVersion(0)),
        };
        assert_eq!(CliError::log("d", wrong).exit(), Exit::WrongExpectedVersion);
        let missing = log_engine::Error::StreamNotFound { stream: "s".into() };
        assert_eq!(CliError::log("d", missing).exit(), Exit::NotFound);
        let bad = log_engine::Error::Invalid { what: "x".into() };
        assert_eq!(CliError::log("d", bad).exit(), Exit::Usage);
        assert_eq!(CliError::Integrity("x".into()).exit() as u8, 3);
    }

    #[test]
    fn a_locked_directory_says_what_to_do() {
        let e = CliError::Open {
            dir: "data".into(),
            source: log_engine::Error::Locked { dir: "data".into(), lock: "data/LOCK".into() },
        };
        let text = e.to_string();
        assert!(text.contains("data directory data"), "{text}");
        assert!(text.contains("HTTP API"), "{text}");
    }
}
