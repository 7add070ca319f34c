//! [`Views`]: the one handle the server and the CLI use. It opens the three views on a log,
//! runs them with a [`Runner`], and hands out the [`KvStore`], [`AuditLog`] and [`MetaStore`]
//! facades.
//!
//! The write path the facades share lives below it, in `core.rs`.
//!
//! Calling order: `Views::open` (or `Views::start` after a restore) → reads and writes from any
//! thread → `Views::stop` (or drop the last clone) → close the log.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use log_engine::{Log, Position};

use crate::audit::{AuditLog, AuditView};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::kv::{KvStore, KvView};
use crate::meta::{MetaStore, MetaView};
use crate::projection::Projection;
use crate::runner::{Runner, RunnerStatus};

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
        Ok(Views { core: Arc::new(Core::new(log, runner)) })
    }

    /// These views, writing for `principal`: every event a write through the returned handle
    /// (or the facades it hands out) appends carries `"$principal": principal` in its metadata
    /// ([`crate::PRINCIPAL_KEY`]). Reads are the same.
    #[must_use]
    pub fn as_principal(&self, principal: &str) -> Views {
        Views { core: Arc::new(self.core.as_principal(principal)) }
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
