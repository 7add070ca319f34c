//! The runner: feeds a set of projections the log's events in position order, from each
//! projection's own position, and tells callers how far they have got.
//!
//! It runs on one std thread (`cairn-projections`). That thread catches up with
//! [`Log::for_each`] in batches of [`APPLY_BATCH_MAX`] events and, once caught up, follows live
//! appends with [`Log::subscribe`], awaited on a small single-threaded tokio runtime that the
//! thread owns. So the runner works the same for sync callers (the CLI) and async ones (the
//! server), and apply work never runs on an async executor.
//!
//! Invariants:
//! - A projection sees each event at most once, in position order: an event at position `p` is
//!   applied to a projection only if its position is below `p`, and its position becomes `p`
//!   whether the event applied, was skipped, or failed.
//! - An apply error is recorded (projection, position, message) and does not stop the others.
//! - State and positions change together under one write lock; the published progress (what
//!   [`Runner::wait_for`] waits on) is updated only after the state is visible to readers.
//! - [`Runner::with_paused`] sees every projection at one common position (a consistent cut).
//!
//! The runner never writes to the log. It stops on [`Runner::stop`] (or drop), when the log
//! closes, or when reading the log fails (corruption, poisoning); the views stay readable at the
//! position they reached, and the reason is in [`RunnerStatus::stopped`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log_engine::{Event, Filter, Log, Position, StartFrom};
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::projection::Projection;

/// Most events applied under one hold of the views' write lock: bounds how long a reader waits.
pub const APPLY_BATCH_MAX: usize = 1024;
/// Most apply errors the runner keeps for operators (older ones are counted, not kept).
pub const RECENT_ERRORS_MAX: usize = 100;
/// How often [`rebuild_with_progress`] reports, in events.
pub const REBUILD_PROGRESS_EVERY: u64 = 65_536;

/// An event a projection understood but could not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionError {
    pub projection: &'static str,
    pub position: Position,
    pub stream: String,
    pub event_type: String,
    pub message: String,
}

impl fmt::Display for ProjectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "projection {} could not apply the {} event at position {} (stream {}): {}",
            self.projection, self.event_type, self.position, self.stream, self.message
        )
    }
}

/// One projection's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewStatus {
    pub name: &'static str,
    /// The last position applied (or skipped); `None` before the first event.
    pub applied_through: Option<Position>,
    /// Committed events not yet applied.
    pub lag: u64,
    /// Apply errors since the runner started.
    pub errors: u64,
    /// The newest of them.
    pub last_error: Option<ProjectionError>,
}

/// The runner's progress, for operators and health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerStatus {
    /// The log's newest position.
    pub head: Option<Position>,
    /// The position every projection has applied through.
    pub applied_through: Option<Position>,
    pub views: Vec<ViewStatus>,
    /// The newest apply errors (at most [`RECENT_ERRORS_MAX`]), oldest first.
    pub recent_errors: Vec<ProjectionError>,
    /// Why the runner stopped, if it has.
    pub stopped: Option<String>,
}

/// The projections and their positions; changed only together, under one lock.
struct ViewSet {
    views: Vec<Box<dyn Projection>>,
    positions: Vec<Option<Position>>,
}

impl ViewSet {
    /// The first position some projection still needs.
    fn next(&self) -> u64 {
        self.positions.iter().map(|p| p.map_or(0, |p| p.0 + 1)).min().unwrap_or(0)
    }

    /// The position every projection has applied through.
    fn applied_through(&self) -> Option<Position> {
        self.positions.iter().copied().min().flatten()
    }

    fn aligned(&self) -> bool {
        self.positions.windows(2).all(|w| w[0] == w[1])
    }

    fn apply(&mut self, event: &Event, errors: &mut Vec<ProjectionError>) {
        apply_one(&mut self.views, &mut self.positions, event, errors);
    }
}

/// Applies `event` to every projection that has not seen it yet.
fn apply_one(
    views: &mut [Box<dyn Projection>],
    positions: &mut [Option<Position>],
    event: &Event,
    errors: &mut Vec<ProjectionError>,
) {
    for (view, position) in views.iter_mut().zip(positions.iter_mut()) {
        if position.is_some_and(|p| p >= event.position) {
            continue;
        }
        errors.extend(apply_guarded(view.as_mut(), event));
        *position = Some(event.position);
    }
}

