//! The harness's one error type. Messages are sentences naming the system and what failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("{what} at {path} failed: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{system} could not {what}: {detail}")]
    System { system: &'static str, what: &'static str, detail: String },
    #[error("cairn's log engine failed: {0}")]
    Engine(#[from] log_engine::Error),
    #[error("the {system} run of {workload} is wrong: {detail}")]
    Check { system: &'static str, workload: String, detail: String },
    #[error("{path} is not a saved run this harness can read: {detail}")]
    Saved { path: PathBuf, detail: String },
}

impl BenchError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> BenchError {
        BenchError::Io { what, path: path.into(), source }
    }

    /// Wraps a peer's own error, keeping its message (never its `Debug` form).
    pub fn system(system: &'static str, what: &'static str, detail: impl std::fmt::Display) -> BenchError {
        BenchError::System { system, what, detail: detail.to_string() }
    }
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;
