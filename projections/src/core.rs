//! The write path the view facades share ([`Core`]): the log, the runner that applies it to
//! the views, and the striped write locks.
//!
//! Writes that depend on the current state (increment, pop, register a schema version, ...)
//! lock the streams they touch (striped locks, so writers of different keys do not wait for
//! each other), wait until the views have applied every event of those streams, plan against
//! the views, and append with the expected versions they read. A writer outside this process
//! that races them makes the append fail on its expected version, and the write is planned
//! again. So what a write answers is what the view will hold.
//!
//! It sits below the views: `kv`, `audit` and `meta` build on it, and it names none of them
//! (a write names its view by type, `Core::write::<P>`).
//!
//! A `Core` may write for a principal ([`Core::as_principal`]): every event it appends then
//! carries the principal's name under [`PRINCIPAL_KEY`] in its metadata. The copies share the
//! log, the runner and the write locks.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log_engine::{AppendResult, Direction, ExpectedVersion, Log, NewEvent, StreamAppend, StreamName, StreamVersion};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::projection::Projection;
use crate::runner::Runner;

/// How long a state-dependent write waits for the views to catch up with its streams.
pub const WRITE_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a state-dependent write is planned again after losing a race to another writer.
pub const WRITE_ATTEMPTS_MAX: u32 = 16;
/// Lock stripes for state-dependent writes.
const WRITE_LOCK_STRIPES: usize = 64;
/// The reserved metadata key naming who appended an event. Only a server that authenticated
/// the writer sets it (cairn serve refuses a client's own).
pub const PRINCIPAL_KEY: &str = "$principal";

/// The wall clock in unix milliseconds: the `now_ms` to pass to reads.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the facades share: the log, the runner, and the write locks; and who writes.
pub(crate) struct Core {
    pub(crate) log: Log,
    pub(crate) runner: Arc<Runner>,
    stripes: Arc<[Mutex<()>]>,
    hasher: std::hash::RandomState,
    /// Stamped into every event this core appends, under [`PRINCIPAL_KEY`].
    principal: Option<Arc<str>>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core").field("runner", &self.runner).finish()
    }
}

/// A planned write: the answer, and the events to append per stream (empty: nothing to write).
pub(crate) struct Planned<T> {
    pub output: T,
    pub appends: Vec<(String, Vec<NewEvent>)>,
}

impl<T> Planned<T> {
    pub(crate) fn nothing(output: T) -> Planned<T> {
        Planned { output, appends: Vec::new() }
    }
}

impl Core {
    pub(crate) fn new(log: Log, runner: Runner) -> Core {
        let stripes = (0..WRITE_LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        Core { log, runner: Arc::new(runner), stripes, hasher: std::hash::RandomState::new(), principal: None }
    }

    /// This core, writing for `principal`: the same log, runner and write locks (the hasher is
    /// cloned with its keys, so a stream maps to the same stripe).
    pub(crate) fn as_principal(&self, principal: &str) -> Core {
        Core {
            log: self.log.clone(),
            runner: self.runner.clone(),
            stripes: self.stripes.clone(),
            hasher: self.hasher.clone(),
            principal: Some(principal.into()),
        }
    }

    /// Checks that the views can read `events` back, and stamps them with the principal.
    fn prepare(&self, events: &mut [NewEvent]) -> Result<()> {
        check_events(events)?;
        if let Some(principal) = &self.principal {
            for event in events {
                event.metadata = with_principal(&event.metadata, principal);
            }
        }
        Ok(())
    }

    /// Runs `f` on the view of type `P` under the runner's read lock.
    pub(crate) fn read<P: Projection, R>(&self, f: impl FnOnce(&P) -> R) -> R {
        self.runner.read_view::<P, R>(f).expect("Views::start checked that every view is present")
    }

    /// Appends without planning (the write does not depend on state).
    pub(crate) fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let stream = stream_name(stream)?;
        self.prepare(&mut events)?;
        let appended = self.log.append_multi(vec![StreamAppend { stream, expected, events }]).map_err(from_log)?;
        Ok(appended.into_iter().next().expect("one result per stream"))
    }

    /// Appends to several streams atomically, without planning.
    pub(crate) fn append_multi(&self, appends: Vec<(String, Vec<NewEvent>)>) -> Result<Vec<AppendResult>> {
        let appends = appends
            .into_iter()
            .map(|(s, mut events)| {
                self.prepare(&mut events)?;
                Ok(StreamAppend { stream: stream_name(&s)?, expected: ExpectedVersion::Any, events })
            })
            .collect::<Result<Vec<_>>>()?;
        self.log.append_multi(appends).map_err(from_log)
    }