/// Applies `event` to every projection in `views`, collecting what could not be applied: the
/// one way every path (the runner, [`rebuild`], a checkpoint restore's replay) applies events.
pub fn apply_event(views: &mut [Box<dyn Projection>], event: &Event, errors: &mut Vec<ProjectionError>) {
    for view in views.iter_mut() {
        errors.extend(apply_guarded(view.as_mut(), event));
    }
}

/// Applies `event` to one projection; `Some` if it could not.
fn apply_guarded(view: &mut dyn Projection, event: &Event) -> Option<ProjectionError> {
    // A view must not panic on any event (its payload is whatever a writer stored); should
    // one still do so, that event is recorded like any other it cannot apply, instead of
    // stopping every view on every start. The panic is deterministic, so replays agree.
    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| view.apply(event)));
    let message = match applied {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.message),
        Err(panic) => Some(format!("the view panicked applying this event: {}", panic_message(&*panic))),
    };
    message.map(|message| ProjectionError {
        projection: view.name(),
        position: event.position,
        stream: event.stream.clone(),
        event_type: event.event_type.clone(),
        message,
    })
}

/// The text a panic carried, if any.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

/// What waiters look at.
#[derive(Debug, Default)]
struct Progress {
    names: Vec<&'static str>,
    positions: Vec<Option<Position>>,
    error_counts: Vec<u64>,
    last_errors: Vec<Option<ProjectionError>>,
    recent_errors: VecDeque<ProjectionError>,
    stopped: Option<String>,
}

impl Progress {
    fn applied_through(&self) -> Option<Position> {
        self.positions.iter().copied().min().flatten()
    }
}

/// For async waiters: the common applied position, and whether the runner has stopped.
type Applied = (Option<Position>, bool);

struct Inner {
    log: Log,
    set: RwLock<ViewSet>,
    progress: Mutex<Progress>,
    progressed: Condvar,
    applied_tx: watch::Sender<Applied>,
    stop_tx: watch::Sender<bool>,
}

/// Runs projections against a log. See the module docs.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use std::time::Duration;
/// use log_engine::{ExpectedVersion, Log, NewEvent, Options};
/// use projections::{KvView, Projection, Runner};
///
/// let log = Log::open(dir.path(), Options::default())?;
/// let done = log.append("kv:greeting", ExpectedVersion::Any,
///     vec![NewEvent::json("kv.set", &serde_json::json!({"value": "hello"}))])?;
/// let runner = Runner::start(log.clone(), vec![(Box::new(KvView::new()) as Box<dyn Projection>, None)])?;
/// runner.wait_for(done.last_position, Duration::from_secs(5))?;
/// assert_eq!(runner.status().applied_through, Some(done.last_position));
/// runner.stop();
/// # Ok::<(), projections::Error>(())
/// ```
pub struct Runner {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let progress = self.inner.progress.lock();
        f.debug_struct("Runner")
            .field("views", &progress.names)
            .field("positions", &progress.positions)
            .field("stopped", &progress.stopped)
            .finish()
    }
}

