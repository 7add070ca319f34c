//! Staging a lifecycle change (lifecycle.rs): checked against the stream as everything staged
//! or in flight leaves it, written as one event on `$lifecycle` through the ordinary staging
//! path (so it is chained, group-committed and durable like any append), and noted in the
//! overlay at once, so that a request staged after it in the same group already meets it: of
//! two appends racing a close, exactly those staged before the close succeed.

use std::sync::Arc;

use super::{PreparedAppend, Reply, Writer};
use crate::error::{Error, Result};
use crate::lifecycle::{Change, DeleteMode, LifecycleOp, StreamNow, LIFECYCLE_STREAM};
use crate::record::PreparedEvent;
use crate::types::{AppendResult, ExpectedVersion, NewEvent, Payload, StreamName};

impl Writer {
    pub(super) fn handle_lifecycle(&mut self, op: &LifecycleOp, metadata: Vec<u8>, reply: Reply) {
        if let Some(cause) = &self.poisoned {
            reply.send(Err(Error::Poisoned { cause: cause.clone() }));
            return;
        }
        match self.stage_lifecycle(op, metadata) {
            Ok(result) => self.replies.push((reply, Ok(vec![result]))),
            Err(e) => reply.send(Err(e)),
        }
    }

    /// Checks and stages one change, with `metadata` (JSON object text, or empty) as its
    /// event's metadata. On error nothing is staged.
    fn stage_lifecycle(&mut self, op: &LifecycleOp, metadata: Vec<u8>) -> Result<AppendResult> {
        let mut change = StreamNow::change_for(op, |stream| self.now(stream))?;
        let last = self.now(change.stream()).last;
        if let Change::Erased { stream, from_version: 0, to_version, shred_through, .. } = &mut change {
            // An erasure of every version of an encrypted stream destroys its secrets too: the
            // syncer destroys them once the erasure is durable (a crash before that loses the
            // erasure and keeps the key, or keeps both and the next open destroys it).
            if last == Some(*to_version) {
                *shred_through = self.shared.options.keys.as_deref().and_then(|keys| keys.newest_secret(stream));
            }
        }
        if let Change::Forked { source, first_version, at_version, .. } = &mut change {
            // Past the fork point the fork shares nothing: its own versions start there.
            *first_version = (*first_version).max(self.published_first(source)?).min(*at_version + 1);
        }
        let stream = StreamName::reserved(LIFECYCLE_STREAM).expect("the lifecycle stream's name is valid");
        let event =
            NewEvent { id: None, event_type: change.event_type().into(), metadata, data: Payload::Json(change.data()) };
        // Lifecycle events stay plain: open folds them into the index before any key is needed.
        let events = vec![PreparedEvent::new(&stream, &event, None)];
        let mut results = self.stage(&[PreparedAppend { stream, expected: ExpectedVersion::Any, events }])?;
        let staged = self.staged.last_mut().expect("the change's record was staged");
        debug_assert_eq!(&*staged.stream, LIFECYCLE_STREAM);
        let position = staged.position;
        staged.life = Some(Arc::new(change.clone()));
        self.note(&change);
        if let Change::Erased { stream, shred_through: Some(through), .. } = &change {
            // Until the syncer has destroyed them, the secrets are live, yet every record
            // sealed with them and staged after the erasure would be acknowledged and then
            // read back as destroyed: stage.rs check_secret_live refuses those.
            self.shredding.insert(stream.clone(), (*through, position));
        }
        Ok(results.pop().expect("one result"))
    }