    /// A write that depends on the state of `streams` (see the module docs). `plan` sees the
    /// view and each stream's current version (in the order of `streams`), and may append only
    /// to those streams.
    pub(crate) fn write<P: Projection, T>(
        &self,
        streams: &[String],
        mut plan: impl FnMut(&P, &[Option<StreamVersion>]) -> Result<Planned<T>>,
    ) -> Result<(T, Vec<AppendResult>)> {
        let names = streams.iter().map(|s| stream_name(s)).collect::<Result<Vec<_>>>()?;
        let mut stripes: Vec<usize> = streams.iter().map(|s| self.stripe(s)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        // Always in ascending order, so two writers never wait for each other's stripes.
        let _guards: Vec<_> = stripes.iter().map(|&i| self.stripes[i].lock()).collect();
        for _ in 0..WRITE_ATTEMPTS_MAX {
            let mut versions = Vec::with_capacity(streams.len());
            let mut newest = None;
            for stream in streams {
                match self.log.read_stream(stream, None, 1, Direction::Backward) {
                    Ok(last) if !last.is_empty() => {
                        versions.push(Some(last[0].version));
                        newest = newest.max(Some(last[0].position));
                    }
                    Err(log_engine::Error::StreamNotFound { .. }) => versions.push(None),
                    // Deleted, expired or truncated past its end: no event reads, but its
                    // versions continue. What hid them may be newer than its last event (a
                    // `$lifecycle` event), so the view must reach the head first.
                    Ok(_) | Err(log_engine::Error::StreamDeleted { .. }) => {
                        versions.push(self.log.stream_version(stream));
                        newest = newest.max(self.log.head().map(|h| h.position));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(position) = newest {
                self.runner.wait_for(position, WRITE_SYNC_TIMEOUT)?;
            }
            let planned = self.read::<P, _>(|view| plan(view, &versions))?;
            if planned.appends.is_empty() {
                return Ok((planned.output, Vec::new()));
            }
            let mut appends = Vec::with_capacity(planned.appends.len());
            for (stream, mut events) in planned.appends {
                let i =
                    streams.iter().position(|s| *s == stream).expect("a write appends only to the streams it locked");
                let expected = versions[i].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                self.prepare(&mut events)?;
                appends.push(StreamAppend { stream: names[i].clone(), expected, events });
            }
            match self.log.append_multi(appends) {
                Ok(done) => return Ok((planned.output, done)),
                // Someone outside this process wrote to one of the streams since we read it.
                Err(log_engine::Error::WrongExpectedVersion { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contention { stream: streams.join(", "), attempts: WRITE_ATTEMPTS_MAX })
    }

    fn stripe(&self, stream: &str) -> usize {
        (self.hasher.hash_one(stream) % self.stripes.len() as u64) as usize
    }
}

/// `metadata` (an event's metadata: a JSON object's text, or empty for none) with
/// `"$principal": principal` added as its first member; the other members keep their bytes.
/// The caller makes sure `metadata` has no `$principal` of its own.
pub fn with_principal(metadata: &[u8], principal: &str) -> Vec<u8> {
    let stamp = serde_json::to_string(&serde_json::json!({ PRINCIPAL_KEY: principal })).expect("a string serializes");
    let rest = metadata.strip_prefix(b"{").map_or(&b"}"[..], <[u8]>::trim_ascii_start);
    let mut out = stamp.into_bytes();
    if rest != b"}" {
        // `{"$principal":"x"}` + `,` + the other members and the closing brace.
        out.pop();
        out.push(b',');
        out.extend_from_slice(rest);
    }
    out
}

/// Validates a stream name built from user input, as an input error.
pub(crate) fn stream_name(stream: &str) -> Result<StreamName> {
    StreamName::new(stream).map_err(|e| match e {
        log_engine::Error::InvalidStreamName { name, reason } => {
            Error::invalid(format!("the name {name:?} cannot be used: {reason}"))
        }
        other => other.into(),
    })
}

/// Converts a log error, lifting a wrong expected version into this crate's variant.
pub(crate) fn from_log(e: log_engine::Error) -> Error {
    match e {
        log_engine::Error::WrongExpectedVersion { stream, expected, actual } => {
            Error::WrongExpectedVersion { stream, expected, actual }
        }
        other => Error::Log(other),
    }
}

/// Checks that the views can read back every event a facade is about to write: each facade
/// checks the values it is given (depth at most [`crate::JSON_DEPTH_MAX`]), and this checks the
/// events built around them with the views' own rule, so that no view write can leave an event
/// a view must skip.
fn check_events(events: &[NewEvent]) -> Result<()> {
    for event in events {
        if let log_engine::Payload::Json(data) = &event.data {
            crate::json::check_readable(data).map_err(|e| Error::InvalidJson {
                what: format!("the data of a {} event", event.event_type),
                reason: e.0,
            })?;
        }
    }
    Ok(())
}
