//! The one mapping from the engine's errors to what each surface answers: the HTTP `error`
//! code and status, and the CLI's exit code.
//!
//! Every failure of the log ([`log_engine::Error`]), the views ([`projections::Error`]) and the
//! checkpoints ([`snapshotter::Error`]) is classified here and nowhere else; the HTTP server,
//! the command line and the MCP server read the same [`Code`]. A view or checkpoint error that
//! wraps a log error answers as that log error. This module depends on neither axum nor clap.
//!
//! Exit codes: 0 ok; 1 error; 2 usage (bad arguments or input); 3 integrity failure (damage
//! or a mismatch); 4 wrong expected version; 5 not found; 130 interrupted (Ctrl-C during
//! `restore` or `drill`, which leave nothing partial behind).
//!
//! Statuses: 400 invalid input, 404 not found, 409 conflict, 410 gone for good (a tombstoned
//! stream), 413 too large, 500 damage or an unexpected failure, 503 poisoned, unavailable or
//! overloaded, 507 disk full.

use log_engine::LimitKind;

use crate::limits::{OVERLOADED_RETRY_AFTER_SECS, RETRY_AFTER_FDS_SECS};

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

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(e as u8)
    }
}

/// How one failure answers on every surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// The stable snake_case `error` of an HTTP answer (and of an MCP tool error).
    pub code: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// The command line's exit code.
    pub exit: Exit,
    /// Seconds for a `Retry-After` header: the failure passes by itself shortly.
    pub retry_after: Option<u16>,
}

impl Code {
    const fn new(code: &'static str, status: u16, exit: Exit) -> Code {
        Code { code, status, exit, retry_after: None }
    }

    const INTERNAL: Code = Code::new("internal", 500, Exit::Error);
    const CORRUPTION: Code = Code::new("corruption", 500, Exit::Integrity);
    const INVALID_INPUT: Code = Code::new("invalid_input", 400, Exit::Usage);
    const WRONG_EXPECTED_VERSION: Code = Code::new("wrong_expected_version", 409, Exit::WrongExpectedVersion);
    const UNAVAILABLE: Code = Code::new("unavailable", 503, Exit::Error);
}

/// A checkpoint asked of a log with no events.
pub const EMPTY_LOG: Code = Code::new("empty_log", 409, Exit::Error);

/// A write sent to a read replica (`cairn serve --follow`): 421 Misdirected Request, the answer
/// naming the leader that takes writes.
pub const READ_ONLY_REPLICA: Code = Code::new("read_only_replica", 421, Exit::Error);

/// A replica asked the leader for a segment the leader's log does not hold.
pub const SEGMENT_NOT_FOUND: Code = Code::new("segment_not_found", 404, Exit::NotFound);

/// A scavenge asked for while one runs (`POST /v1/admin/scavenge`; the answer names it).
pub const SCAVENGE_RUNNING: Code = Code::new("scavenge_running", 409, Exit::Error);
/// A key rotation asked of a log without a key.
pub const NOT_ENCRYPTED: Code = Code::new("not_encrypted", 409, Exit::Error);

/// `/readyz`: a view lags the log by more than `READY_VIEW_LAG_MAX` events.
pub const VIEWS_CATCHING_UP: Code = Code::new("views_catching_up", 503, Exit::Error);

/// `/readyz` on a read replica: it has not reached its leader yet, or lags it by more than
/// `READY_REPLICA_LAG_MAX` events.
pub const REPLICA_CATCHING_UP: Code = Code::new("replica_catching_up", 503, Exit::Error);

/// A scavenge job the server does not know (or no longer remembers).
pub const SCAVENGE_NOT_FOUND: Code = Code::new("scavenge_not_found", 404, Exit::NotFound);

