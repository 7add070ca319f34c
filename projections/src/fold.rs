//! A generic fold for user aggregates: the state of one stream up to a version, rebuilt with a
//! user function (the `rebuild_state(stream, until_version)` of agent platforms).
//!
//! It reads the stream from the log in chunks of [`FOLD_CHUNK_EVENTS`], so memory stays
//! bounded however long the stream is. It keeps nothing between calls; for a state kept up to
//! date continuously, implement [`crate::Projection`] instead.

use log_engine::{Direction, Event, Log, Position, StreamVersion};

use crate::error::Result;

/// Events read from the log per step.
pub const FOLD_CHUNK_EVENTS: usize = 1024;

/// The folded state and how far the fold went.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded<S> {
    pub state: S,
    /// The last version folded in (`None` if the fold saw no event).
    pub version: Option<StreamVersion>,
    /// Its log position.
    pub position: Option<Position>,
}

/// Folds the events of `stream` from version 0 through `until` (inclusive; `None` for the
/// whole stream) into `init` with `f`, in version order. Fails with `stream_not_found` for a
/// stream that has no events.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use log_engine::{ExpectedVersion, Log, NewEvent, Options, StreamVersion};
/// use projections::fold;
///
/// let log = Log::open(dir.path(), Options::default())?;
/// for n in [3, 4, 5] {
///     log.append("cart-1", ExpectedVersion::Any, vec![NewEvent::json("ItemAdded", &serde_json::json!({"n": n}))])?;
/// }
/// let total = fold(&log, "cart-1", Some(StreamVersion(1)), 0, |sum, event| {
///     sum + event.data_json().and_then(|d| d["n"].as_i64()).unwrap_or(0)
/// })?;
/// assert_eq!(total.state, 7);
/// assert_eq!(total.version, Some(StreamVersion(1)));
/// # Ok::<(), projections::Error>(())
/// ```
pub fn fold<S>(
    log: &Log,
    stream: &str,
    until: Option<StreamVersion>,
    init: S,
    mut f: impl FnMut(S, &Event) -> S,
) -> Result<Folded<S>> {
    let mut folded = Folded { state: init, version: None, position: None };
    let mut next = 0u64;
    loop {
        let want = match until {
            Some(u) if u.0 < next => break,
            Some(u) => ((u.0 - next + 1) as usize).min(FOLD_CHUNK_EVENTS),
            None => FOLD_CHUNK_EVENTS,
        };
        let events = log.read_stream(stream, Some(StreamVersion(next)), want, Direction::Forward)?;
        for event in &events {
            folded.state = f(folded.state, event);
            folded.version = Some(event.version);
            folded.position = Some(event.position);
        }
        if events.len() < want {
            break;
        }
        next += events.len() as u64;
    }
    Ok(folded)
}
