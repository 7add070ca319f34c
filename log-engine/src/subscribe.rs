//! Subscriptions: catch up from the log, then follow live appends, with no gap and no duplicate.
//!
//! A subscription never holds events in memory beyond one read chunk: it reads committed
//! records from the mapped segments by position and, when it has caught up, waits on the
//! writer's committed-count signal. Live and catch-up are the same code path, so a slow
//! subscriber simply falls behind and reads from disk; it never slows the writer, and it can
//! only ever see events the writer has published (durable, in `Durability::Sync`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::log::Log;
use crate::types::{Event, Position};

/// Events read per step while catching up.
const CHUNK_EVENTS: usize = 512;
/// Payload bytes a subscription buffers in one chunk; at least one event is always taken, so a
/// subscriber holds at most this plus one event (`EVENT_SIZE_MAX`) however large events are.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// At this position (inclusive).
    Position(Position),
    /// After the events committed when the subscription is made.
    End,
}

/// Which events a subscription yields. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Exactly this stream.
    pub stream: Option<String>,
    pub stream_prefix: Option<String>,
    pub type_prefix: Option<String>,
}

impl Filter {
    pub fn matches(&self, event: &Event) -> bool {
        self.stream.as_ref().is_none_or(|s| &event.stream == s)
            && self.stream_prefix.as_ref().is_none_or(|p| event.stream.starts_with(p.as_str()))
            && self.type_prefix.as_ref().is_none_or(|p| event.event_type.starts_with(p.as_str()))
    }
}

/// A live, ordered feed of committed events. Get events with [`Subscription::next`].
#[derive(Debug)]
pub struct Subscription {
    log: Log,
    next: u64,
    filter: Filter,
    rx: watch::Receiver<u64>,
    buffer: VecDeque<Event>,
}

impl Log {
    /// Subscribes from a position (or the end), with a filter.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use log_engine::{ExpectedVersion, Filter, Log, NewEvent, Options, Position, StartFrom};
    /// let log = Log::open(dir.path(), Options::default()).unwrap();
    /// let mut sub = log.subscribe(StartFrom::Position(Position(0)), Filter::default());
    /// log.append_async("agent-1", ExpectedVersion::Any, vec![NewEvent::bytes("Ping", vec![])]).await.unwrap();
    /// let event = sub.next().await.unwrap().unwrap();
    /// assert_eq!(event.stream, "agent-1");
    /// # });
    /// ```
    pub fn subscribe(&self, from: StartFrom, filter: Filter) -> Subscription {
        let shared = self.shared_arc();
        let rx = shared.head_tx.subscribe();
        let next = match from {
            StartFrom::Position(p) => p.0,
            StartFrom::End => *rx.borrow(),
        };
        Subscription { log: self.clone(), next, filter, rx, buffer: VecDeque::new() }
    }
}

impl Subscription {
    /// The next matching event; `None` once the log is closed and drained.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            let committed = *self.rx.borrow_and_update();
            if self.next < committed {
                if let Err(e) = self.fill() {
                    return Some(Err(e));
                }
                continue;
            }
            let shared = self.log.shared_arc();
            if shared.closed.load(Ordering::Acquire) {
                return None;
            }
            if let Some(cause) = shared.poison.lock().clone() {
                return Some(Err(Error::Poisoned { cause }));
            }
            drop(shared);
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The position the subscription will read next (everything before it has been yielded
    /// or filtered out).
    pub fn position(&self) -> Position {
        Position(self.next)
    }

    fn fill(&mut self) -> Result<()> {
        let filter = &self.filter;
        let buffer = &mut self.buffer;
        let mut bytes = 0usize;
        let read = self.log.for_each(Position(self.next), CHUNK_EVENTS as u64, |event| {
            if filter.matches(&event) {
                bytes += event.metadata.len() + event.data.as_bytes().len();
                buffer.push_back(event);
            }
            bytes < CHUNK_BYTES
        })?;
        self.next += read;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, ExpectedVersion, NewEvent, Options};

    /// A subscriber to large events buffers about CHUNK_BYTES, not CHUNK_EVENTS of them
    /// (512 events of 1 MiB would be half a gigabyte per subscriber), and still sees them all.
    #[tokio::test]
    async fn a_chunk_is_bounded_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), Options { durability: Durability::None, ..Default::default() }).unwrap();
        let event_bytes = 300 * 1024;
        for i in 0..12u8 {
            log.append("big", ExpectedVersion::Any, vec![NewEvent::bytes("blob", vec![i; event_bytes])]).unwrap();
        }
        let mut sub = log.subscribe(StartFrom::Position(Position(0)), Filter::default());
        let first = sub.next().await.unwrap().unwrap();
        assert_eq!(first.data.as_bytes()[0], 0);
        let held = 1 + sub.buffer.len();
        assert_eq!(held, CHUNK_BYTES.div_ceil(event_bytes), "events read in the first chunk");
        for i in 1..12u8 {
            let event = sub.next().await.unwrap().unwrap();
            assert_eq!((event.position.0, event.data.as_bytes()[0]), (u64::from(i), i));
        }
    }
}