impl Runner {
    /// Starts feeding `projections`, each paired with the position it has already applied
    /// through (`None` for an empty projection; a checkpoint's position after a restore).
    ///
    /// Fails if two projections share a name or a position lies beyond the log's head.
    pub fn start(log: Log, projections: Vec<(Box<dyn Projection>, Option<Position>)>) -> Result<Runner> {
        let head = log.head().map(|h| h.position);
        let mut names: Vec<&'static str> = Vec::new();
        for (view, position) in &projections {
            if names.contains(&view.name()) {
                return Err(Error::invalid(format!("two projections are named {}", view.name())));
            }
            names.push(view.name());
            if let Some(p) = position {
                if head.is_none_or(|h| *p > h) {
                    return Err(Error::invalid(format!(
                        "projection {} is at position {p}, beyond the log's head ({})",
                        view.name(),
                        head.map_or("empty log".to_string(), |h| format!("position {h}"))
                    )));
                }
            }
        }
        let (views, positions): (Vec<_>, Vec<_>) = projections.into_iter().unzip();
        let progress = Progress {
            error_counts: vec![0; names.len()],
            last_errors: vec![None; names.len()],
            names,
            positions: positions.clone(),
            recent_errors: VecDeque::new(),
            stopped: None,
        };
        let applied = progress.applied_through();
        let inner = Arc::new(Inner {
            log,
            set: RwLock::new(ViewSet { views, positions }),
            progress: Mutex::new(progress),
            progressed: Condvar::new(),
            applied_tx: watch::Sender::new((applied, false)),
            stop_tx: watch::Sender::new(false),
        });
        let thread = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("cairn-projections".into())
                .spawn(move || {
                    // A panic in a projection must not leave waiters hanging until their
                    // timeouts: record it as the reason the runner stopped.
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.clone().run()));
                    if let Err(panic) = run {
                        inner.finish(format!("the projection thread panicked: {}", panic_message(&*panic)));
                    }
                })
                .map_err(|e| Error::Stopped { reason: format!("cannot spawn the projection thread: {e}") })?
        };
        Ok(Runner { inner, thread: Mutex::new(Some(thread)) })
    }

    /// The log this runner follows.
    pub fn log(&self) -> &Log {
        &self.inner.log
    }

    /// The position every projection has applied through.
    pub fn applied_through(&self) -> Option<Position> {
        self.inner.progress.lock().applied_through()
    }

    pub fn status(&self) -> RunnerStatus {
        let head = self.inner.log.head().map(|h| h.position);
        let progress = self.inner.progress.lock();
        let lag = |p: Option<Position>| match (head, p) {
            (None, _) => 0,
            (Some(h), None) => h.0 + 1,
            (Some(h), Some(p)) => h.0.saturating_sub(p.0),
        };
        RunnerStatus {
            head,
            applied_through: progress.applied_through(),
            views: (0..progress.names.len())
                .map(|i| ViewStatus {
                    name: progress.names[i],
                    applied_through: progress.positions[i],
                    lag: lag(progress.positions[i]),
                    errors: progress.error_counts[i],
                    last_error: progress.last_errors[i].clone(),
                })
                .collect(),
            recent_errors: progress.recent_errors.iter().cloned().collect(),
            stopped: progress.stopped.clone(),
        }
    }

    /// Blocks until every projection has applied `position` (read-your-writes), for at most
    /// `timeout`. Fails with [`Error::Timeout`], or [`Error::Stopped`] if the runner stopped
    /// short of it.
    pub fn wait_for(&self, position: Position, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut progress = self.inner.progress.lock();
        loop {
            let applied = progress.applied_through();
            if applied.is_some_and(|a| a >= position) {
                return Ok(());
            }
            if let Some(reason) = &progress.stopped {
                return Err(Error::Stopped { reason: reason.clone() });
            }
            if self.inner.progressed.wait_until(&mut progress, deadline).timed_out() {
                let applied = progress.applied_through();
                if applied.is_some_and(|a| a >= position) {
                    return Ok(());
                }
                return Err(Error::Timeout { position, applied, waited_ms: started.elapsed().as_millis() as u64 });
            }
        }
    }

    /// [`Runner::wait_for`] for async callers. Needs a tokio runtime with the time driver.
    pub async fn wait_for_async(&self, position: Position, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let mut rx = self.inner.applied_tx.subscribe();
        let reached = |(applied, stopped): &Applied| *stopped || applied.is_some_and(|a| a >= position);
        let timed_out = tokio::time::timeout(timeout, rx.wait_for(reached)).await.is_err();
        let (applied, _) = *rx.borrow();
        if applied.is_some_and(|a| a >= position) {
            return Ok(());
        }
        match timed_out {
            true => Err(Error::Timeout { position, applied, waited_ms: started.elapsed().as_millis() as u64 }),
            false => {
                let reason = self.inner.progress.lock().stopped.clone().unwrap_or_else(|| "stopped".to_string());
                Err(Error::Stopped { reason })
            }
        }
    }

    /// Runs `f` on all projections under the read lock: application waits meanwhile, so keep
    /// `f` short.
    pub fn read<R>(&self, f: impl FnOnce(&[Box<dyn Projection>]) -> R) -> R {
        f(&self.inner.set.read().views)
    }

    /// Runs `f` on the projection of type `P` under the read lock; `None` if there is none.
    pub fn read_view<P: Projection, R>(&self, f: impl FnOnce(&P) -> R) -> Option<R> {
        let set = self.inner.set.read();
        let view = set.views.iter().find_map(|v| (&**v as &dyn std::any::Any).downcast_ref::<P>())?;
        Some(f(view))
    }

    /// Pauses application and runs `f` with mutable access to every projection and the one
    /// position they have all applied through: a consistent cut for a checkpoint.
    ///
    /// Waits first until all projections are at the same position (after a start from mixed
    /// positions, the runner brings the laggards forward). `f` may call `mark` and read
    /// anything, but must not otherwise change the projections' state: the runner goes on
    /// from the positions it recorded. Readers wait while `f` runs, and `f` must not wait for
    /// the runner (no `wait_for`, no state-dependent writes through the facades): it is paused.
    pub fn with_paused<R>(&self, f: impl FnOnce(&mut [Box<dyn Projection>], Option<Position>) -> R) -> Result<R> {
        loop {
            {
                let mut set = self.inner.set.write();
                if set.aligned() {
                    let applied = set.applied_through();
                    return Ok(f(&mut set.views, applied));
                }
            }
            let mut progress = self.inner.progress.lock();
            loop {
                if progress.positions.windows(2).all(|w| w[0] == w[1]) {
                    break;
                }
                if let Some(reason) = &progress.stopped {
                    return Err(Error::Stopped { reason: reason.clone() });
                }
                self.inner.progressed.wait(&mut progress);
            }
        }
    }

    /// Counts apply errors met before the runner started (while a restore replayed the log into
    /// the projections), so that status reports them: `count` errors of projection `name`, the
    /// newest being `last`.
    pub fn note_errors(&self, name: &str, count: u64, last: ProjectionError) {
        let mut progress = self.inner.progress.lock();
        if let Some(i) = progress.names.iter().position(|n| *n == name) {
            progress.error_counts[i] += count;
            progress.last_errors[i] = Some(last.clone());
            if progress.recent_errors.len() == RECENT_ERRORS_MAX {
                progress.recent_errors.pop_front();
            }
            progress.recent_errors.push_back(last);
        }
    }

    /// Stops the runner thread and waits for it. The views stay readable. Idempotent.
    pub fn stop(&self) {
        self.inner.stop_tx.send_replace(true);
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                self.inner.finish("the projection thread panicked".to_string());
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    fn run(self: Arc<Inner>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime,
            Err(e) => return self.finish(format!("cannot start the projection thread's runtime: {e}")),
        };
        let mut stop_rx = self.stop_tx.subscribe();
        let reason = loop {
            if *stop_rx.borrow() {
                break "the runner was stopped".to_string();
            }
            let next = self.set.read().next();
            let mut batch = Vec::new();
            let read = self.log.for_each(Position(next), APPLY_BATCH_MAX as u64, |event| {
                batch.push(event);
                true
            });
            if let Err(e) = read {
                break format!("reading the log from position {next} failed: {e}");
            }
            if batch.is_empty() {
                // Caught up: wait for the next append (or a stop). A subscription from `next`
                // cannot miss an event committed since the read above.
                let mut sub = self.log.subscribe(StartFrom::Position(Position(next)), Filter::default());
                let woke = runtime.block_on(async {
                    tokio::select! {
                        biased;
                        _ = stop_rx.wait_for(|stop| *stop) => None,
                        event = sub.next() => Some(event),
                    }
                });
                match woke {
                    None => continue,
                    Some(None) => break "the log was closed".to_string(),
                    Some(Some(Err(e))) => break format!("following the log from position {next} failed: {e}"),
                    Some(Some(Ok(event))) => batch.push(event),
                }
            }
            self.apply(&batch);
        };
        self.finish(reason);
    }

    fn apply(&self, batch: &[Event]) {
        let mut errors = Vec::new();
        let positions = {
            let mut set = self.set.write();
            for event in batch {
                set.apply(event, &mut errors);
            }
            set.positions.clone()
        };
        for e in &errors {
            tracing::warn!(projection = e.projection, position = e.position.0, "{e}");
        }
        let applied = {
            let mut progress = self.progress.lock();
            progress.positions = positions;
            for e in errors {
                if let Some(i) = progress.names.iter().position(|n| *n == e.projection) {
                    progress.error_counts[i] += 1;
                    progress.last_errors[i] = Some(e.clone());
                }
                if progress.recent_errors.len() == RECENT_ERRORS_MAX {
                    progress.recent_errors.pop_front();
                }
                progress.recent_errors.push_back(e);
            }
            progress.applied_through()
        };
        self.progressed.notify_all();
        self.applied_tx.send_replace((applied, false));
    }

    fn finish(&self, reason: String) {
        let applied = {
            let mut progress = self.progress.lock();
            if progress.stopped.is_none() {
                tracing::info!(reason = %reason, "projection runner stopped");
                progress.stopped = Some(reason);
            }
            progress.applied_through()
        };
        self.progressed.notify_all();
        self.applied_tx.send_replace((applied, true));
    }
}

