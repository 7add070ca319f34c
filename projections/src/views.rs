//! [`Views`]: the one handle the server and the CLI use. It opens the three views on a log,
//! runs them with a [`Runner`], and hands out the [`KvStore`], [`AuditLog`] and [`MetaStore`]
//! facades.
//!
//! It also owns the write path the facades share ([`Core::write`]): writes that depend on the
//! current state (increment, pop, register a schema version, ...) lock the streams they touch
//! (striped locks, so writers of different keys do not wait for each other), wait until the
//! views have applied every event of those streams, plan against the views, and append with the
//! expected versions they read. A writer outside this process that races them makes the append
//! fail on its expected version, and the write is planned again. So what a write answers is what
//! the view will hold.
//!
//! Calling order: `Views::open` (or `Views::start` after a restore) → reads and writes from any
//! thread → `Views::stop` (or drop the last clone) → close the log.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log_engine::{
    AppendResult, Direction, ExpectedVersion, Log, NewEvent, Position, StreamAppend, StreamName, StreamVersion,
};
use parking_lot::Mutex;

use crate::audit::{AuditLog, AuditView};
use crate::error::{Error, Result};
use crate::kv::{KvStore, KvView};
use crate::meta::{MetaStore, MetaView};
use crate::projection::Projection;
use crate::runner::{Runner, RunnerStatus};

/// How long a state-dependent write waits for the views to catch up with its streams.
pub const WRITE_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a state-dependent write is planned again after losing a race to another writer.
pub const WRITE_ATTEMPTS_MAX: u32 = 16;
/// Lock stripes for state-dependent writes.
const WRITE_LOCK_STRIPES: usize = 64;

/// The stream-name prefixes the views own, with the view's name: their streams are written
/// only through the views' facades ([`KvStore`], [`AuditLog`], [`MetaStore`]). A raw event there
/// is one the view may have to skip, and a raw append servers and tools refuse.
pub const VIEW_STREAM_PREFIXES: [(&str, &str); 3] =
    [(crate::kv::STREAM_PREFIX, "key-value"), (crate::audit::AUDIT_STREAM_PREFIX, "audit"), ("meta:", "metadata")];

/// The prefix and view that own `stream`, if a view does.
pub fn view_stream_owner(stream: &str) -> Option<(&'static str, &'static str)> {
    VIEW_STREAM_PREFIXES.iter().copied().find(|(prefix, _)| stream.starts_with(prefix))
}

/// The wall clock in unix milliseconds: the `now_ms` to pass to reads.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The key-value, audit and metadata views of one log, kept up to date by a runner.
///
/// Cheap to clone; `Send + Sync`. Reads never block on the log; they read the views as far as
/// they have applied. For read-your-writes, wait for the position a write answered
/// ([`Views::wait_for`], [`Views::wait_for_async`]) before reading.
///
/// Writes block (an append waits for its fdatasync): from async code, call them inside
/// `tokio::task::spawn_blocking`.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use std::time::Duration;
/// use log_engine::{ExpectedVersion, Log, Options};
/// use projections::{now_ms, Views};
///
/// let log = Log::open(dir.path(), Options::default())?;
/// let views = Views::open(log.clone())?;
/// let kv = views.kv();
/// let written = kv.set("session/42", serde_json::json!({"step": 1}), None, ExpectedVersion::Any)?;
/// views.wait_for(written.position, Duration::from_secs(5))?;
/// assert_eq!(kv.get("session/42", now_ms())?.value, serde_json::json!({"step": 1}));
/// assert_eq!(kv.incr("visits", 5)?.value, 5);
/// views.stop();
/// # Ok::<(), projections::Error>(())
/// ```
#[derive(Clone)]
pub struct Views {
    core: Arc<Core>,
}

impl fmt::Debug for Views {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Views").field("runner", &self.core.runner).finish()
    }
}

impl Views {
    /// Empty key-value, audit and metadata projections, in that order: what a fresh start or a
    /// checkpoint restore loads state into.
    pub fn projections() -> Vec<Box<dyn Projection>> {
        vec![Box::new(KvView::new()), Box::new(AuditView::new()), Box::new(MetaView::new())]
    }

    /// Starts empty views on `log`; they replay it from position 0 in the background.
    pub fn open(log: Log) -> Result<Views> {
        Views::start(log, Views::projections().into_iter().map(|p| (p, None)).collect())
    }