    /// Records the expiry of every stream of a planned request whose `ttl_ms` has passed since
    /// its last event, as a soft delete staged before the request's own events: the stream was
    /// deleted (reads said so), so once written again it shows only what follows, and the log
    /// holds the delete, so a replay or restore shows the same.
    pub(super) fn record_expiries<'a>(&mut self, streams: impl Iterator<Item = &'a StreamName>) -> Result<()> {
        let clock = super::now_ms().max(self.state.last_timestamp_ms);
        for stream in streams {
            let now = self.now(stream.as_str());
            let (Some(ttl), Some(last)) = (now.ttl_ms, now.last) else { continue };
            if now.deleted_before.is_some_and(|d| d > last) {
                continue;
            }
            let at = match now.last_timestamp_ms {
                Some(at) => at,
                None => crate::index::with_fetched(&self.shared.index, |index, fetched| {
                    index.version_timestamp(stream.as_str(), last, fetched)
                })?,
            };
            if clock.saturating_sub(at) > ttl {
                let op = LifecycleOp::Delete { stream: stream.clone(), mode: DeleteMode::Soft };
                self.stage_lifecycle(&op, Vec::new())?;
            }
        }
        Ok(())
    }

    /// The first version of `source` a stream read may return, as published (its `max_age_ms`
    /// window needs the events' timestamps, which only the index reads); 0 for a source not
    /// published yet. What is staged is checked by [`StreamNow::change_for`].
    fn published_first(&self, source: &str) -> Result<u64> {
        crate::index::with_fetched(&self.shared.index, |index, fetched| match index.readable(source, fetched) {
            Ok(Some((first, _))) => Ok(first),
            Ok(None) => Ok(index.now(source).last.map_or(0, |last| last + 1)),
            Err(crate::index::Stop::Failed(Error::StreamNotFound { .. })) => Ok(0),
            Err(e) => Err(e),
        })
    }

    /// Notes a staged change in the overlay, as `Index::apply` will once it is published.
    fn note(&mut self, change: &Change) {
        let mut now = self.now(change.stream());
        match change {
            Change::Deleted { before_version, .. } => now.deleted_before = Some(*before_version),
            Change::Tombstoned { before_version, .. } => {
                now.tombstoned = true;
                now.deleted_before = Some(*before_version);
            }
            Change::Closed { .. } => now.closed = true,
            Change::Metadata { metadata, .. } => {
                now.closed |= metadata.closed;
                now.ttl_ms = metadata.ttl_ms;
                now.truncate_before = metadata.truncate_before;
                now.max_count = metadata.max_count;
            }
            Change::Forked { at_version, first_version, .. } => {
                now.forked = true;
                now.last = Some(*at_version);
                now.fork_floor = *first_version;
            }
            // Masks reads only: appends and later changes meet the stream as before.
            Change::Erased { .. } => return,
        }
        self.overlay.insert(change.stream().to_string(), now);
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::types::{Durability, StreamAppend};
    use crate::writer::Command;
    use crate::{Log, Options};

    fn append(stream: &str) -> Vec<StreamAppend> {
        let events = vec![NewEvent::json("Step", &serde_json::json!({}))];
        vec![StreamAppend { stream: StreamName::new(stream).unwrap(), expected: ExpectedVersion::Any, events }]
    }

    /// Two appends racing a close, all three taken up in one group: the append staged before
    /// the close succeeds, the one staged after it is refused, though the close is not yet
    /// published when it is staged (the writer checks what it has staged, not only the index).
    #[test]
    fn appends_racing_a_close_in_one_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), Options { durability: Durability::None, ..Default::default() }).unwrap();
        log.append("run", ExpectedVersion::Any, vec![NewEvent::json("Step", &serde_json::json!({}))]).unwrap();
        let shared = log.shared_arc();
        // The writer stops at its first look into the index (staging `first`), so everything
        // sent meanwhile is queued, and then taken up together.
        let stall = shared.index.write();
        let (first, before, close, after) =
            (oneshot::channel(), oneshot::channel(), oneshot::channel(), oneshot::channel());
        log.submit(append("other"), Reply::Async(first.0)).unwrap();
        log.submit(append("run"), Reply::Async(before.0)).unwrap();
        let op = LifecycleOp::Close { stream: StreamName::new("run").unwrap() };
        log.send(Command::Lifecycle { op, metadata: Vec::new(), reply: Reply::Async(close.0) }).unwrap();
        log.submit(append("run"), Reply::Async(after.0)).unwrap();
        drop(stall);
        first.1.blocking_recv().unwrap().unwrap();
        let staged_before = before.1.blocking_recv().unwrap().unwrap();
        let closed = close.1.blocking_recv().unwrap().unwrap();
        let refused = after.1.blocking_recv().unwrap().unwrap_err();
        assert!(matches!(refused, Error::StreamClosed { ref stream } if stream == "run"), "{refused}");
        assert_eq!(staged_before[0].first_version.0, 1);
        assert_eq!(closed[0].first_position.0, staged_before[0].first_position.0 + 1);
        assert_eq!(log.stream_version("run").map(|v| v.0), Some(1));
        assert!(log.stream_state("run").unwrap().closed);
    }

    /// Appends racing the erasure of a whole encrypted stream, all taken up in one group: the
    /// one staged before the erasure is erased with it (its secret is destroyed); the one
    /// prepared with the old secret but staged after the erasure is refused, never acknowledged
    /// to read back erased; the next append gets a new secret and reads back.
    #[test]
    fn appends_racing_a_shredding_erasure_in_one_group() {
        let dir = tempfile::tempdir().unwrap();
        let keys = crate::Keyring::open(dir.path().join(crate::KEY_STORE_FILE), crate::Kek::generate()).unwrap();
        let options = Options { durability: Durability::None, keys: Some(keys.clone()), ..Default::default() };
        let log = Log::open(dir.path(), options).unwrap();
        log.append("run", ExpectedVersion::Any, vec![NewEvent::json("Step", &serde_json::json!({}))]).unwrap();
        let shared = log.shared_arc();
        let stall = shared.index.write();
        let (first, before, erase, after) =
            (oneshot::channel(), oneshot::channel(), oneshot::channel(), oneshot::channel());
        log.submit(append("other"), Reply::Async(first.0)).unwrap();
        log.submit(append("run"), Reply::Async(before.0)).unwrap();
        let op =
            LifecycleOp::Erase { stream: StreamName::new("run").unwrap(), from: None, to: None, reason: "r".into() };
        log.send(Command::Lifecycle { op, metadata: Vec::new(), reply: Reply::Async(erase.0) }).unwrap();
        log.submit(append("run"), Reply::Async(after.0)).unwrap();
        drop(stall);
        first.1.blocking_recv().unwrap().unwrap();
        let staged_before = before.1.blocking_recv().unwrap().unwrap();
        erase.1.blocking_recv().unwrap().unwrap();
        let refused = after.1.blocking_recv().unwrap();
        assert!(matches!(refused, Err(Error::StreamShredded { ref stream }) if stream == "run"), "{refused:?}");
        let read = log.read_stream("run", None, 10, crate::Direction::Forward).unwrap();
        assert_eq!(read.len(), 2);
        assert!(read.iter().all(|e| e.erased), "everything up to the erasure is erased");
        assert_eq!(read[1].position, staged_before[0].first_position);
        assert!(keys.stream_shredded("run"), "the whole stream's erasure destroyed its secret");
        let again = log.append("run", ExpectedVersion::Any, vec![NewEvent::json("Step", &serde_json::json!({"n": 3}))]);
        let again = again.unwrap();
        let event = log.read_event(again.first_position).unwrap();
        assert!(!event.erased && event.data.as_bytes() == br#"{"n":3}"#, "a later append reads back");
    }
}