/// What a [`rebuild`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The position the projections now stand at.
    pub applied_through: Option<Position>,
    /// Events read from the log.
    pub events: u64,
    /// Apply errors met (the first [`RECENT_ERRORS_MAX`]).
    pub errors: Vec<ProjectionError>,
    /// All apply errors met, including those not kept in `errors`.
    pub error_count: u64,
}

/// Replays the log into `views` synchronously, from the position they stand at
/// (`applied_through`, `None` for empty views) through `up_to` (default: the head now).
///
/// For point-in-time recovery and recovery drills: load a checkpoint, then replay the tail;
/// or start from empty views to rebuild from position 0.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use log_engine::{ExpectedVersion, Log, NewEvent, Options};
/// use projections::{rebuild, KvView, Projection};
///
/// let log = Log::open(dir.path(), Options::default())?;
/// for v in 0..3 {
///     log.append("kv:n", ExpectedVersion::Any, vec![NewEvent::json("kv.set", &serde_json::json!({"value": v}))])?;
/// }
/// let mut at_1: Vec<Box<dyn Projection>> = vec![Box::new(KvView::new())];
/// let done = rebuild(&log, &mut at_1, None, Some(log_engine::Position(1)))?;
/// assert_eq!(done.applied_through, Some(log_engine::Position(1)));
/// # Ok::<(), projections::Error>(())
/// ```
pub fn rebuild(
    log: &Log,
    views: &mut [Box<dyn Projection>],
    applied_through: Option<Position>,
    up_to: Option<Position>,
) -> Result<Rebuilt> {
    rebuild_with_progress(log, views, applied_through, up_to, |_, _| ())
}