/// A failure of the log.
pub fn log(e: &log_engine::Error) -> Code {
    use log_engine::Error as E;
    match e {
        E::WrongExpectedVersion { .. } => Code::WRONG_EXPECTED_VERSION,
        E::IdConflict { .. } => Code::new("id_conflict", 409, Exit::Error),
        E::InvalidStreamName { .. } => Code::new("invalid_stream_name", 400, Exit::Usage),
        E::Invalid { .. } => Code::INVALID_INPUT,
        E::LimitExceeded { limit, .. } => Code::new(
            match limit {
                LimitKind::EventSize => "event_too_large",
                LimitKind::BatchEvents => "too_many_events",
                LimitKind::BatchStreams => "too_many_streams",
                LimitKind::BatchBytes => "request_too_large",
                _ => "limit_exceeded",
            },
            413,
            Exit::Usage,
        ),
        E::StreamNotFound { .. } => Code::new("stream_not_found", 404, Exit::NotFound),
        // The stream lifecycle: a soft-deleted stream reads as gone until it is written again;
        // a tombstoned one is gone for good (410, so a client does not retry as for a 404); a
        // closed one takes no more appends.
        E::StreamDeleted { .. } => Code::new("stream_deleted", 404, Exit::NotFound),
        E::StreamTombstoned { .. } => Code::new("stream_tombstoned", 410, Exit::Error),
        E::StreamClosed { .. } => Code::new("stream_closed", 409, Exit::Error),
        E::StreamShredded { .. } => Code::new("stream_shredded", 409, Exit::Error),
        E::StreamExists { .. } => Code::new("stream_exists", 409, Exit::Error),
        E::ForkPastEnd { .. } => Code::new("fork_past_end", 400, Exit::Usage),
        E::EraseOutOfRange { .. } => Code::new("erase_out_of_range", 400, Exit::Usage),
        E::InvalidStreamMetadata { .. } => Code::new("invalid_stream_metadata", 400, Exit::Usage),
        E::PositionNotFound { .. } => Code::new("position_not_found", 404, Exit::NotFound),
        E::NotAStore { .. } => Code::new("not_a_store", 404, Exit::NotFound),
        E::Poisoned { .. } => Code::new("poisoned", 503, Exit::Error),
        // Nothing was written and the log is not poisoned: the client may retry once an
        // operator frees space (no Retry-After: that takes a person).
        E::NoSpace { .. } => Code::new("insufficient_storage", 507, Exit::Error),
        // The writer's queue is full: a moment later it has room again.
        E::Overloaded { .. } => {
            Code { retry_after: Some(OVERLOADED_RETRY_AFTER_SECS), ..Code::new("overloaded", 503, Exit::Error) }
        }
        E::TooManyOpenFiles { .. } => {
            Code { retry_after: Some(RETRY_AFTER_FDS_SECS), ..Code::new("too_many_open_files", 503, Exit::Error) }
        }
        E::Closed => Code::UNAVAILABLE,
        // An encrypted payload read by a process started without the key.
        E::KeyRequired { .. } | E::AppendNeedsKey { .. } => Code::new("key_required", 403, Exit::Error),
        E::KeyStore { .. } => Code::new("key_store", 500, Exit::Error),
        // An evicted segment (tiering) that cannot be read back now: no archive configured, or
        // the archive unreachable; hot reads go on.
        E::Evicted { .. } => Code::new("segment_evicted", 503, Exit::Error),
        E::ColdUnavailable { .. } => Code::new("archive_unavailable", 503, Exit::Error),
        e if e.is_corruption() => Code::CORRUPTION,
        _ => Code::INTERNAL,
    }
}

/// A failure of a read or write through the views: the view's own code, or the log's.
pub fn views(e: &projections::Error) -> Code {
    use projections::{Error as E, ErrorKind};
    if let E::Log(e) = e {
        return log(e);
    }
    let (Some(code), Some(kind)) = (e.code(), e.kind()) else { return Code::INTERNAL };
    let (status, exit) = match kind {
        ErrorKind::NotFound => (404, Exit::NotFound),
        ErrorKind::Conflict if code == Code::WRONG_EXPECTED_VERSION.code => (409, Exit::WrongExpectedVersion),
        ErrorKind::Conflict => (409, Exit::Error),
        ErrorKind::Invalid if matches!(e, E::TooLarge { .. }) => (413, Exit::Usage),
        ErrorKind::Invalid => (400, Exit::Usage),
        ErrorKind::Unavailable => (503, Exit::Error),
        ErrorKind::Internal => (500, Exit::Error),
    };
    Code::new(code, status, exit)
}