    /// Starts views that were already loaded to a position (a checkpoint restore): each goes
    /// on from its own position. `projections` must include a [`KvView`], an [`AuditView`]
    /// and a [`MetaView`]; it may include other projections too.
    pub fn start(log: Log, projections: Vec<(Box<dyn Projection>, Option<Position>)>) -> Result<Views> {
        fn has<P: Projection>(list: &[(Box<dyn Projection>, Option<Position>)]) -> bool {
            list.iter().any(|(p, _)| (&**p as &dyn std::any::Any).is::<P>())
        }
        for (present, name) in [
            (has::<KvView>(&projections), KvView::NAME),
            (has::<AuditView>(&projections), AuditView::NAME),
            (has::<MetaView>(&projections), MetaView::NAME),
        ] {
            if !present {
                return Err(Error::invalid(format!("the views need a {name} projection, and none was given")));
            }
        }
        let runner = Runner::start(log.clone(), projections)?;
        let stripes = (0..WRITE_LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        Ok(Views { core: Arc::new(Core { log, runner, stripes, hasher: std::hash::RandomState::new() }) })
    }

    pub fn kv(&self) -> KvStore {
        KvStore::new(self.core.clone())
    }

    pub fn audit(&self) -> AuditLog {
        AuditLog::new(self.core.clone())
    }

    pub fn meta(&self) -> MetaStore {
        MetaStore::new(self.core.clone())
    }

    pub fn log(&self) -> &Log {
        &self.core.log
    }

    /// The runner: status, consistent cuts for checkpoints ([`Runner::with_paused`]).
    pub fn runner(&self) -> &Runner {
        &self.core.runner
    }

    pub fn status(&self) -> RunnerStatus {
        self.core.runner.status()
    }

    /// Blocks until every view has applied `position`, for at most `timeout`.
    pub fn wait_for(&self, position: Position, timeout: Duration) -> Result<()> {
        self.core.runner.wait_for(position, timeout)
    }

    /// [`Views::wait_for`] for async callers (the `min_position` of the HTTP reads).
    pub async fn wait_for_async(&self, position: Position, timeout: Duration) -> Result<()> {
        self.core.runner.wait_for_async(position, timeout).await
    }

    /// Stops applying events (the views stay readable). Idempotent.
    pub fn stop(&self) {
        self.core.runner.stop();
    }
}

/// The handles are shared with request handlers on other threads.
const _: () = {
    const fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Views>();
    send_sync::<KvStore>();
    send_sync::<AuditLog>();
    send_sync::<MetaStore>();
    send_sync::<Runner>();
};

/// What the facades share: the log, the runner, and the write locks.
pub(crate) struct Core {
    pub(crate) log: Log,
    pub(crate) runner: Runner,
    stripes: Vec<Mutex<()>>,
    hasher: std::hash::RandomState,
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
    /// Runs `f` on the view of type `P` under the runner's read lock.
    pub(crate) fn read<P: Projection, R>(&self, f: impl FnOnce(&P) -> R) -> R {
        self.runner.read_view::<P, R>(f).expect("Views::start checked that every view is present")
    }

    /// Appends without planning (the write does not depend on state).
    pub(crate) fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let stream = stream_name(stream)?;
        check_events(&events)?;
        let appended = self.log.append_multi(vec![StreamAppend { stream, expected, events }]).map_err(from_log)?;
        Ok(appended.into_iter().next().expect("one result per stream"))
    }

    /// Appends to several streams atomically, without planning.
    pub(crate) fn append_multi(&self, appends: Vec<(String, Vec<NewEvent>)>) -> Result<Vec<AppendResult>> {
        let appends = appends
            .into_iter()
            .map(|(s, events)| {
                check_events(&events)?;
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
                    Ok(last) => {
                        let last = last.first().expect("an existing stream has a last event");
                        versions.push(Some(last.version));
                        newest = newest.max(Some(last.position));
                    }
                    Err(log_engine::Error::StreamNotFound { .. }) => versions.push(None),
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
            for (stream, events) in planned.appends {
                let i =
                    streams.iter().position(|s| *s == stream).expect("a write appends only to the streams it locked");
                let expected = versions[i].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                check_events(&events)?;
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