/// [`rebuild`], calling `progress(applied, target)` every [`REBUILD_PROGRESS_EVERY`] events
/// and once at the end.
pub fn rebuild_with_progress(
    log: &Log,
    views: &mut [Box<dyn Projection>],
    applied_through: Option<Position>,
    up_to: Option<Position>,
    mut progress: impl FnMut(Position, Position),
) -> Result<Rebuilt> {
    let head = log.head().map(|h| h.position);
    let target = match (up_to, head) {
        (Some(u), Some(h)) if u > h => {
            return Err(Error::invalid(format!("cannot rebuild to position {u}: the log's head is position {h}")))
        }
        (Some(u), None) => return Err(Error::invalid(format!("cannot rebuild to position {u}: the log is empty"))),
        (Some(u), _) => u,
        (None, Some(h)) => h,
        (None, None) => {
            return Ok(Rebuilt { applied_through, events: 0, errors: Vec::new(), error_count: 0 });
        }
    };
    if let Some(at) = applied_through.filter(|a| *a > target) {
        return Err(Error::invalid(format!(
            "cannot rebuild to position {target}: the views already stand at position {at}"
        )));
    }
    let from = applied_through.map_or(0, |p| p.0 + 1);
    let mut positions = vec![applied_through; views.len()];
    let mut errors = Vec::new();
    let mut kept = Vec::new();
    let mut error_count = 0u64;
    let mut events = 0u64;
    if from <= target.0 {
        log.for_each(Position(from), target.0 - from + 1, |event| {
            apply_one(views, &mut positions, &event, &mut errors);
            for e in errors.drain(..) {
                error_count += 1;
                if kept.len() < RECENT_ERRORS_MAX {
                    kept.push(e);
                }
            }
            events += 1;
            if events.is_multiple_of(REBUILD_PROGRESS_EVERY) {
                progress(event.position, target);
            }
            true
        })?;
    }
    let applied_through = if events > 0 { Some(Position(from + events - 1)) } else { applied_through };
    if let Some(at) = applied_through {
        progress(at, target);
    }
    Ok(Rebuilt { applied_through, events, errors: kept, error_count })
}