/// A failure of a checkpoint, a restore or a drill: damage and mismatches are integrity
/// failures, as the log's own damage is.
pub fn checkpoint(e: &snapshotter::Error) -> Code {
    use snapshotter::Error as E;
    match e {
        E::Log(e) => log(e),
        E::Corrupt { .. } | E::LogMismatch { .. } | E::BrokenChain { .. } | E::DigestMismatch { .. } => {
            Code::CORRUPTION
        }
        E::Invalid { .. } => Code::INVALID_INPUT,
        E::NoParent { .. } => Code::new("no_parent", 409, Exit::Error),
        // Only a signal (the CLI) or a shutting-down server cancels a copy.
        E::Interrupted => Code { exit: Exit::Interrupted, ..Code::UNAVAILABLE },
        _ => Code::INTERNAL,
    }
}

/// A failure of a backup, or of a restore from one: a backup that cannot be trusted is an
/// integrity failure; an unreachable destination is unavailable (503: the next try may work).
pub fn backup(e: &crate::backup::BackupError) -> Code {
    use crate::backup::BackupError as E;
    match e {
        E::Location(_) => Code::INVALID_INPUT,
        E::Log(e) => log(e),
        E::Snapshotter(e) => checkpoint(e),
        E::NotFound { .. } => Code::new("backup_not_found", 404, Exit::NotFound),
        E::Damaged { .. } => Code::new("backup_damaged", 500, Exit::Integrity),
        E::Store { .. } => Code::new("backup_unreachable", 503, Exit::Error),
        _ => Code::INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_engine::{ExpectedVersion, SegmentId, StreamVersion};

    fn corrupt() -> log_engine::Error {
        log_engine::Error::TornTail { segment: SegmentId(0), offset: 64, bytes: 12 }
    }

    #[test]
    fn log_errors_map_to_the_contract_codes() {
        let wrong = log_engine::Error::WrongExpectedVersion {
            stream: "s".into(),
            expected: ExpectedVersion::NoStream,
            actual: Some(StreamVersion(0)),
        };
        assert_eq!(log(&wrong), Code::new("wrong_expected_version", 409, Exit::WrongExpectedVersion));
        let missing = log_engine::Error::StreamNotFound { stream: "s".into() };
        assert_eq!(log(&missing), Code::new("stream_not_found", 404, Exit::NotFound));
        let bad = log_engine::Error::Invalid { what: "x".into() };
        assert_eq!(log(&bad), Code::new("invalid_input", 400, Exit::Usage));
        assert_eq!(log(&corrupt()), Code::new("corruption", 500, Exit::Integrity));
        assert_eq!(Exit::Integrity as u8, 3);
    }

    /// Issue 16: the stream lifecycle's refusals have the contract's codes and statuses.
    #[test]
    fn lifecycle_errors_map_to_the_contract_codes() {
        let s = || "s".to_string();
        let cases = [
            (log_engine::Error::StreamDeleted { stream: s() }, ("stream_deleted", 404, Exit::NotFound)),
            (log_engine::Error::StreamTombstoned { stream: s() }, ("stream_tombstoned", 410, Exit::Error)),
            (log_engine::Error::StreamClosed { stream: s() }, ("stream_closed", 409, Exit::Error)),
            (log_engine::Error::StreamShredded { stream: s() }, ("stream_shredded", 409, Exit::Error)),
            (log_engine::Error::StreamExists { stream: s() }, ("stream_exists", 409, Exit::Error)),
        ];
        for (e, (code, status, exit)) in cases {
            assert_eq!(log(&e), Code::new(code, status, exit), "{e}");
        }
    }

    /// A wrapped log error answers as the log error itself, whichever layer wraps it.
    #[test]
    fn a_wrapped_log_error_answers_as_the_log_error() {
        assert_eq!(views(&projections::Error::Log(corrupt())), log(&corrupt()));
        assert_eq!(checkpoint(&snapshotter::Error::Log(corrupt())), log(&corrupt()));
        let poisoned = || log_engine::Error::Poisoned { cause: "fsync failed".into() };
        assert_eq!(views(&projections::Error::Log(poisoned())).code, "poisoned");
    }
}
