//! The crate's one error type for reads and writes through the views.
//!
//! Every variant but [`Error::Log`] has a stable snake_case [`Error::code`] (the HTTP contract's `"error"` field:
//! `key_not_found`, `wrong_type`, `not_an_integer`, `wrong_expected_version`,
//! `incompatible_schema`, ...) and an [`ErrorKind`] that tells a server which status fits.
//! Messages are sentences naming what failed and where. Errors of applying one event belong to
//! the runner ([`crate::ApplyError`], recorded with their position), not here.

use log_engine::{ExpectedVersion, Position, StreamVersion};

/// What failed, for a status code: not found, conflict, bad input, unavailable, or internal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The thing asked for does not exist (HTTP 404).
    NotFound,
    /// The request is valid but the state does not allow it now (HTTP 409).
    Conflict,
    /// The request itself is wrong (HTTP 400; 413 for [`Error::TooLarge`]).
    Invalid,
    /// The views or the log cannot answer now: timeout, stopped runner, poisoned log (HTTP 503).
    Unavailable,
    /// Damage or an unexpected failure underneath (HTTP 500).
    Internal,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("key {key:?} not found")]
    KeyNotFound { key: String },

    /// A read at a version the key's stream does not have (`last`: its newest, if any).
    #[error("key {key:?} has no version {version} ({})", .last.map_or("it was never written".to_string(), |l| format!("its newest is {l}")))]
    KeyVersionNotFound { key: String, version: u64, last: Option<u64> },

    #[error("key {key:?} holds a {actual}, but {op} needs a {expected}")]
    WrongType { key: String, op: &'static str, expected: &'static str, actual: &'static str },

    #[error("the value of key {key:?} is not an integer")]
    NotAnInteger { key: String },

    #[error("incrementing key {key:?} by {delta} would overflow a 64-bit signed integer")]
    IntegerOverflow { key: String, delta: i64 },

    /// An expected stream version did not match (a compare-and-set lost, or a raw append).
    #[error("wrong expected version for stream {stream}: expected {expected}, the stream is {}", describe_version(.actual))]
    WrongExpectedVersion { stream: String, expected: ExpectedVersion, actual: Option<StreamVersion> },

    /// A watched key of a transaction moved: `expected` and `actual` are key versions, `None`
    /// meaning "does not exist".
    #[error("watched key {key:?} changed: expected {}, it is {}", describe_watch(.expected), describe_watch(.actual))]
    WatchedKeyChanged { key: String, expected: Option<StreamVersion>, actual: Option<StreamVersion> },

    #[error("schema for subject {subject:?} is incompatible with version {against} under compatibility mode {mode}: {}", .reasons.join("; "))]
    IncompatibleSchema { subject: String, mode: &'static str, against: u32, reasons: Vec<String> },

    #[error("schema for subject {subject:?} is not a valid JSON Schema: {message}")]
    InvalidSchema { subject: String, message: String },

    #[error("schema subject {subject:?} not found")]
    SubjectNotFound { subject: String },

    #[error("schema subject {subject:?} has no version {version}")]
    SchemaVersionNotFound { subject: String, version: u32 },

    #[error("configuration key {key:?} in scope {scope:?} not found")]
    ConfigNotFound { scope: String, key: String },

    #[error("service {service:?} has no registered instance {instance:?}")]
    InstanceNotFound { service: String, instance: String },

    #[error("no {kind} relation from {from:?} to {to:?}")]
    RelationNotFound { from: String, to: String, kind: String },

    #[error("audit entry {id} not found")]
    AuditEntryNotFound { id: String },

    #[error("invalid input: {what}")]
    Invalid { what: String },

    /// JSON that cairn could not read back as written (see [`crate::check_json`]).
    #[error("{what} cannot be stored: {reason}")]
    InvalidJson { what: String, reason: String },

    /// A stored value that no longer parses (only a checkpoint written before values were
    /// checked can hold one).
    #[error("the stored value of key {key:?} cannot be read: {reason}")]
    UnreadableValue { key: String, reason: String },

    #[error("{what} is {actual}, above the limit of {max}")]
    TooLarge { what: &'static str, max: usize, actual: usize },

    #[error("the views did not reach position {position} within {waited_ms} ms (they have applied through {})", describe_position(.applied))]
    Timeout { position: Position, applied: Option<Position>, waited_ms: u64 },

    #[error("the projection runner has stopped: {reason}")]
    Stopped { reason: String },

    #[error("gave up writing to {stream} after {attempts} attempts: other writers kept changing it")]
    Contention { stream: String, attempts: u32 },

    #[error(transparent)]
    Log(#[from] log_engine::Error),
}

fn describe_version(v: &Option<StreamVersion>) -> String {
    match v {
        Some(v) => format!("at version {v}"),
        None => "absent".to_string(),
    }
}

fn describe_watch(v: &Option<StreamVersion>) -> String {
    match v {
        Some(v) => format!("version {v}"),
        None => "no key".to_string(),
    }
}

fn describe_position(p: &Option<Position>) -> String {
    match p {
        Some(p) => format!("position {p}"),
        None => "nothing yet".to_string(),
    }
}

impl Error {
    /// The stable snake_case code for clients (the HTTP contract's `"error"` field). `None` for
    /// [`Error::Log`]: a log error keeps the log's own classification, which the server maps.
    pub fn code(&self) -> Option<&'static str> {
        Some(match self {
            Error::KeyNotFound { .. } => "key_not_found",
            Error::KeyVersionNotFound { .. } => "version_not_found",
            Error::WrongType { .. } => "wrong_type",
            Error::NotAnInteger { .. } => "not_an_integer",
            Error::IntegerOverflow { .. } => "integer_overflow",
            Error::WrongExpectedVersion { .. } | Error::WatchedKeyChanged { .. } => "wrong_expected_version",
            Error::IncompatibleSchema { .. } => "incompatible_schema",
            Error::InvalidSchema { .. } => "invalid_schema",
            Error::SubjectNotFound { .. } => "subject_not_found",
            Error::SchemaVersionNotFound { .. } => "version_not_found",
            Error::ConfigNotFound { .. } => "config_not_found",
            Error::InstanceNotFound { .. } => "instance_not_found",
            Error::RelationNotFound { .. } => "relation_not_found",
            Error::AuditEntryNotFound { .. } => "entry_not_found",
            Error::Invalid { .. } => "invalid_input",
            Error::InvalidJson { .. } => "invalid_json",
            Error::UnreadableValue { .. } => "internal",
            Error::TooLarge { .. } => "too_large",
            Error::Timeout { .. } => "timeout",
            Error::Stopped { .. } => "unavailable",
            Error::Contention { .. } => "contention",
            Error::Log(_) => return None,
        })
    }

    /// Which family of failure this is (for choosing a status code). `None` for [`Error::Log`],
    /// as for [`Error::code`].
    pub fn kind(&self) -> Option<ErrorKind> {
        Some(match self {
            Error::KeyNotFound { .. }
            | Error::KeyVersionNotFound { .. }
            | Error::SubjectNotFound { .. }
            | Error::SchemaVersionNotFound { .. }
            | Error::ConfigNotFound { .. }
            | Error::InstanceNotFound { .. }
            | Error::RelationNotFound { .. }
            | Error::AuditEntryNotFound { .. } => ErrorKind::NotFound,
            Error::WrongExpectedVersion { .. }
            | Error::WatchedKeyChanged { .. }
            | Error::IncompatibleSchema { .. }
            | Error::Contention { .. } => ErrorKind::Conflict,
            Error::WrongType { .. }
            | Error::NotAnInteger { .. }
            | Error::IntegerOverflow { .. }
            | Error::InvalidSchema { .. }
            | Error::Invalid { .. }
            | Error::InvalidJson { .. }
            | Error::TooLarge { .. } => ErrorKind::Invalid,
            Error::UnreadableValue { .. } => ErrorKind::Internal,
            Error::Timeout { .. } | Error::Stopped { .. } => ErrorKind::Unavailable,
            Error::Log(_) => return None,
        })
    }

    /// The key-value key a conflict or type error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::KeyNotFound { key }
            | Error::KeyVersionNotFound { key, .. }
            | Error::WrongType { key, .. }
            | Error::NotAnInteger { key }
            | Error::IntegerOverflow { key, .. }
            | Error::WatchedKeyChanged { key, .. } => Some(key),
            Error::WrongExpectedVersion { stream, .. } => stream.strip_prefix(crate::streams::KV_STREAM_PREFIX),
            _ => None,
        }
    }

    /// Checks a value a facade is about to write (see [`crate::check_value`]).
    pub(crate) fn check_value(what: impl FnOnce() -> String, value: &serde_json::Value) -> Result<()> {
        crate::json::check_value(value).map_err(|e| Error::InvalidJson { what: what(), reason: e.0 })
    }

    pub(crate) fn invalid(what: impl Into<String>) -> Error {
        Error::Invalid { what: what.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
